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

namespace sluice {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string str() const;
};

struct PoolSettings {
  uint32_t max_idle = 64;
  Millis idle_timeout{4000};
  uint32_t max_requests_per_connection = 0;  // 0 = unlimited
  uint32_t max_connections = 1024;
  uint32_t queue_size = 1024;
  Millis queue_timeout{5000};
};

struct ClusterConfig {
  std::string name = "app";
  std::vector<HostPort> endpoints;
  Millis connect_timeout{2000};
  Millis response_timeout{30000};
  PoolSettings pool;
};

struct Limits {
  uint64_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 0;  // 0 = no limit
  Millis header_timeout{10000};
  Millis idle_timeout{75000};
};

struct DrainSettings {
  Millis delay{5000};             // keep accepting (with Connection: close) this long
  Millis budget{25000};           // from the signal to exit, at most
  Millis ws_close_spread{10000};  // WebSocket 1001s spread over this window
  Millis ws_close_timeout{3000};  // close handshake, per session
};

struct ListenerConfig {
  std::string name = "ingress";
  HostPort address{"0.0.0.0", 8080};
  std::string cluster = "app";
};

struct Config {
  HostPort admin{"127.0.0.1", 9901};
  unsigned workers = 0;  // 0 = number of cores
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;
  Limits limits;
  DrainSettings drain;
  std::string admin_token;  // read from --admin-token-file; empty = loopback only

  const ClusterConfig* find_cluster(std::string_view name) const;
};

using ConfigPtr = std::shared_ptr<const Config>;

// Value parsers shared by flags and (later) the config file. Each returns nullopt on bad input.
std::optional<Millis> parse_duration(std::string_view s);     // "250ms", "2s", "1m", "1h"
std::optional<uint64_t> parse_size(std::string_view s);       // "512", "64KiB", "1MiB", "1GiB"
std::optional<HostPort> parse_host_port(std::string_view s);  // "host:port", "[::1]:80"
std::string format_duration(Millis d);

}  // namespace sluice
