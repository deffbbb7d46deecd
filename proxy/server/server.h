#pragma once
// Server: the main thread. Resolves clusters, opens every listening socket (so address errors
// surface before anything starts), starts the workers, serves the admin listener, turns
// signals into loop events and runs the shutdown order.
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace sluice {

struct ServerOptions {
  bool demo = false;  // run the built-in demo app as the upstream
};

class Server {
 public:
  Server(ConfigPtr config, ServerOptions options);
  ~Server();
  // Runs until SIGTERM/SIGINT; returns the process exit status.
  int run();

 private:
  struct State;
  ConfigPtr config_;
  ServerOptions options_;
  std::unique_ptr<State> state_;
};

// `sluice demo-app`: only the demo app, on the calling thread, until SIGTERM/SIGINT.
int run_demo_app(const HostPort& listen);

}  // namespace sluice
