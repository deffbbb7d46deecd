#pragma once
// RequestContext: what a request keeps from the moment its head arrived — the configuration
// snapshot it runs under (a reload never changes a request in flight: its limits, timeouts and
// log format stay those it started with), its listener, where it is counted and how it is
// routed. Filled by the client side (one per HTTP/1.1 connection, refreshed at each request
// head; one per HTTP/2 stream) and read by the exchange; never changed while a request runs.
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/access_log.h"
#include "core/config.h"
#include "core/ip_network.h"
#include "core/loop_context.h"
#include "core/maintenance_switch.h"
#include "core/stats.h"
#include "guard/guard.h"

namespace sluice {

class UpstreamSet;

// Routing, by the worker's clusters for the current configuration.
class ClusterDirectory {
 public:
  // The cluster for a request on `listener`, or nullptr (404). `host` is lower-case, no port.
  virtual UpstreamSet* route(size_t listener, std::string_view host, std::string_view path) = 0;

 protected:
  ~ClusterDirectory() = default;
};

struct RequestContext {
  LoopContext* loop = nullptr;
  ConfigPtr config;  // the snapshot; shared with the worker until a reload replaces its own
  uint16_t listener = 0;
  ListenerStats* listener_stats = nullptr;
  AccessLog* access_log = nullptr;  // null while the access log is off
  bool colour_log = false;
  bool secure = false;  // the client connection has TLS (X-Forwarded-Proto)
  // The socket's peer (appended to X-Forwarded-For), as text and parsed.
  std::string_view client_ip;
  IpAddress peer;
  // Bans, IP rules, trusted proxies and rate limits of the configuration (null: none).
  std::shared_ptr<const GuardPolicy> guard;
  std::string_view protocol = "HTTP/1.1";  // as the access log names it: "HTTP/1.1", "HTTP/2"
  ClusterDirectory* clusters = nullptr;
  const MaintenanceSwitch* maintenance = nullptr;  // the listener's; null: never in maintenance

  const Limits& limits() const { return config->limits; }
};

}  // namespace sluice
