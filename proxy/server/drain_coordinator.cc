#include "server/drain_coordinator.h"

#include <nlohmann/json.hpp>

#include "core/log.h"

namespace sluice {

DrainCoordinator::DrainCoordinator(uv_loop_t* loop, const DrainSettings& settings,
                                   std::shared_ptr<DrainState> state, Hooks hooks)
    : loop_(loop), settings_(settings), state_(std::move(state)), hooks_(std::move(hooks)) {}

DrainCoordinator::~DrainCoordinator() {
  close();
}

uv_timer_t* DrainCoordinator::make_timer() {
  auto* t = new uv_timer_t;
  uv_timer_init(loop_, t);
  t->data = this;
  return t;
}

void DrainCoordinator::set_phase(DrainPhase p) {
  state_->phase.store(p, std::memory_order_release);  // publishes `forced` with it
  hooks_.notify_workers();
}

void DrainCoordinator::start(const std::string& why) {
  if (closed_ || phase() != DrainPhase::kServing) return;
  started_ms_ = uv_now(loop_);
  LOG_INFO("drain started (%s): delay %s, budget %s, close spread %s", why.c_str(),
           format_duration(settings_.delay).c_str(), format_duration(settings_.budget).c_str(),
           format_duration(settings_.close_spread).c_str());
  set_phase(DrainPhase::kDelay);
  phase_timer_ = make_timer();
  budget_timer_ = make_timer();
  poll_timer_ = make_timer();
  uv_timer_start(
      phase_timer_,
      [](uv_timer_t* t) { static_cast<DrainCoordinator*>(t->data)->enter_draining(); },
      static_cast<uint64_t>(settings_.delay.count()), 0);
  uv_timer_start(
      budget_timer_, [](uv_timer_t* t) { static_cast<DrainCoordinator*>(t->data)->force(); },
      static_cast<uint64_t>(settings_.budget.count()), 0);
  uv_timer_start(
      poll_timer_, [](uv_timer_t* t) { static_cast<DrainCoordinator*>(t->data)->check_done(); }, 20,
      20);
}

void DrainCoordinator::enter_draining() {
  if (phase() != DrainPhase::kDelay) return;
  DrainCounts c = hooks_.counts();
  LOG_INFO(
      "drain: closing listeners; %llu connections (%llu HTTP/2), %llu requests in flight "
      "(%llu HTTP/2 streams), %llu WebSocket sessions, %llu gRPC calls",
      static_cast<unsigned long long>(c.connections),
      static_cast<unsigned long long>(c.http2_connections),
      static_cast<unsigned long long>(c.in_flight),
      static_cast<unsigned long long>(c.http2_streams),
      static_cast<unsigned long long>(c.websockets), static_cast<unsigned long long>(c.grpc_calls));
  set_phase(DrainPhase::kDraining);
}

void DrainCoordinator::force() {
  if (phase() >= DrainPhase::kForced) return;
  if (phase() == DrainPhase::kDelay) enter_draining();
  DrainCounts c = hooks_.counts();
  LOG_WARN(
      "drain budget of %s reached: closing %llu connections (%llu WebSocket sessions, %llu "
      "HTTP/2 connections with %llu streams open)",
      format_duration(settings_.budget).c_str(), static_cast<unsigned long long>(c.connections),
      static_cast<unsigned long long>(c.websockets),
      static_cast<unsigned long long>(c.http2_connections),
      static_cast<unsigned long long>(c.http2_streams));
  state_->forced.store(true, std::memory_order_relaxed);
  set_phase(DrainPhase::kForced);
}

void DrainCoordinator::check_done() {
  if (phase() < DrainPhase::kDraining || phase() == DrainPhase::kDone) return;
  DrainCounts c = hooks_.counts();
  if (c.connections != 0) return;
  final_ = c;
  finished_ms_ = uv_now(loop_);
  state_->phase.store(DrainPhase::kDone, std::memory_order_release);
  LOG_INFO("drain done in %.3f s; %llu connections force-closed (%llu HTTP/2 streams reset)",
           static_cast<double>(finished_ms_ - started_ms_) / 1000.0,
           static_cast<unsigned long long>(c.forced),
           static_cast<unsigned long long>(c.forced_http2_streams));
  for (uv_timer_t* t : {phase_timer_, budget_timer_, poll_timer_}) uv_timer_stop(t);
  hooks_.on_done(c.forced ? 2 : 0);
}

std::string DrainCoordinator::status_json() const {
  DrainCounts c = finished() ? final_ : hooks_.counts();
  uint64_t now = finished() ? finished_ms_ : uv_now(loop_);
  nlohmann::json j;
  j["phase"] = drain_phase_name(phase() == DrainPhase::kForced ? DrainPhase::kDraining : phase());
  j["elapsed_s"] = started_ms_ ? static_cast<double>(now - started_ms_) / 1000.0 : 0.0;
  j["budget_s"] = static_cast<double>(settings_.budget.count()) / 1000.0;
  j["connections"] = c.connections;
  j["in_flight"] = c.in_flight;
  j["websockets"] = c.websockets;
  j["forced"] = c.forced;
  j["http2_connections"] = c.http2_connections;
  j["http2_streams"] = c.http2_streams;
  j["forced_http2_streams"] = c.forced_http2_streams;
  j["grpc_calls"] = c.grpc_calls;
  j["grpc_drain_ended"] = c.grpc_drain_ended;
  return j.dump() + "\n";
}

bool DrainCoordinator::resume() {
  if (closed_ || phase() != DrainPhase::kDone) return false;
  for (uv_timer_t* t : {phase_timer_, budget_timer_, poll_timer_}) {
    if (!t) continue;
    uv_close(reinterpret_cast<uv_handle_t*>(t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  phase_timer_ = budget_timer_ = poll_timer_ = nullptr;
  started_ms_ = finished_ms_ = 0;
  final_ = DrainCounts{};
  // Not through set_phase: the server wakes the workers with their new listeners.
  state_->forced.store(false, std::memory_order_relaxed);
  state_->phase.store(DrainPhase::kServing, std::memory_order_release);
  return true;
}

void DrainCoordinator::close() {
  if (closed_) return;
  closed_ = true;
  for (uv_timer_t* t : {phase_timer_, budget_timer_, poll_timer_}) {
    if (!t) continue;
    uv_close(reinterpret_cast<uv_handle_t*>(t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  phase_timer_ = budget_timer_ = poll_timer_ = nullptr;
}

}  // namespace sluice
