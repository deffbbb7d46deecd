#pragma once
// ConfigReloader: the configuration's life on the main thread — one DNS resolver per cluster of
// the running configuration, and reloads: the file read again, validated, reconciled with what
// only a restart can change, and applied once the new clusters' first DNS answers came (or
// their wait ran out). Owns the resolvers, the pending reload and its timer (freed in its close
// callback). The server applies a reloaded configuration (workers, probes, watches) through a
// hook. Owned by the Server.
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "core/config.h"
#include "tls/tls_context.h"
#include "upstream/resolver.h"
#include "upstream/upstream_cluster.h"

namespace sluice {

// The TLS contexts of one configuration, by listener and cluster index (null: plain TCP).
struct TlsSet {
  std::vector<std::shared_ptr<const ServerTls>> listeners;
  std::vector<std::shared_ptr<const ClientTls>> clusters;
};

class ConfigReloader {
 public:
  struct Result {
    std::string result;  // applied, pending (waiting for DNS), invalid, unavailable
    std::vector<std::string> errors, warnings;
  };
  struct Hooks {
    std::function<const Config&()> running;
    // TLS contexts for a configuration (unchanged ones are the running ones); false: why.
    std::function<bool(const Config&, TlsSet&, std::vector<std::string>&)> build_tls;
    // A resolved configuration to run, with each cluster's addresses (by index).
    std::function<void(ConfigPtr, std::vector<AddressList>, TlsSet)> apply;
    // New addresses for a cluster of the running configuration.
    std::function<void(const std::string&, const AddressList&)> addresses_changed;
    std::function<bool()> draining;
    std::function<void(bool applied)> counted;  // a reload applied, or rejected
  };

  // `read` re-reads the file (null: started without one). `configured`: the configuration as
  // given, before port 0 was resolved (restart-only settings are compared with it).
  ConfigReloader(uv_loop_t* loop, std::function<ConfigLoad()> read, const Config& configured,
                 Hooks hooks);
  ~ConfigReloader() { close(); }
  ConfigReloader(const ConfigReloader&) = delete;
  ConfigReloader& operator=(const ConfigReloader&) = delete;

  // Start-up: resolvers for the clusters of `config`, waiting (a few seconds at most) for their
  // first answers; runs the loop meanwhile.
  void start(const Config& config);
  // The running resolvers' addresses for a cluster (empty when it has none yet).
  const AddressList& addresses(const std::string& cluster) const;
  Result reload(const char* why);
  // Idempotent: every resolver and the timer close.
  void close();

 private:
  // One resolver per cluster, by name. `live` resolvers report address changes; those of a
  // pending reload do not yet.
  struct Entry {
    std::unique_ptr<ClusterResolver> resolver;
    bool live = false;
  };
  using Resolvers = std::map<std::string, std::unique_ptr<Entry>>;
  // A reload waiting for the first DNS answers of its new clusters.
  struct Pending {
    ConfigPtr config;
    Resolvers resolvers;  // the whole next set (null: kept from the running one)
    TlsSet tls;
  };

  std::unique_ptr<Entry> make_resolver(const ClusterConfig& c);
  // Restart-only settings keep their running values (and are reported); the rest comes from
  // the new file.
  ConfigPtr reconcile(std::shared_ptr<Config> next, std::vector<std::string>& notes) const;
  bool check_pending();
  void apply_pending();

  uv_loop_t* loop_;
  std::function<ConfigLoad()> read_;
  Hooks hooks_;
  HostPort admin_configured_;
  std::vector<HostPort> listeners_configured_;
  Resolvers resolvers_;
  std::unique_ptr<Pending> pending_;
  uv_timer_t* pending_timer_ = nullptr;
  bool starting_resolvers_ = false;  // a reload is starting its resolvers: do not apply yet
  bool closed_ = false;
};

}  // namespace sluice
