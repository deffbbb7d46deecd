#include "upstream/upstream_cluster.h"

#include <sys/un.h>

#include <cstring>

namespace sluice {

bool UpstreamAddress::same_address(const UpstreamAddress& o) const {
  if (address.ss_family != o.address.ss_family) return false;
  if (address.ss_family == AF_UNIX) {
    const auto& a = reinterpret_cast<const sockaddr_un&>(address);
    const auto& b = reinterpret_cast<const sockaddr_un&>(o.address);
    return std::strncmp(a.sun_path, b.sun_path, sizeof a.sun_path) == 0;
  }
  if (address.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(address);
    const auto& b = reinterpret_cast<const sockaddr_in&>(o.address);
    return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(address);
  const auto& b = reinterpret_cast<const sockaddr_in6&>(o.address);
  return a.sin6_port == b.sin6_port &&
         std::memcmp(&a.sin6_addr, &b.sin6_addr, sizeof a.sin6_addr) == 0 &&
         a.sin6_scope_id == b.sin6_scope_id;
}

UpstreamCluster::UpstreamCluster(LoopContext& ctx, std::shared_ptr<const ClusterConfig> config,
                                 ClusterStats& stats, std::shared_ptr<const ClientTls> tls,
                                 std::shared_ptr<ClusterGuard> guard, unsigned worker)
    : ctx_(ctx),
      config_(std::move(config)),
      stats_(stats),
      tls_(std::move(tls)),
      guard_(std::move(guard)),
      worker_(worker) {}

// Its pools close their connections as they are destroyed, without calling anyone back (the
// worker shuts clusters down, failing what waits, before it deletes them).
UpstreamCluster::~UpstreamCluster() = default;

void UpstreamCluster::set_addresses(const AddressList& addresses) {
  if (retired_) return;
  std::vector<std::unique_ptr<UpstreamPool>> kept;
  for (const UpstreamAddress& a : addresses) {
    std::unique_ptr<UpstreamPool> pool;
    for (auto& p : pools_) {
      if (!p) continue;
      UpstreamAddress existing{p->address(), {}, {}};
      if (existing.same_address(a)) {
        pool = std::move(p);
        break;
      }
    }
    if (!pool) {
      pool = std::make_unique<UpstreamPool>(ctx_, a.address, a.endpoint, a.name, *config_, stats_,
                                            tls_.get());
      pool->set_siblings(this);
    }
    kept.push_back(std::move(pool));
  }
  for (auto& p : pools_) {
    if (!p) continue;
    p->retire();
    retired_pools_.push_back(std::move(p));
  }
  pools_ = std::move(kept);
  next_ = pools_.empty() ? 0 : next_ % pools_.size();
  sweep();
}

UpstreamPool* UpstreamCluster::pick(const UpstreamPool* exclude) {
  if (pools_.empty()) return nullptr;
  if (pools_.size() == 1) return pools_[0].get();
  uint64_t now = ctx_.now_ms();
  UpstreamPool* p = config_->load_balancing == LoadBalancing::kLeastRequest
                        ? pick_least_request(exclude, now)
                        : pick_round_robin(exclude, now);
  return p ? p : least_ejected(exclude);
}

bool UpstreamCluster::may_eject(const UpstreamPool* pool, uint64_t now_ms) const {
  bool member = false;
  size_t ejected = 0;  // others, now
  for (const auto& p : pools_) {
    if (p.get() == pool) {
      member = true;
    } else if (p->ejected(now_ms)) {
      ++ejected;
    }
  }
  if (!member) return true;
  const size_t n = pools_.size();
  return ejected + 1 < n &&
         (ejected + 1) * 100 <= n * static_cast<size_t>(config_->outlier.max_ejection_percent);
}

UpstreamPool* UpstreamCluster::pick_round_robin(const UpstreamPool* exclude, uint64_t now) {
  for (size_t i = 0; i < pools_.size(); ++i) {
    UpstreamPool* p = pools_[next_].get();
    next_ = (next_ + 1) % pools_.size();
    if (p != exclude && !p->ejected(now)) return p;
  }
  return nullptr;
}

// Power of two choices: two distinct random candidates, the one with fewer requests on it.
UpstreamPool* UpstreamCluster::pick_least_request(const UpstreamPool* exclude, uint64_t now) {
  candidates_.clear();
  for (auto& p : pools_)
    if (p.get() != exclude && !p->ejected(now)) candidates_.push_back(p.get());
  size_t n = candidates_.size();
  if (n == 0) return nullptr;
  if (n == 1) return candidates_[0];
  size_t a = ctx_.random() % n;
  size_t b = ctx_.random() % (n - 1);
  if (b >= a) ++b;
  return candidates_[b]->load() < candidates_[a]->load() ? candidates_[b] : candidates_[a];
}

UpstreamPool* UpstreamCluster::least_ejected(const UpstreamPool* exclude) {
  UpstreamPool* best = nullptr;
  for (auto& p : pools_) {
    if (p.get() == exclude && pools_.size() > 1) continue;
    if (!best || p->ejected_until_ms() < best->ejected_until_ms()) best = p.get();
  }
  return best;
}

void UpstreamCluster::retire() {
  if (retired_) return;
  retired_ = true;
  for (auto& p : pools_) {
    p->retire();
    retired_pools_.push_back(std::move(p));
  }
  pools_.clear();
  sweep();
}

bool UpstreamCluster::sweep() {
  std::erase_if(retired_pools_, [](const std::unique_ptr<UpstreamPool>& p) { return p->empty(); });
  return retired_ && retired_pools_.empty() && users_ == 0;
}

void UpstreamCluster::shutdown() {
  for (auto& p : pools_) p->shutdown();
  for (auto& p : retired_pools_) p->shutdown();
}

}  // namespace sluice
