#include "config/setting_values.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

namespace sluice {

std::optional<bool> parse_bool(std::string_view s) {
  for (const char* t : {"true", "True", "TRUE", "yes", "on", "1"})
    if (s == t) return true;
  for (const char* f : {"false", "False", "FALSE", "no", "off", "0"})
    if (s == f) return false;
  return std::nullopt;
}

std::optional<uint64_t> parse_whole_number(std::string_view s) {
  uint64_t v;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (label == 0) return false;  // empty label: "a..b", ".a"
      label = 0;
      continue;
    }
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0 || s.size() > 1;  // a trailing dot (absolute name) is fine, "." is not
}

std::optional<HostPort> parse_listen_address(std::string_view s) {
  auto hp = parse_host_port(s);
  if (!hp || !is_ip_literal(hp->host)) return std::nullopt;
  return hp;
}

std::optional<HostPort> parse_endpoint(std::string_view s) {
  auto hp = parse_host_port(s);
  if (!hp || hp->port == 0) return std::nullopt;
  bool bracketed = !s.empty() && s.front() == '[';
  if (bracketed ? !is_ip_literal(hp->host) : !(is_ip_literal(hp->host) || is_dns_name(hp->host)))
    return std::nullopt;
  return hp;
}

std::optional<std::vector<HostPort>> parse_endpoint_list(std::string_view s) {
  std::vector<HostPort> out;
  while (true) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    auto ep = parse_endpoint(item);
    if (!ep) return std::nullopt;
    out.push_back(*ep);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

bool is_valid_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

bool is_valid_host_pattern(std::string_view s) {
  if (s.substr(0, 2) == "*.") s.remove_prefix(2);
  return is_dns_name(s) && s.back() != '.';
}

bool is_valid_prefix(std::string_view s) {
  if (s.empty() || s.front() != '/') return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '?' || c == '#') return false;
  return true;
}

bool is_valid_sni(std::string_view s) {
  return is_dns_name(s) && s.back() != '.' && !is_ip_literal(std::string(s));
}

bool is_tls_version(std::string_view s) {
  return s == "1.2" || s == "1.3";
}

std::string tls_version_problem(std::string_view s) {
  // "TLSv1.1", "tls1.2", "TLS 1.0": the spellings of OpenSSL and nginx, reduced to the number.
  std::string v;
  for (char c : s) v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view prefix : {"tls", "v", " "})
    if (std::string_view(v).substr(0, prefix.size()) == prefix) v.erase(0, prefix.size());
  if (v == "1" || v == "1.0" || v == "1.1")
    return ": TLS 1.0 and 1.1 are not supported (RFC 8996 deprecates them); sluice speaks TLS "
           "1.2 and 1.3";
  if (is_tls_version(v) && v != s) return ": write the version alone, '" + v + "'";
  return "";
}

const std::vector<std::string>& load_balancing_names() {
  static const std::vector<std::string> names{"round_robin", "least_request"};
  return names;
}
const std::vector<std::string>& upstream_protocol_names() {
  static const std::vector<std::string> names{"http1", "h2", "h2c"};
  return names;
}
const std::vector<std::string>& log_format_names() {
  static const std::vector<std::string> names{"json", "text"};
  return names;
}
const std::vector<std::string>& log_level_names() {
  static const std::vector<std::string> names{"debug", "info", "warn", "error"};
  return names;
}

std::optional<LoadBalancing> parse_load_balancing(std::string_view s) {
  if (s == "round_robin") return LoadBalancing::kRoundRobin;
  if (s == "least_request") return LoadBalancing::kLeastRequest;
  return std::nullopt;
}

std::optional<UpstreamProtocol> parse_upstream_protocol(std::string_view s) {
  if (s == "http1") return UpstreamProtocol::kHttp1;
  if (s == "h2") return UpstreamProtocol::kH2;
  if (s == "h2c") return UpstreamProtocol::kH2c;
  return std::nullopt;
}

std::optional<LogFormat> parse_log_format(std::string_view s) {
  if (s == "json") return LogFormat::kJson;
  if (s == "text") return LogFormat::kText;
  return std::nullopt;
}

std::optional<LogLevel> parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return std::nullopt;
}

const char* log_format_name(LogFormat f) {
  return f == LogFormat::kJson ? "json" : "text";
}

std::string format_size(uint64_t bytes) {
  if (bytes == 0) return "0";
  if (bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + "GiB";
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + "MiB";
  if (bytes % (1ull << 10) == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes);
}

}  // namespace sluice
