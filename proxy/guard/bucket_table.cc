#include "guard/bucket_table.h"

#include <functional>

namespace sluice {

namespace {
// Stripes have at least this many keys each, so a small table keeps an exact LRU order.
constexpr uint32_t kMinKeysPerStripe = 64;
constexpr size_t kMaxStripes = 64;
}  // namespace

BucketTable::BucketTable(uint32_t max_keys, std::shared_ptr<std::atomic<uint64_t>> evictions)
    : max_keys_(max_keys < 1 ? 1 : max_keys), evictions_(std::move(evictions)) {
  size_t n = 1;
  while (n < kMaxStripes && max_keys_ / (n * 2) >= kMinKeysPerStripe) n *= 2;
  for (size_t i = 0; i < n; ++i) {
    auto s = std::make_unique<Stripe>();
    s->capacity = max_keys_ / n + (i < max_keys_ % n ? 1 : 0);
    stripes_.push_back(std::move(s));
  }
}

void BucketTable::set_params(const BucketParams& p, uint64_t now_ns) {
  const uint64_t old_interval = interval_ns_.exchange(p.interval_ns, std::memory_order_relaxed);
  burst_ns_.store(p.burst_ns, std::memory_order_relaxed);
  if (old_interval == p.interval_ns || keys() == 0) return;
  // TAT - now is the time the missing tokens take to come back at the old rate; at the new
  // rate the same number of tokens takes (TAT - now) × new / old.
  for (auto& s : stripes_) {
    std::lock_guard lock(s->mutex);
    for (Entry& e : s->lru) {
      if (e.tat <= now_ns) continue;
      const uint128_t wait = static_cast<uint128_t>(e.tat - now_ns) * p.interval_ns / old_interval;
      e.tat = now_ns + static_cast<uint64_t>(wait);
    }
  }
}

uint64_t BucketTable::take(std::string_view key, uint64_t now_ns) {
  const BucketParams p{interval_ns_.load(std::memory_order_relaxed),
                       burst_ns_.load(std::memory_order_relaxed)};
  const size_t h = std::hash<std::string_view>()(key);
  // The high bits pick the stripe; the map uses the whole hash for its own buckets.
  Stripe& s = *stripes_[(h >> 20) & (stripes_.size() - 1)];
  std::lock_guard lock(s.mutex);
  auto it = s.index.find(key);
  if (it != s.index.end()) {
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return bucket_take(it->second->tat, now_ns, p);
  }
  if (s.index.size() >= s.capacity) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
    keys_.fetch_sub(1, std::memory_order_relaxed);
    if (evictions_) evictions_->fetch_add(1, std::memory_order_relaxed);
  }
  s.lru.push_front(Entry{std::string(key), 0});
  s.index.emplace(s.lru.front().key, s.lru.begin());
  keys_.fetch_add(1, std::memory_order_relaxed);
  return bucket_take(s.lru.front().tat, now_ns, p);
}

}  // namespace sluice
