#pragma once
// AdminServer: a small HTTP/1.1 server on the main thread's loop for operators and probes
// (/healthz, /readyz; metrics, stats and the drain API grow here). Owns its Listener and its
// connections; requests are answered from a route table of handlers that return whole bodies.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "net/listener.h"

namespace sluice {

class MessageHead;

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const MessageHead& request)>;

  AdminServer(LoopContext& ctx, Handler handler);
  ~AdminServer();
  // Takes a bound socket from open_listen_socket().
  int start(int fd);
  void close();

 private:
  class Connection;
  friend class Connection;
  LoopContext& ctx_;
  Handler handler_;
  std::unique_ptr<Listener> listener_;
  IntrusiveList<Connection> connections_;
  bool closed_ = false;
};

}  // namespace sluice
