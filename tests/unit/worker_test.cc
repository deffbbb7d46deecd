// Worker start failure: once its loop is gone, the main thread's calls must be harmless. Before
// the fix, request_stop() and post() wrote to the closed loop's async descriptor and libuv
// aborted the process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "config/config_file.h"
#include "server/worker.h"

namespace sluice {
namespace {

TEST(Worker, CallsAfterAFailedStartAreSafe) {
  auto config = std::make_shared<Config>(default_config());
  ASSERT_EQ(config->listeners.size(), 1u);
  config->clusters.clear();
  config->listeners[0].routes.clear();
  ListenerStats listener_stats;
  std::atomic<uint32_t> open{0};
  WorkerSetup setup;
  setup.config = config;
  setup.listener_stats = {&listener_stats};
  setup.listener_tls = {nullptr};
  setup.listener_open = {&open};
  // Not a socket: the worker cannot listen on it and stops during its start.
  int fd = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  setup.listen_fds = {fd};
  setup.drain = std::make_shared<DrainState>();
  Worker worker(0, std::move(setup));
  std::string error = worker.start().get();
  EXPECT_NE(error, "") << "the start should have failed";
  worker.join();  // the thread has ended: its loop is closed

  bool ran = false;
  worker.post([&ran](Worker&) { ran = true; });
  worker.notify_drain();
  worker.request_stop();
  worker.join();
  EXPECT_FALSE(ran) << "a task posted to a stopped worker is dropped";
}

TEST(Worker, StopWhileRunningThenCallsAreSafe) {
  auto config = std::make_shared<Config>(default_config());
  config->clusters.clear();
  config->listeners[0].routes.clear();
  config->listeners[0].address = HostPort{"127.0.0.1", 0};
  ListenerStats listener_stats;
  std::atomic<uint32_t> open{0};
  WorkerSetup setup;
  setup.config = config;
  setup.listener_stats = {&listener_stats};
  setup.listener_tls = {nullptr};
  setup.listener_open = {&open};
  std::string error;
  int fd = open_listen_socket(config->listeners[0].address, false, error);
  ASSERT_GE(fd, 0) << error;
  setup.listen_fds = {fd};
  setup.drain = std::make_shared<DrainState>();
  Worker worker(0, std::move(setup));
  ASSERT_EQ(worker.start().get(), "");
  std::promise<void> ran;
  worker.post([&ran](Worker&) { ran.set_value(); });
  ran.get_future().wait();  // the mailbox works while it runs
  worker.request_stop();
  worker.join();
  worker.post([](Worker&) { ADD_FAILURE() << "ran on a stopped worker"; });
  worker.request_stop();
}

}  // namespace
}  // namespace sluice
