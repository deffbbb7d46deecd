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

// The protocol a client connection speaks, as a label value (the order of connections_total).
inline constexpr const char* kConnectionProtocols[] = {"http1", "http2"};
// HTTP/2 label values (the order of the counters in ListenerStats).
inline constexpr const char* kHttp2ResetDirections[] = {"received", "sent"};
// Why sluice sent a connection's (first) GOAWAY.
enum class Http2Goaway : uint8_t {
  kDrain,            // the drain's two-step GOAWAY
  kIdle,             // no stream for the idle timeout
  kEnhanceYourCalm,  // a guard's budget ran out (refused streams, stream errors, empty frames)
  kProtocolError,    // nghttp2 found the client breaking the protocol
  kFlood,            // nghttp2's own limits (RST_STREAM rate, outbound ACK queue)
  kHeaderTimeout,    // a header block not complete within limits.header_timeout
  kOther,
};
inline constexpr const char* kHttp2GoawayReasons[] = {
    "drain", "idle", "enhance_your_calm", "protocol_error", "flood", "header_timeout", "other"};
inline constexpr size_t kHttp2GoawayReasonCount = std::size(kHttp2GoawayReasons);
// What made sluice close an HTTP/2 connection as an attack (CVE-2019-9512/9515/9518,
// CVE-2023-44487, CVE-2024-28182, CVE-2025-8671).
enum class Http2Flood : uint8_t {
  kPing,          // PING ACKs queued beyond nghttp2's limit
  kSettings,      // SETTINGS ACKs queued beyond it, or too many entries
  kEmptyFrames,   // DATA frames without payload or END_STREAM beyond the budget
  kRapidReset,    // RST_STREAM rate, or streams refused over the upstream-work cap
  kContinuation,  // CONTINUATION frames beyond nghttp2's cap
  kStreamErrors,  // streams the client made fail beyond http2.max_stream_errors
  kOther,         // nghttp2's other flood checks
};
inline constexpr const char* kHttp2FloodKinds[] = {
    "ping", "settings", "empty_frames", "rapid_reset", "continuation", "stream_errors", "other"};
inline constexpr size_t kHttp2FloodKindCount = std::size(kHttp2FloodKinds);

// Label values of sluice_grpc_responses_total{grpc_status}: the codes 0..16 as the wire
// carries them, then "other" for any other value (http/grpc.h).
inline constexpr const char* kGrpcStatusLabels[] = {"0",  "1",  "2",  "3",  "4",  "5",
                                                    "6",  "7",  "8",  "9",  "10", "11",
                                                    "12", "13", "14", "15", "16", "other"};
inline constexpr size_t kGrpcStatusLabelCount = std::size(kGrpcStatusLabels);

struct ListenerStats {
  Counter requests[5];  // by status class of the response sent
  Histogram duration;   // head received to response complete
  Counter connections_active;
  Counter http2_connections_active;  // gauge: the part of connections_active speaking HTTP/2
  Counter connections_total[2];      // by kConnectionProtocols, once the protocol is known
  Counter websocket_sessions_active;
  Counter websocket_closed[5];   // by TunnelEnd
  Counter refused[3];            // by ConnectionRefusal
  Counter http2_streams_active;  // gauge
  Counter http2_resets[2];       // RST_STREAM by kHttp2ResetDirections
  Counter http2_goaway[kHttp2GoawayReasonCount];
  Counter http2_flood_closes[kHttp2FloodKindCount];
  Counter maintenance_rejected;  // requests answered 503 by the maintenance mode
  // gRPC calls by their final grpc-status: 0..16, then "other" (http/grpc.h's labels).
  Counter grpc_responses[kGrpcStatusLabelCount];
  Counter grpc_drain_ended;  // streaming calls the drain ended with grpc-status 14
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
  Counter retries[3];          // by kRetryReasons
  Counter connect_failures;
  Counter timeouts;  // connect and response timeouts
  Counter ejections;
  Counter ejections_prevented;      // by max_ejection_percent (or the cluster's last address)
  Counter connect_retries;          // connects started again on the same address after a backoff
  Counter tls_handshakes_full;      // TLS origination: new sessions
  Counter tls_handshakes_resumed;   // ...and resumed ones (the per-address session cache works)
  Counter overflow[2];              // 503s at a concurrency cap, by kOverflowLimits
  Counter retry_budget_exhausted;   // retries not made: the retry budget was spent
  Counter circuit_transitions[3];   // by the state moved to (CircuitState: closed, open, half-open)
  Counter upstream_streams_active;  // gauge: HTTP/2 streams open to the cluster
  Counter upstream_goaways;         // GOAWAY frames received from its HTTP/2 upstreams
};

// Why a request was sent again (sluice_upstream_request_retries_total{reason}): a reused
// keep-alive connection turned out stale, a connect failed (another address was tried), or an
// HTTP/2 upstream had not processed it (a GOAWAY's last stream id, REFUSED_STREAM).
enum class RetryReason : uint8_t { kStaleConnection, kConnectFailed, kGoawayUnprocessed };
inline constexpr const char* kRetryReasons[] = {"stale_connection", "connect_failed",
                                                "goaway_unprocessed"};

// Concurrency caps as label values of sluice_upstream_overflow_total{limit}.
inline constexpr const char* kOverflowLimits[] = {"requests", "pending"};

// What the drain (and /healthz) needs of a worker as a whole.
struct WorkerStats {
  Counter downstream_connections_active;
  Counter drain_exempt_connections;  // active ones on `drain: false` listeners
  Counter websocket_sessions_active;
  Counter exchanges_active;  // requests between their head and the end of their response
  Counter http2_connections_active;
  Counter http2_streams_active;  // open streams of those connections (their requests in flight)
  Counter drain_forced_closes;
  // gRPC calls whose response head was sent (long-lived: the drain spreads their ends), and
  // those the drain ended with grpc-status 14 at a message boundary.
  Counter grpc_calls_active;
  Counter grpc_drain_ended;
  Counter drain_forced_http2_streams;     // streams open on connections closed at the budget
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
