#pragma once
// Server: the main thread. Resolves clusters, opens every listening socket (so address errors
// surface before anything starts), starts the workers, serves the admin listener, turns
// signals into loop events and runs the shutdown order.
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "admin/admin_routes.h"
#include "core/config.h"
#include "core/stats.h"
#include "metrics/metrics.h"
#include "server/config_reloader.h"
#include "server/drain_coordinator.h"

namespace sluice {

class ClusterGuard;

struct ServerOptions {
  // Reads the configuration again (SIGHUP, POST /reload): the file, then the same environment
  // and flag overrides as at start. Empty when there is no file to re-read.
  std::function<ConfigLoad()> reload;
  std::string config_file;  // the file reload reads; watched when reload.watch is set
};

class Server final : private AdminBackend {
 public:
  Server(ConfigPtr config, ServerOptions options);
  ~Server();
  // Runs until SIGTERM/SIGINT; returns the process exit status.
  int run();

 private:
  struct State;
  // AdminBackend: the admin API's answers (admin/admin_routes.cc routes to them).
  AdminResponse healthz() override;
  AdminResponse readyz() override;
  AdminResponse metrics() override;
  AdminResponse stats() override;
  AdminResponse config() override;
  AdminResponse status_page() override;
  AdminResponse drain_status() override;
  AdminResponse start_drain(bool wait) override;
  AdminResponse reload() override;
  AdminResponse maintenance_status() override;
  AdminResponse set_maintenance(const AdminRequest& req) override;
  AdminResponse clear_maintenance(const AdminRequest& req) override;
  AdminResponse bans(const AdminRequest& req) override;  // server/guard_admin.cc
  bool allowed_to_change(const AdminRequest& req) const override;
  void stop_now();
  // Start-up pieces of run(), named.
  // Stats shards, the access log, descriptor budget, then each worker on its sockets; false
  // when one could not listen (it says why on stderr).
  bool start_workers(unsigned workers, const std::vector<AddressList>& addresses,
                     std::vector<std::vector<int>>& fds,
                     const std::shared_ptr<DrainState>& drain_state);
  void sum_figures(StatsTotals& t, ServerFigures& f);  // what /metrics and /stats sum
  DrainCoordinator::Hooks drain_hooks();
  void drain_done(int status);
  void watch_signals();  // SIGHUP reloads; SIGTERM and SIGINT drain, then stop
  void stop_signal(int signum);
  // A start that failed before the workers ran: closes what the loop has, returns 1.
  int abandon_start();
  // After a drain a signal asked for: stops, but with `drain.wait_for_app` and a `drain: false`
  // listener (egress) first waits until the app of the `readiness: true` clusters stops
  // accepting connections (sluice as a plain container gets its SIGTERM together with the app,
  // whose shutdown may still call out). A second signal stops at once.
  void stop_when_app_gone();
  bool app_accepts_connections() const;
  // POST /resume: undo a drain no signal started (the app's container was restarted after a
  // liveness kill ran its preStop hook); at once when it is done, else when it ends.
  AdminResponse resume() override;
  bool resume_serving();
  // Re-reads the configuration; a valid one applies to new requests on every worker.
  ConfigReloader::Result reload(const char* why);
  ConfigReloader::Hooks reloader_hooks();
  // A reloaded configuration, resolved: to the workers, probes and file watches.
  void apply_config(ConfigPtr config, const std::vector<AddressList>& addresses, TlsSet tls);
  // This worker's stats shards for the configuration's clusters / listeners, by index.
  std::vector<ClusterStats*> cluster_stats_for(const Config& c, unsigned worker);
  std::vector<ListenerStats*> listener_stats_for(const Config& c, unsigned worker);
  // Each cluster's guard (circuit breaker, caps, retry budget), by index of `c.clusters`: the
  // running one while the cluster keeps its name and those settings, else a new one.
  std::vector<std::shared_ptr<ClusterGuard>> guards_for(const Config& c);
  // Readiness probes for the running configuration's `readiness: true` clusters.
  void refresh_probes();
  // TLS contexts for `c`; unchanged ones are the running ones. False: `errors` says why.
  bool build_tls(const Config& c, TlsSet& out, std::vector<std::string>& errors);
  void watch_config_file();  // starts or stops the reload.watch file watch
  // The listeners' certificate files changed: new handshakes use them once they load.
  void rotate_certificates();
  ConfigPtr config_;
  ServerOptions options_;
  std::unique_ptr<State> state_;
};

// `sluice drain`: POST /drain to a running sluice; with `wait`, follow it to the end. Returns
// 0 when it drained, 2 when connections had to be forced, 1 on errors.
int run_drain_command(const HostPort& admin, bool wait);
// `sluice resume`: POST /resume (AdminClient::resume); 0 when sluice serves again.
int run_resume_command(const HostPort& admin);
// `sluice maintenance MODE`: POST /maintenance ({"mode", "listener", "retry_after", "message"}
// as given; MODE "clear" sends DELETE /maintenance). 0 when sluice took it.
int run_maintenance_command(const HostPort& admin, const std::string& mode,
                            const std::string& listener, const std::string& retry_after,
                            const std::string& message, bool message_given);

}  // namespace sluice
