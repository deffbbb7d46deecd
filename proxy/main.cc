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
  c->admin = address("admin", f.admin);
  c->workers = f.workers;
  ListenerConfig l;
  l.address = address("listen", f.listen);
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
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice: a sidecar HTTP/1.1 proxy that makes deploys lossless"};
  app.set_version_flag("--version", std::string("sluice ") + SLUICE_VERSION);
  Flags flags;
  add_proxy_flags(app, flags);

  Flags demo_flags;
  auto* demo = app.add_subcommand("demo", "run sluice in front of its built-in demo app");
  add_proxy_flags(*demo, demo_flags);

  std::string demo_app_listen = "127.0.0.1:4000";
  auto* demo_app = app.add_subcommand("demo-app", "run only the demo app (an upstream for tests)");
  demo_app->add_option("--listen", demo_app_listen, "address to listen on")->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  if (*demo_app) return run_demo_app(address("listen", demo_app_listen));
  if (*demo) {
    Server server(build_config(demo_flags), ServerOptions{.demo = true});
    return server.run();
  }
  Server server(build_config(flags), ServerOptions{});
  return server.run();
}
