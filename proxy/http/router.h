#pragma once
// Router: one listener's routes, compiled for matching on the request path. A route matches
// when its host pattern and its path prefix both match; the first matching route wins.
// Host patterns are exact names or "*.suffix" (any name ending in ".suffix"), compared
// case-insensitively and without the port.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace sluice {

// The parts of a request target that routing and forwarding need (RFC 9112 §3.2).
struct RequestTarget {
  std::string_view authority;  // absolute-form only: "api.example.com:8080"
  std::string_view path;       // origin-form of the target ("/x?y"); "/" when absent
  bool absolute = false;       // absolute-form ("http://host/path")
};
// Splits a request target. Returns false for an absolute-form target with a scheme other than
// http or with an empty authority (sluice does not forward those).
bool split_request_target(std::string_view url, RequestTarget& out);

// "Example.COM:8080" -> "example.com"; "[::1]:80" -> "::1". The result views `host` when it is
// already lower-case, else `buf`, where it is lower-cased.
std::string_view host_without_port(std::string_view host, std::string& buf);

class Router {
 public:
  Router() = default;
  // `cluster_index` maps a route's cluster name to the index the matcher returns.
  Router(const std::vector<RouteConfig>& routes, const Config& config);
  // The cluster index of the first matching route, or -1. `host` is already lower-case and
  // without port (empty when the request has none: only routes without a host match).
  int match(std::string_view host, std::string_view path) const;
  size_t size() const { return routes_.size(); }

 private:
  struct Route {
    std::string host;  // lower-case; for a wildcard the suffix including the dot
    bool wildcard = false;
    std::string prefix;
    int cluster = -1;
  };
  std::vector<Route> routes_;
};

}  // namespace sluice
