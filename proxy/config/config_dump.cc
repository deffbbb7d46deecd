// The effective configuration written back in the file's own shape: as YAML for --print-config
// (loadable again) and as JSON for the admin API. One builder makes both, so they never differ.
#include <yaml-cpp/yaml.h>

#include <charconv>

#include "config/client_guard_reader.h"
#include "config/config_file.h"
#include "config/guard_reader.h"
#include "config/setting_values.h"

namespace sluice {
namespace {

bool is_default(const MaintenanceSettings& m) {
  static const MaintenanceSettings defaults;
  return m == defaults;
}

template <typename Json>
Json build(const Config& c) {
  Json j = Json::object();
  j["admin"] = Json::object();
  j["admin"]["address"] = c.admin.address.str();
  j["admin"]["token_file"] = c.admin.token_file;  // the token itself is never shown
  j["workers"] = c.workers;

  j["listeners"] = Json::array();
  for (const auto& l : c.listeners) {
    Json lj = Json::object();
    lj["name"] = l.name;
    lj["address"] = l.address.str();
    lj["drain"] = l.drain;
    lj["max_connections"] = l.max_connections;
    lj["upgrades"] = Json::array();
    for (const auto& u : l.upgrades) lj["upgrades"].push_back(u);
    Json hj = Json::object();
    hj["enabled"] = l.http2.enabled;
    hj["max_concurrent_streams"] = l.http2.max_concurrent_streams;
    hj["initial_stream_window"] = format_size(l.http2.initial_stream_window);
    hj["connection_window"] = format_size(l.http2.connection_window);
    hj["max_stream_errors"] = l.http2.max_stream_errors;
    hj["alpn"] = Json::array();
    for (const auto& a : l.http2.alpn) hj["alpn"].push_back(a);
    lj["http2"] = std::move(hj);
    if (l.tls.enabled) {  // file names only: the runtime reads the PEM files
      Json tj = Json::object();
      if (l.tls.certificates.size() == 1) {
        tj["cert"] = l.tls.certificates[0].cert;
        tj["key"] = l.tls.certificates[0].key;
      } else {
        tj["certificates"] = Json::array();
        for (const auto& cert : l.tls.certificates) {
          Json cj = Json::object();
          cj["cert"] = cert.cert;
          cj["key"] = cert.key;
          tj["certificates"].push_back(std::move(cj));
        }
      }
      tj["client_ca"] = l.tls.client_ca;
      tj["handshake_timeout"] = format_duration(l.tls.handshake_timeout);
      tj["min_version"] = l.tls.min_version;
      tj["ciphers"] = l.tls.ciphers;
      lj["tls"] = std::move(tj);
    }
    if (!is_default(l.maintenance)) {  // like tls: shown when set
      const MaintenanceSettings& m = l.maintenance;
      Json mj = Json::object();
      mj["mode"] = maintenance_mode_name(m.mode);
      mj["retry_after"] = format_duration(m.retry_after);
      mj["message"] = m.message;
      mj["allow_methods"] = Json::array();
      for (const auto& method : m.allow_methods) mj["allow_methods"].push_back(method);
      mj["allow_paths"] = Json::array();
      for (const auto& p : m.allow_paths) {
        Json pj = Json::object();
        pj["prefix"] = p.prefix;
        pj["methods"] = Json::array();
        for (const auto& method : p.methods) pj["methods"].push_back(method);
        mj["allow_paths"].push_back(std::move(pj));
      }
      mj["body"] = m.body;
      mj["content_type"] = m.content_type;
      lj["maintenance"] = std::move(mj);
    }
    dump_listener_guard(lj, l);
    lj["routes"] = Json::array();
    for (const auto& r : l.routes) {
      Json rj = Json::object();
      if (!r.host.empty()) rj["host"] = r.host;  // absent = any host, any path
      if (!r.prefix.empty()) rj["prefix"] = r.prefix;
      rj["cluster"] = r.cluster;
      lj["routes"].push_back(std::move(rj));
    }
    j["listeners"].push_back(std::move(lj));
  }

  j["clusters"] = Json::array();
  for (const auto& cl : c.clusters) {
    Json cj = Json::object();
    cj["name"] = cl.name;
    cj["endpoints"] = Json::array();
    for (const auto& e : cl.endpoints) cj["endpoints"].push_back(e.str());
    cj["load_balancing"] = load_balancing_name(cl.load_balancing);
    cj["protocol"] = upstream_protocol_name(cl.protocol);
    cj["connect_timeout"] = format_duration(cl.connect_timeout);
    cj["response_timeout"] = format_duration(cl.response_timeout);
    cj["dns_refresh"] = format_duration(cl.dns_refresh);
    cj["readiness"] = cl.readiness;
    Json pool = Json::object();
    pool["max_idle"] = cl.pool.max_idle;
    pool["idle_timeout"] = format_duration(cl.pool.idle_timeout);
    pool["max_requests_per_connection"] = cl.pool.max_requests_per_connection;
    pool["max_connections"] = cl.pool.max_connections;
    pool["max_connecting"] = cl.pool.max_connecting;
    pool["queue_size"] = cl.pool.queue_size;
    pool["queue_timeout"] = format_duration(cl.pool.queue_timeout);
    cj["pool"] = std::move(pool);
    Json outlier = Json::object();
    outlier["consecutive_failures"] = cl.outlier.consecutive_failures;
    outlier["base_ejection"] = format_duration(cl.outlier.base_ejection);
    outlier["max_ejection"] = format_duration(cl.outlier.max_ejection);
    outlier["max_ejection_percent"] = cl.outlier.max_ejection_percent;
    cj["outlier"] = std::move(outlier);
    if (cl.tls.enabled) {
      Json tj = Json::object();
      tj["verify"] = cl.tls.verify;
      tj["ca"] = cl.tls.ca;
      tj["sni"] = cl.tls.sni;
      tj["cert"] = cl.tls.cert;
      tj["key"] = cl.tls.key;
      tj["min_version"] = cl.tls.min_version;
      cj["tls"] = std::move(tj);
    }
    if (cl.circuit_breaker.enabled) {
      const CircuitBreakerSettings& b = cl.circuit_breaker;
      Json bj = Json::object();
      bj["window"] = format_duration(b.window);
      bj["min_requests"] = b.min_requests;
      bj["failure_ratio"] = b.failure_ratio;
      bj["failure_statuses"] = Json::array();
      for (int code : b.failure_statuses) bj["failure_statuses"].push_back(code);
      bj["open_for"] = format_duration(b.open_for);
      bj["trial_requests"] = b.trial_requests;
      cj["circuit_breaker"] = std::move(bj);
    }
    Json caps = Json::object();
    caps["max_requests"] = cl.caps.max_requests;
    caps["max_pending"] = cl.caps.max_pending;
    cj["limits"] = std::move(caps);
    Json budget = Json::object();
    budget["percent"] = cl.retry_budget.percent;
    budget["min_retries"] = cl.retry_budget.min_retries;
    cj["retry_budget"] = std::move(budget);
    j["clusters"].push_back(std::move(cj));
  }

  Json limits = Json::object();
  limits["max_header_bytes"] = format_size(c.limits.max_header_bytes);
  limits["max_body_bytes"] = format_size(c.limits.max_body_bytes);
  limits["header_timeout"] = format_duration(c.limits.header_timeout);
  limits["idle_timeout"] = format_duration(c.limits.idle_timeout);
  limits["max_connections_per_worker"] = c.limits.max_connections_per_worker;
  limits["max_header_fields"] = c.limits.max_header_fields;
  j["limits"] = std::move(limits);

  Json drain = Json::object();
  drain["delay"] = format_duration(c.drain.delay);
  drain["budget"] = format_duration(c.drain.budget);
  drain["close_spread"] = format_duration(c.drain.close_spread);
  drain["ws_close_timeout"] = format_duration(c.drain.ws_close_timeout);
  drain["wait_for_app"] = c.drain.wait_for_app;
  j["drain"] = std::move(drain);

  Json log = Json::object();
  log["format"] = log_format_name(c.log.format);
  log["level"] = log_level_name(c.log.level);
  log["access"] = c.log.access;
  j["log"] = std::move(log);

  Json reload = Json::object();
  reload["watch"] = c.reload.watch;
  j["reload"] = std::move(reload);
  dump_root_guard(j, c);
  return j;
}

// "1.2": a YAML 1.1 reader (PyYAML) would take it for a number, so it is written quoted.
bool looks_like_a_number(const std::string& s) {
  size_t dot = s.find('.');
  auto digits = [](std::string_view d) {
    return !d.empty() && d.find_first_not_of("0123456789") == std::string_view::npos;
  };
  return dot != std::string::npos && digits(std::string_view(s).substr(0, dot)) &&
         digits(std::string_view(s).substr(dot + 1));
}

bool all_scalars(const nlohmann::ordered_json& j) {
  for (const auto& v : j)
    if (v.is_structured()) return false;
  return true;
}

// Lists of plain values and maps of plain values inside lists (routes) are written on one line.
void emit(YAML::Emitter& out, const nlohmann::ordered_json& j, bool in_list) {
  if (j.is_object()) {
    if (in_list && all_scalars(j)) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [key, value] : j.items()) {
      out << YAML::Key << key << YAML::Value;
      emit(out, value, false);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    if (all_scalars(j)) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& v : j) emit(out, v, true);
    out << YAML::EndSeq;
  } else if (j.is_boolean()) {
    out << j.get<bool>();
  } else if (j.is_number_unsigned()) {
    out << j.get<uint64_t>();
  } else if (j.is_number_integer()) {
    out << j.get<int64_t>();
  } else if (j.is_number_float()) {  // the shortest text that reads back as the same double
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, j.get<double>());
    out << std::string(buf, r.ptr);
  } else {
    const std::string s = j.get<std::string>();
    // "off" (maintenance.mode): a YAML 1.1 reader takes it for false; quoted like "1.2".
    if (looks_like_a_number(s) || s == "off" || s == "on") out << YAML::DoubleQuoted;
    out << s;
  }
}

}  // namespace

std::string dump_config_yaml(const Config& config) {
  YAML::Emitter out;
  emit(out, build<nlohmann::ordered_json>(config), false);
  return "# sluice: the effective configuration (defaults, file, environment and flags)\n" +
         std::string(out.c_str()) + "\n";
}

nlohmann::json config_to_json(const Config& config) {
  return build<nlohmann::json>(config);
}

}  // namespace sluice
