#include "upstream/circuit_breaker.h"

#include <algorithm>

#include "core/log.h"

namespace sluice {

CircuitBreaker::CircuitBreaker(std::string cluster, const CircuitBreakerSettings& settings)
    : cluster_(std::move(cluster)),
      settings_(settings),
      bucket_ms_(std::max<uint64_t>(1, static_cast<uint64_t>(settings.window.count()) / kBuckets)) {
}

void CircuitBreaker::set_state(CircuitState s) {
  state_.store(static_cast<uint8_t>(s), std::memory_order_relaxed);
  ++generation_;  // outcomes of requests admitted before this change no longer count
  trials_started_ = trial_successes_ = 0;
  for (Bucket& b : buckets_) b = Bucket{};
}

void CircuitBreaker::open(uint64_t now_ms) {
  set_state(CircuitState::kOpen);
  open_until_ms_ = now_ms + static_cast<uint64_t>(settings_.open_for.count());
}

void CircuitBreaker::totals(uint64_t now_ms, uint32_t& requests, uint32_t& failures) const {
  requests = failures = 0;
  const uint64_t epoch = now_ms / bucket_ms_;
  for (const Bucket& b : buckets_) {
    if (b.epoch == UINT64_MAX || b.epoch + kBuckets <= epoch) continue;  // older than the window
    requests += b.requests;
    failures += b.failures;
  }
}

CircuitBreaker::Admission CircuitBreaker::admit(uint64_t now_ms) {
  Admission a;
  std::lock_guard<std::mutex> lock(mu_);
  CircuitState s = state();
  if (s == CircuitState::kOpen && now_ms >= open_until_ms_) {
    set_state(CircuitState::kHalfOpen);
    s = CircuitState::kHalfOpen;
    a.transition = s;
  }
  a.state = s;
  if (s == CircuitState::kOpen) {
    const uint64_t left = open_until_ms_ - now_ms;
    a.retry_after_s = static_cast<uint32_t>(std::max<uint64_t>(1, (left + 999) / 1000));
    return a;
  }
  if (s == CircuitState::kHalfOpen) {
    if (trials_started_ >= settings_.trial_requests) {
      a.retry_after_s = 1;  // the trials under way decide within a response time
      return a;
    }
    ++trials_started_;
    a.ticket.trial = true;
  }
  a.allowed = true;
  a.ticket.generation = generation_;
  a.ticket.valid = true;
  return a;
}

std::optional<CircuitState> CircuitBreaker::record(const Ticket& t, bool failure, uint64_t now_ms) {
  if (!t.valid) return std::nullopt;
  std::optional<CircuitState> moved;
  uint32_t requests = 0, failures = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (t.generation != generation_) return std::nullopt;
    const CircuitState s = state();
    if (s == CircuitState::kHalfOpen) {
      if (failure) {
        open(now_ms);
        moved = CircuitState::kOpen;
      } else if (++trial_successes_ >= settings_.trial_requests) {
        set_state(CircuitState::kClosed);
        moved = CircuitState::kClosed;
      }
    } else if (s == CircuitState::kClosed) {
      const uint64_t epoch = now_ms / bucket_ms_;
      Bucket& b = buckets_[epoch % kBuckets];
      if (b.epoch != epoch) b = Bucket{epoch, 0, 0};
      ++b.requests;
      if (failure) ++b.failures;
      totals(now_ms, requests, failures);
      if (failure && requests >= settings_.min_requests &&
          static_cast<double>(failures) >=
              settings_.failure_ratio * static_cast<double>(requests)) {
        open(now_ms);
        moved = CircuitState::kOpen;
      }
    }
  }
  if (moved == CircuitState::kOpen && failures) {
    LOG_WARN(
        "cluster %s: circuit breaker open (%u of %u requests failed within %lld ms); "
        "failing fast for %lld ms",
        cluster_.c_str(), failures, requests, static_cast<long long>(settings_.window.count()),
        static_cast<long long>(settings_.open_for.count()));
  } else if (moved == CircuitState::kOpen) {
    LOG_WARN(
        "cluster %s: circuit breaker open again (a trial request failed); failing fast for "
        "%lld ms",
        cluster_.c_str(), static_cast<long long>(settings_.open_for.count()));
  } else if (moved == CircuitState::kClosed) {
    LOG_INFO("cluster %s: circuit breaker closed (%u trial requests succeeded)", cluster_.c_str(),
             settings_.trial_requests);
  }
  return moved;
}

void CircuitBreaker::cancel(const Ticket& t) {
  if (!t.valid || !t.trial) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (t.generation == generation_ && trials_started_ > 0) --trials_started_;
}

void CircuitBreaker::window_counts(uint64_t now_ms, uint32_t& requests, uint32_t& failures) const {
  std::lock_guard<std::mutex> lock(mu_);
  totals(now_ms, requests, failures);
}

uint64_t CircuitBreaker::open_until_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_until_ms_;
}

}  // namespace sluice
