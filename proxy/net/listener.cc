#include "net/listener.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace sluice {

int open_listen_socket(const HostPort& address, bool reuse_port, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len;
  if (uv_ip4_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0) {
    len = sizeof(sockaddr_in);
  } else if (uv_ip6_addr(address.host.c_str(), address.port,
                         reinterpret_cast<sockaddr_in6*>(&ss)) == 0) {
    len = sizeof(sockaddr_in6);
  } else {
    error = "not an IP address: " + address.host;
    return -EINVAL;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + strerror(errno);
    return -errno;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int e = errno;
    ::close(fd);
    error = std::string("SO_REUSEPORT: ") + strerror(e);
    return -e;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    int e = errno;
    ::close(fd);
    error = "bind " + address.str() + ": " + strerror(e);
    return -e;
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

Listener::Listener(uv_loop_t* loop, AcceptFn on_accept, ErrorFn on_error)
    : on_accept_(std::move(on_accept)), on_error_(std::move(on_error)) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
}

int Listener::open(int fd, int backlog) {
  int r = uv_tcp_open(&tcp_, fd);
  if (r != 0) return r;
  return uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), backlog, &Listener::on_connection);
}

void Listener::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (self->closing_) return;
  if (status < 0) {
    if (self->on_error_) {
      self->on_error_(status);
    } else {
      LOG_WARN("accept failed: %s", uv_strerror(status));
    }
    return;
  }
  self->on_accept_(server);
}

bool Listener::refuse_new_connections() {
  uv_os_fd_t fd;
  if (closing_ || uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return false;
  // The filter sees TCP segments from the TCP header on; byte 13 holds the flags. Drop a
  // segment whose SYN is set and ACK is not (a new handshake); accept everything else.
  static sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),          BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1), BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
    LOG_WARN("listener: cannot refuse new connections before closing: %s", strerror(errno));
    return false;
  }
  return true;
}

void Listener::accept_queued(const std::function<void(int fd)>& take) {
  uv_os_fd_t fd;
  if (closing_ || uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return;
  for (;;) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) LOG_WARN("accept: %s", strerror(errno));
      return;
    }
    take(c);
  }
}

void Listener::close(std::function<void()> on_closed) {
  if (closing_) return;
  closing_ = true;
  on_closed_ = std::move(on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
    auto* self = static_cast<Listener*>(h->data);
    if (self->on_closed_) self->on_closed_();
  });
}

}  // namespace sluice
