#pragma once
// Http2Guard: the per-connection budgets that bound what one HTTP/2 client can make sluice do,
// beyond nghttp2's own limits (issue #15's attack guards). Owned by its Http2Connection, which
// asks it before starting work and tells it what the client did; the guard only counts and
// answers, so its rules are tested on their own (tests/unit/http2_guard_test.cc).
//
// - Upstream work (Rapid Reset, CVE-2023-44487): streams whose exchange holds or waits for an
//   upstream connection, and streams the client reset whose upstream is still being torn down
//   (they count until the connection frees them, a loop turn after nghttp2 closed them). A
//   client that resets streams as fast as it opens them cannot have more than the cap at once:
//   over it a new stream is refused (REFUSED_STREAM), and each refusal is a stream error.
// - Stream errors (MadeYouReset, CVE-2025-8671): streams sluice or nghttp2 resets because of
//   the client (malformed requests, flow-control and stream-state errors, refusals over the
//   cap) take a token from a bucket of `max_stream_errors` that refills a tenth of itself per
//   second; when it is empty the connection ends with GOAWAY ENHANCE_YOUR_CALM.
// - Empty DATA frames without END_STREAM (CVE-2019-9518), and PING and SETTINGS frames
//   (CVE-2019-9512/9515: each makes sluice queue an ACK; nghttp2 counts the ACKs queued, but
//   sluice writes them out after every read of 16 KiB, so a flood that fits under nghttp2's
//   count per read would go on for ever): buckets of the same kind.
#include <algorithm>
#include <cstdint>

namespace sluice {

// `burst` tokens at first and at most; `per_second` come back each second. Milli-tokens, so a
// slow rate refills smoothly.
class TokenBucket {
 public:
  TokenBucket(uint32_t burst, uint32_t per_second, uint64_t now_ms)
      : cap_(uint64_t{burst} * 1000), rate_(per_second), milli_(cap_), at_ms_(now_ms) {}

  // Takes one token: false when none is left (and none is taken).
  bool take(uint64_t now_ms) {
    refill(now_ms);
    if (milli_ < 1000) return false;
    milli_ -= 1000;
    return true;
  }
  uint64_t tokens(uint64_t now_ms) {
    refill(now_ms);
    return milli_ / 1000;
  }

 private:
  void refill(uint64_t now_ms) {
    if (now_ms <= at_ms_) return;
    milli_ = std::min(cap_, milli_ + (now_ms - at_ms_) * rate_);  // rate_/s = rate_ milli/ms
    at_ms_ = now_ms;
  }
  uint64_t cap_;
  uint64_t rate_;
  uint64_t milli_;
  uint64_t at_ms_;
};

class Http2Guard {
 public:
  struct Limits {
    uint32_t max_upstream_work = 100;  // the listener's max_concurrent_streams
    uint32_t max_stream_errors = 100;
    uint32_t max_empty_frames = 100;
    uint32_t max_control_frames = 1000;  // PING and SETTINGS frames (not their ACKs)
  };
  Http2Guard(const Limits& limits, uint64_t now_ms)
      : max_upstream_work_(limits.max_upstream_work),
        stream_errors_(limits.max_stream_errors,
                       std::max<uint32_t>(1, limits.max_stream_errors / 10), now_ms),
        empty_frames_(limits.max_empty_frames, std::max<uint32_t>(1, limits.max_empty_frames / 10),
                      now_ms),
        control_frames_(limits.max_control_frames,
                        std::max<uint32_t>(1, limits.max_control_frames / 10), now_ms) {}

  // Whether a new stream may start an exchange now.
  bool may_start_upstream_work() const { return upstream_work_ < max_upstream_work_; }
  void upstream_work_started() { ++upstream_work_; }
  void upstream_work_ended() {
    if (upstream_work_ > 0) --upstream_work_;
  }
  uint32_t upstream_work() const { return upstream_work_; }

  // The client made a stream fail. False: its budget is spent (ENHANCE_YOUR_CALM).
  bool stream_error(uint64_t now_ms) { return stream_errors_.take(now_ms); }
  // An empty DATA frame without END_STREAM. False: its budget is spent.
  bool empty_frame(uint64_t now_ms) { return empty_frames_.take(now_ms); }
  // A PING or SETTINGS frame that asks for an ACK. False: its budget is spent.
  bool control_frame(uint64_t now_ms) { return control_frames_.take(now_ms); }

 private:
  uint32_t max_upstream_work_;
  uint32_t upstream_work_ = 0;
  TokenBucket stream_errors_;
  TokenBucket empty_frames_;
  TokenBucket control_frames_;
};

}  // namespace sluice
