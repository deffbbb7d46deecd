#include "metrics/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <prometheus/text_serializer.h>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace sluice {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

uint64_t HistogramTotals::count() const {
  uint64_t n = 0;
  for (uint64_t b : buckets) n += b;
  return n;
}

void HistogramTotals::add(const Histogram& h) {
  for (size_t i = 0; i <= kDurationBucketCount; ++i) buckets[i] += h.bucket(i);
  sum_us += h.sum_us();
}

double HistogramTotals::quantile(double q) const {
  uint64_t total = count();
  if (total == 0) return 0;
  uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total) + 0.5);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kDurationBucketCount; ++i) {
    seen += buckets[i];
    if (seen >= want) return kDurationBuckets[i];
  }
  return std::numeric_limits<double>::infinity();  // beyond the last bound
}

StatsTotals sum_stats(const ShardSet<ListenerStats>& listeners,
                      const ShardSet<ClusterStats>& clusters) {
  StatsTotals t;
  for (const auto& e : listeners.entries()) {
    StatsTotals::Listener l;
    l.name = e->name;
    for (const auto& s : e->shards) {
      for (size_t i = 0; i < 5; ++i) l.requests[i] += s->requests[i].get();
      l.duration.add(s->duration);
      l.connections_active += s->connections_active.get();
      l.http2_connections_active += s->http2_connections_active.get();
      for (size_t i = 0; i < 2; ++i) l.connections_total[i] += s->connections_total[i].get();
      l.websocket_sessions_active += s->websocket_sessions_active.get();
      for (size_t i = 0; i < 5; ++i) l.websocket_closed[i] += s->websocket_closed[i].get();
      for (size_t i = 0; i < 3; ++i) l.refused[i] += s->refused[i].get();
      l.http2_streams_active += s->http2_streams_active.get();
      for (size_t i = 0; i < 2; ++i) l.http2_resets[i] += s->http2_resets[i].get();
      for (size_t i = 0; i < kHttp2GoawayReasonCount; ++i)
        l.http2_goaway[i] += s->http2_goaway[i].get();
      for (size_t i = 0; i < kHttp2FloodKindCount; ++i)
        l.http2_flood_closes[i] += s->http2_flood_closes[i].get();
      l.maintenance_rejected += s->maintenance_rejected.get();
      for (size_t i = 0; i < kGrpcStatusLabelCount; ++i)
        l.grpc_responses[i] += s->grpc_responses[i].get();
      l.grpc_drain_ended += s->grpc_drain_ended.get();
    }
    t.listeners.push_back(std::move(l));
  }
  for (const auto& e : clusters.entries()) {
    StatsTotals::Cluster c;
    c.name = e->name;
    for (const auto& s : e->shards) {
      for (size_t i = 0; i < 5; ++i) c.requests[i] += s->requests[i].get();
      c.duration.add(s->duration);
      c.connections_created += s->connections_created.get();
      c.idle_connections += s->idle_connections.get();
      c.active_connections += s->active_connections.get();
      for (size_t i = 0; i < 3; ++i) {
        c.retries_by_reason[i] += s->retries[i].get();
        c.retries += s->retries[i].get();
      }
      c.streams_active += s->upstream_streams_active.get();
      c.goaways += s->upstream_goaways.get();
      c.connect_failures += s->connect_failures.get();
      c.timeouts += s->timeouts.get();
      c.ejections += s->ejections.get();
      c.ejections_prevented += s->ejections_prevented.get();
      c.connect_retries += s->connect_retries.get();
      c.tls_full += s->tls_handshakes_full.get();
      c.tls_resumed += s->tls_handshakes_resumed.get();
      for (size_t i = 0; i < 2; ++i) c.overflow[i] += s->overflow[i].get();
      c.retry_budget_exhausted += s->retry_budget_exhausted.get();
      for (size_t i = 0; i < 3; ++i) c.circuit_transitions[i] += s->circuit_transitions[i].get();
    }
    t.clusters.push_back(std::move(c));
  }
  return t;
}

ProcessStats read_process_stats() {
  ProcessStats p;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    p.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  long page = sysconf(_SC_PAGESIZE);
  if (FILE* f = fopen("/proc/self/statm", "r")) {
    unsigned long size = 0, resident = 0;
    if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
      p.virtual_bytes = static_cast<uint64_t>(size) * static_cast<uint64_t>(page);
      p.resident_bytes = static_cast<uint64_t>(resident) * static_cast<uint64_t>(page);
    }
    fclose(f);
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* ent = readdir(d))
      if (ent->d_name[0] != '.') ++p.open_fds;
    closedir(d);
    if (p.open_fds) --p.open_fds;  // the directory's own descriptor
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = rl.rlim_cur;
  // Start time: field 22 of /proc/self/stat (clock ticks after boot) + the boot time.
  if (FILE* f = fopen("/proc/self/stat", "r")) {
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char* after = strrchr(buf, ')');  // the command name may hold spaces
    unsigned long long start_ticks = 0;
    if (after && sscanf(after + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                        "%*d %*d %llu",
                        &start_ticks) == 1) {
      if (FILE* s = fopen("/proc/stat", "r")) {
        char line[256];
        unsigned long long btime = 0;
        while (fgets(line, sizeof line, s))
          if (sscanf(line, "btime %llu", &btime) == 1) break;
        fclose(s);
        p.start_time_seconds =
            static_cast<double>(btime) +
            static_cast<double>(start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
      }
    }
  }
  return p;
}

namespace {

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric value_metric(MetricType type, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

ClientMetric histogram_metric(const HistogramTotals& h, std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kDurationBucketCount; ++i) {
    cumulative += h.buckets[i];
    m.histogram.bucket.push_back({cumulative, kDurationBuckets[i]});
  }
  cumulative += h.buckets[kDurationBucketCount];
  m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = static_cast<double>(h.sum_us) / 1e6;
  return m;
}

// Adds one family with a value per listener or cluster.
template <typename Item, typename Get>
void per_item(std::vector<MetricFamily>& out, const std::vector<Item>& items, const char* label,
              const char* name, const char* help, MetricType type, Get get) {
  MetricFamily f = family(name, help, type);
  for (const Item& it : items)
    f.metric.push_back(value_metric(type, static_cast<double>(get(it)), {{label, it.name}}));
  out.push_back(std::move(f));
}

template <typename Item>
void by_code(std::vector<MetricFamily>& out, const std::vector<Item>& items, const char* label,
             const char* name, const char* help) {
  MetricFamily f = family(name, help, MetricType::Counter);
  for (const Item& it : items)
    for (size_t c = 0; c < 5; ++c)
      f.metric.push_back(value_metric(MetricType::Counter, static_cast<double>(it.requests[c]),
                                      {{label, it.name}, {"code", kStatusClasses[c]}}));
  out.push_back(std::move(f));
}

template <typename Item>
void durations(std::vector<MetricFamily>& out, const std::vector<Item>& items, const char* label,
               const char* name, const char* help) {
  MetricFamily f = family(name, help, MetricType::Histogram);
  for (const Item& it : items)
    f.metric.push_back(histogram_metric(it.duration, {{label, it.name}}));
  out.push_back(std::move(f));
}

}  // namespace

Metrics::Metrics(Snapshot snapshot)
    : snapshot_(std::move(snapshot)), registry_(std::make_shared<prometheus::Registry>()) {
  auto& reloads = prometheus::BuildCounter()
                      .Name("sluice_config_reloads_total")
                      .Help("Configuration reloads (SIGHUP, POST /reload) by result")
                      .Register(*registry_);
  reload_ok_ = &reloads.Add({{"result", "success"}});
  reload_failed_ = &reloads.Add({{"result", "failure"}});
  prometheus::BuildGauge()
      .Name("sluice_build_info")
      .Help("Always 1; the version of this sluice as a label")
      .Register(*registry_)
      .Add({{"version", SLUICE_VERSION}})
      .Set(1);
}

std::vector<MetricFamily> Metrics::Collect() const {
  StatsTotals t;
  ServerFigures s;
  snapshot_(t, s);
  std::vector<MetricFamily> out;
  const auto& L = t.listeners;
  const auto& C = t.clusters;
  using T = MetricType;
  using Li = StatsTotals::Listener;
  using Cl = StatsTotals::Cluster;

  by_code(out, L, "listener", "sluice_downstream_requests_total",
          "Requests answered to clients, by status class");
  durations(out, L, "listener", "sluice_downstream_request_duration_seconds",
            "From a request's head to the end of its response");
  per_item(out, L, "listener", "sluice_downstream_connections_active", "Open client connections",
           T::Gauge, [](const Li& l) { return l.connections_active; });
  {
    MetricFamily f = family("sluice_downstream_connections_total",
                            "Client connections accepted, by the protocol they speak (known at "
                            "their first request; one closed before it counts as http1)",
                            T::Counter);
    for (const Li& l : L)
      for (size_t p = 0; p < 2; ++p)
        f.metric.push_back(
            value_metric(T::Counter, static_cast<double>(l.connections_total[p]),
                         {{"listener", l.name}, {"protocol", kConnectionProtocols[p]}}));
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = family("sluice_downstream_connections_refused_total",
                            "Client connections refused at accept, by reason", T::Counter);
    for (const Li& l : L)
      for (size_t r = 0; r < 3; ++r)
        f.metric.push_back(value_metric(T::Counter, static_cast<double>(l.refused[r]),
                                        {{"listener", l.name}, {"reason", kRefusalReasons[r]}}));
    out.push_back(std::move(f));
  }
  per_item(out, L, "listener", "sluice_websocket_sessions_active",
           "Upgraded sessions (WebSocket and other upgrades) open now", T::Gauge,
           [](const Li& l) { return l.websocket_sessions_active; });
  {
    MetricFamily f = family("sluice_websocket_sessions_closed_total",
                            "Upgraded sessions closed, by reason", T::Counter);
    for (const Li& l : L)
      for (size_t r = 0; r < 5; ++r)
        f.metric.push_back(
            value_metric(T::Counter, static_cast<double>(l.websocket_closed[r]),
                         {{"listener", l.name}, {"reason", kWebSocketCloseReasons[r]}}));
    out.push_back(std::move(f));
  }

  per_item(out, L, "listener", "sluice_http2_streams_active", "HTTP/2 streams open now", T::Gauge,
           [](const Li& l) { return l.http2_streams_active; });
  // A family with one label besides the listener's, every value from start-up.
  auto by_label = [&](const char* name, const char* help, const char* label,
                      const char* const* values, size_t n, auto get) {
    MetricFamily f = family(name, help, T::Counter);
    for (const Li& l : L)
      for (size_t i = 0; i < n; ++i)
        f.metric.push_back(value_metric(T::Counter, static_cast<double>(get(l)[i]),
                                        {{"listener", l.name}, {label, values[i]}}));
    out.push_back(std::move(f));
  };
  by_label("sluice_http2_resets_total",
           "HTTP/2 RST_STREAM frames received from clients and sent to them", "direction",
           kHttp2ResetDirections, 2, [](const Li& l) { return l.http2_resets; });
  by_label("sluice_http2_goaway_sent_total",
           "HTTP/2 connections sluice sent a GOAWAY on, by why (the first GOAWAY of each)",
           "reason", kHttp2GoawayReasons, kHttp2GoawayReasonCount,
           [](const Li& l) { return l.http2_goaway; });
  by_label("sluice_http2_flood_closes_total",
           "HTTP/2 connections closed as an attack (floods, rapid reset, CONTINUATION flood, "
           "stream errors), by kind",
           "kind", kHttp2FloodKinds, kHttp2FloodKindCount,
           [](const Li& l) { return l.http2_flood_closes; });
  by_label("sluice_grpc_responses_total",
           "gRPC calls (content-type application/grpc) by their final grpc-status: the "
           "upstream's trailers or Trailers-Only head, or sluice's own answer",
           "grpc_status", kGrpcStatusLabels, kGrpcStatusLabelCount,
           [](const Li& l) { return l.grpc_responses; });
  per_item(out, L, "listener", "sluice_grpc_drain_ended_total",
           "gRPC streaming calls a drain ended at a message boundary with grpc-status 14",
           T::Counter, [](const Li& l) { return l.grpc_drain_ended; });

  by_code(out, C, "cluster", "sluice_upstream_requests_total",
          "Requests to the cluster by status class: the upstreams' responses, and the 502, 503 "
          "and 504 sluice answered when the cluster failed (connect, timeout, no address)");
  durations(out, C, "cluster", "sluice_upstream_request_duration_seconds",
            "From a request handed to an upstream connection to the end of its response");
  per_item(out, C, "cluster", "sluice_upstream_connections_created_total",
           "Upstream connections established", T::Counter,
           [](const Cl& c) { return c.connections_created; });
  per_item(out, C, "cluster", "sluice_upstream_pool_idle_connections",
           "Pooled upstream connections waiting for a request", T::Gauge,
           [](const Cl& c) { return c.idle_connections; });
  per_item(out, C, "cluster", "sluice_upstream_pool_active_connections",
           "Upstream connections carrying a request", T::Gauge,
           [](const Cl& c) { return c.active_connections; });
  {
    MetricFamily f = family("sluice_upstream_request_retries_total",
                            "Requests sent again, by why: stale_connection (on a fresh connection "
                            "after a stale pooled one), connect_failed (to another address), "
                            "goaway_unprocessed (an HTTP/2 upstream had not processed it)",
                            T::Counter);
    for (const Cl& c : C)
      for (size_t i = 0; i < 3; ++i)
        f.metric.push_back(value_metric(T::Counter, static_cast<double>(c.retries_by_reason[i]),
                                        {{"cluster", c.name}, {"reason", kRetryReasons[i]}}));
    out.push_back(std::move(f));
  }
  per_item(out, C, "cluster", "sluice_upstream_streams_active",
           "HTTP/2 streams open to the cluster's upstreams (protocol h2/h2c)", T::Gauge,
           [](const Cl& c) { return c.streams_active; });
  per_item(out, C, "cluster", "sluice_upstream_goaway_received_total",
           "GOAWAY frames received from the cluster's HTTP/2 upstreams", T::Counter,
           [](const Cl& c) { return c.goaways; });
  per_item(out, C, "cluster", "sluice_upstream_connect_failures_total",
           "Upstream connects refused, failed or timed out", T::Counter,
           [](const Cl& c) { return c.connect_failures; });
  per_item(out, C, "cluster", "sluice_upstream_timeouts_total",
           "Upstream connect and response timeouts", T::Counter,
           [](const Cl& c) { return c.timeouts; });
  per_item(out, C, "cluster", "sluice_upstream_ejections_total",
           "Addresses taken out of rotation by outlier detection", T::Counter,
           [](const Cl& c) { return c.ejections; });
  per_item(out, C, "cluster", "sluice_upstream_ejections_prevented_total",
           "Ejections not made because they would take out more than "
           "outlier.max_ejection_percent of the cluster's addresses, or its last one",
           T::Counter, [](const Cl& c) { return c.ejections_prevented; });
  per_item(out, C, "cluster", "sluice_upstream_connect_retries_total",
           "Upstream connects started again on the same address after a backoff (a connect "
           "that timed out or was refused, on a cluster with one address)",
           T::Counter, [](const Cl& c) { return c.connect_retries; });
  {
    MetricFamily f =
        family("sluice_upstream_tls_handshakes_total",
               "TLS handshakes with upstreams, new sessions and resumed ones", T::Counter);
    for (const Cl& c : C) {
      f.metric.push_back(value_metric(T::Counter, static_cast<double>(c.tls_full),
                                      {{"cluster", c.name}, {"resumed", "false"}}));
      f.metric.push_back(value_metric(T::Counter, static_cast<double>(c.tls_resumed),
                                      {{"cluster", c.name}, {"resumed", "true"}}));
    }
    out.push_back(std::move(f));
  }

  collect_guard_metrics(out, t);

  auto single = [&](const char* name, const char* help, T type, double v) {
    MetricFamily f = family(name, help, type);
    f.metric.push_back(value_metric(type, v));
    out.push_back(std::move(f));
  };
  single("sluice_draining", "1 from the start of a drain (SIGTERM, POST /drain) to exit", T::Gauge,
         s.draining ? 1 : 0);
  single("sluice_drain_duration_seconds", "Time since the drain started (0 when serving)", T::Gauge,
         s.drain_duration_seconds);
  single("sluice_drain_forced_closes_total",
         "Connections closed at the drain budget because they had not finished", T::Counter,
         static_cast<double>(s.drain_forced_closes));
  single("sluice_access_log_dropped_total",
         "Access log lines dropped because the log could not keep up", T::Counter,
         static_cast<double>(s.access_log_dropped));
  single("sluice_workers", "Worker threads", T::Gauge, s.workers);

  ProcessStats p = read_process_stats();
  single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds", T::Counter,
         p.cpu_seconds);
  single("process_resident_memory_bytes", "Resident memory size in bytes", T::Gauge,
         static_cast<double>(p.resident_bytes));
  single("process_virtual_memory_bytes", "Virtual memory size in bytes", T::Gauge,
         static_cast<double>(p.virtual_bytes));
  single("process_open_fds", "Number of open file descriptors", T::Gauge,
         static_cast<double>(p.open_fds));
  single("process_max_fds", "Maximum number of open file descriptors", T::Gauge,
         static_cast<double>(p.max_fds));
  single("process_start_time_seconds", "Start time of the process since the Unix epoch", T::Gauge,
         p.start_time_seconds);

  for (MetricFamily& f : registry_->Collect()) out.push_back(std::move(f));
  for (const Families& extra : extra_) extra(out);
  return out;
}

std::string Metrics::render_text() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

nlohmann::json Metrics::render_json(const Config& config) const {
  StatsTotals t;
  ServerFigures s;
  snapshot_(t, s);
  using nlohmann::json;
  auto codes = [](const uint64_t(&r)[5]) {
    json j = json::object();
    for (size_t c = 0; c < 5; ++c) j[kStatusClasses[c]] = r[c];
    return j;
  };
  // null: above the last bucket (30 s), no upper bound known.
  auto bound_ms = [](double s) { return std::isinf(s) ? json(nullptr) : json(s * 1000); };
  auto latency = [&](const HistogramTotals& h) {
    uint64_t n = h.count();
    return json{
        {"count", n},
        {"mean_ms", n ? static_cast<double>(h.sum_us) / 1000.0 / static_cast<double>(n) : 0.0},
        {"p50_ms_at_most", bound_ms(h.quantile(0.5))},
        {"p99_ms_at_most", bound_ms(h.quantile(0.99))}};
  };
  json j;
  j["version"] = SLUICE_VERSION;
  j["workers"] = s.workers;
  j["uptime_s"] = s.uptime_seconds;
  j["draining"] = s.draining;
  j["drain_duration_s"] = s.drain_duration_seconds;
  j["drain_forced_closes"] = s.drain_forced_closes;
  j["access_log_dropped"] = s.access_log_dropped;
  j["http2"] = {{"connections_active", s.http2_connections_active},
                {"streams_active", s.http2_streams_active}};
  j["reloads"] = {{"success", reloads(true)}, {"failure", reloads(false)}};
  ProcessStats p = read_process_stats();
  j["process"] = {{"cpu_seconds", p.cpu_seconds},
                  {"resident_bytes", p.resident_bytes},
                  {"open_fds", p.open_fds}};
  j["listeners"] = json::array();
  for (const auto& l : t.listeners) {
    json x;
    x["name"] = l.name;
    for (const ListenerConfig& lc : config.listeners)
      if (lc.name == l.name) x["address"] = lc.address.str();
    x["configured"] = x.contains("address");
    x["requests"] = codes(l.requests);
    x["latency"] = latency(l.duration);
    x["connections_active"] = l.connections_active;
    x["connections_total"] = l.connections_total[0] + l.connections_total[1];
    // The two gauges are read one after the other while workers move them: never below 0.
    const uint64_t http1_active = l.connections_active > l.http2_connections_active
                                      ? l.connections_active - l.http2_connections_active
                                      : 0;
    x["connections_by_protocol"] = {
        {"http1", {{"active", http1_active}, {"total", l.connections_total[0]}}},
        {"http2", {{"active", l.http2_connections_active}, {"total", l.connections_total[1]}}}};
    x["websocket_sessions_active"] = l.websocket_sessions_active;
    json closed = json::object();
    for (size_t r = 0; r < 5; ++r) closed[kWebSocketCloseReasons[r]] = l.websocket_closed[r];
    x["websocket_sessions_closed"] = closed;
    json refused = json::object();
    for (size_t r = 0; r < 3; ++r) refused[kRefusalReasons[r]] = l.refused[r];
    x["connections_refused"] = refused;
    json grpc = json::object();
    for (size_t i = 0; i < kGrpcStatusLabelCount; ++i)
      if (l.grpc_responses[i]) grpc[kGrpcStatusLabels[i]] = l.grpc_responses[i];
    x["grpc_responses"] = grpc;
    x["grpc_drain_ended"] = l.grpc_drain_ended;
    guard_json(x, l);
    j["listeners"].push_back(std::move(x));
  }
  j["clusters"] = json::array();
  for (const auto& c : t.clusters) {
    json x;
    x["name"] = c.name;
    const ClusterConfig* cc = config.find_cluster(c.name);
    x["configured"] = cc != nullptr;
    if (cc) {
      json eps = json::array();
      for (const HostPort& e : cc->endpoints) eps.push_back(e.str());
      x["endpoints"] = eps;
      x["load_balancing"] = load_balancing_name(cc->load_balancing);
    }
    x["requests"] = codes(c.requests);
    x["latency"] = latency(c.duration);
    x["connections_created"] = c.connections_created;
    x["pool_idle"] = c.idle_connections;
    x["pool_active"] = c.active_connections;
    x["retries"] = c.retries;
    x["retries_by_reason"] = {{kRetryReasons[0], c.retries_by_reason[0]},
                              {kRetryReasons[1], c.retries_by_reason[1]},
                              {kRetryReasons[2], c.retries_by_reason[2]}};
    if (cc) x["protocol"] = upstream_protocol_name(cc->protocol);
    x["streams_active"] = c.streams_active;
    x["goaway_received"] = c.goaways;
    x["connect_failures"] = c.connect_failures;
    x["timeouts"] = c.timeouts;
    x["ejections"] = c.ejections;
    x["ejections_prevented"] = c.ejections_prevented;
    x["connect_retries"] = c.connect_retries;
    x["tls_handshakes"] = {{"full", c.tls_full}, {"resumed", c.tls_resumed}};
    guard_json(x, c);
    j["clusters"].push_back(std::move(x));
  }
  return j;
}

}  // namespace sluice
