#include "admin/admin_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

namespace sluice {

namespace {

bool send_request(int fd, const char* method, const char* path, const std::string& host,
                  const std::string& body = {}) {
  std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: " + host +
                    (body.empty() ? "" : "\r\nContent-Type: application/json") +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body;
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

void show_progress(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded()) return;
  double left = j.value("budget_s", 0.0) - j.value("elapsed_s", 0.0);
  fprintf(stderr,
          "\r\033[Kdrain: %-8s %llu connections, %llu in flight, %llu WebSockets, %llu gRPC "
          "streams, %.1f s of budget left",
          j.value("phase", "?").c_str(), j.value("connections", 0ull), j.value("in_flight", 0ull),
          j.value("websockets", 0ull), j.value("grpc_calls", 0ull), left > 0 ? left : 0.0);
  fflush(stderr);
}

}  // namespace

bool AdminClient::parse_numeric(const std::string& text, sockaddr_storage& out, socklen_t& length) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find("]:");
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  char* end = nullptr;
  long p = port.empty() ? -1 : strtol(port.c_str(), &end, 10);
  if (p <= 0 || p > 65535 || *end != '\0') return false;
  out = sockaddr_storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    length = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

int AdminClient::connect_once() const {
  int fd = ::socket(address_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address_), length_) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

int AdminClient::request(const char* method, const char* path, std::string& body) const {
  int fd = connect_once();
  if (fd < 0) return 0;
  int status = send_request(fd, method, path, shown_) ? read_response(fd, body) : 0;
  ::close(fd);
  return status;
}

int AdminClient::drain(bool wait) const {
  std::string body;
  int status = request("POST", "/drain", body);
  if (status != 200 && status != 202) {
    if (status == 0) {
      fprintf(stderr, "sluice drain: cannot reach the admin listener at %s\n", shown_.c_str());
    } else {
      fprintf(stderr, "sluice drain: %s answered %d: %s", shown_.c_str(), status, body.c_str());
    }
    return 1;
  }
  fprintf(stderr, "sluice drain: %s\n", status == 202 ? "drain started" : "already draining");
  if (!wait) {
    printf("%s", body.c_str());
    return 0;
  }
  // /drain/wait answers when the drain is over; meanwhile GET /drain feeds the progress line.
  int fd = connect_once();
  if (fd < 0 || !send_request(fd, "GET", "/drain/wait", shown_)) {
    if (fd >= 0) ::close(fd);
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
    if (tty && request("GET", "/drain", progress) == 200) show_progress(progress);
  }
  status = read_response(fd, body);
  ::close(fd);
  if (tty) fprintf(stderr, "\n");
  if (status != 200) {
    fprintf(stderr, "sluice drain: the drain did not report its end (status %d)\n", status);
    return 1;
  }
  printf("%s", body.c_str());
  fflush(stdout);
  auto j = nlohmann::json::parse(body, nullptr, false);
  return !j.is_discarded() && j.value("forced", 0ull) > 0 ? 2 : 0;
}

int AdminClient::resume() const {
  int fd = connect_once();
  if (fd == -ECONNREFUSED) {
    // Nothing listens: sluice is not running (yet). One that starts serves; nothing to undo.
    fprintf(stderr, "sluice resume: nothing listens on %s; nothing to resume\n", shown_.c_str());
    return 0;
  }
  if (fd < 0) {
    fprintf(stderr, "sluice resume: cannot reach the admin listener at %s: %s\n", shown_.c_str(),
            strerror(-fd));
    return 1;
  }
  std::string body;
  int status = send_request(fd, "POST", "/resume", shown_) ? read_response(fd, body) : 0;
  ::close(fd);
  auto j = nlohmann::json::parse(body, nullptr, false);
  std::string result = j.is_discarded() ? "" : j.value("result", "");
  if (status == 200 || status == 202 || (status == 409 && result == "stopping")) {
    // 409 stopping: sluice got its own signal, the pod is going away; not this hook's failure.
    fprintf(stderr, "sluice resume: %s\n", result.c_str());
    return 0;
  }
  fprintf(stderr, "sluice resume: %s answered %d: %s", shown_.c_str(), status, body.c_str());
  return 1;
}

int AdminClient::maintenance(const std::string& mode, const std::string& listener,
                             const std::string& retry_after, const std::string& message,
                             bool message_given) const {
  int fd = connect_once();
  if (fd < 0) {
    fprintf(stderr, "sluice maintenance: cannot reach the admin listener at %s: %s\n",
            shown_.c_str(), strerror(-fd));
    return 1;
  }
  bool sent;
  if (mode == "clear") {
    std::string path = "/maintenance";
    if (!listener.empty()) path += "?listener=" + listener;
    sent = send_request(fd, "DELETE", path.c_str(), shown_);
  } else {
    nlohmann::json j;
    j["mode"] = mode == "on" ? "full" : mode;
    if (!listener.empty()) j["listener"] = listener;
    if (!retry_after.empty()) j["retry_after"] = retry_after;
    if (message_given) j["message"] = message;
    sent = send_request(fd, "POST", "/maintenance", shown_, j.dump());
  }
  std::string body;
  int status = sent ? read_response(fd, body) : 0;
  ::close(fd);
  if (status == 200) {
    printf("%s", body.c_str());
    fflush(stdout);
    return 0;
  }
  fprintf(stderr, "sluice maintenance: %s answered %d: %s", shown_.c_str(), status, body.c_str());
  return 1;
}

}  // namespace sluice
