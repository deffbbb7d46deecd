// Flags and SLUICE_* variables over the file: one table says, for each flag, which setting it
// overrides and how its value is read.
#include <cctype>
#include <string>

#include "config/config_marks.h"
#include "config/setting_values.h"

namespace sluice {
namespace {

// Applies `value` to `config`; on a bad value returns false and sets `expected`.
using ApplyFn = bool (*)(Config& config, const std::string& value, std::string& expected);

// Which mark an override replaces, so that later checks point at the flag, not the file.
enum class Marked { kNone, kListen, kUpstream, kAdmin, kTokenFile, kDrain };

struct FlagRule {
  OverrideFlag flag;
  Marked marked;
  ApplyFn apply;
};

template <typename Fn>
bool each_cluster(Config& c, Fn&& fn) {
  for (auto& cl : c.clusters) fn(cl);
  return true;
}

bool set_duration(Millis& out, const std::string& v, std::string& expected) {
  auto d = parse_duration(v);
  if (!d) {
    expected = kExpectedDuration;
    return false;
  }
  out = *d;
  return true;
}

bool set_size(uint64_t& out, const std::string& v, std::string& expected) {
  auto s = parse_size(v);
  if (!s) {
    expected = kExpectedSize;
    return false;
  }
  out = *s;
  return true;
}

std::optional<uint32_t> whole(const std::string& v, uint32_t min, uint32_t max,
                              std::string& expected) {
  auto n = parse_whole_number(v);
  if (!n || *n < min || *n > max) {
    expected = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    return std::nullopt;
  }
  return static_cast<uint32_t>(*n);
}

// Appliers for the common shapes, by member pointer: a duration of every cluster, a count of
// every cluster's pool, a duration of one section of the configuration.
template <Millis ClusterConfig::*member>
bool cluster_duration(Config& c, const std::string& v, std::string& e) {
  Millis d;
  return set_duration(d, v, e) && each_cluster(c, [&](ClusterConfig& cl) { cl.*member = d; });
}

template <Millis PoolSettings::*member>
bool pool_duration(Config& c, const std::string& v, std::string& e) {
  Millis d;
  return set_duration(d, v, e) && each_cluster(c, [&](ClusterConfig& cl) { cl.pool.*member = d; });
}

template <uint32_t PoolSettings::*member, uint32_t min>
bool pool_count(Config& c, const std::string& v, std::string& e) {
  auto n = whole(v, min, UINT32_MAX, e);
  return n && each_cluster(c, [&](ClusterConfig& cl) { cl.pool.*member = *n; });
}

template <auto section, auto member>
bool section_duration(Config& c, const std::string& v, std::string& e) {
  return set_duration(c.*section.*member, v, e);
}

template <auto section, auto member>
bool section_size(Config& c, const std::string& v, std::string& e) {
  return set_size(c.*section.*member, v, e);
}

template <auto section, auto member>
bool section_bool(Config& c, const std::string& v, std::string& e) {
  auto b = parse_bool(v);
  if (!b) e = kExpectedBool;
  if (b) c.*section.*member = *b;
  return b.has_value();
}

const std::vector<FlagRule>& rules() {
  static const std::vector<FlagRule> table{
      {{"listen", "IP:PORT", "listeners[0].address", "0.0.0.0:8080",
        "address to accept clients on (IP:PORT; port 0 picks a free port), the first listener"},
       Marked::kListen,
       [](Config& c, const std::string& v, std::string& e) {
         auto a = parse_listen_address(v);
         if (!a) e = kExpectedListenAddress;
         if (a && !c.listeners.empty()) c.listeners[0].address = *a;
         return a.has_value();
       }},
      {{"upstream", "HOST:PORT[,...]", "clusters[0].endpoints", "127.0.0.1:4000",
        "the app behind sluice (HOST:PORT or unix:/PATH of a Unix socket, or several separated "
        "by commas): the endpoints of the first cluster"},
       Marked::kUpstream,
       [](Config& c, const std::string& v, std::string& e) {
         std::string problem;
         auto eps = parse_endpoint_list(v, &problem);
         if (!eps)
           e = std::string(kExpectedEndpoint) + ", several separated by commas" +
               (problem.empty() ? "" : "; " + problem);
         if (eps && !c.clusters.empty()) c.clusters[0].endpoints = *eps;
         return eps.has_value();
       }},
      {{"admin", "IP:PORT", "admin.address", "127.0.0.1:9901",
        "admin listener: health, readiness, drain (IP:PORT; port 0 picks a free port)"},
       Marked::kAdmin,
       [](Config& c, const std::string& v, std::string& e) {
         auto a = parse_listen_address(v);
         if (!a) e = kExpectedListenAddress;
         if (a) c.admin.address = *a;
         return a.has_value();
       }},
      {{"workers", "N", "workers", "0", "worker threads (0 = number of cores)"},
       Marked::kNone,
       [](Config& c, const std::string& v, std::string& e) {
         auto n = whole(v, 0, kMaxWorkers, e);
         if (n) c.workers = *n;
         return n.has_value();
       }},
      {{"connect-timeout", "DUR", "clusters[*].connect_timeout", "2s",
        "upstream connect timeout (503 when exceeded), every cluster"},
       Marked::kNone,
       cluster_duration<&ClusterConfig::connect_timeout>},
      {{"response-timeout", "DUR", "clusters[*].response_timeout", "30s",
        "wait for the upstream's response head (504), every cluster"},
       Marked::kNone,
       cluster_duration<&ClusterConfig::response_timeout>},
      {{"header-timeout", "DUR", "limits.header_timeout", "10s",
        "time a client has to send a request head"},
       Marked::kNone,
       section_duration<&Config::limits, &Limits::header_timeout>},
      {{"idle-timeout", "DUR", "limits.idle_timeout", "75s",
        "idle keep-alive client connections are closed after"},
       Marked::kNone,
       section_duration<&Config::limits, &Limits::idle_timeout>},
      {{"max-header-bytes", "SIZE", "limits.max_header_bytes", "64KiB",
        "request head limit (431 beyond)"},
       Marked::kNone,
       section_size<&Config::limits, &Limits::max_header_bytes>},
      {{"max-body-bytes", "SIZE", "limits.max_body_bytes", "0",
        "request body limit, 0 = none (413 beyond)"},
       Marked::kNone,
       section_size<&Config::limits, &Limits::max_body_bytes>},
      {{"pool-max-idle", "N", "clusters[*].pool.max_idle", "64",
        "idle upstream connections kept per worker, every cluster"},
       Marked::kNone,
       pool_count<&PoolSettings::max_idle, 0>},
      {{"pool-idle-timeout", "DUR", "clusters[*].pool.idle_timeout", "4s",
        "idle upstream connections are closed after (keep below the app's keep-alive timeout), "
        "every cluster"},
       Marked::kNone,
       pool_duration<&PoolSettings::idle_timeout>},
      {{"pool-max-requests", "N", "clusters[*].pool.max_requests_per_connection", "0",
        "requests per upstream connection, 0 = no limit, every cluster"},
       Marked::kNone,
       pool_count<&PoolSettings::max_requests_per_connection, 0>},
      {{"pool-max-connections", "N", "clusters[*].pool.max_connections", "1024",
        "upstream connections per worker, every cluster"},
       Marked::kNone,
       pool_count<&PoolSettings::max_connections, 1>},
      {{"pool-max-connecting", "N", "clusters[*].pool.max_connecting", "32",
        "upstream connects in progress per address and worker (the rest wait in the queue), "
        "every cluster"},
       Marked::kNone,
       pool_count<&PoolSettings::max_connecting, 1>},
      {{"pool-queue-size", "N", "clusters[*].pool.queue_size", "4096",
        "requests waiting for an upstream connection, every cluster"},
       Marked::kNone,
       pool_count<&PoolSettings::queue_size, 0>},
      {{"pool-queue-timeout", "DUR", "clusters[*].pool.queue_timeout", "5s",
        "wait for an upstream connection (503), every cluster"},
       Marked::kNone,
       pool_duration<&PoolSettings::queue_timeout>},
      {{"drain-delay", "DUR", "drain.delay", "5s",
        "on SIGTERM keep accepting this long (Connection: close) while endpoints propagate"},
       Marked::kDrain,
       section_duration<&Config::drain, &DrainSettings::delay>},
      {{"drain-budget", "DUR", "drain.budget", "25s",
        "from SIGTERM to exit at most; the rest is force-closed"},
       Marked::kDrain,
       section_duration<&Config::drain, &DrainSettings::budget>},
      {{"close-spread", "DUR", "drain.close_spread", "10s",
        "WebSocket 1001 closes and gRPC streaming calls' ends spread over this window"},
       Marked::kDrain,
       section_duration<&Config::drain, &DrainSettings::close_spread>},
      {{"ws-close-spread", "DUR", "drain.close_spread", "10s", "old name of --close-spread"},
       Marked::kDrain,
       section_duration<&Config::drain, &DrainSettings::close_spread>},
      {{"ws-close-timeout", "DUR", "drain.ws_close_timeout", "3s",
        "WebSocket close handshake timeout"},
       Marked::kNone,
       section_duration<&Config::drain, &DrainSettings::ws_close_timeout>},
      {{"admin-token-file", "FILE", "admin.token_file", "",
        "token allowing non-loopback clients to call /drain (header X-Sluice-Admin-Token)"},
       Marked::kTokenFile,
       [](Config& c, const std::string& v, std::string&) {
         c.admin.token_file = v;
         return true;
       }},
      {{"log-format", "json|text", "log.format", "text", "log line format: json or text"},
       Marked::kNone,
       [](Config& c, const std::string& v, std::string& e) {
         auto f = parse_log_format(v);
         if (!f) e = "one of " + quoted_list(log_format_names());
         if (f) c.log.format = *f;
         return f.has_value();
       }},
      {{"log-level", "LEVEL", "log.level", "info",
        "lowest level logged: debug, info, warn or error"},
       Marked::kNone,
       [](Config& c, const std::string& v, std::string& e) {
         auto l = parse_log_level(v);
         if (!l) e = "one of " + quoted_list(log_level_names());
         if (l) c.log.level = *l;
         return l.has_value();
       }},
      {{"access-log", "true|false", "log.access", "true",
        "one log line per request: true or false"},
       Marked::kNone,
       section_bool<&Config::log, &LogSettings::access>},
      {{"watch-config", "true|false", "reload.watch", "false",
        "reload when the --config file changes (local development): true or false"},
       Marked::kNone,
       section_bool<&Config::reload, &ReloadSettings::watch>},
  };
  return table;
}

}  // namespace

const std::vector<OverrideFlag>& override_flags() {
  static const std::vector<OverrideFlag> flags = [] {
    std::vector<OverrideFlag> out;
    for (const auto& r : rules()) out.push_back(r.flag);
    return out;
  }();
  return flags;
}

std::string override_env_name(const std::string& flag) {
  std::string env = "SLUICE_" + flag;
  for (auto& ch : env) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(ch));
  return env;
}

void apply_overrides(const std::vector<ConfigOverride>& overrides, Config& config,
                     ConfigMarks& marks, Diagnostics& diag) {
  for (const auto& o : overrides) {
    Where where = Where::flag_named("--" + o.flag + (o.env.empty() ? "" : " (from " + o.env + ")"));
    const FlagRule* rule = nullptr;
    for (const auto& r : rules())
      if (o.flag == r.flag.name) rule = &r;
    if (!rule) {
      diag.error(where, "not a setting that can be overridden");
      continue;
    }
    std::string expected;
    if (!rule->apply(config, o.value, expected)) {
      diag.error(where, "invalid value '" + o.value + "' (expected " + expected + ")");
      continue;
    }
    switch (rule->marked) {
      case Marked::kListen:
        if (!marks.listener.empty()) marks.listener[0].address = MarkedValue{where, true};
        break;
      case Marked::kUpstream:
        if (!marks.cluster.empty()) {
          marks.cluster[0].endpoints = where;
          marks.cluster[0].endpoints_ok = true;
        }
        break;
      case Marked::kAdmin:
        marks.admin_address = MarkedValue{where, true};
        break;
      case Marked::kTokenFile:
        marks.token_file = where;
        break;
      case Marked::kDrain:
        marks.drain = where;
        break;
      case Marked::kNone:
        break;
    }
  }
}

}  // namespace sluice
