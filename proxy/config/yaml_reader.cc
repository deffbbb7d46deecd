// Reads a parsed YAML document into a Config: every key, every type and every value is checked
// here (the tls sections in tls_reader.cc) and each problem is reported at its node; checks
// across settings are in validate.cc.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "config/client_guard_reader.h"
#include "config/config_marks.h"
#include "config/field_reader.h"
#include "config/guard_reader.h"
#include "config/setting_values.h"
#include "config/tls_reader.h"
#include "http/upgrade.h"

namespace sluice {
namespace {

const std::vector<std::string> kRootKeys{"admin",           "workers",    "listeners", "clusters",
                                         "limits",          "drain",      "log",       "reload",
                                         "trusted_proxies", "rate_limits"};
const std::vector<std::string> kAdminKeys{"address", "token_file"};
const std::vector<std::string> kListenerKeys{
    "name",     "address", "routes", "cluster",     "drain",           "max_connections",
    "upgrades", "http2",   "tls",    "maintenance", "trusted_proxies", "ip_rules"};
const std::vector<std::string> kListenerHttp2Keys{
    "enabled",           "max_concurrent_streams", "initial_stream_window",
    "connection_window", "max_stream_errors",      "alpn"};
const std::vector<std::string> kRouteKeys{"host", "prefix", "cluster"};
const std::vector<std::string> kClusterKeys{"name",
                                            "endpoints",
                                            "load_balancing",
                                            "protocol",
                                            "connect_timeout",
                                            "response_timeout",
                                            "dns_refresh",
                                            "pool",
                                            "outlier",
                                            "readiness",
                                            "tls",
                                            "circuit_breaker",
                                            "limits",
                                            "retry_budget"};
const std::vector<std::string> kPoolKeys{
    "max_idle",        "idle_timeout",   "max_requests_per_connection",
    "max_connections", "max_connecting", "queue_size",
    "queue_timeout"};
const std::vector<std::string> kOutlierKeys{"consecutive_failures", "base_ejection", "max_ejection",
                                            "max_ejection_percent"};
const std::vector<std::string> kLimitsKeys{
    "max_header_bytes",           "max_body_bytes",   "header_timeout", "idle_timeout",
    "max_connections_per_worker", "max_header_fields"};
// ws_close_spread: the old name of close_spread (an alias).
const std::vector<std::string> kDrainKeys{"delay",           "budget",           "close_spread",
                                          "ws_close_spread", "ws_close_timeout", "wait_for_app"};
const std::vector<std::string> kLogKeys{"format", "level", "access"};
const std::vector<std::string> kReloadKeys{"watch"};

class YamlReader : public FieldReader {
 public:
  YamlReader(Config& config, ConfigMarks& marks, Diagnostics& diag)
      : FieldReader(diag), config_(config), marks_(marks) {}

  void read(const YAML::Node& root) {
    if (root.IsNull()) return;  // an empty file: every default
    if (!root.IsMap()) {
      Where w = where_of(root);
      if (!w.in_file()) w = Where{1, 1, {}};
      diag_.error(w, "expected a map of settings (" + quoted_list(kRootKeys) +
                         ") at the top, got " + describe(root));
      return;
    }
    Fields f(root, "", kRootKeys, diag_,
             {{"admin", kAdminKeys},
              {"limits", kLimitsKeys},
              {"drain", kDrainKeys},
              {"log", kLogKeys},
              {"reload", kReloadKeys}});
    if (auto* admin = map_field(f, "admin")) read_admin(*admin);
    if (auto* w = f.get("workers")) number(*w, config_.workers, 0, kMaxWorkers);
    if (auto* l = f.get("listeners")) read_listeners(*l);
    if (auto* c = f.get("clusters")) read_clusters(*c);
    if (auto* limits = map_field(f, "limits")) read_limits(*limits);
    if (auto* drain = map_field(f, "drain")) read_drain(*drain);
    if (auto* log = map_field(f, "log")) read_log(*log);
    if (auto* reload = map_field(f, "reload")) read_reload(*reload);
    read_root_guard(f, config_, diag_);  // after the listeners: rules name them
  }

 private:
  // ---- sections ----

  void read_admin(const Field& section) {
    Fields f(section.value, section.path, kAdminKeys, diag_);
    if (const Field* a = f.get("address")) {
      marks_.admin_address.where = a->where();
      marks_.admin_address.ok = address(*a, config_.admin.address, true);
    }
    if (const Field* t = f.get("token_file")) {
      marks_.token_file = t->where();
      std::string s;
      if (scalar(*t, s, "a file name (the file holds the admin token)"))
        config_.admin.token_file = s;
    }
  }

  void read_listeners(const Field& f) {
    marks_.listeners = where_of(f.key);
    marks_.listeners_from_file = true;
    config_.listeners.clear();
    marks_.listener.clear();
    if (f.value.IsNull()) return;
    if (!expect(f, f.value.IsSequence(), "a list of listeners")) {
      marks_.listeners_ok = false;
      return;
    }
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      std::string path = element_path("listeners", i, node);
      if (!node.IsMap()) {
        diag_.error(where_of(node),
                    path + ": expected a map (name, address, routes), got " + describe(node));
        marks_.listeners_ok = false;
        continue;
      }
      ListenerConfig l;
      ListenerMarks m;
      read_listener(node, path, l, m);
      config_.listeners.push_back(std::move(l));
      marks_.listener.push_back(std::move(m));
    }
  }

  void read_listener(const YAML::Node& node, const std::string& path, ListenerConfig& l,
                     ListenerMarks& m) {
    m.self = where_of(node);
    Fields f(node, path, kListenerKeys, diag_,
             {{"tls", kListenerTlsKeys},
              {"http2", kListenerHttp2Keys},
              {"maintenance", kMaintenanceKeys},
              {"ip_rules", kIpRulesKeys}});
    if (const Field* n = f.get("name")) {
      m.name.where = n->where();
      m.name.ok = name(*n, l.name);
    } else {
      diag_.error(m.self, path + ": a listener needs a 'name'");
      m.name = MarkedValue{m.self, false};
    }
    read_listener_tls(f, l.tls, m, diag_);
    if (const Field* a = f.get("address")) {
      m.address.where = a->where();
      m.address.ok = address(*a, l.address, true);
    } else {
      m.address.where = m.self;  // the default address, 0.0.0.0:8080
    }
    boolean(f, "drain", l.drain);
    count(f, "max_connections", l.max_connections);
    if (const Field* u = f.get("upgrades")) read_upgrades(*u, l);
    if (const Field* h = map_field(f, "http2")) read_http2(*h, l.http2);
    read_listener_maintenance(f, l.maintenance, diag_);
    read_listener_guard(f, l, diag_);

    const Field* routes = f.get("routes");
    const Field* shorthand = f.get("cluster");
    if (routes && shorthand)
      diag_.error(where_of(shorthand->key),
                  path +
                      ": give either 'cluster' (a shorthand for one catch-all route) or "
                      "'routes', not both");
    if (routes) {
      m.routes = where_of(routes->key);
      read_routes(*routes, l, m);
    } else if (shorthand) {
      m.routes = where_of(shorthand->key);
      RouteConfig r;
      RouteMarks rm{where_of(shorthand->key), {shorthand->where(), true}};
      rm.cluster.ok = name(*shorthand, r.cluster);
      l.routes.push_back(std::move(r));
      m.route.push_back(std::move(rm));
    } else {
      m.routes = m.self;
    }
  }

  // A list of protocol names; stored in lower case (they are compared case-insensitively).
  void read_upgrades(const Field& f, ListenerConfig& l) {
    static const char* kExpected = "a list of protocol names such as [websocket]";
    if (f.value.IsNull()) {
      l.upgrades.clear();
      return;
    }
    if (!expect(f, f.value.IsSequence(), kExpected)) return;
    std::vector<std::string> out;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      Field item{f.path + "[" + std::to_string(i) + "]", f.key, f.value[i]};
      std::string s;
      if (!scalar(item, s, "a protocol name such as websocket")) {
        ok = false;
        continue;
      }
      if (!is_valid_upgrade_protocol(s)) {
        ok = invalid(item, s,
                     "a protocol name as the Upgrade header gives it, such as websocket (letters, "
                     "digits and !#$%&'*+-.^_`|~; no version)",
                     s.find('/') != std::string::npos ? ": versions are not compared" : "");
        continue;
      }
      std::string lower = s;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (std::find(out.begin(), out.end(), lower) != out.end()) {
        ok = invalid(item, s, "each protocol once", ": listed twice");
        continue;
      }
      s = std::move(lower);
      if (s == "h2c")
        diag_.warning(item.where(),
                      item.path +
                          ": forwarding 'Upgrade: h2c' lets a client that the app "
                          "switches to HTTP/2 send requests past sluice's per-request "
                          "controls (h2c smuggling)");
      out.push_back(std::move(s));
    }
    if (ok) l.upgrades = std::move(out);
  }

  // listeners[].http2: the SETTINGS values within what RFC 9113 §6.5.2 allows, and ALPN names
  // sluice speaks. (`alpn` does nothing on a plain listener, and h2 is left out of it while
  // `enabled` is false: no warning, as --print-config writes the list for every listener.)
  void read_http2(const Field& section, ListenerHttp2& h) {
    Fields f(section.value, section.path, kListenerHttp2Keys, diag_);
    boolean(f, "enabled", h.enabled);
    if (const Field* m = f.get("max_concurrent_streams"))
      number(*m, h.max_concurrent_streams, 1, 100000);
    window(f, "initial_stream_window", h.initial_stream_window, 1);
    window(f, "connection_window", h.connection_window, 65535);
    if (const Field* m = f.get("max_stream_errors")) number(*m, h.max_stream_errors, 1, 1000000);
    if (const Field* a = f.get("alpn")) {
      static const char* kExpected = "a list of 'h2' and 'http/1.1', such as [h2, http/1.1]";
      if (!expect(*a, a->value.IsSequence() && a->value.size() > 0, kExpected)) return;
      std::vector<std::string> out;
      bool ok = true;
      for (size_t i = 0; i < a->value.size(); ++i) {
        Field item{a->path + "[" + std::to_string(i) + "]", a->key, a->value[i]};
        std::string s;
        if (!scalar(item, s, kExpected)) {
          ok = false;
        } else if (s != "h2" && s != "http/1.1") {
          ok = invalid(item, s, "'h2' or 'http/1.1'");
        } else if (std::find(out.begin(), out.end(), s) != out.end()) {
          ok = invalid(item, s, "each protocol once", ": listed twice");
        } else {
          out.push_back(std::move(s));
        }
      }
      if (!ok) return;
      h.alpn = std::move(out);
    }
  }

  // A flow-control window: a size from `min` to 2^31-1 bytes.
  void window(const Fields& fields, std::string_view key, uint32_t& out, uint64_t min) {
    const Field* f = fields.get(key);
    std::string s;
    const std::string expected =
        "a size from " + std::to_string(min) + " to 2147483647 bytes (2GiB - 1), such as 64KiB";
    if (!f || !scalar(*f, s, expected.c_str())) return;
    auto v = parse_size(s);
    if (!v || *v < min || *v > 0x7fffffffu) {
      invalid(*f, s, expected);
      return;
    }
    out = static_cast<uint32_t>(*v);
  }

  void read_routes(const Field& f, ListenerConfig& l, ListenerMarks& m) {
    if (f.value.IsNull()) return;
    if (!expect(f, f.value.IsSequence(), "a list of routes")) {
      m.routes_ok = false;
      return;
    }
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      std::string path = f.path + "[" + std::to_string(i) + "]";
      if (!node.IsMap()) {
        diag_.error(where_of(node), path +
                                        ": expected a map such as {prefix: /api, cluster: api}, "
                                        "got " +
                                        describe(node));
        m.routes_ok = false;
        continue;
      }
      RouteConfig r;
      RouteMarks rm{where_of(node), {where_of(node), false}};
      Fields rf(node, path, kRouteKeys, diag_);
      if (const Field* h = rf.get("host")) {
        std::string s;
        if (scalar(*h, s, kExpectedHostPattern)) {
          if (s == "*")
            invalid(*h, s, kExpectedHostPattern, ": leave 'host' out to match any host");
          else if (s.find(':') != std::string::npos)
            invalid(*h, s, kExpectedHostPattern, ": the port is ignored when matching");
          else if (!is_valid_host_pattern(s))
            invalid(*h, s, kExpectedHostPattern);
          else
            r.host = s;
        }
      }
      if (const Field* p = rf.get("prefix")) {
        std::string s;
        if (scalar(*p, s, kExpectedPrefix)) {
          if (!is_valid_prefix(s))
            invalid(*p, s, kExpectedPrefix);
          else
            r.prefix = s;
        }
      }
      if (const Field* c = rf.get("cluster")) {
        rm.cluster.where = c->where();
        rm.cluster.ok = name(*c, r.cluster);
      } else {
        diag_.error(rm.self, path + ": a route needs a 'cluster' to send its requests to");
      }
      l.routes.push_back(std::move(r));
      m.route.push_back(std::move(rm));
    }
  }

  void read_clusters(const Field& f) {
    marks_.clusters = where_of(f.key);
    marks_.clusters_from_file = true;
    config_.clusters.clear();
    marks_.cluster.clear();
    if (f.value.IsNull()) return;
    if (!expect(f, f.value.IsSequence(), "a list of clusters")) {
      marks_.clusters_ok = false;
      marks_.all_cluster_names_ok = false;
      return;
    }
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      std::string path = element_path("clusters", i, node);
      if (!node.IsMap()) {
        diag_.error(where_of(node),
                    path + ": expected a map (name, endpoints, ...), got " + describe(node));
        marks_.clusters_ok = false;
        marks_.all_cluster_names_ok = false;
        continue;
      }
      ClusterConfig c;
      ClusterMarks m;
      read_cluster(node, path, c, m);
      if (!m.name.ok) marks_.all_cluster_names_ok = false;
      config_.clusters.push_back(std::move(c));
      marks_.cluster.push_back(std::move(m));
    }
  }

  void read_cluster(const YAML::Node& node, const std::string& path, ClusterConfig& c,
                    ClusterMarks& m) {
    m.self = where_of(node);
    Fields f(node, path, kClusterKeys, diag_,
             {{"pool", kPoolKeys},
              {"outlier", kOutlierKeys},
              {"tls", kClusterTlsKeys},
              {"circuit_breaker", kCircuitBreakerKeys},
              {"limits", kClusterLimitsKeys},
              {"retry_budget", kRetryBudgetKeys}});
    if (const Field* n = f.get("name")) {
      m.name.where = n->where();
      m.name.ok = name(*n, c.name);
    } else {
      diag_.error(m.self, path + ": a cluster needs a 'name'");
      m.name = MarkedValue{m.self, false};
    }
    c.endpoints.clear();
    if (const Field* e = f.get("endpoints")) {
      m.endpoints = where_of(e->key);
      if (e->value.IsSequence()) {
        for (size_t i = 0; i < e->value.size(); ++i) {
          Field item{e->path + "[" + std::to_string(i) + "]", e->key, e->value[i]};
          HostPort hp;
          if (address(item, hp, false))
            c.endpoints.push_back(hp);
          else
            m.endpoints_ok = false;
        }
      } else if (!e->value.IsNull()) {
        expect(*e, false, "a list of HOST:PORT such as [127.0.0.1:4000]");
        m.endpoints_ok = false;
      }
    } else {
      m.endpoints = m.self;
    }
    enumeration(f, "load_balancing", c.load_balancing, parse_load_balancing,
                load_balancing_names());
    if (const Field* p = f.get("protocol")) m.protocol = p->where();
    enumeration(f, "protocol", c.protocol, parse_upstream_protocol, upstream_protocol_names());
    duration(f, "connect_timeout", c.connect_timeout);
    duration(f, "response_timeout", c.response_timeout);
    if (const Field* d = f.get("dns_refresh");
        d && duration(f, "dns_refresh", c.dns_refresh) && c.dns_refresh.count() == 0)
      diag_.error(d->where(), d->path + ": must be above 0 (DNS names are re-resolved this often)");
    boolean(f, "readiness", c.readiness);
    if (const Field* p = map_field(f, "pool")) {
      Fields pf(p->value, p->path, kPoolKeys, diag_);
      count(pf, "max_idle", c.pool.max_idle);
      duration(pf, "idle_timeout", c.pool.idle_timeout);
      count(pf, "max_requests_per_connection", c.pool.max_requests_per_connection);
      count(pf, "max_connections", c.pool.max_connections, 1);
      count(pf, "max_connecting", c.pool.max_connecting, 1);
      count(pf, "queue_size", c.pool.queue_size);
      duration(pf, "queue_timeout", c.pool.queue_timeout);
    }
    if (const Field* o = map_field(f, "outlier")) {
      m.outlier = where_of(o->key);
      Fields of(o->value, o->path, kOutlierKeys, diag_);
      count(of, "consecutive_failures", c.outlier.consecutive_failures);
      duration(of, "base_ejection", c.outlier.base_ejection);
      duration(of, "max_ejection", c.outlier.max_ejection);
      if (const Field* p = of.get("max_ejection_percent"))
        number(*p, c.outlier.max_ejection_percent, 0, 100);
    }
    read_cluster_tls(f, c.tls, m, diag_);
    read_cluster_guards(f, c, diag_);
  }

  void read_limits(const Field& section) {
    Fields f(section.value, section.path, kLimitsKeys, diag_);
    size(f, "max_header_bytes", config_.limits.max_header_bytes);
    size(f, "max_body_bytes", config_.limits.max_body_bytes);
    duration(f, "header_timeout", config_.limits.header_timeout);
    duration(f, "idle_timeout", config_.limits.idle_timeout);
    count(f, "max_connections_per_worker", config_.limits.max_connections_per_worker);
    if (const Field* m = f.get("max_header_fields"))
      number(*m, config_.limits.max_header_fields, 1, 10000);
  }

  void read_drain(const Field& section) {
    marks_.drain = where_of(section.key);
    Fields f(section.value, section.path, kDrainKeys, diag_);
    duration(f, "delay", config_.drain.delay);
    duration(f, "budget", config_.drain.budget);
    // Both names: close_spread wins (a Helm chart's defaults may carry the old name while
    // the user's values set the new one).
    if (f.get("close_spread") && f.get("ws_close_spread")) {
      diag_.warning(where_of(f.get("ws_close_spread")->key),
                    "drain: ws_close_spread is the old name of close_spread, which is also given "
                    "and wins");
    }
    duration(f, "ws_close_spread", config_.drain.close_spread);
    duration(f, "close_spread", config_.drain.close_spread);
    duration(f, "ws_close_timeout", config_.drain.ws_close_timeout);
    boolean(f, "wait_for_app", config_.drain.wait_for_app);
  }

  void read_log(const Field& section) {
    Fields f(section.value, section.path, kLogKeys, diag_);
    enumeration(f, "format", config_.log.format, parse_log_format, log_format_names());
    enumeration(f, "level", config_.log.level, parse_log_level, log_level_names());
    boolean(f, "access", config_.log.access);
  }

  void read_reload(const Field& section) {
    Fields f(section.value, section.path, kReloadKeys, diag_);
    boolean(f, "watch", config_.reload.watch);
  }

  // "listeners[ingress]" when the element has a usable name, else "listeners[0]".
  static std::string element_path(const char* list, size_t i, const YAML::Node& node) {
    if (node.IsMap()) {
      const YAML::Node n = node["name"];  // a const lookup: never adds the key
      if (n.IsDefined() && n.IsScalar() && is_valid_name(n.Scalar()))
        return std::string(list) + "[" + n.Scalar() + "]";
    }
    return std::string(list) + "[" + std::to_string(i) + "]";
  }

  Config& config_;
  ConfigMarks& marks_;
};

}  // namespace

void read_config_yaml(const YAML::Node& root, Config& config, ConfigMarks& marks,
                      Diagnostics& diag) {
  YamlReader(config, marks, diag).read(root);
}

}  // namespace sluice
