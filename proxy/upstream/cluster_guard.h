#pragma once
// ClusterGuard: what protects one upstream cluster across all workers — its circuit breaker,
// its concurrency caps (requests in flight, requests waiting for a connection) and its retry
// budget. One per cluster per process, made by the server and shared (shared_ptr) by every
// worker's UpstreamCluster of that cluster; a reload keeps it while the cluster keeps its name
// and these settings, so an open breaker stays open across a reload. Thread-safe: atomics, and
// the breaker's mutex.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/stats.h"
#include "upstream/circuit_breaker.h"

namespace sluice {

// Envoy's retry budget: a retry may start while the retries in flight, this one included, stay
// within max(min_retries, percent % of the requests in flight).
bool retry_budget_allows(uint64_t retries_with_this_one, uint64_t requests_in_flight,
                         const RetryBudgetSettings& budget);

class ClusterGuard {
 public:
  ClusterGuard(const ClusterConfig& cluster, unsigned workers);
  ClusterGuard(const ClusterGuard&) = delete;
  ClusterGuard& operator=(const ClusterGuard&) = delete;

  // Whether `cluster` has the settings this guard was made for (then a reload keeps it).
  bool same_settings(const ClusterConfig& cluster) const;

  // Null when the cluster has no circuit_breaker.
  CircuitBreaker* breaker() { return breaker_.get(); }
  const CircuitBreaker* breaker() const { return breaker_.get(); }

  // A request starts on the cluster (from `worker`); false when max_requests are in flight
  // already (nothing is counted then). Every start is ended once with end_request.
  bool start_request(unsigned worker);
  void end_request(unsigned worker);
  // A request waits in a pool's queue; false when max_pending wait already.
  bool start_pending();
  void end_pending();
  // A retry may start (the budget allows it); every true is ended once with end_retry.
  bool start_retry();
  void end_retry();

  uint64_t requests_in_flight() const;
  uint32_t pending() const { return pending_.load(std::memory_order_relaxed); }
  uint32_t retries_in_flight() const { return retries_.load(std::memory_order_relaxed); }
  const ClusterCaps& caps() const { return caps_; }
  const RetryBudgetSettings& retry_budget() const { return budget_; }

 private:
  // Requests in flight per worker: each slot has one writer (no locked instruction on the
  // request path); the retry budget sums them (rare). Padded: workers never share a line.
  struct alignas(64) Slot {
    Counter n;
  };
  const ClusterCaps caps_;
  const RetryBudgetSettings budget_;
  const CircuitBreakerSettings breaker_settings_;
  std::unique_ptr<CircuitBreaker> breaker_;
  std::unique_ptr<Slot[]> in_flight_;
  const unsigned workers_;
  std::atomic<uint32_t> capped_in_flight_{0};  // only while max_requests is set
  std::atomic<uint32_t> pending_{0};           // only while max_pending is set
  std::atomic<uint32_t> retries_{0};
};

}  // namespace sluice
