#include "upstream/wait_queue.h"

namespace sluice {

void WaitQueue::push_back(PoolClient* client) {
  client->queued_at_ms_ = ctx_.now_ms();
  list_.push_back(client);
}

void WaitQueue::arm_timer() {
  PoolClient* oldest = list_.front();
  if (!oldest) return;
  const uint64_t deadline =
      oldest->queued_at_ms_ + static_cast<uint64_t>(settings_.queue_timeout.count());
  const uint64_t now = ctx_.now_ms();
  timer_.start(ctx_.loop, this, &WaitQueue::on_timer, deadline > now ? deadline - now : 0);
}

void WaitQueue::remove(PoolClient* client) {
  list_.remove(client);
  if (list_.empty()) timer_.stop();
}

PoolClient* WaitQueue::pop_front() {
  PoolClient* w = list_.pop_front();
  if (list_.empty()) timer_.stop();
  return w;
}

void WaitQueue::fail_all(PoolFailure f) {
  timer_.stop();
  while (PoolClient* w = list_.pop_front()) w->on_pool_failure(f);
}

void WaitQueue::drop_all() {
  timer_.stop();
  while (list_.pop_front()) {
  }
}

void WaitQueue::on_timer(uv_timer_t* t) {
  auto* self = static_cast<WaitQueue*>(t->data);
  const uint64_t now = self->ctx_.now_ms();
  const uint64_t timeout = static_cast<uint64_t>(self->settings_.queue_timeout.count());
  while (PoolClient* w = self->list_.front()) {
    if (w->queued_at_ms_ + timeout > now) break;
    self->list_.pop_front();
    w->on_pool_failure(PoolFailure::kQueueTimeout);
  }
  self->arm_timer();
}

}  // namespace sluice
