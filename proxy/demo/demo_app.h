#pragma once
// DemoApp: a small HTTP/1.1 server on libuv, the app behind `sluice demo` and a fast upstream
// for benchmarks. Endpoints: / (hello), /bytes/N (N bytes, streamed with backpressure),
// /echo (streams the request body back), /status/CODE, /delay/MS. Owns its Listener and
// connections; runs on the loop it is given.
#include <uv.h>

#include <memory>

#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "net/listener.h"

namespace sluice {

class DemoApp {
 public:
  explicit DemoApp(LoopContext& ctx) : ctx_(ctx) {}
  ~DemoApp();
  int start(int fd);  // a bound socket from open_listen_socket()
  void close();

 private:
  class Connection;
  friend class Connection;
  LoopContext& ctx_;
  std::unique_ptr<Listener> listener_;
  IntrusiveList<Connection> connections_;
  bool closed_ = false;
};

}  // namespace sluice
