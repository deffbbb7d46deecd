#include "core/guard_config.h"

#include <algorithm>
#include <charconv>

#include "core/config.h"

namespace sluice {

uint32_t RateLimitRule::effective_burst() const {
  if (burst) return burst;
  const uint64_t ms = static_cast<uint64_t>(period.count());
  if (ms == 0) return 1;
  const uint64_t per_second = (requests * 1000 + ms - 1) / ms;
  return static_cast<uint32_t>(std::clamp<uint64_t>(per_second, 1, UINT32_MAX));
}

bool parse_rate(std::string_view s, uint64_t& requests, std::chrono::milliseconds& period) {
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  std::string_view n = s.substr(0, slash), p = s.substr(slash + 1);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
  if (ec != std::errc() || end != n.data() + n.size() || v == 0 || v > 1000000000) return false;
  std::chrono::milliseconds per;
  if (p == "s") {
    per = std::chrono::milliseconds(1000);
  } else if (p == "m") {
    per = std::chrono::milliseconds(60000);
  } else if (p == "h") {
    per = std::chrono::milliseconds(3600000);
  } else if (auto d = parse_duration(p); d && d->count() > 0) {
    per = *d;
  } else {
    return false;
  }
  requests = v;
  period = per;
  return true;
}

std::string format_rate(uint64_t requests, std::chrono::milliseconds period) {
  std::string p;
  if (period.count() == 1000) {
    p = "s";
  } else if (period.count() == 60000) {
    p = "m";
  } else if (period.count() == 3600000) {
    p = "h";
  } else {
    p = format_duration(period);
  }
  return std::to_string(requests) + "/" + p;
}

}  // namespace sluice
