// Reads trusted_proxies, ip_rules and rate_limits (issue #17). Every value is checked at its
// node: networks (with the host-bits typo caught), rates, methods, header names, and the
// listener a rule names.
#include "config/client_guard_reader.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "config/setting_values.h"
#include "http/method.h"

namespace sluice {

const std::vector<std::string> kIpRulesKeys{"allow", "deny", "action", "match"};
const std::vector<std::string> kRateLimitRuleKeys{"name",    "listener", "host",   "prefix",
                                                  "methods", "key",      "header", "rate",
                                                  "burst",   "max_keys", "dry_run"};

namespace {

constexpr const char* kExpectedNetwork =
    "an IP address or a network in CIDR notation, such as 10.0.0.0/8, 192.0.2.7 or fd00::/8";
constexpr const char* kExpectedNetworks = "a list of networks such as [10.0.0.0/8, fd00::/8]";
constexpr const char* kExpectedRate =
    "a number of requests per period: 10/s, 600/m, 1000/h or 50/10s";
constexpr const char* kExpectedMethod = "an HTTP method in upper case, such as GET or POST";
constexpr const char* kExpectedHeader = "a header name such as X-Api-Key";

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
}

// HTTP methods as llhttp knows them (llhttp_method_name aborts on a number it does not know).
bool is_known_method(const std::string& m) {
  return method_from_name(m) >= 0;
}

class GuardReader : public FieldReader {
 public:
  using FieldReader::FieldReader;

  bool networks(const Field& f, std::vector<IpNetwork>& out) {
    if (f.value.IsNull()) {
      out.clear();
      return true;
    }
    if (!expect(f, f.value.IsSequence(), kExpectedNetworks)) return false;
    std::vector<IpNetwork> list;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      Field item{f.path + "[" + std::to_string(i) + "]", f.key, f.value[i]};
      std::string s, why;
      if (!scalar(item, s, kExpectedNetwork)) {
        ok = false;
        continue;
      }
      auto n = parse_network(s, &why);
      if (!n) {
        ok = invalid(item, s, kExpectedNetwork, ": " + why);
        continue;
      }
      list.push_back(*n);
    }
    if (ok) out = std::move(list);
    return ok;
  }

  void listener(const Fields& f, ListenerConfig& l) {
    if (const Field* t = f.get("trusted_proxies")) {
      std::vector<IpNetwork> list;
      if (networks(*t, list)) l.trusted_proxies = std::move(list);
    }
    if (const Field* r = map_field(f, "ip_rules")) {
      Fields rf(r->value, r->path, kIpRulesKeys, diag_);
      if (const Field* a = rf.get("allow")) networks(*a, l.ip_rules.allow);
      if (const Field* d = rf.get("deny")) networks(*d, l.ip_rules.deny);
      std::string s;
      if (const Field* a = rf.get("action"); a && scalar(*a, s, "403 or close")) {
        if (s == "403") {
          l.ip_rules.action = IpRules::Action::kForbidden;
        } else if (s == "close") {
          l.ip_rules.action = IpRules::Action::kClose;
        } else {
          invalid(*a, s, "403 (answer 403 Forbidden) or close (close without an answer)");
        }
      }
      if (const Field* m = rf.get("match"); m && scalar(*m, s, "peer or client")) {
        if (s == "peer") {
          l.ip_rules.match = IpRules::Match::kPeer;
        } else if (s == "client") {
          l.ip_rules.match = IpRules::Match::kClient;
        } else {
          invalid(*m, s,
                  "peer (the socket's address, checked at accept) or client (the client IP "
                  "from X-Forwarded-For of a trusted proxy, checked at each request)");
        }
      }
    }
  }

  void root(const Fields& f, Config& c) {
    if (const Field* t = f.get("trusted_proxies")) networks(*t, c.trusted_proxies);
    const Field* r = f.get("rate_limits");
    if (!r) return;
    c.rate_limits.clear();
    if (r->value.IsNull()) return;
    if (!expect(*r, r->value.IsSequence(), "a list of rate-limit rules")) return;
    for (size_t i = 0; i < r->value.size(); ++i) {
      const YAML::Node node = r->value[i];
      std::string path = "rate_limits[" + std::to_string(i) + "]";
      if (node.IsMap()) {
        const YAML::Node n = node["name"];
        if (n.IsDefined() && n.IsScalar() && is_valid_name(n.Scalar()))
          path = "rate_limits[" + n.Scalar() + "]";
      } else {
        diag_.error(
            where_of(node),
            path + ": expected a map such as {name: api, rate: 10/s}, got " + describe(node));
        continue;
      }
      RateLimitRule rule;
      if (read_rule(node, path, c, rule)) c.rate_limits.push_back(std::move(rule));
    }
  }

 private:
  bool read_rule(const YAML::Node& node, const std::string& path, const Config& c,
                 RateLimitRule& rule) {
    const Where self = where_of(node);
    Fields f(node, path, kRateLimitRuleKeys, diag_);
    bool ok = true;
    if (const Field* n = f.get("name")) {
      if (!name(*n, rule.name)) ok = false;
      for (const RateLimitRule& other : c.rate_limits)
        if (ok && other.name == rule.name) {
          diag_.error(n->where(), path + ": a rule named '" + rule.name +
                                      "' is already defined (names must be unique: a reload "
                                      "keeps a rule's buckets by its name)");
          ok = false;
        }
    } else {
      diag_.error(self, path + ": a rate-limit rule needs a 'name'");
      ok = false;
    }
    if (const Field* l = f.get("listener")) {
      if (name(*l, rule.listener)) {
        const bool known =
            std::any_of(c.listeners.begin(), c.listeners.end(),
                        [&](const ListenerConfig& x) { return x.name == rule.listener; });
        if (!known) {
          std::vector<std::string> names;
          for (const ListenerConfig& x : c.listeners) names.push_back(x.name);
          ok = invalid(*l, rule.listener, "the name of a listener: " + quoted_list(names),
                       ": no such listener");
        }
      } else {
        ok = false;
      }
    }
    std::string s;
    if (const Field* h = f.get("host"); h && scalar(*h, s, kExpectedHostPattern)) {
      if (s.find(':') != std::string::npos || s == "*" || !is_valid_host_pattern(s))
        ok = invalid(*h, s, kExpectedHostPattern);
      else
        rule.host = s;
    }
    if (const Field* p = f.get("prefix"); p && scalar(*p, s, kExpectedPrefix)) {
      if (!is_valid_prefix(s))
        ok = invalid(*p, s, kExpectedPrefix);
      else
        rule.prefix = s;
    }
    if (const Field* m = f.get("methods")) {
      if (m->value.IsSequence()) {
        for (size_t i = 0; i < m->value.size(); ++i) {
          Field item{m->path + "[" + std::to_string(i) + "]", m->key, m->value[i]};
          if (!scalar(item, s, kExpectedMethod)) {
            ok = false;
            continue;
          }
          std::string upper = s;
          for (char& ch : upper)
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
          if (!is_known_method(upper)) {
            ok = invalid(item, s, kExpectedMethod);
          } else if (upper != s) {
            ok = invalid(item, s, kExpectedMethod, ": did you mean '" + upper + "'?");
          } else if (std::find(rule.methods.begin(), rule.methods.end(), s) != rule.methods.end()) {
            ok = invalid(item, s, kExpectedMethod, ": listed twice");
          } else {
            rule.methods.push_back(s);
          }
        }
      } else if (!m->value.IsNull()) {
        ok = expect(*m, false, "a list of methods such as [POST, PUT]");
      }
    }
    const Field* key = f.get("key");
    if (key && scalar(*key, s, "client_ip, header or none")) {
      if (s == "client_ip") {
        rule.key = RateLimitKey::kClientIp;
      } else if (s == "header") {
        rule.key = RateLimitKey::kHeader;
      } else if (s == "none") {
        rule.key = RateLimitKey::kNone;
      } else {
        ok = invalid(*key, s,
                     "client_ip (a bucket per client), header (a bucket per value of 'header') "
                     "or none (one bucket for all)");
      }
    }
    const Field* header = f.get("header");
    if (header && scalar(*header, s, kExpectedHeader)) {
      if (s.empty() || !std::all_of(s.begin(), s.end(), is_token_char)) {
        ok = invalid(*header, s, kExpectedHeader);
      } else {
        for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        rule.header = s;
      }
    }
    if (rule.key == RateLimitKey::kHeader && !header) {
      diag_.error(key->where(), path + ": 'key: header' needs 'header', the header to count by");
      ok = false;
    } else if (rule.key != RateLimitKey::kHeader && header) {
      diag_.error(header->where(),
                  path + ": 'header' is used only with 'key: header' (add it, or remove 'header')");
      ok = false;
    }
    if (const Field* r = f.get("rate")) {
      if (scalar(*r, s, kExpectedRate) && !parse_rate(s, rule.requests, rule.period))
        ok = invalid(*r, s, kExpectedRate);
    } else {
      diag_.error(self, path + ": a rate-limit rule needs a 'rate', such as 10/s");
      ok = false;
    }
    if (const Field* b = f.get("burst")) ok = number(*b, rule.burst, 1, 1000000000) && ok;
    if (const Field* m = f.get("max_keys")) ok = number(*m, rule.max_keys, 1, 100000000) && ok;
    boolean(f, "dry_run", rule.dry_run);
    return ok;
  }
};

}  // namespace

void read_listener_guard(const Fields& listener, ListenerConfig& l, Diagnostics& diag) {
  GuardReader(diag).listener(listener, l);
}

void read_root_guard(const Fields& root, Config& config, Diagnostics& diag) {
  GuardReader(diag).root(root, config);
}

}  // namespace sluice
