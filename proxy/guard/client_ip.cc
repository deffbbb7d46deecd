#include "guard/client_ip.h"

namespace sluice {

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

std::optional<IpAddress> parse_forwarded_entry(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  if (s.front() == '[') {  // [v6] or [v6]:port
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return std::nullopt;
      for (char c : rest.substr(1))
        if (c < '0' || c > '9') return std::nullopt;
    }
    std::optional<IpAddress> a = parse_ip(s.substr(1, close - 1));
    if (a && a->is_v4()) return std::nullopt;  // "[1.2.3.4]" is not a form anyone sends
    return a;
  }
  const size_t colon = s.find(':');
  if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos) {
    // v4:port (one colon); an IPv6 address has at least two.
    std::string_view port = s.substr(colon + 1);
    if (port.empty() || port.size() > 5) return std::nullopt;
    for (char c : port)
      if (c < '0' || c > '9') return std::nullopt;
    s = s.substr(0, colon);
    if (s.find('.') == std::string_view::npos) return std::nullopt;
  }
  return parse_ip(s);
}

IpAddress resolve_client_ip(const IpAddress& peer, const std::vector<IpNetwork>& trusted,
                            std::span<const std::string_view> xff) {
  if (trusted.empty() || !in_networks(trusted, peer)) return peer;
  IpAddress client = peer;
  for (size_t v = xff.size(); v-- > 0;) {
    const std::string_view value = xff[v];
    if (trim(value).empty()) continue;  // an empty line adds no entry
    size_t end = value.size();
    while (true) {
      size_t start = end;
      while (start > 0 && value[start - 1] != ',') --start;
      std::optional<IpAddress> a = parse_forwarded_entry(value.substr(start, end - start));
      if (!a) return client;  // not an address: the last trusted hop is all we know
      client = *a;
      if (!in_networks(trusted, client)) return client;
      if (start == 0) break;
      end = start - 1;
    }
  }
  return client;
}

}  // namespace sluice
