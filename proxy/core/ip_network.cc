#include "core/ip_network.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace sluice {

namespace {
constexpr uint8_t kV4Prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}

bool IpAddress::is_v4() const {
  return std::memcmp(bytes.data(), kV4Prefix, 12) == 0;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (is_v4()) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<IpAddress> parse_ip(std::string_view s) {
  // inet_pton needs a terminated string; anything longer than an IPv6 text is not an address.
  if (s.empty() || s.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  IpAddress a;
  if (s.find(':') == std::string_view::npos) {
    // inet_pton(AF_INET) takes only dotted quads of decimal numbers, no leading zeros on glibc.
    if (inet_pton(AF_INET, buf, a.bytes.data() + 12) != 1) return std::nullopt;
    std::memcpy(a.bytes.data(), kV4Prefix, 12);
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  return a;
}

bool IpNetwork::contains(const IpAddress& a) const {
  const unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == base.bytes[full];
}

std::string IpNetwork::str() const {
  const bool v4 = base.is_v4() && prefix >= 96;
  const unsigned bits = v4 ? prefix - 96u : prefix;
  if (bits == (v4 ? 32u : 128u)) return base.str();
  return base.str() + "/" + std::to_string(bits);
}

std::optional<IpNetwork> parse_network(std::string_view s, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<IpNetwork> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  const size_t slash = s.find('/');
  std::string_view addr = s.substr(0, slash);
  std::optional<IpAddress> a = parse_ip(addr);
  if (!a) return fail("not an IP address");
  const bool v4 = addr.find(':') == std::string_view::npos;
  const unsigned max = v4 ? 32 : 128;
  unsigned bits = max;
  if (slash != std::string_view::npos) {
    std::string_view p = s.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || bits > max ||
        (p.size() > 1 && p[0] == '0'))
      return fail("the prefix length after '/' must be 0 to " + std::to_string(max));
  }
  IpNetwork n;
  n.prefix = static_cast<uint8_t>(v4 ? bits + 96 : bits);
  n.base = *a;
  // Clear the host bits; a network written with them set is most likely a typo.
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned lo = i * 8;
    if (lo >= n.prefix) {
      n.base.bytes[i] = 0;
    } else if (lo + 8 > n.prefix) {
      n.base.bytes[i] &= static_cast<uint8_t>(0xff << (8 - (n.prefix - lo)));
    }
  }
  if (!(n.base == *a)) return fail("host bits are set: did you mean " + n.str() + "?");
  return n;
}

bool in_networks(const std::vector<IpNetwork>& list, const IpAddress& a) {
  for (const IpNetwork& n : list)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace sluice
