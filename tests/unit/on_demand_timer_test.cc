// OnDemandTimer: a later deadline moves without a timer-heap operation, an earlier one re-arms,
// and the callback runs once, at or after the last deadline set (loop time, so the checks are
// about order, not speed).
#include "core/on_demand_timer.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <vector>

namespace sluice {
namespace {

struct Owner {
  uv_loop_t* loop = nullptr;
  OnDemandTimer timer;
  std::vector<uint64_t> fired_at;  // loop time of each callback
  // What the callback does: nothing, set a new deadline, or release the timer.
  enum class Then { kNothing, kRestart, kRelease } then = Then::kNothing;
  uint64_t restart_ms = 0;

  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<Owner*>(t->data);
    self->fired_at.push_back(uv_now(self->loop));
    switch (self->then) {
      case Then::kNothing:
        break;
      case Then::kRestart:
        self->then = Then::kNothing;
        self->timer.start(self->loop, self, &Owner::on_timer, self->restart_ms);
        break;
      case Then::kRelease:
        self->timer.release();
        break;
    }
  }
  void start(uint64_t ms) { timer.start(loop, this, &Owner::on_timer, ms); }
};

class OnDemandTimerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    owner_.loop = &loop_;
  }
  void TearDown() override {
    owner_.timer.release();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the close callback frees the timer
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  // Runs the loop until nothing is left to do (a one-shot timer that fired is inactive).
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }

  uv_loop_t loop_;
  Owner owner_;
};

TEST_F(OnDemandTimerTest, FiresOnceAfterItsDeadline) {
  uv_update_time(&loop_);
  const uint64_t t0 = uv_now(&loop_);
  owner_.start(20);
  run();
  ASSERT_EQ(owner_.fired_at.size(), 1u);
  EXPECT_GE(owner_.fired_at[0], t0 + 20);
}

TEST_F(OnDemandTimerTest, LaterDeadlineMovesWithoutFiringEarly) {
  uv_update_time(&loop_);
  const uint64_t t0 = uv_now(&loop_);
  owner_.start(10);
  owner_.start(60);  // later: the uv timer stays at 10 ms and re-arms itself when it gets there
  run();
  ASSERT_EQ(owner_.fired_at.size(), 1u);
  EXPECT_GE(owner_.fired_at[0], t0 + 60);
}

TEST_F(OnDemandTimerTest, EarlierDeadlineReArms) {
  uv_update_time(&loop_);
  const uint64_t t0 = uv_now(&loop_);
  owner_.start(10'000);
  owner_.start(10);
  run();
  ASSERT_EQ(owner_.fired_at.size(), 1u);
  EXPECT_GE(owner_.fired_at[0], t0 + 10);
  EXPECT_LT(owner_.fired_at[0], t0 + 10'000);
}

TEST_F(OnDemandTimerTest, DeadlineMovedWhileTheLoopRuns) {
  // The deadline is moved later from another callback, once the loop time has advanced: it
  // counts from then, not from the first start.
  struct Mover {
    uv_timer_t t;
    Owner* owner;
    uint64_t moved_at = 0;
  } mover{{}, &owner_};
  uv_timer_init(&loop_, &mover.t);
  mover.t.data = &mover;
  uv_update_time(&loop_);
  const uint64_t t0 = uv_now(&loop_);
  owner_.start(20);
  uv_timer_start(
      &mover.t,
      [](uv_timer_t* t) {
        auto* m = static_cast<Mover*>(t->data);
        m->moved_at = uv_now(t->loop);
        m->owner->start(40);
      },
      10, 0);
  run();
  ASSERT_EQ(owner_.fired_at.size(), 1u);
  EXPECT_GE(mover.moved_at, t0 + 10);
  EXPECT_GE(owner_.fired_at[0], mover.moved_at + 40);
  uv_close(reinterpret_cast<uv_handle_t*>(&mover.t), nullptr);
  run();  // the close completes while `mover` is alive
}

TEST_F(OnDemandTimerTest, StopCancels) {
  owner_.start(10);
  owner_.start(30);
  owner_.timer.stop();
  run();
  EXPECT_TRUE(owner_.fired_at.empty());
  owner_.start(5);  // a stopped timer starts again
  run();
  EXPECT_EQ(owner_.fired_at.size(), 1u);
}

TEST_F(OnDemandTimerTest, CallbackMaySetTheNextDeadline) {
  uv_update_time(&loop_);
  const uint64_t t0 = uv_now(&loop_);
  owner_.then = Owner::Then::kRestart;
  owner_.restart_ms = 15;
  owner_.start(10);
  run();
  ASSERT_EQ(owner_.fired_at.size(), 2u);
  EXPECT_GE(owner_.fired_at[0], t0 + 10);
  EXPECT_GE(owner_.fired_at[1], owner_.fired_at[0] + 15);
}

TEST_F(OnDemandTimerTest, CallbackMayReleaseAndReleaseIsIdempotent) {
  owner_.then = Owner::Then::kRelease;
  owner_.start(5);
  run();
  EXPECT_EQ(owner_.fired_at.size(), 1u);
  owner_.timer.release();  // again: nothing to do
  owner_.start(5);         // a released timer is made anew
  owner_.then = Owner::Then::kNothing;
  run();
  EXPECT_EQ(owner_.fired_at.size(), 2u);
}

TEST_F(OnDemandTimerTest, ReleasedBeforeItFires) {
  owner_.start(5);
  owner_.timer.release();
  run();
  EXPECT_TRUE(owner_.fired_at.empty());
}

}  // namespace
}  // namespace sluice
