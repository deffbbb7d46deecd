#pragma once
// UpstreamCluster: one worker's view of a configured cluster — a pool per resolved address,
// the load-balancing choice between them and passive outlier detection (in the pools). Owned
// by the Worker; exchanges that use it hold a reference (add_user) until they are done, so a
// cluster a reload removed stays alive for the requests that started on it.
#include <netinet/in.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "tls/tls_context.h"
#include "upstream/cluster_guard.h"
#include "upstream/upstream_pool.h"

namespace sluice {

// One address of a cluster's endpoints, as the resolver found it (AF_INET, AF_INET6, or AF_UNIX
// for a `unix:/path` endpoint).
struct UpstreamAddress {
  sockaddr_storage address{};
  std::string endpoint;  // the configured endpoint: "api.example.com:443", "unix:/run/app.sock"
  std::string name;      // for logs: "api.example.com:443 (93.184.216.34)", or the endpoint
  bool same_address(const UpstreamAddress& o) const;
};
using AddressList = std::vector<UpstreamAddress>;

class UpstreamCluster final : public UpstreamSet, public PoolSiblings {
 public:
  // `config` must outlive the cluster (an aliasing pointer into the Config snapshot).
  UpstreamCluster(LoopContext& ctx, std::shared_ptr<const ClusterConfig> config,
                  ClusterStats& stats, std::shared_ptr<const ClientTls> tls = nullptr,
                  std::shared_ptr<ClusterGuard> guard = nullptr, unsigned worker = 0);
  ~UpstreamCluster();
  UpstreamCluster(const UpstreamCluster&) = delete;
  UpstreamCluster& operator=(const UpstreamCluster&) = delete;

  const ClusterConfig& config() const override { return *config_; }
  ClusterStats& stats() override { return stats_; }
  ClusterGuard* guard() override { return guard_.get(); }
  unsigned guard_slot() const override { return worker_; }
  const ClientTls* tls() const { return tls_.get(); }
  // The resolver's latest addresses: pools of addresses still present are kept (with their
  // connections), new addresses get pools, pools of vanished ones retire.
  void set_addresses(const AddressList& addresses);
  // The pool for a request, by the configured load balancing. Ejected pools are skipped while
  // others remain; `exclude` (the pool a connect just failed on) is skipped when another
  // exists. nullptr when the cluster has no address (DNS has not answered yet).
  UpstreamPool* pick(const UpstreamPool* exclude = nullptr);
  UpstreamSource* pick_source(const UpstreamSource* exclude) override {
    return pick(static_cast<const UpstreamPool*>(exclude));
  }
  size_t address_count() const override { return pools_.size(); }
  // Outlier detection's floor: ejecting `pool` must leave at least one address in rotation and
  // at most outlier.max_ejection_percent of them ejected. A retired pool may always be ejected.
  bool may_eject(const UpstreamPool* pool, uint64_t now_ms) const override;
  const std::vector<std::unique_ptr<UpstreamPool>>& pools() const { return pools_; }

  // A reload removed (or changed) it: every pool retires.
  void retire();
  bool retired() const { return retired_; }
  // Deletes retired pools that are empty; true when nothing is left at all (and no user).
  bool sweep();
  bool has_retired_pools() const { return !retired_pools_.empty(); }
  // Closes everything (worker stop).
  void shutdown();

 private:
  UpstreamPool* pick_round_robin(const UpstreamPool* exclude, uint64_t now);
  UpstreamPool* pick_least_request(const UpstreamPool* exclude, uint64_t now);
  // When every candidate is ejected: the one whose ejection ends first (better than failing).
  UpstreamPool* least_ejected(const UpstreamPool* exclude);

  LoopContext& ctx_;
  std::shared_ptr<const ClusterConfig> config_;
  ClusterStats& stats_;
  std::shared_ptr<const ClientTls> tls_;  // null: plain TCP
  std::shared_ptr<ClusterGuard> guard_;   // shared with the other workers; null: none
  unsigned worker_;
  std::vector<std::unique_ptr<UpstreamPool>> pools_;
  std::vector<std::unique_ptr<UpstreamPool>> retired_pools_;
  std::vector<UpstreamPool*> candidates_;  // scratch for pick_least_request
  size_t next_ = 0;
  bool retired_ = false;
};

}  // namespace sluice
