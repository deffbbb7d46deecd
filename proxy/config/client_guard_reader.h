#pragma once
// The configuration of issue #17's protections: `trusted_proxies` (top level and per listener),
// a listener's `ip_rules`, and the top-level `rate_limits` rules. Part of the YAML reader; also
// writes them back for --print-config and GET /config (guard_dump).
#include <string>
#include <vector>

#include "config/config_marks.h"
#include "config/field_reader.h"
#include "core/guard_config.h"

namespace sluice {

extern const std::vector<std::string> kIpRulesKeys;
extern const std::vector<std::string> kRateLimitRuleKeys;

// A listener's `trusted_proxies` and `ip_rules`, when present.
void read_listener_guard(const Fields& listener, ListenerConfig& l, Diagnostics& diag);
// The top level's `trusted_proxies` and `rate_limits` (after the listeners: a rule's
// `listener` must name one).
void read_root_guard(const Fields& root, Config& config, Diagnostics& diag);

// The settings above in the file's shape (Json is nlohmann::json or ordered_json).
template <typename Json>
Json networks_json(const std::vector<IpNetwork>& list) {
  Json a = Json::array();
  for (const IpNetwork& n : list) a.push_back(n.str());
  return a;
}

template <typename Json>
void dump_listener_guard(Json& lj, const ListenerConfig& l) {
  if (l.trusted_proxies) lj["trusted_proxies"] = networks_json<Json>(*l.trusted_proxies);
  if (!(l.ip_rules == IpRules{})) {
    Json r = Json::object();
    r["allow"] = networks_json<Json>(l.ip_rules.allow);
    r["deny"] = networks_json<Json>(l.ip_rules.deny);
    r["action"] = l.ip_rules.action == IpRules::Action::kClose ? "close" : "403";
    r["match"] = l.ip_rules.match == IpRules::Match::kClient ? "client" : "peer";
    lj["ip_rules"] = std::move(r);
  }
}

template <typename Json>
void dump_root_guard(Json& j, const Config& c) {
  j["trusted_proxies"] = networks_json<Json>(c.trusted_proxies);
  j["rate_limits"] = Json::array();
  for (const RateLimitRule& r : c.rate_limits) {
    Json rj = Json::object();
    rj["name"] = r.name;
    if (!r.listener.empty()) rj["listener"] = r.listener;
    if (!r.host.empty()) rj["host"] = r.host;
    if (!r.prefix.empty()) rj["prefix"] = r.prefix;
    if (!r.methods.empty()) {
      rj["methods"] = Json::array();
      for (const std::string& m : r.methods) rj["methods"].push_back(m);
    }
    rj["key"] = r.key == RateLimitKey::kClientIp ? "client_ip"
                : r.key == RateLimitKey::kHeader ? "header"
                                                 : "none";
    if (r.key == RateLimitKey::kHeader) rj["header"] = r.header;
    rj["rate"] = format_rate(r.requests, r.period);
    if (r.burst) rj["burst"] = r.burst;
    rj["max_keys"] = r.max_keys;
    rj["dry_run"] = r.dry_run;
    j["rate_limits"].push_back(std::move(rj));
  }
}

}  // namespace sluice
