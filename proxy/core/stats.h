#pragma once
// Counters that one worker writes and the main thread reads: per worker (WorkerStats), per
// listener and per cluster (ListenerStats, ClusterStats, one shard per worker). Shards are
// created by the main thread before a worker may use them and live until the process ends, so
// a scrape reads them without locks and a reload never loses a count.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice {

// A counter with one writer (its worker) and lock-free readers: relaxed load + store compile to
// a plain add, no locked instruction on the hot path.
class Counter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Request latency buckets (seconds) for a sidecar: 0.5 ms to 30 s.
inline constexpr double kDurationBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,   0.5,   1,      2.5,   5,    10,    30};
inline constexpr size_t kDurationBucketCount = std::size(kDurationBuckets);

// A fixed-bucket histogram with one writer: counts per bucket (not cumulative), the sum in
// microseconds and the count.
class Histogram {
 public:
  void observe_us(uint64_t us) {
    size_t i = 0;
    while (i<kDurationBucketCount&& static_cast<double>(us)> kDurationBuckets[i] * 1e6) ++i;
    buckets_[i].add();
    sum_us_.add(us);
  }
  uint64_t bucket(size_t i) const { return buckets_[i].get(); }  // i == count: +Inf
  uint64_t sum_us() const { return sum_us_.get(); }

 private:
  Counter buckets_[kDurationBucketCount + 1];
  Counter sum_us_;
};

// HTTP status classes 1xx..5xx as label values.
inline constexpr const char* kStatusClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
inline size_t status_class(int status) {
  int c = status / 100 - 1;
  return c < 0 ? 0 : (c > 4 ? 4 : static_cast<size_t>(c));
}

// WebSocket close reasons as label values (the order of TunnelEnd).
inline constexpr const char* kWebSocketCloseReasons[] = {"client", "upstream", "drain_close",
                                                         "drain_forced", "error"};

struct ListenerStats {
  Counter requests[5];  // by status class of the response sent
  Histogram duration;   // head received to response complete
  Counter connections_active;
  Counter connections_total;
  Counter websocket_sessions_active;
  Counter websocket_closed[5];   // by TunnelEnd
  Counter refused[3];            // by ConnectionRefusal
  Counter maintenance_rejected;  // requests answered 503 by the maintenance mode
};

// Why a client connection was refused at accept (label values in this order).
enum class ConnectionRefusal : uint8_t { kListenerLimit, kWorkerLimit, kFdLimit };
inline constexpr const char* kRefusalReasons[] = {"listener_limit", "worker_limit", "fd_limit"};

struct ClusterStats {
  Counter requests[5];  // by status class of the upstream's response
  Histogram duration;   // request sent to response complete
  Counter connections_created;
  Counter idle_connections;    // gauge
  Counter active_connections;  // gauge: busy with a request
  Counter retries;
  Counter connect_failures;
  Counter timeouts;  // connect and response timeouts
  Counter ejections;
  Counter ejections_prevented;     // by max_ejection_percent (or the cluster's last address)
  Counter connect_retries;         // connects started again on the same address after a backoff
  Counter tls_handshakes_full;     // TLS origination: new sessions
  Counter tls_handshakes_resumed;  // ...and resumed ones (the per-address session cache works)
  Counter overflow[2];             // 503s at a concurrency cap, by kOverflowLimits
  Counter retry_budget_exhausted;  // retries not made: the retry budget was spent
  Counter circuit_transitions[3];  // by the state moved to (CircuitState: closed, open, half-open)
};

// Concurrency caps as label values of sluice_upstream_overflow_total{limit}.
inline constexpr const char* kOverflowLimits[] = {"requests", "pending"};

// What the drain (and /healthz) needs of a worker as a whole.
struct WorkerStats {
  Counter downstream_connections_active;
  Counter drain_exempt_connections;  // active ones on `drain: false` listeners
  Counter websocket_sessions_active;
  Counter exchanges_active;  // requests between their head and the end of their response
  Counter drain_forced_closes;
  Counter sluice_errors;                  // responses sluice answered itself with a 4xx/5xx
  Counter access_log_dropped;             // lines the access log could not take
  std::atomic<uint64_t> heartbeat_ms{0};  // the worker loop's clock, updated by a timer
};

// Every shard of every listener and cluster by name, owned by the main thread: created at
// start-up and on reloads before a worker is given a pointer, never freed before exit. A
// cluster removed by a reload keeps its series (its counts stay valid).
template <typename Shard>
class ShardSet {
 public:
  struct Entry {
    std::string name;
    std::vector<std::unique_ptr<Shard>> shards;  // one per worker
  };
  explicit ShardSet(unsigned workers) : workers_(workers) {}
  Shard* get(const std::string& name, unsigned worker) {
    for (auto& e : entries_)
      if (e->name == name) return e->shards[worker].get();
    auto e = std::make_unique<Entry>();
    e->name = name;
    for (unsigned w = 0; w < workers_; ++w) e->shards.push_back(std::make_unique<Shard>());
    entries_.push_back(std::move(e));
    return entries_.back()->shards[worker].get();
  }
  const std::vector<std::unique_ptr<Entry>>& entries() const { return entries_; }

 private:
  unsigned workers_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace sluice
