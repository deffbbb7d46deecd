#pragma once
// Which address a request comes from. A sidecar's socket peer is usually the ingress
// controller; when that peer is in a trusted network, the client is the rightmost address of
// X-Forwarded-For that is not itself trusted (each trusted proxy appends the address it saw,
// so entries left of the first untrusted one may be forged by the client). Pure functions.
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/ip_network.h"

namespace sluice {

// One X-Forwarded-For entry: "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]",
// "[2001:db8::1]:443", with optional whitespace around it. nullopt for anything else
// ("unknown", obfuscated identifiers of RFC 7239, garbage).
std::optional<IpAddress> parse_forwarded_entry(std::string_view s);

// The client's address. `xff`: the X-Forwarded-For field values in the order they came (several
// lines form one comma-separated list). Only when `peer` is in `trusted` is the list read, from
// the right: each trusted entry is skipped; the first untrusted one is the client. An entry that
// is not an address stops the walk, and the last address seen (trusted) is the client; when
// every entry is trusted, the leftmost is.
IpAddress resolve_client_ip(const IpAddress& peer, const std::vector<IpNetwork>& trusted,
                            std::span<const std::string_view> xff);

}  // namespace sluice
