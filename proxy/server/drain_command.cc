// `sluice drain`: a small blocking HTTP client for the admin drain API (no loop needed).
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "server/server.h"

namespace sluice {

namespace {

int connect_to(const HostPort& admin) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(admin.host.c_str(), std::to_string(admin.port).c_str(), &hints, &res) != 0)
    return -1;
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

bool send_request(int fd, const char* method, const char* path, const HostPort& admin) {
  std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: " + admin.str() +
                    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  return ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
}

// Reads a Connection: close response to the end; returns the status (0 on failure).
int read_response(int fd, std::string& body) {
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) all.append(buf, static_cast<size_t>(n));
  size_t end = all.find("\r\n\r\n");
  if (all.size() < 12 || end == std::string::npos) return 0;
  body = all.substr(end + 4);
  return atoi(all.c_str() + 9);
}

int request(const HostPort& admin, const char* method, const char* path, std::string& body) {
  int fd = connect_to(admin);
  if (fd < 0) return 0;
  int status = send_request(fd, method, path, admin) ? read_response(fd, body) : 0;
  ::close(fd);
  return status;
}

void show_progress(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded()) return;
  double left = j.value("budget_s", 0.0) - j.value("elapsed_s", 0.0);
  fprintf(stderr,
          "\r\033[Kdrain: %-8s %llu connections, %llu in flight, %llu WebSockets, %.1f s of budget "
          "left",
          j.value("phase", "?").c_str(), j.value("connections", 0ull), j.value("in_flight", 0ull),
          j.value("websockets", 0ull), left > 0 ? left : 0.0);
  fflush(stderr);
}

}  // namespace

int run_drain_command(const HostPort& admin, bool wait) {
  std::string body;
  int status = request(admin, "POST", "/drain", body);
  if (status != 200 && status != 202) {
    if (status == 0) {
      fprintf(stderr, "sluice drain: cannot reach the admin listener at %s\n", admin.str().c_str());
    } else {
      fprintf(stderr, "sluice drain: %s answered %d: %s", admin.str().c_str(), status,
              body.c_str());
    }
    return 1;
  }
  fprintf(stderr, "sluice drain: %s\n", status == 202 ? "drain started" : "already draining");
  if (!wait) {
    printf("%s", body.c_str());
    return 0;
  }
  // /drain/wait answers when the drain is over; meanwhile GET /drain feeds the progress line.
  int fd = connect_to(admin);
  if (fd < 0 || !send_request(fd, "GET", "/drain/wait", admin)) {
    fprintf(stderr, "sluice drain: lost the admin listener\n");
    return 1;
  }
  const bool tty = isatty(STDERR_FILENO);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 250);
    if (r > 0) break;
    if (r < 0 && errno != EINTR) break;
    std::string progress;
    if (tty && request(admin, "GET", "/drain", progress) == 200) show_progress(progress);
  }
  status = read_response(fd, body);
  ::close(fd);
  if (tty) fprintf(stderr, "\n");
  if (status != 200) {
    fprintf(stderr, "sluice drain: the drain did not report its end (status %d)\n", status);
    return 1;
  }
  printf("%s", body.c_str());
  auto j = nlohmann::json::parse(body, nullptr, false);
  return !j.is_discarded() && j.value("forced", 0ull) > 0 ? 2 : 0;
}

}  // namespace sluice
