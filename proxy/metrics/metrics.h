#pragma once
// Metrics: the workers' shards summed on the main thread when /metrics or /stats is asked for,
// exposed through prometheus-cpp (a Collectable; the text format by its TextSerializer) and
// as JSON. Nothing here runs on a worker: workers only increment their shards.
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/stats.h"

namespace sluice {

struct HistogramTotals {
  uint64_t buckets[kDurationBucketCount + 1] = {};  // per bucket, not cumulative
  uint64_t sum_us = 0;
  uint64_t count() const;
  void add(const Histogram& h);
  // The value below which `q` of the samples fall (bucket upper bound; 0 when empty; infinity
  // when it lies beyond the last bound).
  double quantile(double q) const;
};

// Sums of every shard, by listener and cluster name (those of the running configuration
// first, in its order; then any a reload removed).
struct StatsTotals {
  struct Listener {
    std::string name;
    uint64_t requests[5] = {};
    HistogramTotals duration;
    uint64_t connections_active = 0, http2_connections_active = 0;
    uint64_t connections_total[2] = {};  // by kConnectionProtocols
    uint64_t websocket_sessions_active = 0;
    uint64_t websocket_closed[5] = {};
    uint64_t refused[3] = {};
    uint64_t http2_streams_active = 0;
    uint64_t http2_resets[2] = {};
    uint64_t http2_goaway[kHttp2GoawayReasonCount] = {};
    uint64_t http2_flood_closes[kHttp2FloodKindCount] = {};
    uint64_t maintenance_rejected = 0;
    uint64_t grpc_responses[kGrpcStatusLabelCount] = {};
    uint64_t grpc_drain_ended = 0;
    int maintenance_mode = 0;  // MaintenanceMode, filled by the server
  };
  struct Cluster {
    std::string name;
    uint64_t requests[5] = {};
    HistogramTotals duration;
    uint64_t connections_created = 0, idle_connections = 0, active_connections = 0;
    uint64_t retries = 0, connect_failures = 0, timeouts = 0, ejections = 0;
    uint64_t retries_by_reason[3] = {};  // by kRetryReasons
    uint64_t streams_active = 0, goaways = 0;
    uint64_t ejections_prevented = 0, connect_retries = 0;
    uint64_t tls_full = 0, tls_resumed = 0;
    uint64_t overflow[2] = {}, retry_budget_exhausted = 0, circuit_transitions[3] = {};
    int circuit_state = 0;  // CircuitState (0 closed, also without a breaker), by the server
  };
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
};
StatsTotals sum_stats(const ShardSet<ListenerStats>& listeners,
                      const ShardSet<ClusterStats>& clusters);
// Issue 17's families (guard_metrics.cc): maintenance modes, circuit breakers, caps, budgets.
void collect_guard_metrics(std::vector<prometheus::MetricFamily>& out, const StatsTotals& t);
void guard_json(nlohmann::json& listener, const StatsTotals::Listener& l);
void guard_json(nlohmann::json& cluster, const StatsTotals::Cluster& c);

// Process figures from /proc and getrusage.
struct ProcessStats {
  double cpu_seconds = 0;
  uint64_t resident_bytes = 0, virtual_bytes = 0;
  uint64_t open_fds = 0, max_fds = 0;
  double start_time_seconds = 0;
};
ProcessStats read_process_stats();

// What the main thread knows beyond the shards.
struct ServerFigures {
  bool draining = false;
  double drain_duration_seconds = 0;  // so far, or in all once done
  uint64_t drain_forced_closes = 0;
  uint64_t access_log_dropped = 0;
  uint64_t http2_connections_active = 0, http2_streams_active = 0;  // summed over the workers
  unsigned workers = 0;
  double uptime_seconds = 0;
};

class Metrics final : public prometheus::Collectable {
 public:
  using Snapshot = std::function<void(StatsTotals&, ServerFigures&)>;
  explicit Metrics(Snapshot snapshot);
  // Counted by the main thread on each reload.
  void count_reload(bool ok) { (ok ? reload_ok_ : reload_failed_)->Increment(); }
  uint64_t reloads(bool ok) const {
    return static_cast<uint64_t>((ok ? reload_ok_ : reload_failed_)->Value());
  }
  // More families, appended to every scrape (the guard's, issue #17: the server builds them).
  using Families = std::function<void(std::vector<prometheus::MetricFamily>&)>;
  void add_families(Families f) { extra_.push_back(std::move(f)); }
  // The text exposition format (version 0.0.4).
  std::string render_text() const;
  // /stats: the same numbers as JSON, plus the configuration's view (addresses, endpoints).
  nlohmann::json render_json(const Config& config) const;
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  Snapshot snapshot_;
  std::vector<Families> extra_;
  std::shared_ptr<prometheus::Registry> registry_;  // main-thread metrics: reloads, build info
  prometheus::Counter* reload_ok_;
  prometheus::Counter* reload_failed_;
};

}  // namespace sluice
