#pragma once
// IP addresses and networks (CIDR) as plain values: what the client-IP, IP-rule, ban and
// rate-limit code compares. IPv4 is held as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), so a
// dual-stack listener's "::ffff:10.1.2.3" peer and "10.1.2.3" are the same address, and a v4
// network is a /96+n. Parsing is strict (no ports, no zone ids, no leading zeros in v4) and
// never throws.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool is_v4() const;       // an IPv4-mapped address
  std::string str() const;  // "10.1.2.3" for v4, RFC 5952 text for v6
  bool operator==(const IpAddress&) const = default;
};

// "10.1.2.3", "::1", "::ffff:10.1.2.3"; nothing else (no brackets, no port).
std::optional<IpAddress> parse_ip(std::string_view s);

struct IpNetwork {
  IpAddress base;      // host bits are zero
  uint8_t prefix = 0;  // of the 128-bit form (a v4 /8 is 104)
  bool contains(const IpAddress& a) const;
  std::string str() const;  // "10.0.0.0/8", "fd00::/8"; a single address without "/32"
  bool operator==(const IpNetwork&) const = default;
};

// "10.0.0.0/8", "fd00::/8", or one address ("10.1.2.3" = /32, "::1" = /128). On failure
// returns nullopt and, when `why` is given, says what is wrong ("host bits are set: did you
// mean 10.0.0.0/8?").
std::optional<IpNetwork> parse_network(std::string_view s, std::string* why = nullptr);

// Whether any network of `list` contains `a` (a linear scan: lists are short).
bool in_networks(const std::vector<IpNetwork>& list, const IpAddress& a);

}  // namespace sluice
