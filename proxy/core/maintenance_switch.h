#pragma once
// MaintenanceSwitch: one listener's maintenance mode as every worker reads it. The main thread
// publishes a new MaintenanceView when the file or the admin API changes it; a request reads
// the mode with one relaxed atomic load and, only while a mode is on, takes the view under a
// mutex (a shared_ptr copy). Owned by the server's MaintenanceBoard, which outlives the workers.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/guard_settings.h"

namespace sluice {

// The effective maintenance of a listener: the file's settings, with the mode, Retry-After and
// message of an admin API override when there is one.
struct MaintenanceView {
  MaintenanceSettings settings;
  bool from_api = false;  // an override set by POST /maintenance is in force
  uint32_t retry_after_s() const {
    const auto s = (settings.retry_after.count() + 999) / 1000;
    return s < 1 ? 1u : static_cast<uint32_t>(s);
  }
};

class MaintenanceSwitch {
 public:
  MaintenanceMode mode() const {
    return static_cast<MaintenanceMode>(mode_.load(std::memory_order_acquire));
  }
  std::shared_ptr<const MaintenanceView> view() const {
    std::lock_guard<std::mutex> lock(mu_);
    return view_;
  }
  void publish(std::shared_ptr<const MaintenanceView> v) {
    std::lock_guard<std::mutex> lock(mu_);
    mode_.store(static_cast<uint8_t>(v->settings.mode), std::memory_order_release);
    view_ = std::move(v);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const MaintenanceView> view_ = std::make_shared<MaintenanceView>();
  std::atomic<uint8_t> mode_{0};
};

}  // namespace sluice
