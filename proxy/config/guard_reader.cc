// Reads the protection sections: maintenance per listener; circuit breaker, concurrency caps
// and retry budget per cluster. Every value is checked here and reported at its node.
#include "config/guard_reader.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "config/setting_values.h"

namespace sluice {

const std::vector<std::string> kMaintenanceKeys{
    "mode", "retry_after", "message", "allow_methods", "allow_paths", "body", "content_type"};
const std::vector<std::string> kCircuitBreakerKeys{
    "window", "min_requests", "failure_ratio", "failure_statuses", "open_for", "trial_requests"};
const std::vector<std::string> kClusterLimitsKeys{"max_requests", "max_pending"};
const std::vector<std::string> kRetryBudgetKeys{"percent", "min_retries"};

namespace {

const std::vector<std::string> kAllowPathKeys{"prefix", "methods"};
const std::vector<std::string> kModeNames{"off", "read-only", "full"};
constexpr const char* kExpectedMethod = "an HTTP method such as GET or POST";
constexpr const char* kExpectedRatio = "a number above 0 and at most 1, such as 0.5";

// An HTTP method name: a token of letters (RFC 9110 §9.1); upper-cased, as llhttp names them.
bool method_name(std::string& s) {
  if (s.empty() || s.size() > 20) return false;
  for (char& c : s) {
    if (!std::isalpha(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return true;
}

std::optional<MaintenanceMode> mode_of(std::string_view s) {
  return parse_maintenance_mode(s);
}

class GuardReader : public FieldReader {
 public:
  using FieldReader::FieldReader;

  void maintenance(const Fields& listener, MaintenanceSettings& m) {
    const Field* section = map_field(listener, "maintenance");
    if (!section) return;
    Fields f(section->value, section->path, kMaintenanceKeys, diag_);
    enumeration(f, "mode", m.mode, &mode_of, kModeNames);
    if (const Field* r = f.get("retry_after");
        r && duration(f, "retry_after", m.retry_after) && m.retry_after.count() < 1000)
      diag_.error(r->where(), r->path + ": must be at least 1s (Retry-After is in whole seconds)");
    text(f, "message", m.message);
    if (const Field* a = f.get("allow_methods")) methods(*a, m.allow_methods);
    if (const Field* p = f.get("allow_paths")) paths(*p, m.allow_paths);
    text(f, "body", m.body);
    text(f, "content_type", m.content_type);
  }

  void cluster(const Fields& cluster, ClusterConfig& c) {
    if (const Field* section = map_field(cluster, "circuit_breaker")) breaker(*section, c);
    if (const Field* section = map_field(cluster, "limits")) {
      Fields f(section->value, section->path, kClusterLimitsKeys, diag_);
      count(f, "max_requests", c.caps.max_requests);
      count(f, "max_pending", c.caps.max_pending);
    }
    if (const Field* section = map_field(cluster, "retry_budget")) {
      Fields f(section->value, section->path, kRetryBudgetKeys, diag_);
      if (const Field* p = f.get("percent")) number(*p, c.retry_budget.percent, 0, 100);
      count(f, "min_retries", c.retry_budget.min_retries);
    }
  }

 private:
  void breaker(const Field& section, ClusterConfig& c) {
    CircuitBreakerSettings& b = c.circuit_breaker;
    b.enabled = true;
    Fields f(section.value, section.path, kCircuitBreakerKeys, diag_);
    positive_duration(f, "window", b.window, "failures are counted over this window");
    positive_duration(f, "open_for", b.open_for, "requests fail fast this long");
    count(f, "min_requests", b.min_requests, 1);
    if (const Field* t = f.get("trial_requests")) number(*t, b.trial_requests, 1, 1000);
    if (const Field* r = f.get("failure_ratio")) {
      std::string s;
      if (scalar(*r, s, kExpectedRatio)) {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !(v > 0 && v <= 1))
          invalid(*r, s, kExpectedRatio);
        else
          b.failure_ratio = v;
      }
    }
    if (const Field* st = f.get("failure_statuses")) statuses(*st, b.failure_statuses);
  }

  void positive_duration(const Fields& f, std::string_view key, Millis& out, const char* why) {
    const Field* d = f.get(key);
    if (d && duration(f, key, out) && out.count() == 0)
      diag_.error(d->where(), d->path + ": must be above 0 (" + why + ")");
  }

  void text(const Fields& f, std::string_view key, std::string& out) {
    const Field* t = f.get(key);
    std::string s;
    if (t && (t->value.IsNull() || scalar(*t, s, "a string"))) out = s;
  }

  // A list of method names; `[]` allows none.
  void methods(const Field& f, std::vector<std::string>& out) {
    if (f.value.IsNull()) {
      out.clear();
      return;
    }
    if (!expect(f, f.value.IsSequence(), "a list of HTTP methods such as [GET, HEAD, OPTIONS]"))
      return;
    std::vector<std::string> v;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      Field item{f.path + "[" + std::to_string(i) + "]", f.key, f.value[i]};
      std::string s;
      if (!scalar(item, s, kExpectedMethod)) {
        ok = false;
      } else if (std::string up = s; !method_name(up)) {
        ok = invalid(item, s, kExpectedMethod);
      } else if (std::find(v.begin(), v.end(), up) == v.end()) {
        v.push_back(std::move(up));
      }
    }
    if (ok) out = std::move(v);
  }

  // Each exception is a path prefix ("/login") or {prefix: /login, methods: [POST]}.
  void paths(const Field& f, std::vector<MaintenancePath>& out) {
    if (f.value.IsNull()) {
      out.clear();
      return;
    }
    if (!expect(f, f.value.IsSequence(),
                "a list of path prefixes, or of {prefix: /login, methods: [POST]}"))
      return;
    std::vector<MaintenancePath> v;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      Field item{f.path + "[" + std::to_string(i) + "]", f.key, f.value[i]};
      MaintenancePath p;
      const Field* prefix = &item;
      Field prefix_field;
      if (item.value.IsMap()) {
        Fields pf(item.value, item.path, kAllowPathKeys, diag_);
        if (const Field* m = pf.get("methods")) methods(*m, p.methods);
        if (const Field* pre = pf.get("prefix")) {
          prefix_field = *pre;
          prefix = &prefix_field;
        } else {
          diag_.error(item.where(), item.path + ": an exception needs a 'prefix', such as /login");
          ok = false;
          continue;
        }
      }
      std::string s;
      if (!scalar(*prefix, s, kExpectedPrefix)) {
        ok = false;
      } else if (!is_valid_prefix(s)) {
        ok = invalid(*prefix, s, kExpectedPrefix);
      } else {
        p.prefix = s;
        v.push_back(std::move(p));
      }
    }
    if (ok) out = std::move(v);
  }

  void statuses(const Field& f, std::vector<int>& out) {
    if (!expect(f, f.value.IsSequence(), "a list of HTTP status codes such as [502, 503, 504]"))
      return;
    std::vector<int> v;
    bool ok = true;
    for (size_t i = 0; i < f.value.size(); ++i) {
      Field item{f.path + "[" + std::to_string(i) + "]", f.key, f.value[i]};
      uint32_t code = 0;
      if (!number(item, code, 100, 599)) {
        ok = false;
      } else if (std::find(v.begin(), v.end(), static_cast<int>(code)) == v.end()) {
        v.push_back(static_cast<int>(code));
      }
    }
    if (ok) out = std::move(v);
  }
};

}  // namespace

void read_listener_maintenance(const Fields& listener, MaintenanceSettings& m, Diagnostics& diag) {
  GuardReader(diag).maintenance(listener, m);
}

void read_cluster_guards(const Fields& cluster, ClusterConfig& c, Diagnostics& diag) {
  GuardReader(diag).cluster(cluster, c);
}

}  // namespace sluice
