// Http2Guard and its TokenBucket: the per-connection budgets of the HTTP/2 attack guards, on
// their own (a clock given by the test).
#include "server/http2_guard.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(TokenBucket, ABurstThenOneTokenPerRefill) {
  TokenBucket b(5, 2, 1000);  // 5 at once, 2 per second
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.take(1000)) << i;
  EXPECT_FALSE(b.take(1000));
  EXPECT_FALSE(b.take(1499));  // 0.998 of a token
  EXPECT_TRUE(b.take(1500));   // one back after half a second
  EXPECT_FALSE(b.take(1500));
  EXPECT_EQ(b.tokens(100000), 5u);  // never above the burst
}

TEST(TokenBucket, AClockThatGoesBackRefillsNothing) {
  TokenBucket b(1, 1000, 5000);
  EXPECT_TRUE(b.take(5000));
  EXPECT_FALSE(b.take(4000));
  EXPECT_FALSE(b.take(5000));
  EXPECT_TRUE(b.take(5001));
}

TEST(Http2Guard, UpstreamWorkIsCappedAndFreedByItsEnd) {
  Http2Guard g({3, 100, 100}, 0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(g.may_start_upstream_work());
    g.upstream_work_started();
  }
  EXPECT_FALSE(g.may_start_upstream_work());
  EXPECT_EQ(g.upstream_work(), 3u);
  g.upstream_work_ended();
  EXPECT_TRUE(g.may_start_upstream_work());
  g.upstream_work_ended();
  g.upstream_work_ended();
  g.upstream_work_ended();  // one too many: never below zero
  EXPECT_EQ(g.upstream_work(), 0u);
}

TEST(Http2Guard, StreamErrorsRunOutThenComeBackATenthPerSecond) {
  Http2Guard g({100, 20, 100}, 0);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(g.stream_error(0)) << i;
  EXPECT_FALSE(g.stream_error(0));
  EXPECT_FALSE(g.stream_error(499));
  EXPECT_TRUE(g.stream_error(500));  // 2 per second
  EXPECT_FALSE(g.stream_error(500));
  // The empty-frame budget is its own.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(g.empty_frame(500)) << i;
  EXPECT_FALSE(g.empty_frame(500));
}

TEST(Http2Guard, ASmallBudgetStillRefills) {
  Http2Guard g({1, 3, 1}, 0);  // a tenth of 3 rounds to 0: at least 1 per second
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(g.stream_error(0));
  EXPECT_FALSE(g.stream_error(999));
  EXPECT_TRUE(g.stream_error(1000));
  EXPECT_TRUE(g.empty_frame(0));
  EXPECT_FALSE(g.empty_frame(0));
  EXPECT_TRUE(g.empty_frame(1000));
}

}  // namespace
}  // namespace sluice
