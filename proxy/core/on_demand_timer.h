#pragma once
// OnDemandTimer: a one-shot deadline in a uv_timer_t allocated on first use and freed by its own
// close callback, for objects that need a timer only in some states (an idle WebSocket session
// needs none). Since the close callback frees only the timer, its owner may be deleted without
// waiting for it.
//
// Moving a deadline later costs no timer-heap operation: the uv timer stays where it is, and when
// it fires before the deadline it re-arms itself for the rest (the "lazy" timers of nginx's
// keep-alive handling and HAProxy's task expiry, for the same reason). A proxied request moves
// three deadlines later (the upstream's response timeout, its idle timeout, the client's idle
// timeout); with a heap operation each they cost about 1,000 instructions of a request's ~13,500.
#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace sluice {

class OnDemandTimer {
 public:
  OnDemandTimer() = default;
  ~OnDemandTimer() { release(); }
  OnDemandTimer(const OnDemandTimer&) = delete;
  OnDemandTimer& operator=(const OnDemandTimer&) = delete;

  // One-shot: cb(timer) `ms` from the loop's now, replacing any earlier setting; timer->data is
  // `owner`. The loop is given at each start (the owner has it at hand) rather than kept: every
  // connection holds one of these.
  void start(uv_loop_t* loop, void* owner, uv_timer_cb cb, uint64_t ms) {
    if (!t_) {
      t_ = new Timer;
      uv_timer_init(loop, &t_->handle);
    }
    t_->handle.data = owner;
    t_->cb = cb;
    t_->deadline = uv_now(loop) + ms;
    // Armed no later than the new deadline: on_fire moves it on when it gets there.
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(&t_->handle)) &&
        uv_timer_get_due_in(&t_->handle) <= ms)
      return;
    uv_timer_start(&t_->handle, &OnDemandTimer::on_fire, ms, 0);
  }
  void stop() {
    if (t_) uv_timer_stop(&t_->handle);
  }
  // Closes and (in the close callback) frees the timer. Idempotent; start() makes a new one.
  void release() {
    if (!t_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&t_->handle),
             [](uv_handle_t* h) { delete reinterpret_cast<Timer*>(h); });
    t_ = nullptr;
  }

 private:
  struct Timer {
    uv_timer_t handle;  // first: the close callback casts the handle back
    uv_timer_cb cb = nullptr;
    uint64_t deadline = 0;  // loop time (ms) at which cb runs
  };
  static_assert(offsetof(Timer, handle) == 0);

  static void on_fire(uv_timer_t* h) {
    auto* t = reinterpret_cast<Timer*>(h);
    const uint64_t now = uv_now(h->loop);
    if (now < t->deadline) {
      uv_timer_start(h, &OnDemandTimer::on_fire, t->deadline - now, 0);
      return;
    }
    t->cb(h);  // may start, stop or release this timer, or delete its owner
  }

  Timer* t_ = nullptr;
};

}  // namespace sluice
