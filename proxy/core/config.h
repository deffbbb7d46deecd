#pragma once
// The effective configuration: plain values, built once (flags, environment, later a file) and
// then shared read-only between threads as std::shared_ptr<const Config>.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/guard_config.h"
#include "core/guard_settings.h"
#include "core/log.h"

namespace sluice {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;
  uint16_t port = 0;
  // An upstream endpoint on a Unix-domain socket (`unix:/run/app/app.sock`) instead: its
  // absolute path; host is empty and port 0. Listeners and the admin address never have one.
  std::string unix_path;
  bool is_unix() const { return !unix_path.empty(); }
  std::string str() const;  // "host:port", "[::1]:port" or "unix:/path"
  bool operator==(const HostPort&) const = default;
};

struct PoolSettings {
  uint32_t max_idle = 64;
  Millis idle_timeout{4000};
  uint32_t max_requests_per_connection = 0;  // 0 = unlimited
  uint32_t max_connections = 1024;
  // Connects in progress per address: a herd of new requests is paced through the app's accept
  // queue instead of overflowing it (the rest wait in the queue).
  uint32_t max_connecting = 32;
  uint32_t queue_size = 4096;  // a reconnect herd waits here: room for thousands per worker
  Millis queue_timeout{5000};
  bool operator==(const PoolSettings&) const = default;
};

enum class LoadBalancing : uint8_t { kRoundRobin, kLeastRequest };
const char* load_balancing_name(LoadBalancing lb);

// How sluice speaks to a cluster's endpoints: HTTP/1.1 (pooled keep-alive connections), HTTP/2
// over TLS with ALPN h2, or HTTP/2 in cleartext with prior knowledge (h2c): multiplexed streams.
enum class UpstreamProtocol : uint8_t { kHttp1, kH2, kH2c };
const char* upstream_protocol_name(UpstreamProtocol p);

// Passive outlier detection: an address with `consecutive_failures` connect failures in a row
// is skipped for `base_ejection`, doubling on each ejection in a row, at most `max_ejection`.
// At most `max_ejection_percent` of a cluster's addresses are ejected at once, and never the
// last one (Envoy's max_ejection_percent): a slow accept must not take a whole cluster out.
struct OutlierSettings {
  uint32_t consecutive_failures = 3;  // 0 = off
  Millis base_ejection{1000};
  Millis max_ejection{30000};
  uint32_t max_ejection_percent = 50;
  bool operator==(const OutlierSettings&) const = default;
};

// TLS origination to a cluster's endpoints (`tls: {}` turns it on with the defaults).
struct ClusterTls {
  bool enabled = false;
  bool verify = true;  // verify the chain and the host name; false only for tests/labs
  std::string ca;      // PEM bundle of trusted CAs; empty = the system's bundle
  // Server name sent and verified; empty = the endpoint's host name (required with Unix-socket
  // endpoints while verify is on: they have no host name).
  std::string sni;
  std::string cert, key;            // client certificate and key (PEM), for mTLS; both or neither
  std::string min_version = "1.2";  // "1.2" or "1.3"
  bool operator==(const ClusterTls&) const = default;
};

struct ClusterConfig {
  std::string name = "app";
  // IP literals, DNS names or Unix sockets; one kind per cluster: either every endpoint is a
  // Unix socket or none is (validate.cc).
  std::vector<HostPort> endpoints;
  LoadBalancing load_balancing = LoadBalancing::kRoundRobin;
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  Millis connect_timeout{2000};
  Millis response_timeout{30000};
  Millis dns_refresh{30000};  // DNS names are re-resolved this often
  PoolSettings pool;
  OutlierSettings outlier;
  bool readiness = false;  // /readyz fails while no endpoint of this cluster is reachable
  ClusterTls tls;
  CircuitBreakerSettings circuit_breaker;
  ClusterCaps caps;  // the file's `limits`
  RetryBudgetSettings retry_budget;
  bool operator==(const ClusterConfig&) const = default;
};

struct Limits {
  uint64_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 0;  // 0 = no limit
  Millis header_timeout{10000};
  Millis idle_timeout{75000};
  uint32_t max_connections_per_worker = 0;  // client connections per worker; 0 = no limit
  uint32_t max_header_fields = 100;         // fields in a request head (HTTP/1.1 and HTTP/2)
  bool operator==(const Limits&) const = default;
};

struct DrainSettings {
  Millis delay{5000};    // keep accepting (with Connection: close) this long
  Millis budget{25000};  // from the signal to exit, at most
  // WebSocket 1001s and gRPC calls' grpc-status 14 spread over this window (YAML
  // `close_spread`; the old name `ws_close_spread` is an alias).
  Millis close_spread{10000};
  Millis ws_close_timeout{3000};  // close handshake, per session
  // After a drain a signal started or joined, with a `drain: false` listener: exit only once no
  // `readiness: true` cluster accepts connections (sluice as a plain container in a pod gets
  // its SIGTERM together with the app, which may still call out while it shuts down).
  bool wait_for_app = false;
  bool operator==(const DrainSettings&) const = default;
};

// A route matches when both its host and its prefix match (an empty one matches anything).
// host: exact name ("api.example.com") or a wildcard ("*.example.com", which matches any name
// ending in ".example.com"), compared without the port and case-insensitively.
struct RouteConfig {
  std::string host;
  std::string prefix;
  std::string cluster;
  bool operator==(const RouteConfig&) const = default;
};

struct TlsCertificate {
  std::string cert;  // PEM: the certificate and its chain
  std::string key;   // PEM private key
  bool operator==(const TlsCertificate&) const = default;
};

// TLS termination on a listener. The first certificate is the default; the others are chosen
// by SNI (a name of their subjectAltName, wildcards included).
struct ListenerTls {
  bool enabled = false;
  std::vector<TlsCertificate> certificates;
  std::string client_ca;  // PEM CAs: when set, clients must present a certificate they signed
  Millis handshake_timeout{10000};
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string ciphers;  // TLS 1.2 cipher list (OpenSSL syntax); empty = a modern default
  bool operator==(const ListenerTls&) const = default;
};

// HTTP/2 from clients on a listener (`http2:`): the SETTINGS sluice sends, the protocols a TLS
// listener offers by ALPN, and the per-connection budget of streams the client made fail.
struct ListenerHttp2 {
  bool enabled = true;  // false: h2c prior knowledge answered as HTTP/1.1, ALPN without h2
  uint32_t max_concurrent_streams = 100;
  uint32_t initial_stream_window = 64 * 1024;
  uint32_t connection_window = 1024 * 1024;
  // Streams sluice resets or refuses because of the client (malformed, over the limits,
  // refused over the upstream-work cap) allowed per connection in a burst (a tenth of it comes
  // back each second); beyond them: GOAWAY ENHANCE_YOUR_CALM ("MadeYouReset").
  uint32_t max_stream_errors = 100;
  std::vector<std::string> alpn{"h2", "http/1.1"};  // TLS: offered in this order
  bool operator==(const ListenerHttp2&) const = default;
};

struct ListenerConfig {
  std::string name = "ingress";
  HostPort address{"0.0.0.0", 8080};
  std::vector<RouteConfig> routes;  // first match wins; none matching -> 404
  bool drain = true;  // false: left open through a drain until the final stop (e.g. egress)
  uint32_t max_connections = 0;  // open client connections, all workers together; 0 = no limit
  // Protocols a client may upgrade to through this listener (lower case, no versions); any
  // other Upgrade is removed and the request forwarded as a plain one (http/upgrade.h).
  std::vector<std::string> upgrades{"websocket"};
  ListenerHttp2 http2;
  ListenerTls tls;
  MaintenanceSettings maintenance;  // the file's; POST /maintenance may override it
  // Networks whose X-Forwarded-For is believed (the client IP, issue #17); unset: the top-level
  // `trusted_proxies`.
  std::optional<std::vector<IpNetwork>> trusted_proxies;
  IpRules ip_rules;
  bool operator==(const ListenerConfig&) const = default;
};

struct AdminSettings {
  HostPort address{"127.0.0.1", 9901};
  std::string token_file;  // token allowing non-loopback clients; empty = loopback only
  bool operator==(const AdminSettings&) const = default;
};

struct LogSettings {
  LogFormat format = LogFormat::kText;
  LogLevel level = LogLevel::kInfo;
  bool access = true;  // one line per request (access log, issue #6)
  bool operator==(const LogSettings&) const = default;
};

struct ReloadSettings {
  bool watch = false;  // reload when the configuration file changes (local development)
  bool operator==(const ReloadSettings&) const = default;
};

struct Config {
  AdminSettings admin;
  unsigned workers = 0;  // 0 = number of cores
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;
  Limits limits;
  DrainSettings drain;
  LogSettings log;
  ReloadSettings reload;
  std::string admin_token;  // read from admin.token_file at load; never printed
  // Issue #17: networks whose X-Forwarded-For is believed (every listener's, unless it sets its
  // own), and the rate-limit rules (every matching rule applies).
  std::vector<IpNetwork> trusted_proxies;
  std::vector<RateLimitRule> rate_limits;

  const ClusterConfig* find_cluster(std::string_view name) const;
  int cluster_index(std::string_view name) const;  // -1 when absent
  bool operator==(const Config&) const = default;
};

using ConfigPtr = std::shared_ptr<const Config>;

// The outcome of reading a configuration (file, environment, flags). `errors` are complete
// lines an operator can act on ("FILE:LINE:COL: message"); config is null when there are any.
struct ConfigLoad {
  std::shared_ptr<Config> config;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

// Value parsers shared by flags and (later) the config file. Each returns nullopt on bad input.
std::optional<Millis> parse_duration(std::string_view s);     // "250ms", "2s", "1m", "1h"
std::optional<uint64_t> parse_size(std::string_view s);       // "512", "64KiB", "1MiB", "1GiB"
std::optional<HostPort> parse_host_port(std::string_view s);  // "host:port", "[::1]:80"
std::string format_duration(Millis d);

}  // namespace sluice
