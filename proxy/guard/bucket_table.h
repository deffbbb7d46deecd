#pragma once
// BucketTable: the token buckets of one rate-limit rule, one per key (a client IP, a header
// value, or the single key ""), shared by every worker thread. Lock-striped: a key's stripe is
// picked by its hash, and each stripe has its own mutex, hash index and least-recently-used
// list, so two workers contend only when their keys share a stripe. The number of keys is
// bounded (`max_keys`, split evenly over the stripes); a new key in a full stripe evicts that
// stripe's least recently used one, and evictions are counted. An evicted key starts again with
// a full bucket: the bound trades memory for a little leniency towards clients not seen lately.
// Owned (shared) by the rule registry and every policy built while the rule exists, so a reload
// that keeps a rule keeps its buckets.
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "guard/token_bucket.h"

namespace sluice {

class BucketTable {
 public:
  // `evictions`: where evictions are counted (shared by every table of the process).
  BucketTable(uint32_t max_keys, std::shared_ptr<std::atomic<uint64_t>> evictions);
  BucketTable(const BucketTable&) = delete;
  BucketTable& operator=(const BucketTable&) = delete;

  // The rate and burst (a reload may change them; the buckets stay). A bucket's missing tokens
  // at `now_ns` stay missing: each bucket's wait is rescaled to the new interval. Thread-safe.
  void set_params(const BucketParams& p, uint64_t now_ns);
  // Takes a token from `key`'s bucket at `now_ns`: 0 when admitted, else the nanoseconds until
  // one is available. Thread-safe.
  uint64_t take(std::string_view key, uint64_t now_ns);
  size_t keys() const { return keys_.load(std::memory_order_relaxed); }
  uint32_t max_keys() const { return max_keys_; }
  size_t stripes() const { return stripes_.size(); }

 private:
  struct Entry {
    std::string key;
    uint64_t tat = 0;
  };
  struct Stripe {
    std::mutex mutex;
    std::list<Entry> lru;  // most recently used first; the index views each entry's key
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;
    size_t capacity = 0;
  };

  uint32_t max_keys_;
  std::vector<std::unique_ptr<Stripe>> stripes_;
  std::atomic<uint64_t> interval_ns_{1'000'000'000};
  std::atomic<uint64_t> burst_ns_{1'000'000'000};
  std::atomic<size_t> keys_{0};
  std::shared_ptr<std::atomic<uint64_t>> evictions_;
};

}  // namespace sluice
