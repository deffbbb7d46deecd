#pragma once
// Configuration of the protections that look at who the client is (issue #17): trusted
// proxies (where the client IP comes from), per-listener IP rules, and rate-limit rules.
// Plain values, part of Config (core/config.h); read by config/guard_reader.cc, enforced by
// the guard layer (proxy/guard).
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.h"

namespace sluice {

// What a rate-limit rule counts requests by.
enum class RateLimitKey : uint8_t { kClientIp, kHeader, kNone };

// A token bucket per key: `requests` per `period` on average, at most `burst` at once.
struct RateLimitRule {
  std::string name;
  std::string listener;              // empty: every listener
  std::string host;                  // exact or "*.example.com"; empty: any host
  std::string prefix;                // path prefix; empty: any path
  std::vector<std::string> methods;  // upper-case; empty: any method
  RateLimitKey key = RateLimitKey::kClientIp;
  std::string header;  // lower-case header name when key == kHeader
  uint64_t requests = 0;
  std::chrono::milliseconds period{1000};
  uint32_t burst = 0;  // 0: the default, one second's worth of the rate (at least 1)
  uint32_t max_keys = 100000;
  bool dry_run = false;
  // The bucket size in requests (burst, or its default).
  uint32_t effective_burst() const;
  bool operator==(const RateLimitRule&) const = default;
};

// Allow and deny lists of one listener. A request (or connection) whose address is on `deny`,
// or not on a non-empty `allow`, is refused; deny is checked first.
struct IpRules {
  enum class Action : uint8_t { kForbidden, kClose };  // 403, or close without an answer
  enum class Match : uint8_t { kPeer, kClient };       // the socket's address or the client IP
  std::vector<IpNetwork> allow;
  std::vector<IpNetwork> deny;
  Action action = Action::kForbidden;
  Match match = Match::kPeer;
  bool empty() const { return allow.empty() && deny.empty(); }
  bool operator==(const IpRules&) const = default;
};

}  // namespace sluice

namespace sluice {

// "10/s", "600/m", "1000/h", "50/10s": a whole number of requests (at least 1) per period (a
// unit, or a duration above 0). Returns false on anything else.
bool parse_rate(std::string_view s, uint64_t& requests, std::chrono::milliseconds& period);
// The text parse_rate reads back: "10/s", "50/10s".
std::string format_rate(uint64_t requests, std::chrono::milliseconds period);

}  // namespace sluice
