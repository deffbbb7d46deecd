#include "upstream/upstream_cluster.h"

namespace sluice {

UpstreamCluster::UpstreamCluster(LoopContext& ctx, std::shared_ptr<const ResolvedCluster> resolved)
    : resolved_(std::move(resolved)) {
  for (size_t i = 0; i < resolved_->addresses.size(); ++i) {
    pools_.push_back(std::make_unique<UpstreamPool>(
        ctx, resolved_->addresses[i], resolved_->address_names[i], resolved_->config));
  }
}

UpstreamPool& UpstreamCluster::pick() {
  UpstreamPool& p = *pools_[next_];
  next_ = (next_ + 1) % pools_.size();
  return p;
}

void UpstreamCluster::shutdown() {
  for (auto& p : pools_) p->shutdown();
}

}  // namespace sluice
