// The circuit breaker's state machine with an injected clock: closed → open at the failure
// ratio once min_requests are in the window, fail fast with the remaining time, half-open
// trials, closed again or open again; the retry budget's arithmetic and the cluster guard's caps.
#include "upstream/circuit_breaker.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "upstream/cluster_guard.h"

namespace sluice {
namespace {

CircuitBreakerSettings settings(uint32_t min_requests = 4, double ratio = 0.5,
                                uint32_t trials = 2) {
  CircuitBreakerSettings s;
  s.enabled = true;
  s.window = Millis(10000);
  s.min_requests = min_requests;
  s.failure_ratio = ratio;
  s.open_for = Millis(30000);
  s.trial_requests = trials;
  return s;
}

// Admits one request at `now` and records its outcome; returns the transition it caused.
std::optional<CircuitState> one(CircuitBreaker& b, uint64_t now, bool failure) {
  CircuitBreaker::Admission a = b.admit(now);
  EXPECT_TRUE(a.allowed) << "at " << now;
  return b.record(a.ticket, failure, now);
}

TEST(CircuitBreaker, StaysClosedBelowMinRequestsEvenIfAllFail) {
  CircuitBreaker b("api", settings(4));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(one(b, 1000 + i, true));
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  // The fourth failure reaches min_requests with a ratio of 1: open.
  EXPECT_EQ(one(b, 1004, true), CircuitState::kOpen);
  EXPECT_EQ(b.state(), CircuitState::kOpen);
}

TEST(CircuitBreaker, OpensWhenTheRatioIsReachedNotBefore) {
  CircuitBreaker b("api", settings(4, 0.5));
  uint64_t t = 1000;
  EXPECT_FALSE(one(b, t++, false));
  EXPECT_FALSE(one(b, t++, false));
  EXPECT_FALSE(one(b, t++, false));
  EXPECT_FALSE(one(b, t++, true));  // 1 of 4
  EXPECT_FALSE(one(b, t++, false));
  EXPECT_FALSE(one(b, t++, true));  // 2 of 6
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  EXPECT_EQ(one(b, t++, true), std::nullopt);         // 3 of 7
  EXPECT_EQ(one(b, t++, true), CircuitState::kOpen);  // 4 of 8: the ratio is reached
}

TEST(CircuitBreaker, FailuresOlderThanTheWindowNoLongerCount) {
  CircuitBreaker b("api", settings(4, 0.5));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(one(b, 1000, true));
  // 10 s later the window has moved past them: three successes and one failure stay closed.
  const uint64_t later = 1000 + 11000;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(one(b, later, false));
  EXPECT_FALSE(one(b, later, true));
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  uint32_t requests = 0, failures = 0;
  b.window_counts(later, requests, failures);
  EXPECT_EQ(requests, 4u);
  EXPECT_EQ(failures, 1u);
}

TEST(CircuitBreaker, OpenFailsFastWithTheRemainingTimeRoundedUp) {
  CircuitBreaker b("api", settings(1, 0.5));
  EXPECT_EQ(one(b, 5000, true), CircuitState::kOpen);
  CircuitBreaker::Admission a = b.admit(5000);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.state, CircuitState::kOpen);
  EXPECT_EQ(a.retry_after_s, 30u);
  EXPECT_EQ(b.admit(5000 + 29001).retry_after_s, 1u);   // 999 ms left: at least 1 s
  EXPECT_EQ(b.admit(5000 + 10500).retry_after_s, 20u);  // 19.5 s left
  EXPECT_EQ(b.open_until_ms(), 35000u);
}

TEST(CircuitBreaker, HalfOpenLetsTrialsThroughAndClosesWhenTheyAllSucceed) {
  CircuitBreaker b("api", settings(1, 0.5, 2));
  EXPECT_EQ(one(b, 0, true), CircuitState::kOpen);
  CircuitBreaker::Admission t1 = b.admit(30000);
  EXPECT_TRUE(t1.allowed);
  EXPECT_EQ(t1.transition, CircuitState::kHalfOpen);
  EXPECT_TRUE(t1.ticket.trial);
  CircuitBreaker::Admission t2 = b.admit(30001);
  EXPECT_TRUE(t2.allowed);
  EXPECT_FALSE(t2.transition);
  CircuitBreaker::Admission over = b.admit(30002);  // both trials are under way
  EXPECT_FALSE(over.allowed);
  EXPECT_EQ(over.state, CircuitState::kHalfOpen);
  EXPECT_EQ(over.retry_after_s, 1u);
  EXPECT_EQ(b.record(t1.ticket, false, 30010), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
  EXPECT_EQ(b.record(t2.ticket, false, 30011), CircuitState::kClosed);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
  // Closed with a fresh window: one success does not open it.
  EXPECT_FALSE(one(b, 30020, false));
}

TEST(CircuitBreaker, AFailedTrialOpensAgainForAnotherPeriod) {
  CircuitBreaker b("api", settings(1, 0.5, 3));
  EXPECT_EQ(one(b, 0, true), CircuitState::kOpen);
  CircuitBreaker::Admission t1 = b.admit(30000);
  CircuitBreaker::Admission t2 = b.admit(30000);
  ASSERT_TRUE(t1.allowed && t2.allowed);
  EXPECT_EQ(b.record(t1.ticket, false, 30005), std::nullopt);
  EXPECT_EQ(b.record(t2.ticket, true, 30006), CircuitState::kOpen);
  CircuitBreaker::Admission a = b.admit(30007);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.retry_after_s, 30u);
  EXPECT_EQ(b.open_until_ms(), 60006u);
}

TEST(CircuitBreaker, OutcomesOfAnEarlierStateAreIgnored) {
  CircuitBreaker b("api", settings(2, 0.5));
  CircuitBreaker::Admission slow = b.admit(0);  // admitted while closed, answers late
  EXPECT_FALSE(one(b, 1, true));
  EXPECT_EQ(one(b, 2, true), CircuitState::kOpen);
  EXPECT_EQ(b.record(slow.ticket, true, 3), std::nullopt);
  CircuitBreaker::Admission t = b.admit(30002);  // half-open
  ASSERT_TRUE(t.allowed);
  // The late success of the closed period does not count as a trial.
  EXPECT_EQ(b.record(slow.ticket, false, 30003), std::nullopt);
  EXPECT_EQ(b.state(), CircuitState::kHalfOpen);
}

TEST(CircuitBreaker, ACancelledTrialGivesItsSlotBack) {
  CircuitBreaker b("api", settings(1, 0.5, 1));
  EXPECT_EQ(one(b, 0, true), CircuitState::kOpen);
  CircuitBreaker::Admission t = b.admit(30000);
  ASSERT_TRUE(t.allowed);
  EXPECT_FALSE(b.admit(30001).allowed);
  b.cancel(t.ticket);  // its client went away before an answer
  CircuitBreaker::Admission again = b.admit(30002);
  ASSERT_TRUE(again.allowed);
  EXPECT_EQ(b.record(again.ticket, false, 30003), CircuitState::kClosed);
}

TEST(CircuitBreaker, SharedByThreadsEveryOutcomeCountsOnce) {
  CircuitBreaker b("api", settings(1000000, 0.5));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&b, t] {
      for (int i = 0; i < 1000; ++i) {
        CircuitBreaker::Admission a = b.admit(100);
        b.record(a.ticket, (i + t) % 2 == 0, 100);
      }
    });
  for (auto& th : threads) th.join();
  uint32_t requests = 0, failures = 0;
  b.window_counts(100, requests, failures);
  EXPECT_EQ(requests, 4000u);
  EXPECT_EQ(failures, 2000u);
  EXPECT_EQ(b.state(), CircuitState::kClosed);
}

TEST(RetryBudget, MinimumOrShareOfRequestsInFlight) {
  RetryBudgetSettings b{20, 3};
  // Few requests in flight: the minimum applies.
  EXPECT_TRUE(retry_budget_allows(1, 1, b));
  EXPECT_TRUE(retry_budget_allows(3, 5, b));
  EXPECT_FALSE(retry_budget_allows(4, 5, b));
  // Many: 20 % of them.
  EXPECT_TRUE(retry_budget_allows(20, 100, b));
  EXPECT_FALSE(retry_budget_allows(21, 100, b));
  EXPECT_TRUE(retry_budget_allows(19, 99, b));  // 19.8 rounds down to 19
  EXPECT_FALSE(retry_budget_allows(20, 99, b));
  // No minimum and no share: nothing may be retried.
  EXPECT_FALSE(retry_budget_allows(1, 1000, RetryBudgetSettings{0, 0}));
  // 100 %: every request in flight may be retried once.
  EXPECT_TRUE(retry_budget_allows(50, 50, RetryBudgetSettings{100, 0}));
}

TEST(ClusterGuard, CountsRequestsOfEveryWorkerForTheBudget) {
  ClusterConfig c;
  c.retry_budget = RetryBudgetSettings{50, 1};
  ClusterGuard g(c, 2);
  EXPECT_TRUE(g.start_request(0));
  EXPECT_TRUE(g.start_request(1));
  EXPECT_TRUE(g.start_request(1));
  EXPECT_TRUE(g.start_request(0));
  EXPECT_EQ(g.requests_in_flight(), 4u);
  EXPECT_TRUE(g.start_retry());   // 1 of max(1, 2)
  EXPECT_TRUE(g.start_retry());   // 2 of 2
  EXPECT_FALSE(g.start_retry());  // spent
  EXPECT_EQ(g.retries_in_flight(), 2u);
  g.end_retry();
  EXPECT_TRUE(g.start_retry());
  for (unsigned w : {0u, 1u, 1u, 0u}) g.end_request(w);
  EXPECT_EQ(g.requests_in_flight(), 0u);
  EXPECT_FALSE(g.breaker());
}

TEST(ClusterGuard, CapsRefuseBeyondTheirLimitAndFreeOnEnd) {
  ClusterConfig c;
  c.caps = ClusterCaps{2, 1};
  c.circuit_breaker.enabled = true;
  ClusterGuard g(c, 1);
  EXPECT_TRUE(g.breaker());
  EXPECT_TRUE(g.start_request(0));
  EXPECT_TRUE(g.start_request(0));
  EXPECT_FALSE(g.start_request(0));
  EXPECT_EQ(g.requests_in_flight(), 2u);  // a refused start is not counted
  g.end_request(0);
  EXPECT_TRUE(g.start_request(0));
  EXPECT_TRUE(g.start_pending());
  EXPECT_FALSE(g.start_pending());
  g.end_pending();
  EXPECT_TRUE(g.start_pending());
  EXPECT_TRUE(g.same_settings(c));
  ClusterConfig other = c;
  other.circuit_breaker.open_for = Millis(1000);
  EXPECT_FALSE(g.same_settings(other));
}

}  // namespace
}  // namespace sluice
