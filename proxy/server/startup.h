#pragma once
// Start-up steps of the main thread that need nothing of the running server: plain functions,
// called in order by Server::run.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace sluice {

// `workers`, or one per core when it is 0.
unsigned worker_count(const Config& config);

// One listening socket per listener per worker (SO_REUSEPORT), in fds[worker][listener]. Port 0
// takes the port the first socket got, so every worker listens on the same one; the listeners'
// addresses in `config` are updated with it. On failure `error` names the listener and every
// socket opened is closed.
bool open_listeners(Config& config, unsigned workers, std::vector<std::vector<int>>& fds,
                    std::string& error);

// Raises the soft descriptor limit to the hard one and returns how many client connections
// each worker may hold within it (0: no cap): its share, less a reserve for listeners, loops,
// logs and the admin side, halved (a client may need an upstream connection too).
uint32_t client_connection_cap(unsigned workers, size_t listeners);

// "sluice: listening on ..." on stderr whatever the log level (tools and tests wait for it).
void announce_listening(const Config& config, unsigned workers);

}  // namespace sluice
