#include "core/loop_context.h"

namespace sluice {

void LoopContext::start_deferred() {
  uv_check_init(loop, &check_);
  uv_idle_init(loop, &idle_);
  check_.data = this;
  uv_check_start(&check_, &LoopContext::run_deferred);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));  // does not keep the loop alive by itself
  deferred_started_ = true;
}

void LoopContext::stop_deferred() {
  if (!deferred_started_) return;
  deferred_started_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
}

void LoopContext::defer(Task fn, void* arg) {
  if (deferred_.empty() && deferred_started_) uv_idle_start(&idle_, [](uv_idle_t*) {});
  deferred_.emplace_back(fn, arg);
}

void LoopContext::run_deferred(uv_check_t* h) {
  auto* self = static_cast<LoopContext*>(h->data);
  if (self->deferred_.empty()) return;
  // Tasks queued while these run wait for the next turn (the idle handle keeps it prompt).
  self->running_.swap(self->deferred_);
  uv_idle_stop(&self->idle_);
  for (auto& [fn, arg] : self->running_) fn(arg);
  self->running_.clear();
  if (!self->deferred_.empty()) uv_idle_start(&self->idle_, [](uv_idle_t*) {});
}

}  // namespace sluice
