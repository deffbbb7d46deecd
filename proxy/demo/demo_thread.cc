#include "demo/demo_thread.h"

#include <csignal>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <vector>

#include "core/log.h"
#include "core/loop_context.h"
#include "demo/demo_app.h"
#include "net/listener.h"

namespace sluice {

void DemoThread::start() {
  std::promise<void> ready;
  auto fut = ready.get_future();
  thread_ = std::thread([this, r = std::move(ready)]() mutable {
    uv_loop_init(&loop_);
    LoopContext ctx(&loop_, 1);
    DemoApp app(ctx);
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      static_cast<DemoApp*>(a->data)->close();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_.data = &app;
    int rc = app.start(fd_);
    if (rc != 0) LOG_ERROR("demo app: %s", uv_strerror(rc));
    r.set_value();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  });
  fut.wait();
}

void DemoThread::stop() {
  if (!thread_.joinable()) return;
  uv_async_send(&stop_);
  thread_.join();
}

namespace {
struct SignalWatch {
  uv_signal_t handle;
  std::function<void(int)> fn;
};
}  // namespace

int run_demo_app(const HostPort& listen) {
  std::string error;
  int fd = open_listen_socket(listen, false, error);
  if (fd < 0) {
    fprintf(stderr, "sluice demo-app: %s\n", error.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int port = bound_port(fd);
  {
    LoopContext ctx(&loop, 1);
    DemoApp app(ctx);
    if (int r = app.start(fd); r != 0) {
      fprintf(stderr, "sluice demo-app: listen: %s\n", uv_strerror(r));
      return 1;
    }
    std::vector<std::unique_ptr<SignalWatch>> signals;
    for (int signum : {SIGTERM, SIGINT}) {
      auto sw = std::make_unique<SignalWatch>();
      uv_signal_init(&loop, &sw->handle);
      sw->handle.data = sw.get();
      sw->fn = [&](int) {
        app.close();
        for (auto& s : signals) uv_close(reinterpret_cast<uv_handle_t*>(&s->handle), nullptr);
      };
      uv_signal_start(
          &sw->handle,
          [](uv_signal_t* h, int signum) { static_cast<SignalWatch*>(h->data)->fn(signum); },
          signum);
      signals.push_back(std::move(sw));
    }
    fprintf(stderr, "sluice demo-app: listening on %s:%d\n", listen.host.c_str(), port);
    fflush(stderr);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}

}  // namespace sluice
