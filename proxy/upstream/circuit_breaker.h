#pragma once
// CircuitBreaker: one cluster's breaker, shared by every worker (one per cluster per process,
// held by its ClusterGuard). Closed, it counts requests and failures (connect errors, timeouts,
// the configured statuses) over a sliding window; once the window holds min_requests and the
// failures reach failure_ratio of them it opens: requests fail fast for open_for. Then it is
// half-open: trial_requests go through, and it closes when they all succeed or opens again at
// the first failure. Every call takes the time (ms, monotonic) from its caller, so tests drive it
// with their own clock; all state is under one mutex (calls come from several workers).
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "core/guard_settings.h"

namespace sluice {

enum class CircuitState : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
// Label values of sluice_upstream_circuit_transitions_total{to}, by CircuitState.
inline constexpr const char* kCircuitStateNames[] = {"closed", "open", "half_open"};

class CircuitBreaker {
 public:
  CircuitBreaker(std::string cluster, const CircuitBreakerSettings& settings);
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // What an admitted request reports its outcome with. A ticket of an earlier generation (the
  // breaker changed state since) is ignored.
  struct Ticket {
    uint64_t generation = 0;
    bool trial = false;
    bool valid = false;
  };
  struct Admission {
    bool allowed = false;
    Ticket ticket;
    CircuitState state = CircuitState::kClosed;  // when refused: open, or half-open (trials full)
    uint32_t retry_after_s = 0;                  // when refused: at least 1
    std::optional<CircuitState> transition;      // the state this call moved to, if it did
  };
  Admission admit(uint64_t now_ms);
  // The outcome of an admitted request; returns the state it moved the breaker to, if any.
  std::optional<CircuitState> record(const Ticket& ticket, bool failure, uint64_t now_ms);
  // An admitted request that ends without an outcome (its client went away): a trial's slot is
  // given back.
  void cancel(const Ticket& ticket);

  CircuitState state() const {
    return static_cast<CircuitState>(state_.load(std::memory_order_relaxed));
  }
  // The window's counts now (closed), for /stats.
  void window_counts(uint64_t now_ms, uint32_t& requests, uint32_t& failures) const;
  // Until when it stays open (ms), while open.
  uint64_t open_until_ms() const;
  const CircuitBreakerSettings& settings() const { return settings_; }

  static constexpr size_t kBuckets = 10;

 private:
  struct Bucket {
    uint64_t epoch = UINT64_MAX;  // now / bucket width when it was filled
    uint32_t requests = 0, failures = 0;
  };
  void set_state(CircuitState s);                                              // under mu_
  void open(uint64_t now_ms);                                                  // under mu_
  void totals(uint64_t now_ms, uint32_t& requests, uint32_t& failures) const;  // under mu_

  const std::string cluster_;
  const CircuitBreakerSettings settings_;
  const uint64_t bucket_ms_;
  mutable std::mutex mu_;
  std::atomic<uint8_t> state_{0};  // written under mu_, read without it by metrics
  uint64_t generation_ = 1;
  uint64_t open_until_ms_ = 0;
  uint32_t trials_started_ = 0, trial_successes_ = 0;
  std::array<Bucket, kBuckets> buckets_{};
};

}  // namespace sluice
