#pragma once
// The values a setting may take, shared by the file reader and the flag overrides so that both
// accept and reject exactly the same text. Each parser returns nullopt on bad input; the
// kExpected* strings say what would have been valid, for error messages.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace sluice {

inline constexpr const char* kExpectedDuration = "a whole number with a unit: 250ms, 2s, 1m, 1h";
inline constexpr const char* kExpectedSize =
    "a number of bytes, optionally with a unit: 512, "
    "64KiB, 1MiB, 1GiB";
inline constexpr const char* kExpectedBool = "true or false";
inline constexpr const char* kExpectedListenAddress =
    "IP:PORT such as 0.0.0.0:8080, 127.0.0.1:9901 or [::]:8080; port 0 picks a free port";
inline constexpr const char* kExpectedEndpoint =
    "HOST:PORT with an IP address or DNS name and a port from 1 to 65535, such as "
    "127.0.0.1:4000, app.internal:80 or [::1]:4000";
inline constexpr const char* kExpectedName =
    "a name of letters, digits, '-', '_' and '.', such as 'app' or 'api-v2'";
inline constexpr const char* kExpectedHostPattern =
    "a host name such as 'api.example.com', or '*.example.com' for every name under it; "
    "without a port";
inline constexpr const char* kExpectedPrefix = "a path prefix starting with '/', such as /api";
inline constexpr const char* kExpectedTlsVersion = "'1.2' or '1.3'";
inline constexpr const char* kExpectedSni = "a host name such as 'api.example.com'";
inline constexpr unsigned kMaxWorkers = 1024;

std::optional<bool> parse_bool(std::string_view s);  // true/false (also yes/no, on/off, 1/0)
std::optional<uint64_t> parse_whole_number(std::string_view s);  // decimal digits only

// An address to listen on: an IP literal (no DNS names: sockets bind to addresses) and a port,
// 0 meaning "pick a free one".
std::optional<HostPort> parse_listen_address(std::string_view s);
// An upstream endpoint: IP literal or DNS name, port 1-65535.
std::optional<HostPort> parse_endpoint(std::string_view s);
// "a:1, b:2" -> endpoints; nullopt when any is invalid or the list is empty.
std::optional<std::vector<HostPort>> parse_endpoint_list(std::string_view s);

bool is_ip_literal(const std::string& host);
bool is_dns_name(std::string_view s);
bool is_valid_name(std::string_view s);
bool is_valid_host_pattern(std::string_view s);
bool is_valid_prefix(std::string_view s);
// A name a TLS client may ask for (RFC 6066 server_name): a DNS name without a trailing dot,
// a wildcard or a port; never an IP address.
bool is_valid_sni(std::string_view s);

// TLS versions by their file spelling ("1.2", "1.3"). For text that is not one of them, the
// reason to add to the error ("TLS 1.0 and 1.1 are not supported ..."), or "" when none helps.
bool is_tls_version(std::string_view s);
std::string tls_version_problem(std::string_view s);

// Enumerations by their file spelling.
std::optional<LoadBalancing> parse_load_balancing(std::string_view s);
std::optional<UpstreamProtocol> parse_upstream_protocol(std::string_view s);
std::optional<LogFormat> parse_log_format(std::string_view s);
std::optional<LogLevel> parse_log_level(std::string_view s);
const char* log_format_name(LogFormat f);
const std::vector<std::string>& load_balancing_names();
const std::vector<std::string>& upstream_protocol_names();
const std::vector<std::string>& log_format_names();
const std::vector<std::string>& log_level_names();

// Sizes the way a person writes them: 65536 -> "64KiB", 1000 -> "1000".
std::string format_size(uint64_t bytes);

}  // namespace sluice
