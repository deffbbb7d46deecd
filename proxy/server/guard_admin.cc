#include "server/guard_admin.h"

#include <llhttp.h>

#include <chrono>
#include <cmath>
#include <ctime>

#include "core/config.h"
#include "core/log.h"
#include "http/message.h"

namespace sluice {

namespace {

// The longest ban: a year (longer ones are a firewall's job, and the sum stays far from overflow).
constexpr uint64_t kMaxBanMs = 366ull * 24 * 3600 * 1000;

AdminResponse json_answer(int status, const nlohmann::json& j) {
  return AdminResponse{status, "application/json",
                       j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
}

AdminResponse error(int status, const std::string& why) {
  return json_answer(status, nlohmann::json{{"error", why}});
}

std::string utc_text(double seconds_from_now) {
  const auto at = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(seconds_from_now * 1000));
  const std::time_t t = std::chrono::system_clock::to_time_t(at);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json ban_json(const BanList::Ban& b, uint64_t now_ms) {
  const double left = static_cast<double>(b.expires_ms - now_ms) / 1000.0;
  return nlohmann::json{{"address", b.network.str()},
                        {"expires_in_seconds", std::round(left * 10) / 10},
                        {"expires_at", utc_text(left)}};
}

// The body as a JSON object, or why not.
bool body_object(const AdminRequest& req, nlohmann::json& out, std::string& why) {
  out = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded() || !out.is_object()) {
    why =
        "the body must be a JSON object such as {\"address\": \"192.0.2.7\", \"duration\": "
        "\"10m\"}";
    return false;
  }
  return true;
}

bool network_of(const nlohmann::json& v, IpNetwork& out, std::string& why) {
  if (!v.is_string()) {
    why = "'address' must be a string: an IP address or a network such as 10.0.0.0/24";
    return false;
  }
  std::string reason;
  auto n = parse_network(v.get<std::string>(), &reason);
  if (!n) {
    why = "'address': '" + v.get<std::string>() + "': " + reason;
    return false;
  }
  out = *n;
  return true;
}

}  // namespace

AdminResponse answer_bans(BanList& bans, const AdminRequest& req) {
  const uint64_t now = guard_now_ms();
  const uint8_t method = req.head.method;
  if (method == HTTP_GET || method == HTTP_HEAD) {
    nlohmann::json list = nlohmann::json::array();
    for (const BanList::Ban& b : bans.list(now)) list.push_back(ban_json(b, now));
    return json_answer(200, nlohmann::json{{"bans", list}});
  }
  IpNetwork network;
  std::string why;
  if (method == HTTP_DELETE) {
    if (req.path.size() > 6) {  // "/bans/" + ADDRESS
      std::string reason;
      auto n = parse_network(req.path.substr(6), &reason);
      if (!n) return error(400, "'" + std::string(req.path.substr(6)) + "': " + reason);
      network = *n;
    } else {
      nlohmann::json body;
      if (!body_object(req, body, why)) return error(400, why);
      if (!body.contains("address")) return error(400, "'address' is required");
      if (!network_of(body["address"], network, why)) return error(400, why);
    }
    if (!bans.remove(network, now)) return error(404, network.str() + " is not banned");
    LOG_INFO("admin: ban of %s lifted (from %.*s)", network.str().c_str(),
             static_cast<int>(req.client_ip.size()), req.client_ip.data());
    return json_answer(200, nlohmann::json{{"lifted", network.str()}});
  }
  // POST
  nlohmann::json body;
  if (!body_object(req, body, why)) return error(400, why);
  for (const auto& [key, value] : body.items())
    if (key != "address" && key != "duration")
      return error(400, "unknown key '" + key + "' (expected 'address' and 'duration')");
  if (!body.contains("address")) return error(400, "'address' is required");
  if (!network_of(body["address"], network, why)) return error(400, why);
  if (!body.contains("duration") || !body["duration"].is_string())
    return error(400, "'duration' is required: a string such as \"10m\" or \"24h\"");
  auto d = parse_duration(body["duration"].get<std::string>());
  if (!d || d->count() <= 0 || static_cast<uint64_t>(d->count()) > kMaxBanMs)
    return error(400, "'duration': '" + body["duration"].get<std::string>() +
                          "' (expected a duration above 0 and at most 8784h, such as 10m)");
  const bool replaced = bans.add(network, now, static_cast<uint64_t>(d->count()));
  LOG_INFO("admin: %s banned for %s%s (from %.*s)", network.str().c_str(),
           format_duration(*d).c_str(), replaced ? ", replacing its ban" : "",
           static_cast<int>(req.client_ip.size()), req.client_ip.data());
  nlohmann::json j = ban_json(BanList::Ban{network, now + static_cast<uint64_t>(d->count())}, now);
  j["replaced"] = replaced;
  return json_answer(replaced ? 200 : 201, j);
}

void guard_families(const GuardFigures& f, std::vector<prometheus::MetricFamily>& out) {
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  auto metric = [](MetricType type, double v,
                   std::vector<std::pair<std::string, std::string>> labels) {
    prometheus::ClientMetric m;
    for (auto& [n, val] : labels) m.label.push_back(prometheus::ClientMetric::Label{n, val});
    if (type == MetricType::Counter) {
      m.counter.value = v;
    } else {
      m.gauge.value = v;
    }
    return m;
  };
  {
    MetricFamily fam{"sluice_ratelimit_requests_total",
                     "Requests a rate-limit rule looked at, by result",
                     MetricType::Counter,
                     {}};
    for (const GuardFigures::Rule& r : f.rules)
      for (size_t i = 0; i < 3; ++i)
        fam.metric.push_back(
            metric(MetricType::Counter, static_cast<double>(r.results[i]),
                   {{"listener", r.listener}, {"rule", r.rule}, {"result", kRateResultNames[i]}}));
    if (!fam.metric.empty()) out.push_back(std::move(fam));  // no rules: no family
  }
  out.push_back(MetricFamily{"sluice_ratelimit_keys",
                             "Keys (clients, header values) with a token bucket, all rules",
                             MetricType::Gauge,
                             {metric(MetricType::Gauge, static_cast<double>(f.keys), {})}});
  out.push_back(MetricFamily{
      "sluice_ratelimit_evictions_total",
      "Token buckets dropped for a new key because their rule had max_keys keys (least recently "
      "used first)",
      MetricType::Counter,
      {metric(MetricType::Counter, static_cast<double>(f.evictions), {})}});
  {
    MetricFamily fam{"sluice_access_denied_total",
                     "Connections and requests refused for their address, by list",
                     MetricType::Counter,
                     {}};
    for (const GuardFigures::Denied& d : f.denied)
      for (size_t i = 0; i < 3; ++i)
        fam.metric.push_back(metric(MetricType::Counter, static_cast<double>(d.lists[i]),
                                    {{"listener", d.listener}, {"list", kDenyListNames[i]}}));
    out.push_back(std::move(fam));
  }
  out.push_back(MetricFamily{"sluice_bans_active",
                             "Runtime bans in force",
                             MetricType::Gauge,
                             {metric(MetricType::Gauge, static_cast<double>(f.bans_active), {})}});
}

nlohmann::json guard_json(const GuardFigures& f) {
  nlohmann::json rules = nlohmann::json::array();
  for (const GuardFigures::Rule& r : f.rules) {
    nlohmann::json j{{"listener", r.listener}, {"rule", r.rule}, {"dry_run", r.dry_run}};
    for (size_t i = 0; i < 3; ++i) j[kRateResultNames[i]] = r.results[i];
    rules.push_back(std::move(j));
  }
  nlohmann::json denied = nlohmann::json::object();
  for (const GuardFigures::Denied& d : f.denied) {
    nlohmann::json j = nlohmann::json::object();
    for (size_t i = 0; i < 3; ++i) j[kDenyListNames[i]] = d.lists[i];
    denied[d.listener] = j;
  }
  return nlohmann::json{{"ratelimit_rules", rules},
                        {"ratelimit_keys", f.keys},
                        {"ratelimit_evictions", f.evictions},
                        {"access_denied", denied},
                        {"bans_active", f.bans_active}};
}

}  // namespace sluice
