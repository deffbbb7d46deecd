#pragma once
// WaitQueue: the requests of one pool waiting for a connection (UpstreamPool) or a stream
// (Http2UpstreamPool), oldest first, each failed with kQueueTimeout once it has waited
// pool.queue_timeout. Owns the timer of that deadline (an OnDemandTimer: armed for the oldest
// waiter, freed by its own close callback, so the pool may go before it closes). Owned by its
// pool, which decides who is served and who fails for any other reason.
#include <cstddef>

#include "core/config.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "upstream/upstream_side.h"

namespace sluice {

class WaitQueue {
 public:
  WaitQueue(LoopContext& ctx, const PoolSettings& settings) : ctx_(ctx), settings_(settings) {}
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  PoolClient* front() const { return list_.front(); }
  template <typename F>
  void for_each(F&& f) {
    list_.for_each(f);
  }
  // Queues `client`, its wait counted from now. The timer is armed by arm_timer().
  void push_back(PoolClient* client);
  // Arms the queue timeout for the oldest waiter (none: nothing to do).
  void arm_timer();
  // Takes `client` off the queue (a no-op if it is not on it); the timer stops with the last.
  void remove(PoolClient* client);
  PoolClient* pop_front();
  // Fails every waiter with `f`, oldest first; each is off the queue before it hears (its
  // failure may start a retry elsewhere).
  void fail_all(PoolFailure f);
  // Forgets the waiters without a word: only for a pool deleted with some left.
  void drop_all();
  // Closes the timer (pool shutdown). Idempotent.
  void close() { timer_.release(); }

 private:
  static void on_timer(uv_timer_t* t);

  LoopContext& ctx_;
  const PoolSettings& settings_;  // the cluster's, which outlives its pools
  IntrusiveList<PoolClient> list_;
  OnDemandTimer timer_;
};

}  // namespace sluice
