#include "server/startup.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "core/log.h"
#include "net/listener.h"

namespace sluice {

unsigned worker_count(const Config& config) {
  unsigned n = config.workers ? config.workers : std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

bool open_listeners(Config& config, unsigned workers, std::vector<std::vector<int>>& fds,
                    std::string& error) {
  fds.assign(workers, {});
  for (auto& l : config.listeners) {
    HostPort addr = l.address;
    for (unsigned w = 0; w < workers; ++w) {
      int fd = open_listen_socket(addr, true, error);
      if (fd < 0) {
        error = "listener " + l.name + ": " + error;
        for (auto& per_worker : fds)
          for (int f : per_worker) ::close(f);
        fds.clear();
        return false;
      }
      if (addr.port == 0) addr.port = static_cast<uint16_t>(bound_port(fd));
      fds[w].push_back(fd);
    }
    l.address = addr;
  }
  return true;
}

uint32_t client_connection_cap(unsigned workers, size_t listeners) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return 0;
  const rlim_t reserve = 32 + 4 * workers + 2 * listeners * workers;
  if (rl.rlim_cur <= reserve) return 1;
  uint32_t cap =
      static_cast<uint32_t>(std::min<rlim_t>((rl.rlim_cur - reserve) / workers / 2, UINT32_MAX));
  return cap == 0 ? 1 : cap;
}

void announce_listening(const Config& config, unsigned workers) {
  std::string listeners;
  for (auto& l : config.listeners) listeners += (listeners.empty() ? "" : ", ") + l.address.str();
  std::string upstreams;
  for (auto& c : config.clusters)
    for (auto& e : c.endpoints) upstreams += (upstreams.empty() ? "" : ", ") + e.str();
  if (config.log.format == LogFormat::kJson) {
    log_line(LogLevel::kInfo, "sluice: listening on %s (%u workers), upstream %s, admin %s",
             listeners.c_str(), workers, upstreams.c_str(), config.admin.address.str().c_str());
  } else {
    fprintf(stderr, "sluice: listening on %s (%u workers), upstream %s, admin %s\n",
            listeners.c_str(), workers, upstreams.c_str(), config.admin.address.str().c_str());
  }
  fflush(stderr);
}

}  // namespace sluice
