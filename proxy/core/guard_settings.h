#pragma once
// Settings that protect the app and the upstreams (issue 17): a listener's maintenance mode, and
// a cluster's circuit breaker, concurrency caps and retry budget. Plain values, part of the
// Config snapshot (core/config.h); the runtime state they drive lives elsewhere
// (server/maintenance_board, upstream/cluster_guard).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

enum class MaintenanceMode : uint8_t { kOff = 0, kReadOnly = 1, kFull = 2 };
const char* maintenance_mode_name(MaintenanceMode m);  // "off", "read-only", "full"
std::optional<MaintenanceMode> parse_maintenance_mode(std::string_view s);

// An exception to maintenance: requests whose path starts with `prefix` (and whose method is in
// `methods`, when given: upper case) pass in either mode.
struct MaintenancePath {
  std::string prefix;
  std::vector<std::string> methods;  // empty: any method
  bool operator==(const MaintenancePath&) const = default;
};

struct MaintenanceSettings {
  MaintenanceMode mode = MaintenanceMode::kOff;
  std::chrono::milliseconds retry_after{120000};  // Retry-After on the 503s, whole seconds
  std::string message;                            // in the default body
  std::vector<std::string> allow_methods{"GET", "HEAD", "OPTIONS"};  // read-only; upper case
  std::vector<MaintenancePath> allow_paths;
  std::string body;          // a custom body for the 503s (HTML, JSON...); empty: sluice's text
  std::string content_type;  // of `body`; empty: text/html when it starts with '<', else text/plain
  bool operator==(const MaintenanceSettings&) const = default;
};

// A cluster's circuit breaker (present in the file = on).
struct CircuitBreakerSettings {
  bool enabled = false;
  std::chrono::milliseconds window{10000};  // failures are counted over this sliding window
  uint32_t min_requests = 20;               // no decision below this many requests in the window
  double failure_ratio = 0.5;               // opens when failures / requests reach this
  std::vector<int> failure_statuses{502, 503, 504};
  std::chrono::milliseconds open_for{30000};  // fail fast this long, then half-open
  uint32_t trial_requests = 3;                // let through half-open; all must succeed to close
  bool operator==(const CircuitBreakerSettings&) const = default;
};

// Requests to a cluster, all workers together; 0 = no cap.
struct ClusterCaps {
  uint32_t max_requests = 0;  // in flight (from routing to the end of the response)
  uint32_t max_pending = 0;   // waiting in a pool's queue for a connection
  bool operator==(const ClusterCaps&) const = default;
};

// Retries in flight may be at most max(min_retries, percent % of the requests in flight)
// (Envoy's retry budget).
struct RetryBudgetSettings {
  uint32_t percent = 20;
  uint32_t min_retries = 3;
  bool operator==(const RetryBudgetSettings&) const = default;
};

}  // namespace sluice
