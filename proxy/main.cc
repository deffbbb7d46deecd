// sluice: command line. Flags (and their SLUICE_* environment variables) build the effective
// configuration; the Server runs it.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "core/config.h"
#include "server/server.h"

namespace {

using namespace sluice;

struct Flags {
  std::string listen = "0.0.0.0:8080";
  std::string upstream = "127.0.0.1:4000";
  std::string admin = "127.0.0.1:9901";
  unsigned workers = 0;
  std::string connect_timeout = "2s", response_timeout = "30s";
  std::string header_timeout = "10s", idle_timeout = "75s";
  std::string max_header_bytes = "64KiB", max_body_bytes = "0";
  unsigned pool_max_idle = 64, pool_max_requests = 0, pool_max_connections = 1024;
  unsigned pool_queue_size = 1024;
  std::string pool_idle_timeout = "4s", pool_queue_timeout = "5s";
  std::string drain_delay = "5s", drain_budget = "25s";
  std::string ws_close_spread = "10s", ws_close_timeout = "3s";
  std::string admin_token_file;
};

// Adds --name bound to `target`, also read from SLUICE_NAME (flags win over the environment).
template <typename T>
CLI::Option* flag(CLI::App& app, const std::string& name, T& target, const std::string& help) {
  std::string env = "SLUICE_" + name;
  for (auto& ch : env) ch = ch == '-' ? '_' : static_cast<char>(toupper(ch));
  return app.add_option("--" + name, target, help)->envname(env)->capture_default_str();
}

void add_proxy_flags(CLI::App& app, Flags& f) {
  flag(app, "listen", f.listen, "address to accept clients on (HOST:PORT)");
  flag(app, "upstream", f.upstream, "the app behind sluice (HOST:PORT)");
  flag(app, "admin", f.admin, "admin listener: health, readiness (HOST:PORT)");
  flag(app, "workers", f.workers, "worker threads (0 = number of cores)");
  flag(app, "connect-timeout", f.connect_timeout, "upstream connect timeout (503 when exceeded)");
  flag(app, "response-timeout", f.response_timeout, "wait for the upstream's response head (504)");
  flag(app, "header-timeout", f.header_timeout, "time a client has to send a request head");
  flag(app, "idle-timeout", f.idle_timeout, "idle keep-alive client connections are closed after");
  flag(app, "max-header-bytes", f.max_header_bytes, "request head limit (431 beyond)");
  flag(app, "max-body-bytes", f.max_body_bytes, "request body limit, 0 = none (413 beyond)");
  flag(app, "pool-max-idle", f.pool_max_idle, "idle upstream connections kept per worker");
  flag(app, "pool-idle-timeout", f.pool_idle_timeout,
       "idle upstream connections are closed after (keep below the app's keep-alive timeout)");
  flag(app, "pool-max-requests", f.pool_max_requests,
       "requests per upstream connection, 0 = no limit");
  flag(app, "pool-max-connections", f.pool_max_connections, "upstream connections per worker");
  flag(app, "pool-queue-size", f.pool_queue_size, "requests waiting for an upstream connection");
  flag(app, "pool-queue-timeout", f.pool_queue_timeout, "wait for an upstream connection (503)");
  flag(app, "drain-delay", f.drain_delay,
       "on SIGTERM keep accepting this long (Connection: close) while endpoints propagate");
  flag(app, "drain-budget", f.drain_budget,
       "from SIGTERM to exit at most; the rest is force-closed");
  flag(app, "ws-close-spread", f.ws_close_spread, "WebSocket 1001 closes spread over this window");
  flag(app, "ws-close-timeout", f.ws_close_timeout, "WebSocket close handshake timeout");
  flag(app, "admin-token-file", f.admin_token_file,
       "token allowing non-loopback clients to call /drain (header X-Sluice-Admin-Token)");
}

[[noreturn]] void bad(const std::string& what, const std::string& value, const char* expected) {
  fprintf(stderr, "sluice: --%s: invalid value '%s' (expected %s)\n", what.c_str(), value.c_str(),
          expected);
  exit(1);
}

Millis duration(const std::string& name, const std::string& v) {
  auto d = parse_duration(v);
  if (!d) bad(name, v, "a duration such as 250ms, 2s, 1m");
  return *d;
}

uint64_t size(const std::string& name, const std::string& v) {
  auto s = parse_size(v);
  if (!s) bad(name, v, "a size such as 512, 64KiB, 1MiB");
  return *s;
}

HostPort address(const std::string& name, const std::string& v) {
  auto a = parse_host_port(v);
  if (!a) bad(name, v, "HOST:PORT");
  return *a;
}

ConfigPtr build_config(const Flags& f) {
  auto c = std::make_shared<Config>();
  c->admin.address = address("admin", f.admin);
  c->workers = f.workers;
  ListenerConfig l;
  l.address = address("listen", f.listen);
  l.routes.push_back(RouteConfig{.cluster = "app"});
  c->listeners.push_back(l);
  ClusterConfig cl;
  cl.endpoints.push_back(address("upstream", f.upstream));
  cl.connect_timeout = duration("connect-timeout", f.connect_timeout);
  cl.response_timeout = duration("response-timeout", f.response_timeout);
  cl.pool.max_idle = f.pool_max_idle;
  cl.pool.idle_timeout = duration("pool-idle-timeout", f.pool_idle_timeout);
  cl.pool.max_requests_per_connection = f.pool_max_requests;
  cl.pool.max_connections = f.pool_max_connections;
  if (cl.pool.max_connections == 0) bad("pool-max-connections", "0", "at least 1");
  cl.pool.queue_size = f.pool_queue_size;
  cl.pool.queue_timeout = duration("pool-queue-timeout", f.pool_queue_timeout);
  c->clusters.push_back(cl);
  c->limits.header_timeout = duration("header-timeout", f.header_timeout);
  c->limits.idle_timeout = duration("idle-timeout", f.idle_timeout);
  c->limits.max_header_bytes = size("max-header-bytes", f.max_header_bytes);
  c->limits.max_body_bytes = size("max-body-bytes", f.max_body_bytes);
  c->drain.delay = duration("drain-delay", f.drain_delay);
  c->drain.budget = duration("drain-budget", f.drain_budget);
  c->drain.ws_close_spread = duration("ws-close-spread", f.ws_close_spread);
  c->drain.ws_close_timeout = duration("ws-close-timeout", f.ws_close_timeout);
  if (c->drain.delay + c->drain.ws_close_spread > c->drain.budget)
    fprintf(stderr, "sluice: warning: drain delay + WebSocket close spread exceed the budget\n");
  if (!f.admin_token_file.empty()) {
    FILE* tf = fopen(f.admin_token_file.c_str(), "r");
    if (!tf) bad("admin-token-file", f.admin_token_file, "a readable file");
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, tf);
    fclose(tf);
    std::string token(buf, n);
    while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    if (token.empty()) bad("admin-token-file", f.admin_token_file, "a file holding a token");
    c->admin_token = token;
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice: a sidecar HTTP/1.1 proxy that makes deploys lossless"};
  app.set_version_flag("--version", std::string("sluice ") + SLUICE_VERSION);
  Flags flags;
  add_proxy_flags(app, flags);

  Flags demo_flags;
  demo_flags.drain_delay = "0s";  // nothing routes to a local demo: no propagation to wait for
  auto* demo = app.add_subcommand("demo", "run sluice in front of its built-in demo app");
  add_proxy_flags(*demo, demo_flags);

  std::string demo_app_listen = "127.0.0.1:4000";
  auto* demo_app = app.add_subcommand("demo-app", "run only the demo app (an upstream for tests)");
  demo_app->add_option("--listen", demo_app_listen, "address to listen on")->capture_default_str();

  std::string drain_admin = "127.0.0.1:9901";
  bool drain_wait = false;
  auto* drain = app.add_subcommand("drain", "start a drain through the admin API");
  drain->add_option("--admin", drain_admin, "the admin listener of the sluice to drain")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();
  drain->add_flag("--wait", drain_wait, "wait until the drain has finished, showing progress");

  CLI11_PARSE(app, argc, argv);

  if (*drain) return run_drain_command(address("admin", drain_admin), drain_wait);
  if (*demo_app) return run_demo_app(address("listen", demo_app_listen));
  if (*demo) {
    Server server(build_config(demo_flags), ServerOptions{.demo = true});
    return server.run();
  }
  Server server(build_config(flags), ServerOptions{});
  return server.run();
}
