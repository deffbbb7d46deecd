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

#include "core/config.h"
#include "core/stats.h"

namespace sluice {

struct ServerOptions {
  // Reads the configuration again (SIGHUP, POST /reload): the file, then the same environment
  // and flag overrides as at start. Empty when there is no file to re-read.
  std::function<ConfigLoad()> reload;
  std::string config_file;  // the file reload reads; watched when reload.watch is set
};

struct AdminRequest;
struct AdminResponse;
struct ResolverEntry;
struct TlsSet;
using ResolverMap = std::map<std::string, std::unique_ptr<ResolverEntry>>;

class Server {
 public:
  Server(ConfigPtr config, ServerOptions options);
  ~Server();
  // Runs until SIGTERM/SIGINT; returns the process exit status.
  int run();

 private:
  struct State;
  struct ReloadResult {
    std::string result;  // applied, pending (waiting for DNS), invalid, unavailable
    std::vector<std::string> errors, warnings;
  };
  AdminResponse admin_request(const AdminRequest& req);
  bool allowed_to_change(const AdminRequest& req) const;
  static AdminResponse forbidden();
  void stop_now();
  // After a drain a signal asked for: stops, but with `drain.wait_for_app` and a `drain: false`
  // listener (egress) first waits until the app of the `readiness: true` clusters stops
  // accepting connections (sluice as a plain container gets its SIGTERM together with the app,
  // whose shutdown may still call out). A second signal stops at once.
  void stop_when_app_gone();
  bool app_accepts_connections() const;
  // POST /resume: undo a drain no signal started (the app's container was restarted after a
  // liveness kill ran its preStop hook); at once when it is done, else when it ends.
  AdminResponse resume_request(const AdminRequest& req);
  bool resume_serving();
  // Re-reads the configuration; a valid one applies to new requests on every worker.
  ReloadResult reload(const char* why);
  ConfigPtr reconcile(std::shared_ptr<Config> next, std::vector<std::string>& notes);
  std::unique_ptr<ResolverEntry> make_resolver(const ClusterConfig& c);
  void wait_first_resolution(const ResolverMap& resolvers);
  bool check_pending_reload();
  // This worker's stats shards for the configuration's clusters / listeners, by index.
  std::vector<ClusterStats*> cluster_stats_for(const Config& c, unsigned worker);
  std::vector<ListenerStats*> listener_stats_for(const Config& c, unsigned worker);
  void apply_pending_reload();
  // Readiness probes for the running configuration's `readiness: true` clusters.
  void refresh_probes();
  // TLS contexts for `c`; unchanged ones are the running ones. False: `errors` says why.
  bool build_tls(const Config& c, TlsSet& out, std::vector<std::string>& errors);
  // Certificate rotation: watch the directories of the listeners' files, rebuild on change.
  void watch_certificates();
  void watch_config_file();  // starts or stops the reload.watch file watch
  void unwatch_certificates();
  void certificates_changed();
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

}  // namespace sluice
