#pragma once
// AdminServer: a small HTTP/1.1 server on the main thread's loop for operators and probes
// (/healthz, /readyz; metrics, stats and the drain API grow here). Owns its Listener and its
// connections; requests are answered from a route table of handlers that return whole bodies.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "net/listener.h"

namespace sluice {

class MessageHead;

inline constexpr size_t kMaxAdminBody = 64 * 1024;

struct AdminRequest {
  const MessageHead& head;
  std::string_view path;  // without the query
  std::string_view client_ip;
  bool from_loopback;
  std::string_view body = {};  // at most kMaxAdminBody bytes (a longer one gets 413)
  std::string_view header(std::string_view name) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  bool deferred = false;  // answered later by complete_deferred()
};

class AdminServer {
 public:
  using Handler = std::function<AdminResponse(const AdminRequest& request)>;

  AdminServer(LoopContext& ctx, Handler handler);
  ~AdminServer();
  // Takes a bound socket from open_listen_socket().
  int start(int fd);
  void close();
  // Answers every request whose handler deferred its response.
  void complete_deferred(const AdminResponse& response);
  size_t deferred_count() const { return deferred_.size(); }

 private:
  class Connection;
  friend class Connection;
  LoopContext& ctx_;
  Handler handler_;
  std::unique_ptr<Listener> listener_;
  IntrusiveList<Connection> connections_;
  std::vector<Connection*> deferred_;
  bool closed_ = false;
};

}  // namespace sluice
