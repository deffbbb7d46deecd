#include "upstream/cluster_guard.h"

#include <algorithm>

namespace sluice {

bool retry_budget_allows(uint64_t retries_with_this_one, uint64_t requests_in_flight,
                         const RetryBudgetSettings& budget) {
  const uint64_t by_share = requests_in_flight * budget.percent / 100;
  return retries_with_this_one <= std::max<uint64_t>(budget.min_retries, by_share);
}

ClusterGuard::ClusterGuard(const ClusterConfig& cluster, unsigned workers)
    : caps_(cluster.caps),
      budget_(cluster.retry_budget),
      breaker_settings_(cluster.circuit_breaker),
      in_flight_(std::make_unique<Slot[]>(std::max(1u, workers))),
      workers_(std::max(1u, workers)) {
  if (breaker_settings_.enabled)
    breaker_ = std::make_unique<CircuitBreaker>(cluster.name, breaker_settings_);
}

bool ClusterGuard::same_settings(const ClusterConfig& cluster) const {
  return cluster.caps == caps_ && cluster.retry_budget == budget_ &&
         cluster.circuit_breaker == breaker_settings_;
}

bool ClusterGuard::start_request(unsigned worker) {
  if (caps_.max_requests) {
    if (capped_in_flight_.fetch_add(1, std::memory_order_relaxed) >= caps_.max_requests) {
      capped_in_flight_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
  }
  in_flight_[worker % workers_].n.add();
  return true;
}

void ClusterGuard::end_request(unsigned worker) {
  in_flight_[worker % workers_].n.sub();
  if (caps_.max_requests) capped_in_flight_.fetch_sub(1, std::memory_order_relaxed);
}

bool ClusterGuard::start_pending() {
  if (!caps_.max_pending) return true;
  if (pending_.fetch_add(1, std::memory_order_relaxed) >= caps_.max_pending) {
    pending_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void ClusterGuard::end_pending() {
  if (caps_.max_pending) pending_.fetch_sub(1, std::memory_order_relaxed);
}

uint64_t ClusterGuard::requests_in_flight() const {
  uint64_t n = 0;
  for (unsigned w = 0; w < workers_; ++w) n += in_flight_[w].n.get();
  return n;
}

bool ClusterGuard::start_retry() {
  const uint32_t with_this = retries_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (retry_budget_allows(with_this, requests_in_flight(), budget_)) return true;
  retries_.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

void ClusterGuard::end_retry() {
  retries_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace sluice
