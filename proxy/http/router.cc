#include "http/router.h"

namespace sluice {

namespace {
// HTTP's case-insensitivity is ASCII's (RFC 9110 §5.1), whatever the C locale.
constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (ascii_lower(s[i]) != prefix[i]) return false;
  return true;
}
}  // namespace

bool split_request_target(std::string_view url, RequestTarget& out) {
  out = RequestTarget{};
  if (url.empty() || url.front() == '/' || url == "*") {
    out.path = url.empty() ? std::string_view("/") : url;
    return true;
  }
  if (!istarts_with(url, "http://")) return false;
  std::string_view rest = url.substr(7);
  size_t end = rest.find_first_of("/?#");
  out.authority = rest.substr(0, end);
  // userinfo is not allowed in an http(s) URI sent to a proxy (RFC 9110 §4.2.4).
  if (out.authority.empty() || out.authority.find('@') != std::string_view::npos) return false;
  out.absolute = true;
  if (end == std::string_view::npos) {
    out.path = "/";
  } else if (rest[end] == '/') {
    out.path = rest.substr(end);
  } else {
    // "http://host?x": the origin-form needs a leading slash, which the caller adds.
    out.path = rest.substr(end);
  }
  return true;
}

std::string_view host_without_port(std::string_view host, std::string& buf) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    host = close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  while (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "example.com." is FQDN
  size_t i = 0;
  while (i < host.size() && ascii_lower(host[i]) == host[i]) ++i;
  if (i == host.size()) return host;
  buf.assign(host);
  for (; i < buf.size(); ++i) buf[i] = ascii_lower(buf[i]);
  return buf;
}

Router::Router(const std::vector<RouteConfig>& routes, const Config& config) {
  for (const RouteConfig& rc : routes) {
    Route r;
    std::string buf;
    if (rc.host.size() > 2 && rc.host.compare(0, 2, "*.") == 0) {
      r.wildcard = true;
      r.host = ".";
      r.host += host_without_port(std::string_view(rc.host).substr(2), buf);
    } else {
      r.host = std::string(host_without_port(rc.host, buf));
    }
    r.prefix = rc.prefix;
    r.cluster = config.cluster_index(rc.cluster);
    routes_.push_back(std::move(r));
  }
}

int Router::match(std::string_view host, std::string_view path) const {
  for (const Route& r : routes_) {
    if (!r.host.empty()) {
      if (r.wildcard) {
        // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
        if (host.size() <= r.host.size() || host.substr(host.size() - r.host.size()) != r.host)
          continue;
      } else if (host != r.host) {
        continue;
      }
    }
    if (!r.prefix.empty() && path.substr(0, r.prefix.size()) != r.prefix) continue;
    return r.cluster;
  }
  return -1;
}

}  // namespace sluice
