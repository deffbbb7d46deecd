#include "guard/ban_list.h"

#include <algorithm>

namespace sluice {

void BanList::prune(uint64_t now_ms) {
  std::erase_if(bans_, [now_ms](const Ban& b) { return b.expires_ms <= now_ms; });
  count_.store(bans_.size(), std::memory_order_relaxed);
}

bool BanList::add(const IpNetwork& network, uint64_t now_ms, uint64_t duration_ms) {
  std::lock_guard lock(mutex_);
  prune(now_ms);
  const uint64_t expires = now_ms + duration_ms;
  for (Ban& b : bans_) {
    if (b.network == network) {
      b.expires_ms = expires;
      return true;
    }
  }
  bans_.push_back(Ban{network, expires});
  count_.store(bans_.size(), std::memory_order_relaxed);
  return false;
}

bool BanList::remove(const IpNetwork& network, uint64_t now_ms) {
  std::lock_guard lock(mutex_);
  prune(now_ms);
  const size_t before = bans_.size();
  std::erase_if(bans_, [&](const Ban& b) { return b.network == network; });
  count_.store(bans_.size(), std::memory_order_relaxed);
  return bans_.size() != before;
}

bool BanList::banned(const IpAddress& a, uint64_t now_ms) const {
  if (count_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(mutex_);
  for (const Ban& b : bans_)
    if (b.expires_ms > now_ms && b.network.contains(a)) return true;
  return false;
}

std::vector<BanList::Ban> BanList::list(uint64_t now_ms) {
  std::lock_guard lock(mutex_);
  prune(now_ms);
  std::vector<Ban> out = bans_;
  std::sort(out.begin(), out.end(),
            [](const Ban& x, const Ban& y) { return x.expires_ms < y.expires_ms; });
  return out;
}

size_t BanList::active(uint64_t now_ms) const {
  std::lock_guard lock(mutex_);
  return static_cast<size_t>(std::count_if(
      bans_.begin(), bans_.end(), [now_ms](const Ban& b) { return b.expires_ms > now_ms; }));
}

}  // namespace sluice
