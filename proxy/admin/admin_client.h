#pragma once
// AdminClient: a blocking HTTP/1.1 client for a running sluice's admin API (POST /drain,
// GET /drain/wait, POST /resume). It needs nothing but libc and the C++ standard library, so
// that it also builds into the static `sluice-drain` the Helm chart's lifecycle hooks run in
// the app's container (any image, any libc). It takes a resolved address: name lookups are
// the caller's (the static client accepts numeric addresses only).
#include <sys/socket.h>

#include <string>

namespace sluice {

class AdminClient {
 public:
  // `address` is where the admin listener is; `shown` names it in messages ("127.0.0.1:9901").
  AdminClient(const sockaddr_storage& address, socklen_t length, std::string shown)
      : address_(address), length_(length), shown_(std::move(shown)) {}

  // POST /drain, then with `wait` GET /drain/wait until the drain has finished (a progress line
  // on stderr when it is a terminal). 0 drained, 2 drained with forced closes, 1 on errors.
  int drain(bool wait) const;
  // POST /resume: a drain that no signal started is undone (listeners open again, readiness
  // follows the app). 0 when sluice serves or will serve once the drain in progress ends, and
  // when there is no sluice to resume (nothing listens: a sluice that starts serves anyway);
  // 1 on any other answer.
  int resume() const;
  // POST /maintenance {"mode", "listener"?, "retry_after"?, "message"?} ("on" is "full"), or
  // DELETE /maintenance[?listener=] for "clear" (back to the file's mode). Prints the answer;
  // 0 when sluice took it, 1 otherwise.
  int maintenance(const std::string& mode, const std::string& listener,
                  const std::string& retry_after, const std::string& message,
                  bool message_given) const;

  // Parses a numeric "HOST:PORT" ("127.0.0.1:9901", "[::1]:9901"); false if it is not one.
  static bool parse_numeric(const std::string& text, sockaddr_storage& out, socklen_t& length);

 private:
  int connect_once() const;
  // One request on a new connection; the status (0: unreachable or no answer) and the body.
  int request(const char* method, const char* path, std::string& body) const;

  sockaddr_storage address_;
  socklen_t length_;
  std::string shown_;
};

}  // namespace sluice
