#pragma once
// UpstreamCluster: one worker's view of a configured cluster — a pool per resolved endpoint
// address and the load-balancing choice between them. Owned by the Worker.
#include <netinet/in.h>

#include <memory>
#include <vector>

#include "core/config.h"
#include "upstream/upstream_pool.h"

namespace sluice {

struct ResolvedCluster {
  ClusterConfig config;
  std::vector<sockaddr_storage> addresses;
  std::vector<std::string> address_names;  // "host:port" of each address, for logs
};

class UpstreamCluster {
 public:
  UpstreamCluster(LoopContext& ctx, std::shared_ptr<const ResolvedCluster> resolved);
  const ClusterConfig& config() const { return resolved_->config; }
  // Round robin over the endpoints' pools.
  UpstreamPool& pick();
  void shutdown();
  const std::vector<std::unique_ptr<UpstreamPool>>& pools() const { return pools_; }

 private:
  std::shared_ptr<const ResolvedCluster> resolved_;
  std::vector<std::unique_ptr<UpstreamPool>> pools_;
  size_t next_ = 0;
};

}  // namespace sluice
