#pragma once
// GaugeShare: one part's share of a gauge that several parts add to (the idle and active
// connection gauges of a cluster, fed by each of its pools): set() moves the gauge by the
// difference from what this part last reported, so the gauge is the sum of the shares. Owned by
// the part; the gauge outlives it.
#include <cstddef>

#include "core/stats.h"

namespace sluice {

class GaugeShare {
 public:
  void set(Counter& gauge, size_t now) {
    if (now > reported_) {
      gauge.add(now - reported_);
    } else if (now < reported_) {
      gauge.sub(reported_ - now);
    }
    reported_ = now;
  }

 private:
  size_t reported_ = 0;
};

}  // namespace sluice
