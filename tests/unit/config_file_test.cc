#include "config/config_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

TEST(ConfigFile, NoFileGivesTodaysFlagDefaults) {
  ConfigLoad r = load_config(nullptr, {});
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "ingress");
  EXPECT_EQ(c.listeners[0].address, (HostPort{"0.0.0.0", 8080}));
  ASSERT_EQ(c.listeners[0].routes.size(), 1u);
  EXPECT_EQ(c.listeners[0].routes[0], (RouteConfig{"", "", "app"}));
  ASSERT_EQ(c.clusters.size(), 1u);
  EXPECT_EQ(c.clusters[0].name, "app");
  EXPECT_EQ(c.clusters[0].endpoints, (std::vector<HostPort>{{"127.0.0.1", 4000}}));
  EXPECT_EQ(c.admin.address, (HostPort{"127.0.0.1", 9901}));
  EXPECT_EQ(c, default_config());
  EXPECT_TRUE(r.errors.empty());
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);
}

TEST(ConfigFile, EmptyFileIsEveryDefault) {
  ConfigLoad r = expect_ok("");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(*r.config, default_config());
  r = expect_ok("# only a comment\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(*r.config, default_config());
}

TEST(ConfigFile, FullFile) {
  ConfigLoad r = expect_ok(R"(admin: {address: "[::1]:9901"}
workers: 2
listeners:
  - name: ingress
    address: 0.0.0.0:8080
    routes:
      - {prefix: /api, cluster: api}
      - {host: admin.example.com, cluster: backoffice}
      - {host: "*.example.com", prefix: /, cluster: app}
  - name: egress
    address: 127.0.0.1:0
    drain: false
    cluster: api
clusters:
  - name: app
    endpoints: [127.0.0.1:4000, localhost:4001]
    load_balancing: least_request
    connect_timeout: 250ms
    response_timeout: 1m
    dns_refresh: 10s
    readiness: true
    pool: {max_idle: 8, idle_timeout: 3s, max_requests_per_connection: 100, max_connections: 16,
           queue_size: 32, queue_timeout: 2s}
    outlier: {consecutive_failures: 5, base_ejection: 2s, max_ejection: 1m}
  - {name: api, endpoints: [api.internal:80]}
  - {name: backoffice, endpoints: ["[::1]:81"]}
limits: {max_header_bytes: 32KiB, max_body_bytes: 1MiB, header_timeout: 5s, idle_timeout: 60s}
drain: {delay: 3s, budget: 20s, ws_close_spread: 5s, ws_close_timeout: 2s}
log: {format: json, level: warn, access: false}
)");
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  EXPECT_EQ(c.admin.address, (HostPort{"::1", 9901}));
  EXPECT_EQ(c.workers, 2u);
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].routes.size(), 3u);
  EXPECT_EQ(c.listeners[0].routes[1], (RouteConfig{"admin.example.com", "", "backoffice"}));
  EXPECT_EQ(c.listeners[0].routes[2], (RouteConfig{"*.example.com", "/", "app"}));
  EXPECT_TRUE(c.listeners[0].drain);
  EXPECT_FALSE(c.listeners[1].drain);
  EXPECT_EQ(c.listeners[1].address.port, 0);
  const ClusterConfig& app = c.clusters[0];
  EXPECT_EQ(app.endpoints, (std::vector<HostPort>{{"127.0.0.1", 4000}, {"localhost", 4001}}));
  EXPECT_EQ(app.load_balancing, LoadBalancing::kLeastRequest);
  EXPECT_EQ(app.connect_timeout, Millis(250));
  EXPECT_EQ(app.response_timeout, Millis(60000));
  EXPECT_EQ(app.dns_refresh, Millis(10000));
  EXPECT_TRUE(app.readiness);
  EXPECT_EQ(app.pool, (PoolSettings{8, Millis(3000), 100, 16, 32, 32, Millis(2000)}));
  EXPECT_EQ(app.outlier, (OutlierSettings{5, Millis(2000), Millis(60000), 50}));
  EXPECT_EQ(c.clusters[1].pool, PoolSettings{});  // untouched settings keep their defaults
  EXPECT_EQ(c.clusters[2].endpoints[0], (HostPort{"::1", 81}));
  EXPECT_EQ(c.limits, (Limits{32 * 1024, 1024 * 1024, Millis(5000), Millis(60000)}));
  EXPECT_EQ(c.drain, (DrainSettings{Millis(3000), Millis(20000), Millis(5000), Millis(2000)}));
  EXPECT_EQ(c.log, (LogSettings{LogFormat::kJson, LogLevel::kWarn, false}));
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);
}

TEST(ConfigFile, ClusterShorthand) {
  ConfigLoad r = expect_ok(with_cluster("    endpoints: [127.0.0.1:4000]\n"));
  ASSERT_TRUE(r.config);
  ASSERT_EQ(r.config->listeners[0].routes.size(), 1u);
  EXPECT_EQ(r.config->listeners[0].routes[0], (RouteConfig{"", "", "app"}));
  expect_error(
      "listeners:\n"
      "  - name: ingress\n"
      "    cluster: app\n"
      "    routes: [{cluster: app}]\n",
      "3:5", "give either 'cluster' (a shorthand for one catch-all route) or 'routes', not both");
}

TEST(ConfigFile, SyntaxErrors) {
  expect_error("workers: [1, 2\nlog: {}\n", "2:4", "YAML syntax error: end of sequence flow");
  expect_error("listeners:\n  - name: a\n\taddress: 1.2.3.4:80\n", "3:1",
               "indented with a tab: YAML allows only spaces");
  expect_error("log: {format: \"json}\n", "2:1", "YAML syntax error");
  expect_error("workers: 1\n---\nworkers: 2\n", "3:1", "a second YAML document");
  // yaml-cpp 0.7's LoadAll never returns on these (fuzz finding F3).
  expect_error(",\n", "1:1", "YAML syntax error: unexpected ','");
  expect_error("[1]]\n", "1:4", "YAML syntax error");
  // Not UTF-8: GET /config could not serialize it (fuzz finding F10).
  expect_error("listeners:\n  - {name: \"in\xff\", address: 127.0.0.1:8080}\n", "2:15",
               "the file is not UTF-8 (byte 0xff)");
  expect_error("workers: 1 # \xc0\xaf overlong\n", "1:14", "not UTF-8 (byte 0xc0)");
  expect_error("workers: 1 # \xed\xa0\x80 surrogate\n", "1:14", "not UTF-8 (byte 0xed)");
  expect_error("workers: 1 # \xe2\x82\n", "1:14", "not UTF-8 (byte 0xe2)");
  EXPECT_TRUE(load("workers: 1 # caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80\n").config);
}

// An alias can make the document a cycle: each use is read once, as an error where it is.
TEST(ConfigFile, AliasCyclesAreErrorsNotLoops) {
  ConfigLoad r = load(
      "listeners: &l\n  - {name: a, address: 127.0.0.1:1, routes: *l}\n"
      "clusters: &c [{name: c, endpoints: *c}]\n");
  EXPECT_FALSE(r.config);
  EXPECT_GE(r.errors.size(), 2u) << joined(r.errors);
}

TEST(ConfigFile, UnknownKeys) {
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    conect_timeout: 2s\n"), "6:5",
               "unknown key 'conect_timeout' in clusters[app] (did you mean 'connect_timeout'?)");
  expect_error("wrokers: 2\n", "1:1",
               "unknown key 'wrokers' at the top level (did you mean "
               "'workers'?)");
  expect_error("delay: 5s\n", "1:1",
               "unknown key 'delay' at the top level ('delay' belongs under 'drain': drain.delay)");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    max_idle: 3\n"), "6:5",
               "('max_idle' belongs under 'pool': clusters[app].pool.max_idle)");
  expect_error("log: {colour: true}\n", "1:7",
               "unknown key 'colour' in log (expected one of 'format', 'level', 'access')");
  expect_error("limits: {max-body-bytes: 1MiB}\n", "1:10", "did you mean 'max_body_bytes'?");
  expect_error("workers: 1\nworkers: 2\n", "2:1",
               "'workers' is given twice at the top level (first at line 1); remove one");
}

TEST(ConfigFile, WrongTypes) {
  expect_error("listeners: {name: a}\n", "1:12",
               "listeners: expected a list of listeners, got a map");
  expect_error("log: [json]\n", "1:6", "log: expected a map, got a list");
  expect_error("workers: {n: 1}\n", "1:10", "workers: expected a whole number from 0 to");
  expect_error(with_cluster("    endpoints: 127.0.0.1:4000\n"), "5:16",
               "clusters[app].endpoints: expected a list of HOST:PORT such as [127.0.0.1:4000], "
               "got '127.0.0.1:4000'");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    connect_timeout: [2s]\n"), "6:22",
               "clusters[app].connect_timeout: expected a whole number with a unit");
  expect_error("- a\n- b\n", "1:1", "expected a map of settings");
  expect_error("listeners:\n  - just-a-name\n", "2:5",
               "listeners[0]: expected a map (name, address, routes), got 'just-a-name'");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    readiness:\n"), "6:5",
               "clusters[app].readiness: expected true or false, got nothing");
}

TEST(ConfigFile, BadValues) {
  expect_error("drain: {delay: 5}\n", "1:16",
               "drain.delay: invalid value '5' (expected a whole number with a unit: 250ms, 2s, "
               "1m, 1h)");
  expect_error("drain:\n  budget: 2 s\n", "2:11", "drain.budget: invalid value '2 s'");
  expect_error("limits: {max_body_bytes: 1MB}\n", "1:26",
               "limits.max_body_bytes: invalid value '1MB' (expected a number of bytes");
  expect_error("log: {level: verbose}\n", "1:14",
               "log.level: invalid value 'verbose' (expected one of 'debug', 'info', 'warn', "
               "'error')");
  expect_error("log: {format: jsno}\n", "1:15", "did you mean 'json'?");
  expect_error("log: {access: maybe}\n", "1:15", "log.access: invalid value 'maybe'");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    load_balancing: random\n"),
               "6:21", "expected one of 'round_robin', 'least_request'");
  expect_error("workers: 2000\n", "1:10",
               "workers: invalid value '2000' (expected a whole number from 0 to 1024)");
  expect_error("workers: -1\n", "1:10", "workers: invalid value '-1'");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    pool: {max_connections: 0}\n"),
               "6:29",
               "clusters[app].pool.max_connections: invalid value '0' (expected a whole number "
               "from 1 to");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    pool: {max_connecting: 0}\n"),
               "6:28",
               "clusters[app].pool.max_connecting: invalid value '0' (expected a whole number "
               "from 1 to");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n"
                            "    outlier: {max_ejection_percent: 101}\n"),
               "6:37",
               "clusters[app].outlier.max_ejection_percent: invalid value '101' (expected a "
               "whole number from 0 to 100)");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n    dns_refresh: 0s\n"), "6:18",
               "dns_refresh: must be above 0");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000]\n"
                            "    outlier: {base_ejection: 1m, max_ejection: 10s}\n"),
               "6:5", "base_ejection (1m) is longer than max_ejection (10s)");
}

TEST(ConfigFile, Upgrades) {
  ConfigLoad d = expect_ok("");
  ASSERT_TRUE(d.config);
  EXPECT_EQ(d.config->listeners[0].upgrades, (std::vector<std::string>{"websocket"}));
  ConfigLoad r = expect_ok(
      "listeners:\n"
      "  - {name: a, address: 127.0.0.1:0, cluster: app, upgrades: [WebSocket, foo]}\n"
      "  - {name: b, address: 127.0.0.1:0, cluster: app, upgrades: []}\n"
      "  - {name: c, address: 127.0.0.1:0, cluster: app}\n"
      "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->listeners[0].upgrades, (std::vector<std::string>{"websocket", "foo"}));
  EXPECT_TRUE(r.config->listeners[1].upgrades.empty());
  EXPECT_EQ(r.config->listeners[2].upgrades, (std::vector<std::string>{"websocket"}));
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);

  const std::string head = "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\nlisteners:\n";
  expect_error(head + "  - {name: in, cluster: app, upgrades: websocket}\n", "3:40",
               "listeners[in].upgrades: expected a list of protocol names such as [websocket], "
               "got 'websocket'");
  expect_error(head + "  - {name: in, cluster: app, upgrades: [websocket, websocket/13]}\n", "3:52",
               "listeners[in].upgrades[1]: invalid value 'websocket/13': versions are not "
               "compared");
  expect_error(head + "  - {name: in, cluster: app, upgrades: [websocket, WEBSOCKET]}\n", "3:52",
               "listeners[in].upgrades[1]: invalid value 'WEBSOCKET': listed twice");
  expect_error(head + "  - {name: in, cluster: app, upgrades: [\"web socket\"]}\n", "3:41",
               "listeners[in].upgrades[0]: invalid value 'web socket'");
  expect_error(head + "  - {name: in, cluster: app, upgrades: [[websocket]]}\n", "3:41",
               "listeners[in].upgrades[0]: expected a protocol name such as websocket");
  expect_error(head + "  - {name: in, cluster: app, upgrade: [websocket]}\n", "3:30",
               "did you mean 'upgrades'?");

  ConfigLoad h2c = expect_ok(head + "  - {name: in, cluster: app, upgrades: [websocket, h2c]}\n");
  ASSERT_EQ(h2c.warnings.size(), 1u) << joined(h2c.warnings);
  EXPECT_NE(h2c.warnings[0].find("t.yaml:3:52: warning: listeners[in].upgrades[1]: forwarding "
                                 "'Upgrade: h2c'"),
            std::string::npos)
      << h2c.warnings[0];
}

TEST(ConfigFile, Http2) {
  ConfigLoad d = expect_ok("");
  ASSERT_TRUE(d.config);
  const ListenerHttp2& def = d.config->listeners[0].http2;
  EXPECT_TRUE(def.enabled);
  EXPECT_EQ(def.max_concurrent_streams, 100u);
  EXPECT_EQ(def.initial_stream_window, 64u * 1024);
  EXPECT_EQ(def.connection_window, 1024u * 1024);
  EXPECT_EQ(def.max_stream_errors, 100u);
  EXPECT_EQ(def.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(d.config->limits.max_header_fields, 100u);
  ConfigLoad r = expect_ok(
      "limits: {max_header_fields: 50}\n"
      "listeners:\n"
      "  - name: a\n    address: 127.0.0.1:0\n    cluster: app\n"
      "    http2: {enabled: false, max_concurrent_streams: 7, initial_stream_window: 1MiB,\n"
      "            connection_window: 8MiB, max_stream_errors: 20}\n"
      "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n");
  ASSERT_TRUE(r.config);
  const ListenerHttp2& h = r.config->listeners[0].http2;
  EXPECT_FALSE(h.enabled);
  EXPECT_EQ(h.max_concurrent_streams, 7u);
  EXPECT_EQ(h.initial_stream_window, 1u << 20);
  EXPECT_EQ(h.connection_window, 8u << 20);
  EXPECT_EQ(h.max_stream_errors, 20u);
  EXPECT_EQ(r.config->limits.max_header_fields, 50u);
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);

  const std::string head = "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\nlisteners:\n";
  expect_error(head + "  - {name: in, cluster: app, http2: {max_concurrent_streams: 0}}\n", "3:62",
               "listeners[in].http2.max_concurrent_streams: invalid value '0' (expected a whole "
               "number from 1 to 100000)");
  expect_error(head + "  - {name: in, cluster: app, http2: {initial_stream_window: 2GiB}}\n",
               "3:61",
               "listeners[in].http2.initial_stream_window: invalid value '2GiB' (expected a size "
               "from 1 to 2147483647 bytes");
  expect_error(head + "  - {name: in, cluster: app, http2: {connection_window: 1000}}\n", "3:57",
               "listeners[in].http2.connection_window: invalid value '1000' (expected a size from "
               "65535 to 2147483647 bytes");
  expect_error(head + "  - {name: in, cluster: app, http2: {alpn: [h2, h3]}}\n", "3:49",
               "listeners[in].http2.alpn[1]: invalid value 'h3' (expected 'h2' or 'http/1.1')");
  expect_error(head + "  - {name: in, cluster: app, http2: {alpn: [h2, h2]}}\n", "3:49",
               "listeners[in].http2.alpn[1]: invalid value 'h2'");
  expect_error(head + "  - {name: in, cluster: app, http2: {enabled: maybe}}\n", "3:47",
               "listeners[in].http2.enabled: invalid value 'maybe'");
  expect_error(head + "  - {name: in, cluster: app, http2: {max_streams: 5}}\n", "3:38",
               "unknown key 'max_streams' in listeners[in].http2");
  expect_error("limits: {max_header_fields: 0}\n", "1:29",
               "limits.max_header_fields: invalid value '0'");

  // ALPN on a plain listener, and h2 listed while HTTP/2 is off: accepted quietly (the
  // printed configuration lists ALPN for every listener).
  ConfigLoad w =
      expect_ok(head + "  - {name: in, cluster: app, http2: {enabled: false, alpn: [h2]}}\n");
  EXPECT_TRUE(w.warnings.empty()) << joined(w.warnings);
}

TEST(ConfigFile, Addresses) {
  expect_error("admin: {address: localhost:9901}\n", "1:18",
               "admin.address: invalid value 'localhost:9901': a listening socket binds to an IP "
               "address, not a name");
  expect_error("admin: {address: 127.0.0.1}\n", "1:18", "admin.address: invalid value '127.0.0.1'");
  expect_error("listeners:\n  - {name: a, address: \"0.0.0.0:65536\", cluster: app}\n", "2:24",
               "listeners[a].address: invalid value '0.0.0.0:65536'");
  expect_error(with_cluster("    endpoints: [127.0.0.1:0]\n"), "5:17",
               "clusters[app].endpoints[0]: invalid value '127.0.0.1:0': port 0 is only for "
               "listeners");
  expect_error(with_cluster("    endpoints: [127.0.0.1:4000, \"no such:80\"]\n"), "5:33",
               "clusters[app].endpoints[1]: invalid value 'no such:80'");
  expect_error(with_cluster("    endpoints: [\"::1:80\"]\n"), "5:17", "invalid value '::1:80'");
  // Port 0 is fine where sluice listens: it picks a free port.
  expect_ok(
      "admin: {address: 127.0.0.1:0}\n"
      "listeners: [{name: a, address: 127.0.0.1:0, cluster: app}]\n");
}

TEST(ConfigFile, Routes) {
  const std::string head =
      "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n"
      "listeners:\n"
      "  - name: ingress\n"
      "    routes:\n";
  expect_error(head + "      - {prefix: api, cluster: app}\n", "5:18",
               "listeners[ingress].routes[0].prefix: invalid value 'api' (expected a path prefix "
               "starting with '/'");
  expect_error(head + "      - {host: \"api.*.com\", cluster: app}\n", "5:16",
               "listeners[ingress].routes[0].host: invalid value 'api.*.com'");
  expect_error(head + "      - {host: \"api.example.com:443\", cluster: app}\n", "5:16",
               "invalid value 'api.example.com:443': the port is ignored when matching");
  expect_error(head + "      - {host: \"*\", cluster: app}\n", "5:16",
               "leave 'host' out to match any host");
  expect_error(head + "      - {prefix: /}\n", "5:9",
               "listeners[ingress].routes[0]: a route needs a 'cluster'");
  expect_error(head + "      - {prefix: /, cluster: ap}\n", "5:30",
               "listeners[ingress].routes[0]: no cluster named 'ap' (did you mean 'app'?)");
  expect_error(head + "      - {prefix: /, cluster: zzz}\n", "5:30",
               "no cluster named 'zzz' (the clusters are 'app')");
  expect_error(
      "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n"
      "listeners:\n"
      "  - name: ingress\n"
      "    address: 127.0.0.1:8080\n",
      "3:5", "listeners[ingress]: no routes: add 'cluster: NAME'");
  expect_error(head.substr(0, head.size() - 12) + "    routes: []\n", "4:5",
               "listeners[ingress]: no routes");
  ConfigLoad r =
      expect_ok(head + "      - {host: \"*.Example.com\", prefix: /v1/, cluster: app}\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->listeners[0].routes[0], (RouteConfig{"*.Example.com", "/v1/", "app"}));
}

TEST(ConfigFile, NamesAndAddressesAcrossEntries) {
  expect_error(
      "listeners:\n"
      "  - {name: a, address: 127.0.0.1:8080, cluster: app}\n"
      "  - {name: a, address: 127.0.0.1:8081, cluster: app}\n",
      "3:12",
      "listeners: the name 'a' is already used by another listener (line 2); listener "
      "names must be unique");
  expect_error(
      "clusters:\n"
      "  - {name: app, endpoints: [127.0.0.1:4000]}\n"
      "  - {name: app, endpoints: [127.0.0.1:4001]}\n",
      "3:12", "clusters: the name 'app' is already used by another cluster (line 2)");
  expect_error(
      "listeners:\n"
      "  - {name: a, address: 127.0.0.1:8080, cluster: app}\n"
      "  - {name: b, address: 127.0.0.1:8080, cluster: app}\n",
      "3:24",
      "listeners[b].address: 127.0.0.1:8080 overlaps listener 'a' (127.0.0.1:8080, line "
      "2)");
  expect_error(
      "listeners:\n"
      "  - {name: a, address: 127.0.0.1:8080, cluster: app}\n"
      "  - {name: b, address: 0.0.0.0:8080, cluster: app}\n",
      "3:24", "overlaps listener 'a'");
  expect_error(
      "listeners:\n"
      "  - {name: a, address: \"[::]:8080\", cluster: app}\n"
      "  - {name: b, address: 10.1.2.3:8080, cluster: app}\n",
      "3:24", "overlaps listener 'a' ([::]:8080, line 2)");
  expect_error(
      "admin: {address: 127.0.0.1:8080}\n"
      "listeners: [{name: a, address: 0.0.0.0:8080, cluster: app}]\n",
      "2:32", "overlaps the admin listener (127.0.0.1:8080, line 1)");
  // Different ports, different specific addresses, or port 0 (each gets its own free port).
  expect_ok(
      "listeners:\n"
      "  - {name: a, address: 127.0.0.1:8080, cluster: app}\n"
      "  - {name: b, address: 127.0.0.2:8080, cluster: app}\n"
      "  - {name: c, address: 0.0.0.0:8081, cluster: app}\n"
      "  - {name: d, address: 127.0.0.1:0, cluster: app}\n"
      "  - {name: e, address: 0.0.0.0:0, cluster: app}\n");
  expect_error("clusters:\n  - {name: app}\n", "2:5",
               "clusters[app]: no endpoints: add 'endpoints: [HOST:PORT, ...]'");
  expect_error("clusters:\n  - {name: app, endpoints: []}\n", "2:17",
               "clusters[app]: no endpoints");
  expect_error("listeners:\n  - {address: 127.0.0.1:8080, cluster: app}\n", "2:5",
               "listeners[0]: a listener needs a 'name'");
  expect_error("clusters:\n  - {name: \"a b\", endpoints: [127.0.0.1:1]}\n", "2:12",
               "clusters[0].name: invalid value 'a b' (expected a name of letters, digits");
  expect_error("listeners: []\n", "1:1", "listeners: at least one listener is needed");
  expect_error("clusters:\n", "1:1", "clusters: at least one cluster is needed");
}

TEST(ConfigFile, MissingSectionsKeepTheirDefaults) {
  // Only clusters: the default listener sends everything to 'app'.
  ConfigLoad r = expect_ok("clusters: [{name: app, endpoints: [10.0.0.1:80]}]\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->listeners, default_config().listeners);
  expect_error("clusters: [{name: api, endpoints: [10.0.0.1:80]}]\n", "1:1",
               "the file has no 'listeners', so the default listener 'ingress' (0.0.0.0:8080) "
               "sends everything to cluster 'app', which the file does not define");
}

TEST(ConfigFile, AdminTokenFile) {
  TempFile token("  s3cret-token\n\n");
  ConfigLoad r = expect_ok("admin: {token_file: " + token.path() + "}\n");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->admin_token, "s3cret-token");
  EXPECT_EQ(r.config->admin.token_file, token.path());
  std::string dumped = dump_config_yaml(*r.config);
  EXPECT_EQ(dumped.find("s3cret"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find(token.path()), std::string::npos) << dumped;
  EXPECT_EQ(config_to_json(*r.config).dump().find("s3cret"), std::string::npos);

  TempFile empty(" \n");
  expect_error("admin:\n  token_file: " + empty.path() + "\n", "2:15",
               "admin.token_file: '" + empty.path() + "': the file is empty");
  expect_error("admin:\n  token_file: /nonexistent/token\n", "2:15",
               "admin.token_file: '/nonexistent/token': cannot read it: No such file or "
               "directory");
  TempFile two_lines("one\ntwo\n");
  expect_error("admin: {token_file: " + two_lines.path() + "}\n", "1:21",
               "the token must be one line");

  ConfigLoad o = load_config(nullptr, {{"admin-token-file", "/nonexistent/token", ""}});
  ASSERT_EQ(o.errors.size(), 1u);
  EXPECT_EQ(o.errors[0],
            "--admin-token-file: invalid value '/nonexistent/token' (expected a readable file "
            "holding the admin token: cannot read it: No such file or directory)");
}

TEST(ConfigFile, SeveralErrorsAllReported) {
  ConfigLoad r = load(R"(workers: lots
listeners:
  - name: ingress
    address: 0.0.0.0:99999
    routes:
      - {prefix: /, cluster: nope}
clusters:
  - name: app
    endpoints: [127.0.0.1:0]
    pool: {idle_timout: 4s}
drain: {delay: soon}
)");
  EXPECT_FALSE(r.config);
  std::vector<std::string> expected{
      "t.yaml:1:10: workers: invalid value 'lots' (expected a whole number from 0 to 1024)",
      "t.yaml:4:14: listeners[ingress].address: invalid value '0.0.0.0:99999' (expected IP:PORT "
      "such as 0.0.0.0:8080, 127.0.0.1:9901 or [::]:8080; port 0 picks a free port)",
      "t.yaml:6:30: listeners[ingress].routes[0]: no cluster named 'nope' (the clusters are "
      "'app')",
      "t.yaml:9:17: clusters[app].endpoints[0]: invalid value '127.0.0.1:0': port 0 is only for "
      "listeners (pick a free port) (expected HOST:PORT with an IP address or DNS name and a port "
      "from 1 to 65535, such as 127.0.0.1:4000, app.internal:80 or [::1]:4000, or a Unix "
      "socket such as unix:/run/app/app.sock)",
      "t.yaml:10:12: unknown key 'idle_timout' in clusters[app].pool (did you mean "
      "'idle_timeout'?)",
      "t.yaml:11:16: drain.delay: invalid value 'soon' (expected a whole number with a unit: "
      "250ms, 2s, 1m, 1h)",
  };
  EXPECT_EQ(r.errors, expected) << joined(r.errors);
}

TEST(ConfigFile, OneMistakeOneError) {
  // An invalid cluster name is not reported again as a missing route target, and an invalid
  // address is not compared with the others.
  ConfigLoad r = load(
      "listeners:\n"
      "  - {name: a, address: bad, cluster: app}\n"
      "  - {name: b, address: 0.0.0.0:8080, cluster: app}\n"
      "clusters:\n"
      "  - {name: \"a p p\", endpoints: [127.0.0.1:1]}\n");
  EXPECT_EQ(r.errors.size(), 2u) << joined(r.errors);
}

TEST(ConfigFile, Warnings) {
  ConfigLoad r = expect_ok(with_cluster("    endpoints: [127.0.0.1:4000]\n") +
                           "  - {name: spare, endpoints: [127.0.0.1:4001]}\n"
                           "drain: {delay: 10s, budget: 15s}\n");
  ASSERT_TRUE(r.config);
  std::vector<std::string> expected{
      "t.yaml:6:12: warning: no route uses cluster 'spare': it gets no requests",
      "t.yaml:7:1: warning: drain: delay (10s) + close_spread (10s) exceed the budget (15s): "
      "WebSocket sessions and gRPC calls still open at the budget are cut without a close "
      "frame or a grpc-status"};
  EXPECT_EQ(r.warnings, expected);

  // Beside a route to a missing cluster, "unused" would only be noise.
  ConfigLoad typo = load(
      "listeners: [{name: in, cluster: ap}]\n"
      "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n");
  EXPECT_EQ(typo.errors.size(), 1u) << joined(typo.errors);
  EXPECT_TRUE(typo.warnings.empty()) << joined(typo.warnings);
}

TEST(ConfigFile, RoundTripThroughDump) {
  TempFile token("tok\n");
  ConfigLoad first = expect_ok(R"(admin: {address: "[::1]:0", token_file: )" + token.path() + R"(}
workers: 3
listeners:
  - name: ingress
    address: 0.0.0.0:8080
    routes:
      - {host: "*.googleapis.com", prefix: /storage/, cluster: storage}
      - {host: api.example.com, cluster: app}
      - {prefix: /, cluster: app}
  - {name: egress, address: "127.0.0.1:8081", drain: false, cluster: storage, upgrades: []}
  - {name: tunnels, address: "127.0.0.1:8082", cluster: app, upgrades: [websocket, foo]}
clusters:
  - name: app
    endpoints: [127.0.0.1:4000, "[::1]:4001", app.internal:80]
    load_balancing: least_request
    connect_timeout: 1500ms
    response_timeout: 2m
    dns_refresh: 1h
    readiness: true
    pool: {max_idle: 1, idle_timeout: 59s, max_requests_per_connection: 7, max_connections: 2,
           max_connecting: 3, queue_size: 0, queue_timeout: 100ms}
    outlier: {consecutive_failures: 0, base_ejection: 500ms, max_ejection: 500ms,
              max_ejection_percent: 100}
  - {name: storage, endpoints: [storage.googleapis.com:80]}
limits: {max_header_bytes: 1000, max_body_bytes: 3MiB, header_timeout: 1s, idle_timeout: 1m}
drain: {delay: 0s, budget: 1m, close_spread: 250ms, ws_close_timeout: 1s}
log: {format: json, level: debug, access: false}
)");
  ASSERT_TRUE(first.config);
  std::string yaml = dump_config_yaml(*first.config);
  ConfigLoad second = load(yaml);
  ASSERT_TRUE(second.config) << yaml << joined(second.errors);
  EXPECT_EQ(*second.config, *first.config) << yaml;
  EXPECT_EQ(dump_config_yaml(*second.config), yaml);

  // The defaults round-trip too, and the dump spells out every setting.
  ConfigLoad defaults = load(dump_config_yaml(default_config()));
  ASSERT_TRUE(defaults.config) << joined(defaults.errors);
  EXPECT_EQ(*defaults.config, default_config());
  std::string all = dump_config_yaml(default_config());
  for (const char* key :
       {"token_file:", "dns_refresh:", "readiness:", "queue_timeout:", "consecutive_failures:",
        "ws_close_timeout:", "access:", "drain: true", "upgrades: [websocket]",
        "close_spread:"})
    EXPECT_NE(all.find(key), std::string::npos) << key << "\n" << all;
  EXPECT_EQ(all.find("ws_close_spread"), std::string::npos) << all;  // the new name only
}

// drain.ws_close_spread, the old name of drain.close_spread, is an alias; with both, the new
// name wins and the old one is warned about.
TEST(ConfigFile, CloseSpreadAndItsOldName) {
  ConfigLoad a = load(with_cluster("    endpoints: [127.0.0.1:4000]\n") +
                      "drain: {close_spread: 3s}\n");
  ASSERT_TRUE(a.config) << joined(a.errors);
  EXPECT_EQ(a.config->drain.close_spread, Millis(3000));
  ConfigLoad b = load(with_cluster("    endpoints: [127.0.0.1:4000]\n") +
                      "drain: {ws_close_spread: 4s}\n");
  ASSERT_TRUE(b.config) << joined(b.errors);
  EXPECT_EQ(b.config->drain.close_spread, Millis(4000));
  ConfigLoad both = load(with_cluster("    endpoints: [127.0.0.1:4000]\n") +
                         "drain: {close_spread: 3s, ws_close_spread: 4s}\n");
  ASSERT_TRUE(both.config) << joined(both.errors);
  EXPECT_EQ(both.config->drain.close_spread, Millis(3000));
  ASSERT_EQ(both.warnings.size(), 1u) << joined(both.warnings);
  EXPECT_NE(both.warnings[0].find("ws_close_spread is the old name of close_spread"),
            std::string::npos)
      << both.warnings[0];
}

TEST(ConfigFile, JsonHasTheSameContent) {
  nlohmann::json j = config_to_json(default_config());
  EXPECT_EQ(j["admin"]["address"], "127.0.0.1:9901");
  EXPECT_EQ(j["workers"], 0);
  EXPECT_EQ(j["listeners"][0]["routes"][0], nlohmann::json({{"cluster", "app"}}));
  EXPECT_EQ(j["clusters"][0]["endpoints"][0], "127.0.0.1:4000");
  EXPECT_EQ(j["clusters"][0]["pool"]["idle_timeout"], "4s");
  EXPECT_EQ(j["clusters"][0]["load_balancing"], "round_robin");
  EXPECT_EQ(j["limits"]["max_header_bytes"], "64KiB");
  EXPECT_EQ(j["drain"]["budget"], "25s");
  EXPECT_EQ(j["log"]["level"], "info");
  EXPECT_EQ(j["log"]["access"], true);
  EXPECT_FALSE(j.contains("admin_token"));
}

TEST(ConfigOverrides, WinOverTheFile) {
  const std::string file =
      "workers: 2\n"
      "listeners:\n"
      "  - {name: in, address: 127.0.0.1:8080, cluster: app}\n"
      "  - {name: out, address: 127.0.0.1:8081, cluster: api}\n"
      "clusters:\n"
      "  - {name: app, endpoints: [127.0.0.1:4000], connect_timeout: 5s}\n"
      "  - {name: api, endpoints: [10.0.0.1:80], pool: {max_idle: 3}}\n"
      "drain: {delay: 7s}\n"
      "log: {level: warn}\n";
  ConfigLoad plain = expect_ok(file);
  ASSERT_TRUE(plain.config);
  EXPECT_EQ(plain.config->workers, 2u);

  ConfigLoad r = expect_ok(file, {{"workers", "4", "SLUICE_WORKERS"},
                                  {"listen", "127.0.0.1:0", ""},
                                  {"upstream", "127.0.0.1:5000, localhost:5001", ""},
                                  {"connect-timeout", "1s", ""},
                                  {"pool-max-idle", "9", ""},
                                  {"drain-delay", "0s", ""},
                                  {"log-level", "debug", ""},
                                  {"access-log", "false", ""}});
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(c.listeners[0].address, (HostPort{"127.0.0.1", 0}));
  EXPECT_EQ(c.listeners[1].address, (HostPort{"127.0.0.1", 8081}));  // only the first listener
  EXPECT_EQ(c.clusters[0].endpoints,
            (std::vector<HostPort>{{"127.0.0.1", 5000}, {"localhost", 5001}}));
  EXPECT_EQ(c.clusters[1].endpoints, (std::vector<HostPort>{{"10.0.0.1", 80}}));
  for (const auto& cl : c.clusters) {  // cluster-level flags: every cluster
    EXPECT_EQ(cl.connect_timeout, Millis(1000));
    EXPECT_EQ(cl.pool.max_idle, 9u);
  }
  EXPECT_EQ(c.drain.delay, Millis(0));
  EXPECT_EQ(c.drain.budget, Millis(25000));  // not overridden: the default stays
  EXPECT_EQ(c.log.level, LogLevel::kDebug);
  EXPECT_FALSE(c.log.access);

  // Later overrides win (the flag after the environment variable).
  ConfigLoad later = expect_ok(file, {{"workers", "4", "SLUICE_WORKERS"}, {"workers", "6", ""}});
  ASSERT_TRUE(later.config);
  EXPECT_EQ(later.config->workers, 6u);
}

TEST(ConfigOverrides, EveryFlagSetsItsSetting) {
  const std::string two_clusters =
      "listeners: [{name: in, address: 127.0.0.1:8080, cluster: a},"
      " {name: out, address: 127.0.0.1:8081, cluster: b}]\n"
      "clusters: [{name: a, endpoints: [127.0.0.1:1]}, {name: b, endpoints: [127.0.0.1:2]}]\n";
  TempFile token("t0k3n\n");
  ConfigLoad r = expect_ok(
      two_clusters, {{"listen", "[::1]:0", ""},           {"upstream", "app:81", ""},
                     {"admin", "127.0.0.2:0", ""},        {"workers", "1024", ""},
                     {"connect-timeout", "101ms", ""},    {"response-timeout", "102ms", ""},
                     {"header-timeout", "103ms", ""},     {"idle-timeout", "104ms", ""},
                     {"max-header-bytes", "2KiB", ""},    {"max-body-bytes", "3MiB", ""},
                     {"pool-max-idle", "5", ""},          {"pool-idle-timeout", "105ms", ""},
                     {"pool-max-requests", "6", ""},      {"pool-max-connections", "7", ""},
                     {"pool-max-connecting", "9", ""},    {"pool-queue-size", "8", ""},
                     {"pool-queue-timeout", "106ms", ""}, {"drain-delay", "107ms", ""},
                     {"drain-budget", "108ms", ""},       {"ws-close-spread", "1ms", ""},
                     {"ws-close-timeout", "110ms", ""},   {"admin-token-file", token.path(), ""},
                     {"log-format", "json", ""},          {"log-level", "error", ""},
                     {"access-log", "false", ""}});
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  EXPECT_EQ(c.listeners[0].address, (HostPort{"::1", 0}));
  EXPECT_EQ(c.listeners[1].address, (HostPort{"127.0.0.1", 8081}));
  EXPECT_EQ(c.clusters[0].endpoints, (std::vector<HostPort>{{"app", 81}}));
  EXPECT_EQ(c.clusters[1].endpoints, (std::vector<HostPort>{{"127.0.0.1", 2}}));
  EXPECT_EQ(c.admin.address, (HostPort{"127.0.0.2", 0}));
  EXPECT_EQ(c.workers, 1024u);
  for (const auto& cl : c.clusters) {
    EXPECT_EQ(cl.connect_timeout, Millis(101));
    EXPECT_EQ(cl.response_timeout, Millis(102));
    EXPECT_EQ(cl.pool, (PoolSettings{5, Millis(105), 6, 7, 9, 8, Millis(106)}));
  }
  EXPECT_EQ(c.limits, (Limits{2048, 3 << 20, Millis(103), Millis(104)}));
  EXPECT_EQ(c.drain, (DrainSettings{Millis(107), Millis(108), Millis(1), Millis(110)}));
  EXPECT_EQ(c.admin.token_file, token.path());
  EXPECT_EQ(c.admin_token, "t0k3n");
  EXPECT_EQ(c.log, (LogSettings{LogFormat::kJson, LogLevel::kError, false}));
}

TEST(ConfigOverrides, DefaultsOfTheCaller) {
  Config demo = default_config();
  demo.drain.delay = Millis(0);
  ConfigLoad r = load_config(nullptr, {}, demo);
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->drain.delay, Millis(0));
  ConfigLoad f = load_config_text("drain: {delay: 2s}\n", kFile, {}, demo);
  ASSERT_TRUE(f.config);
  EXPECT_EQ(f.config->drain.delay, Millis(2000));
}

TEST(ConfigOverrides, InvalidValues) {
  ConfigLoad r = load_config(nullptr, {{"workers", "2000", ""},
                                       {"listen", "localhost:80", ""},
                                       {"connect-timeout", "2", "SLUICE_CONNECT_TIMEOUT"},
                                       {"pool-max-connections", "0", ""},
                                       {"max-body-bytes", "1MB", ""},
                                       {"log-format", "xml", ""},
                                       {"upstream", "127.0.0.1:4000,127.0.0.1:0", ""}});
  EXPECT_FALSE(r.config);
  std::vector<std::string> expected{
      "--workers: invalid value '2000' (expected a whole number from 0 to 1024)",
      "--listen: invalid value 'localhost:80' (expected IP:PORT such as 0.0.0.0:8080, "
      "127.0.0.1:9901 or [::]:8080; port 0 picks a free port)",
      "--connect-timeout (from SLUICE_CONNECT_TIMEOUT): invalid value '2' (expected a whole "
      "number with a unit: 250ms, 2s, 1m, 1h)",
      "--pool-max-connections: invalid value '0' (expected a whole number from 1 to 4294967295)",
      "--max-body-bytes: invalid value '1MB' (expected a number of bytes, optionally with a "
      "unit: 512, 64KiB, 1MiB, 1GiB)",
      "--log-format: invalid value 'xml' (expected one of 'json', 'text')",
      "--upstream: invalid value '127.0.0.1:4000,127.0.0.1:0' (expected HOST:PORT with an IP "
      "address or DNS name and a port from 1 to 65535, such as 127.0.0.1:4000, app.internal:80 "
      "or [::1]:4000, or a Unix socket such as unix:/run/app/app.sock, several separated by "
      "commas)",
  };
  EXPECT_EQ(r.errors, expected) << joined(r.errors);
}

TEST(ConfigOverrides, ChecksAcrossSettingsNameTheFlag) {
  ConfigLoad r = load_config(nullptr, {{"listen", "127.0.0.1:9901", ""}});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("--listen: listeners[ingress].address: 127.0.0.1:9901 overlaps the "
                              "admin listener (127.0.0.1:9901)",
                              0),
            0u)
      << r.errors[0];
  // A file error and an override error in one load: both, the file's first.
  ConfigLoad both = load("workers: x\n", {{"drain-budget", "soon", ""}});
  ASSERT_EQ(both.errors.size(), 2u) << joined(both.errors);
  EXPECT_EQ(both.errors[0].substr(0, 12), "t.yaml:1:10:");
  EXPECT_EQ(both.errors[1].substr(0, 16), "--drain-budget: ");
}

TEST(ConfigOverrides, EveryFlagIsKnownOnce) {
  std::vector<std::string> names;
  for (const auto& f : override_flags()) {
    names.push_back(f.name);
    EXPECT_TRUE(f.setting && *f.setting) << f.name;
    EXPECT_TRUE(f.help && *f.help) << f.name;
  }
  for (const char* flag : {"listen",
                           "upstream",
                           "admin",
                           "workers",
                           "connect-timeout",
                           "response-timeout",
                           "header-timeout",
                           "idle-timeout",
                           "max-header-bytes",
                           "max-body-bytes",
                           "pool-max-idle",
                           "pool-idle-timeout",
                           "pool-max-requests",
                           "pool-max-connections",
                           "pool-max-connecting",
                           "pool-queue-size",
                           "pool-queue-timeout",
                           "drain-delay",
                           "drain-budget",
                           "close-spread",
                           "ws-close-spread",
                           "ws-close-timeout",
                           "admin-token-file",
                           "log-format",
                           "log-level",
                           "access-log"})
    EXPECT_EQ(std::count(names.begin(), names.end(), flag), 1) << flag;
  EXPECT_EQ(override_env_name("pool-max-idle"), "SLUICE_POOL_MAX_IDLE");
}

}  // namespace
}  // namespace sluice
