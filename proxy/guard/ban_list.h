#pragma once
// BanList: addresses and networks banned at runtime (POST /bans), each until its expiry, shared
// by the main thread (the admin API adds, lifts and lists) and every worker (each new connection
// and each request is checked). Expired bans are dropped lazily: a lookup ignores them and the
// next change or listing removes them, so no timer is needed. Owned by the Guard; survives
// reloads because the Guard does. Times are milliseconds of a monotonic clock (uv_hrtime).
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/ip_network.h"

namespace sluice {

class BanList {
 public:
  struct Ban {
    IpNetwork network;
    uint64_t expires_ms = 0;
  };

  // Bans `network` until now + duration; a ban of the same network is replaced (extended or
  // shortened). Returns false when the network was not banned before.
  bool add(const IpNetwork& network, uint64_t now_ms, uint64_t duration_ms);
  // Lifts the ban of exactly this network; false when there was none.
  bool remove(const IpNetwork& network, uint64_t now_ms);
  // Whether a ban in force covers `a`. Lock-free while no ban exists.
  bool banned(const IpAddress& a, uint64_t now_ms) const;
  // No ban at all (expired ones included until they are pruned): one relaxed load.
  bool empty() const { return count_.load(std::memory_order_relaxed) == 0; }
  // The bans in force, soonest expiry first.
  std::vector<Ban> list(uint64_t now_ms);
  size_t active(uint64_t now_ms) const;

 private:
  void prune(uint64_t now_ms);  // with mutex_ held

  mutable std::mutex mutex_;
  std::vector<Ban> bans_;         // guarded by mutex_
  std::atomic<size_t> count_{0};  // bans_.size(), for the lock-free empty check
};

}  // namespace sluice
