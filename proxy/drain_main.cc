// sluice-drain: the admin client of `sluice drain` and `sluice resume` as a static executable
// with no other dependency, for the Helm chart's lifecycle hooks. An init container copies it
// into an emptyDir that the app container mounts; the app's preStop hook runs
// `sluice-drain --admin 127.0.0.1:9901 --wait` and its postStart hook `... --resume`, over the
// pod's loopback, where the admin API needs no token.
#include <cstdio>
#include <cstring>
#include <string>

#include "admin/admin_client.h"

namespace {

int usage(FILE* out) {
  fprintf(out,
          "usage: sluice-drain [--admin HOST:PORT] [--wait | --resume]\n"
          "  (no flag)  start the drain of the sluice whose admin listener is HOST:PORT\n"
          "  --wait     start it and wait until it has finished: exit 0 when everything\n"
          "             drained, 2 when connections had to be forced, 1 on errors\n"
          "  --resume   undo a drain that no signal started: sluice serves again\n"
          "  --admin    numeric address, default 127.0.0.1:9901 (or $SLUICE_ADMIN)\n");
  return out == stdout ? 0 : 64;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = getenv("SLUICE_ADMIN");
  std::string admin = env && *env ? env : "127.0.0.1:9901";
  bool wait = false, resume = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--wait") {
      wait = true;
    } else if (a == "--resume") {
      resume = true;
    } else if (a == "--admin" && i + 1 < argc) {
      admin = argv[++i];
    } else if (a.rfind("--admin=", 0) == 0) {
      admin = a.substr(8);
    } else if (a == "--help" || a == "-h") {
      return usage(stdout);
    } else {
      fprintf(stderr, "sluice-drain: unknown argument %s\n", argv[i]);
      return usage(stderr);
    }
  }
  if (wait && resume) {
    fprintf(stderr, "sluice-drain: --wait and --resume exclude each other\n");
    return usage(stderr);
  }
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!sluice::AdminClient::parse_numeric(admin, address, length)) {
    fprintf(stderr, "sluice-drain: --admin %s: want a numeric HOST:PORT (127.0.0.1:9901)\n",
            admin.c_str());
    return 64;
  }
  sluice::AdminClient client(address, length, admin);
  return resume ? client.resume() : client.drain(wait);
}
