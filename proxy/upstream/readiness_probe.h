#pragma once
// ReadinessProbe: is the local app behind a `readiness: true` cluster reachable? Every
// interval, a connect to each of the cluster's addresses, TCP or Unix socket (on the main loop,
// never on a worker); ready while the last round reached at least one. Until the first round
// has finished the app counts as not reachable, so a pod is not marked ready before its app
// listens (or, on a Unix socket, before it has created the socket).
#include <uv.h>

#include <string>
#include <vector>

#include "upstream/upstream_cluster.h"

namespace sluice {

class ReadinessProbe {
 public:
  ReadinessProbe(uv_loop_t* loop, std::string cluster, uint64_t interval_ms, uint64_t timeout_ms);
  ~ReadinessProbe();
  ReadinessProbe(const ReadinessProbe&) = delete;
  ReadinessProbe& operator=(const ReadinessProbe&) = delete;

  void set_addresses(const AddressList& addresses);
  void start();
  bool ready() const { return ready_; }
  // Why not ready, for /readyz's body ("cluster app: 127.0.0.1:4000: connection refused").
  const std::string& reason() const { return reason_; }
  const std::string& cluster() const { return cluster_; }
  void close();  // idempotent

 private:
  struct Attempt;
  void start_round();
  void attempt_done(Attempt* a, int status);

  uv_loop_t* loop_;
  std::string cluster_;
  uint64_t interval_ms_, timeout_ms_;
  AddressList addresses_;
  uv_timer_t* timer_ = nullptr;     // freed in its close callback
  std::vector<Attempt*> attempts_;  // in flight
  size_t pending_ = 0;
  bool round_ok_ = false;
  std::string round_error_;
  bool ready_ = false;
  std::string reason_;
  bool closed_ = false;
};

}  // namespace sluice
