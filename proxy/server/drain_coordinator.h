#pragma once
// DrainCoordinator: runs the drain on the main thread — delay (keep accepting, Connection:
// close), draining (listeners closed, idle connections closed, WebSocket 1001s spread, SSE
// ended at event boundaries, in-flight requests finishing), forced closes at the budget, done.
// Each phase is published in the shared DrainState and the workers are woken to act on it;
// the coordinator polls their counters to see when everything has drained. Owned by the
// Server; its timers are heap-allocated and freed in their close callbacks.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/drain_state.h"

namespace sluice {

struct DrainCounts {
  uint64_t connections = 0;  // client connections still open (WebSocket sessions included)
  uint64_t in_flight = 0;    // requests whose response is not complete
  uint64_t websockets = 0;
  uint64_t forced = 0;
  uint64_t http2_connections = 0;     // the part of `connections` speaking HTTP/2
  uint64_t http2_streams = 0;         // their open streams (each a request in flight, or ending)
  uint64_t forced_http2_streams = 0;  // streams open on connections closed at the budget
  uint64_t grpc_calls = 0;        // gRPC calls whose response head was sent, still open
  uint64_t grpc_drain_ended = 0;  // calls the drain ended with grpc-status 14 at a boundary
};

class DrainCoordinator {
 public:
  struct Hooks {
    std::function<DrainCounts()> counts;  // summed over the workers
    std::function<void()> notify_workers;
    std::function<void(int exit_status)> on_done;
  };
  DrainCoordinator(uv_loop_t* loop, const DrainSettings& settings,
                   std::shared_ptr<DrainState> state, Hooks hooks);
  ~DrainCoordinator();
  // Seconds since the drain started (all of it once finished); 0 while serving.
  double elapsed_seconds() const {
    if (!started_ms_) return 0;
    return static_cast<double>((finished_ms_ ? finished_ms_ : uv_now(loop_)) - started_ms_) /
           1000.0;
  }
  // A reload's new settings; they apply unless a drain has already started.
  void update_settings(const DrainSettings& settings) {
    if (phase() == DrainPhase::kServing) settings_ = settings;
  }

  // Starts the drain (idempotent); `why` is logged.
  void start(const std::string& why);
  DrainPhase phase() const { return state_->get(); }
  bool finished() const { return phase() == DrainPhase::kDone; }
  // Undoes a finished drain (POST /resume after the app's container restarted): back to
  // serving, timers released, figures reset. The server reopens the listeners. False unless
  // the drain is done.
  bool resume();
  // JSON for GET /drain and /drain/wait.
  std::string status_json() const;
  void close();

 private:
  void set_phase(DrainPhase p);
  void enter_draining();
  void force();
  void check_done();
  uv_timer_t* make_timer();

  uv_loop_t* loop_;
  DrainSettings settings_;
  std::shared_ptr<DrainState> state_;
  Hooks hooks_;
  uv_timer_t* phase_timer_ = nullptr;
  uv_timer_t* budget_timer_ = nullptr;
  uv_timer_t* poll_timer_ = nullptr;
  uint64_t started_ms_ = 0;
  uint64_t finished_ms_ = 0;
  DrainCounts final_{};
  bool closed_ = false;
};

}  // namespace sluice
