// Checks across settings, once the file and the overrides are applied: names are unique, no two
// listeners share an address, every route leads to a cluster, every cluster has endpoints; and
// the warnings (an unused cluster, a drain over budget, TLS without verification).
#include <arpa/inet.h>

#include <string>
#include <vector>

#include "config/config_marks.h"

namespace sluice {
namespace {

std::string at_line(const Where& w) {
  if (w.in_file()) return ", line " + std::to_string(w.line);
  if (!w.flag.empty()) return ", " + w.flag;
  return "";
}

// The canonical text of an IP literal, so that "::1" and "0:0::1" compare equal.
std::string canonical_ip(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  char out[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6})
    if (inet_pton(family, host.c_str(), buf) == 1 && inet_ntop(family, buf, out, sizeof out))
      return out;
  return host;
}

bool is_wildcard(const std::string& canonical) {
  return canonical == "0.0.0.0" || canonical == "::";
}

// A socket sluice binds: a listener or the admin listener.
struct Bound {
  std::string what;  // "listener 'ingress'"
  HostPort address;
  Where where;
};

bool overlaps(const Bound& a, const Bound& b) {
  if (a.address.port == 0 || a.address.port != b.address.port) return false;  // 0: a free port
  std::string ha = canonical_ip(a.address.host), hb = canonical_ip(b.address.host);
  return ha == hb || is_wildcard(ha) || is_wildcard(hb);
}

std::string listener_path(const Config& c, const ConfigMarks& m, size_t i) {
  if (m.listener[i].name.ok) return "listeners[" + c.listeners[i].name + "]";
  return "listeners[" + std::to_string(i) + "]";
}

std::string cluster_path(const Config& c, const ConfigMarks& m, size_t i) {
  if (m.cluster[i].name.ok) return "clusters[" + c.clusters[i].name + "]";
  return "clusters[" + std::to_string(i) + "]";
}

void check_listeners(const Config& c, const ConfigMarks& m, Diagnostics& diag) {
  if (c.listeners.empty() && m.listeners_ok)
    diag.error(m.listeners,
               "listeners: at least one listener is needed, such as "
               "{name: ingress, address: 0.0.0.0:8080, cluster: app}");

  for (size_t i = 0; i < c.listeners.size(); ++i) {
    if (!m.listener[i].name.ok) continue;
    for (size_t j = 0; j < i; ++j) {
      if (m.listener[j].name.ok && c.listeners[j].name == c.listeners[i].name) {
        diag.error(m.listener[i].name.where,
                   "listeners: the name '" + c.listeners[i].name +
                       "' is already used by another listener (" +
                       (m.listener[j].name.where.in_file()
                            ? "line " + std::to_string(m.listener[j].name.where.line)
                            : std::string("the default")) +
                       "); listener names must be unique");
        break;
      }
    }
  }

  std::vector<Bound> bound;
  if (m.admin_address.ok)
    bound.push_back(Bound{"the admin listener", c.admin.address, m.admin_address.where});
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    if (!m.listener[i].address.ok) continue;
    Bound b{"listener '" + c.listeners[i].name + "'", c.listeners[i].address,
            m.listener[i].address.where};
    for (const auto& other : bound) {
      if (!overlaps(other, b)) continue;
      diag.error(b.where, listener_path(c, m, i) + ".address: " + b.address.str() + " overlaps " +
                              other.what + " (" + other.address.str() + at_line(other.where) +
                              "): each listener needs its own port, and 0.0.0.0 or [::] take "
                              "the port on every address");
      break;
    }
    bound.push_back(std::move(b));
  }
}

void check_routes(const Config& c, const ConfigMarks& m, Diagnostics& diag) {
  std::vector<std::string> cluster_names;
  for (const auto& cl : c.clusters) cluster_names.push_back(cl.name);
  // Against a complete list only: a cluster whose name was invalid, or no clusters at all,
  // has been reported already.
  const bool check_targets = m.all_cluster_names_ok && m.clusters_ok && !c.clusters.empty();

  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const ListenerConfig& l = c.listeners[i];
    const ListenerMarks& lm = m.listener[i];
    std::string path = listener_path(c, m, i);
    if (l.routes.empty() && lm.routes_ok)
      diag.error(lm.routes, path +
                                ": no routes: add 'cluster: NAME' to send everything to one "
                                "cluster, or 'routes: [{prefix: /, cluster: NAME}]'");
    for (size_t r = 0; r < l.routes.size(); ++r) {
      const RouteMarks& rm = lm.route[r];
      if (!check_targets || !rm.cluster.ok || c.find_cluster(l.routes[r].cluster)) continue;
      const std::string& target = l.routes[r].cluster;
      if (!m.listeners_from_file && m.clusters_from_file) {
        diag.error(m.clusters, "the file has no 'listeners', so the default listener '" + l.name +
                                   "' (" + l.address.str() + ") sends everything to cluster '" +
                                   target +
                                   "', which the file does not define: add 'listeners' "
                                   "or name a cluster '" +
                                   target + "'");
        continue;
      }
      std::string hint = did_you_mean(target, cluster_names);
      if (hint.empty())
        hint = cluster_names.empty() ? " (no cluster is defined)"
                                     : " (the clusters are " + quoted_list(cluster_names) + ")";
      diag.error(rm.cluster.where, path + ".routes[" + std::to_string(r) + "]: no cluster named '" +
                                       target + "'" + hint);
    }
  }
}

// Unix-socket endpoints: a cluster's endpoints are all Unix sockets or none is. Mixed, the
// same request would get a different Host (HTTP/1.0) and TLS name depending on the address
// picked, and load balancing would weigh a local socket against remote hosts: two clusters say
// what is meant. With TLS and verification on, the name to send and verify has to be given
// (tls.sni): a path is no host name.
void check_unix_endpoints(const ClusterConfig& cl, const ClusterMarks& cm, const std::string& path,
                          Diagnostics& diag) {
  const HostPort* unix_socket = nullptr;
  const HostPort* tcp = nullptr;
  for (const HostPort& e : cl.endpoints) (e.is_unix() ? unix_socket : tcp) = &e;
  if (!unix_socket) return;
  if (tcp) {
    diag.error(cm.endpoints, path + ".endpoints: " + unix_socket->str() + " and " + tcp->str() +
                                 ": a cluster's endpoints are either all Unix sockets or all "
                                 "HOST:PORT; put them in two clusters");
    return;
  }
  if (cl.tls.enabled && cl.tls.verify && cl.tls.sni.empty())
    diag.error(cm.tls.in_file() ? cm.tls : cm.endpoints,
               path +
                   ".tls: needs 'sni' with Unix-socket endpoints: there is no host name to "
                   "send or to verify the certificate against (tls: {sni: app.internal})");
}

void check_clusters(const Config& c, const ConfigMarks& m, Diagnostics& diag) {
  if (c.clusters.empty() && m.clusters_ok)
    diag.error(m.clusters,
               "clusters: at least one cluster is needed, such as "
               "{name: app, endpoints: [127.0.0.1:4000]}");
  for (size_t i = 0; i < c.clusters.size(); ++i) {
    const ClusterConfig& cl = c.clusters[i];
    const ClusterMarks& cm = m.cluster[i];
    std::string path = cluster_path(c, m, i);
    if (cm.name.ok) {
      for (size_t j = 0; j < i; ++j) {
        if (!m.cluster[j].name.ok || c.clusters[j].name != cl.name) continue;
        diag.error(cm.name.where, "clusters: the name '" + cl.name +
                                      "' is already used by another cluster (" +
                                      (m.cluster[j].name.where.in_file()
                                           ? "line " + std::to_string(m.cluster[j].name.where.line)
                                           : std::string("the default")) +
                                      "); cluster names must be unique");
        break;
      }
    }
    if (cl.endpoints.empty() && cm.endpoints_ok)
      diag.error(cm.endpoints, path +
                                   ": no endpoints: add 'endpoints: [HOST:PORT, ...]' (IP "
                                   "addresses or DNS names, or unix:/PATH for a Unix socket)");
    check_unix_endpoints(cl, cm, path, diag);
    const Where& pw = cm.protocol.in_file() ? cm.protocol : cm.self;
    if (cl.protocol == UpstreamProtocol::kH2 && !cl.tls.enabled)
      diag.error(pw, path +
                         ": protocol h2 is HTTP/2 over TLS (ALPN h2) and needs 'tls: {}' (with its "
                         "ca or verify settings); for cleartext HTTP/2 with prior knowledge use "
                         "'protocol: h2c'");
    if (cl.protocol == UpstreamProtocol::kH2c && cl.tls.enabled)
      diag.error(pw, path +
                         ": protocol h2c is cleartext HTTP/2 and cannot be used with 'tls'; for "
                         "HTTP/2 over TLS use 'protocol: h2'");
    if (cl.outlier.base_ejection > cl.outlier.max_ejection)
      diag.error(cm.outlier, path + ".outlier: base_ejection (" +
                                 format_duration(cl.outlier.base_ejection) +
                                 ") is longer than max_ejection (" +
                                 format_duration(cl.outlier.max_ejection) + ")");
  }
}

void warn(const Config& c, const ConfigMarks& m, Diagnostics& diag) {
  bool routes_known = m.listeners_ok;
  for (const auto& lm : m.listener) {
    routes_known = routes_known && lm.routes_ok;
    for (const auto& rm : lm.route) routes_known = routes_known && rm.cluster.ok;
  }
  // A route to a missing cluster is an error already; "unused" would be noise beside it.
  for (const auto& l : c.listeners)
    for (const auto& r : l.routes) routes_known = routes_known && c.find_cluster(r.cluster);
  if (routes_known) {
    for (size_t i = 0; i < c.clusters.size(); ++i) {
      bool used = false;
      for (const auto& l : c.listeners)
        for (const auto& r : l.routes) used = used || r.cluster == c.clusters[i].name;
      if (!used && m.cluster[i].name.ok)
        diag.warning(m.cluster[i].name.where,
                     "no route uses cluster '" + c.clusters[i].name + "': it gets no requests");
    }
  }
  for (size_t i = 0; i < c.clusters.size(); ++i) {
    const ClusterTls& tls = c.clusters[i].tls;
    if (!tls.enabled || tls.verify) continue;
    diag.warning(m.cluster[i].tls_verify,
                 "cluster '" + c.clusters[i].name +
                     "': TLS verification is off (tls.verify: false): any certificate is "
                     "accepted, so anyone on the path can pose as the endpoints; only for tests" +
                     (tls.ca.empty() ? "" : " (tls.ca is not used)"));
  }
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const ListenerTls& tls = c.listeners[i].tls;
    if (tls.enabled && !tls.ciphers.empty() && tls.min_version == "1.3")
      diag.warning(m.listener[i].tls_ciphers,
                   listener_path(c, m, i) +
                       ".tls.ciphers: not used with min_version '1.3' (the list is for TLS 1.2 "
                       "only)");
  }
  const DrainSettings& d = c.drain;
  if (d.delay + d.close_spread > d.budget)
    diag.warning(m.drain, "drain: delay (" + format_duration(d.delay) + ") + close_spread (" +
                              format_duration(d.close_spread) + ") exceed the budget (" +
                              format_duration(d.budget) +
                              "): WebSocket sessions and gRPC calls still open at the budget "
                              "are cut without a close frame or a grpc-status");
}

}  // namespace

void validate_config(const Config& config, const ConfigMarks& marks, Diagnostics& diag) {
  check_listeners(config, marks, diag);
  check_clusters(config, marks, diag);
  check_routes(config, marks, diag);
  warn(config, marks, diag);
}

}  // namespace sluice
