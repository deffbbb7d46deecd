#pragma once
// OnDemandTimer: a uv_timer_t allocated on first use and freed by its own close callback, for
// objects that need a timer only in some states (an idle WebSocket session needs none). Since
// the close callback frees only the timer, its owner may be deleted without waiting for it.
#include <uv.h>

#include <cstdint>

namespace sluice {

class OnDemandTimer {
 public:
  OnDemandTimer() = default;
  ~OnDemandTimer() { release(); }
  OnDemandTimer(const OnDemandTimer&) = delete;
  OnDemandTimer& operator=(const OnDemandTimer&) = delete;

  // One-shot: cb(timer) after `ms`; timer->data is `owner`. The loop is given at each start
  // (the owner has it at hand) rather than kept: every connection holds one of these.
  void start(uv_loop_t* loop, void* owner, uv_timer_cb cb, uint64_t ms) {
    if (!t_) {
      t_ = new uv_timer_t;
      uv_timer_init(loop, t_);
    }
    t_->data = owner;
    uv_timer_start(t_, cb, ms, 0);
  }
  void stop() {
    if (t_) uv_timer_stop(t_);
  }
  // Closes and (in the close callback) frees the timer. Idempotent; start() makes a new one.
  void release() {
    if (!t_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(t_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    t_ = nullptr;
  }

 private:
  uv_timer_t* t_ = nullptr;
};

}  // namespace sluice
