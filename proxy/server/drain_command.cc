// `sluice drain` and `sluice resume`: AdminClient (admin/admin_client.h) after a name lookup of
// the admin address (the static `sluice-drain` takes numeric addresses only).
#include <netdb.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "admin/admin_client.h"
#include "server/server.h"

namespace sluice {

namespace {

bool resolve(const HostPort& admin, sockaddr_storage& out, socklen_t& length) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(admin.host.c_str(), std::to_string(admin.port).c_str(), &hints, &res) != 0)
    return false;
  memcpy(&out, res->ai_addr, res->ai_addrlen);
  length = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  return true;
}

}  // namespace

int run_drain_command(const HostPort& admin, bool wait) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!resolve(admin, address, length)) {
    fprintf(stderr, "sluice drain: cannot reach the admin listener at %s\n", admin.str().c_str());
    return 1;
  }
  return AdminClient(address, length, admin.str()).drain(wait);
}

int run_resume_command(const HostPort& admin) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!resolve(admin, address, length)) {
    fprintf(stderr, "sluice resume: cannot resolve %s\n", admin.str().c_str());
    return 1;
  }
  return AdminClient(address, length, admin.str()).resume();
}

int run_maintenance_command(const HostPort& admin, const std::string& mode,
                            const std::string& listener, const std::string& retry_after,
                            const std::string& message, bool message_given) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!resolve(admin, address, length)) {
    fprintf(stderr, "sluice maintenance: cannot resolve %s\n", admin.str().c_str());
    return 1;
  }
  return AdminClient(address, length, admin.str())
      .maintenance(mode, listener, retry_after, message, message_given);
}

}  // namespace sluice
