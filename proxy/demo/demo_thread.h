#pragma once
// The demo app as something to run: on a thread of its own beside the proxy (`sluice demo`,
// composed by main), or alone on the calling thread (`sluice demo-app`). The proxy's server
// knows nothing of it: main points the configuration's clusters at the port it listens on.
#include <uv.h>

#include <thread>

#include "core/config.h"

namespace sluice {

// Owns the demo app's thread and its loop; the listening socket is opened by the caller.
class DemoThread {
 public:
  explicit DemoThread(int fd) : fd_(fd) {}
  ~DemoThread() { stop(); }
  DemoThread(const DemoThread&) = delete;
  DemoThread& operator=(const DemoThread&) = delete;
  // Returns once the app listens.
  void start();
  // Idempotent; joins the thread.
  void stop();

 private:
  int fd_;
  uv_loop_t loop_;
  uv_async_t stop_;
  std::thread thread_;
};

// `sluice demo-app`: only the demo app, on the calling thread, until SIGTERM/SIGINT.
int run_demo_app(const HostPort& listen);

}  // namespace sluice
