#include "core/config.h"

#include <charconv>

namespace sluice {

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

const ClusterConfig* Config::find_cluster(std::string_view name) const {
  int i = cluster_index(name);
  return i < 0 ? nullptr : &clusters[static_cast<size_t>(i)];
}

int Config::cluster_index(std::string_view name) const {
  for (size_t i = 0; i < clusters.size(); ++i)
    if (clusters[i].name == name) return static_cast<int>(i);
  return -1;
}

const char* load_balancing_name(LoadBalancing lb) {
  return lb == LoadBalancing::kLeastRequest ? "least_request" : "round_robin";
}

const char* upstream_protocol_name(UpstreamProtocol p) {
  switch (p) {
    case UpstreamProtocol::kH2:
      return "h2";
    case UpstreamProtocol::kH2c:
      return "h2c";
    case UpstreamProtocol::kHttp1:
      break;
  }
  return "http1";
}

namespace {
// Leading unsigned integer and the unit that follows it.
bool split_number(std::string_view s, uint64_t& value, std::string_view& unit) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr == s.data()) return false;
  unit = s.substr(ptr - s.data());
  return true;
}
}  // namespace

std::optional<Millis> parse_duration(std::string_view s) {
  uint64_t v;
  std::string_view unit;
  if (!split_number(s, v, unit)) return std::nullopt;
  uint64_t mult;
  if (unit == "ms")
    mult = 1;
  else if (unit == "s")
    mult = 1000;
  else if (unit == "m")
    mult = 60'000;
  else if (unit == "h")
    mult = 3'600'000;
  else
    return std::nullopt;
  if (v > UINT64_MAX / mult / 2) return std::nullopt;
  return Millis(static_cast<int64_t>(v * mult));
}

std::optional<uint64_t> parse_size(std::string_view s) {
  uint64_t v;
  std::string_view unit;
  if (!split_number(s, v, unit)) return std::nullopt;
  uint64_t mult;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KiB")
    mult = 1ull << 10;
  else if (unit == "MiB")
    mult = 1ull << 20;
  else if (unit == "GiB")
    mult = 1ull << 30;
  else
    return std::nullopt;
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

std::optional<HostPort> parse_host_port(std::string_view s) {
  HostPort hp;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::nullopt;
    hp.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    hp.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) return std::nullopt;  // IPv6 needs brackets
  }
  if (hp.host.empty() || port.empty()) return std::nullopt;
  unsigned p;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535) return std::nullopt;
  hp.port = static_cast<uint16_t>(p);
  return hp;
}

std::string format_duration(Millis d) {
  auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace sluice

#include "core/drain_state.h"

namespace sluice {
const char* drain_phase_name(DrainPhase p) {
  switch (p) {
    case DrainPhase::kServing:
      return "serving";
    case DrainPhase::kDelay:
      return "delay";
    case DrainPhase::kDraining:
      return "draining";
    case DrainPhase::kForced:
      return "forced";
    case DrainPhase::kDone:
      return "done";
  }
  return "?";
}
}  // namespace sluice
