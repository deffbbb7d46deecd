#pragma once
// Listening sockets. open_listen_socket() creates a bound SO_REUSEPORT socket (libuv 1.44 has
// no flag for it, so the socket is made here and handed to uv_tcp_open); each worker owns one
// such socket in a Listener, so the kernel spreads new connections across workers.
#include <uv.h>

#include <functional>
#include <string>

#include "core/config.h"

namespace sluice {

// Returns a bound, non-blocking socket (not yet listening) or -errno; `error` says why.
int open_listen_socket(const HostPort& address, bool reuse_port, std::string& error);
// The port a bound socket got (for port 0).
int bound_port(int fd);

// Owns one uv_tcp_t listening handle on a socket from open_listen_socket(). Its owner (a
// worker or the admin server) frees it only after on_closed ran.
class Listener {
 public:
  using AcceptFn = std::function<void(uv_stream_t* server)>;
  // An accept failed (EMFILE, ENFILE...): libuv has already accepted and closed the pending
  // connection with its reserve descriptor, so the loop does not spin.
  using ErrorFn = std::function<void(int status)>;
  Listener(uv_loop_t* loop, AcceptFn on_accept, ErrorFn on_error = nullptr);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int open(int fd, int backlog = 4096);
  // Stops new handshakes on this socket (a socket filter drops bare SYNs) while handshakes
  // already under way complete, so that a later close resets nothing. Returns false if the
  // kernel refused the filter.
  bool refuse_new_connections();
  // Accepts every connection already waiting in the kernel's queue (closing a SO_REUSEPORT
  // socket would reset them) and hands each descriptor to `take`.
  void accept_queued(const std::function<void(int fd)>& take);
  void close(std::function<void()> on_closed);
  bool closing() const { return closing_; }

 private:
  static void on_connection(uv_stream_t* server, int status);
  uv_tcp_t tcp_;
  AcceptFn on_accept_;
  ErrorFn on_error_;
  std::function<void()> on_closed_;
  bool closing_ = false;
};

}  // namespace sluice
