// The protection sections of the configuration file: listeners[].maintenance and
// clusters[].circuit_breaker / limits / retry_budget — defaults, values, every error at its
// position, and the --print-config round trip.
#include <gtest/gtest.h>

#include <string>

#include "config/config_file.h"
#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

std::string with_listener(const std::string& lines) {
  return "clusters:\n"
         "  - {name: app, endpoints: [127.0.0.1:4000]}\n"
         "listeners:\n"
         "  - name: ingress\n"
         "    address: 127.0.0.1:8080\n"
         "    cluster: app\n" +
         lines;
}

constexpr const char* kEndpoints = "    endpoints: [127.0.0.1:4000]\n";

TEST(ConfigGuards, DefaultsAreOffExceptTheRetryBudget) {
  ConfigLoad r = expect_ok(with_cluster(kEndpoints));
  ASSERT_TRUE(r.config);
  const ClusterConfig& c = r.config->clusters[0];
  EXPECT_FALSE(c.circuit_breaker.enabled);
  EXPECT_EQ(c.caps, ClusterCaps{});
  EXPECT_EQ(c.retry_budget.percent, 20u);
  EXPECT_EQ(c.retry_budget.min_retries, 3u);
  const MaintenanceSettings& m = r.config->listeners[0].maintenance;
  EXPECT_EQ(m.mode, MaintenanceMode::kOff);
  EXPECT_EQ(m.allow_methods, (std::vector<std::string>{"GET", "HEAD", "OPTIONS"}));
  EXPECT_EQ(m.retry_after, Millis(120000));
}

TEST(ConfigGuards, EverySetting) {
  ConfigLoad r = expect_ok(with_cluster(std::string(kEndpoints) +
                                        "    circuit_breaker: {window: 5s, min_requests: 10, "
                                        "failure_ratio: 0.25, failure_statuses: [500, 503], "
                                        "open_for: 1m, trial_requests: 2}\n"
                                        "    limits: {max_requests: 100, max_pending: 10}\n"
                                        "    retry_budget: {percent: 50, min_retries: 0}\n"));
  ASSERT_TRUE(r.config);
  const ClusterConfig& c = r.config->clusters[0];
  EXPECT_TRUE(c.circuit_breaker.enabled);
  EXPECT_EQ(c.circuit_breaker.window, Millis(5000));
  EXPECT_EQ(c.circuit_breaker.min_requests, 10u);
  EXPECT_DOUBLE_EQ(c.circuit_breaker.failure_ratio, 0.25);
  EXPECT_EQ(c.circuit_breaker.failure_statuses, (std::vector<int>{500, 503}));
  EXPECT_EQ(c.circuit_breaker.open_for, Millis(60000));
  EXPECT_EQ(c.circuit_breaker.trial_requests, 2u);
  EXPECT_EQ(c.caps, (ClusterCaps{100, 10}));
  EXPECT_EQ(c.retry_budget, (RetryBudgetSettings{50, 0}));

  r =
      expect_ok(with_listener("    maintenance:\n"
                              "      mode: read-only\n"
                              "      retry_after: 5m\n"
                              "      message: migrating the database\n"
                              "      allow_methods: [get, HEAD]\n"
                              "      allow_paths: [/healthz, {prefix: /login, methods: [POST]}]\n"
                              "      body: '<h1>Back soon</h1>'\n"
                              "      content_type: text/html\n"));
  ASSERT_TRUE(r.config);
  const MaintenanceSettings& m = r.config->listeners[0].maintenance;
  EXPECT_EQ(m.mode, MaintenanceMode::kReadOnly);
  EXPECT_EQ(m.retry_after, Millis(300000));
  EXPECT_EQ(m.message, "migrating the database");
  EXPECT_EQ(m.allow_methods, (std::vector<std::string>{"GET", "HEAD"}));
  ASSERT_EQ(m.allow_paths.size(), 2u);
  EXPECT_EQ(m.allow_paths[0], (MaintenancePath{"/healthz", {}}));
  EXPECT_EQ(m.allow_paths[1], (MaintenancePath{"/login", {"POST"}}));
  EXPECT_EQ(m.body, "<h1>Back soon</h1>");
  EXPECT_EQ(m.content_type, "text/html");
}

TEST(ConfigGuards, AnEmptyCircuitBreakerTurnsItOnWithTheDefaults) {
  ConfigLoad r = expect_ok(with_cluster(std::string(kEndpoints) + "    circuit_breaker: {}\n"));
  ASSERT_TRUE(r.config);
  CircuitBreakerSettings want;
  want.enabled = true;
  EXPECT_EQ(r.config->clusters[0].circuit_breaker, want);
}

TEST(ConfigGuards, ClusterErrorsAtTheirPositions) {
  const std::string e = kEndpoints;
  expect_error(with_cluster(e + "    circuit_breaker: {failure_ratio: 1.5}\n"), "6:38",
               "clusters[app].circuit_breaker.failure_ratio: invalid value '1.5'");
  expect_error(with_cluster(e + "    circuit_breaker: {failure_statuses: [502, 700]}\n"), "6:47",
               "failure_statuses[1]: invalid value '700'");
  expect_error(with_cluster(e + "    circuit_breaker: {open_for: 0s}\n"), "6:33",
               "open_for: must be above 0");
  expect_error(with_cluster(e + "    circuit_breaker: {trial_requests: 0}\n"), "6:39",
               "trial_requests: invalid value '0'");
  expect_error(with_cluster(e + "    circuit_breaker: {min_request: 5}\n"), "6:23",
               "did you mean 'min_requests'");
  expect_error(with_cluster(e + "    retry_budget: {percent: 150}\n"), "6:29",
               "clusters[app].retry_budget.percent: invalid value '150'");
  expect_error(with_cluster(e + "    limits: {max_requests: -1}\n"), "6:28",
               "clusters[app].limits.max_requests: invalid value '-1'");
}

TEST(ConfigGuards, MaintenanceErrorsAtTheirPositions) {
  expect_error(with_listener("    maintenance: {mode: readonly}\n"), "7:25",
               "did you mean 'read-only'");
  expect_error(with_listener("    maintenance: {retry_after: 500ms}\n"), "7:32",
               "retry_after: must be at least 1s");
  expect_error(with_listener("    maintenance: {allow_methods: [GET, 'P OST']}\n"), "7:40",
               "maintenance.allow_methods[1]: invalid value 'P OST'");
  expect_error(with_listener("    maintenance: {allow_paths: [login]}\n"), "7:33",
               "maintenance.allow_paths[0]: invalid value 'login'");
  expect_error(with_listener("    maintenance: {allow_paths: [{methods: [POST]}]}\n"), "7:33",
               "needs a 'prefix'");
  expect_error(with_listener("    maintenance: {mod: full}\n"), "7:19", "did you mean 'mode'");
}

TEST(ConfigGuards, PrintConfigRoundTrips) {
  ConfigLoad first = expect_ok(
      "clusters:\n"
      "  - name: app\n"
      "    endpoints: [127.0.0.1:4000]\n"
      "    circuit_breaker: {failure_ratio: 0.3333333333333333, failure_statuses: [503]}\n"
      "    limits: {max_requests: 7}\n"
      "listeners:\n"
      "  - name: ingress\n"
      "    address: 127.0.0.1:8080\n"
      "    cluster: app\n"
      "    maintenance: {mode: full, body: '{\"down\": true}', allow_paths: [{prefix: /a, "
      "methods: [POST]}]}\n");
  ASSERT_TRUE(first.config);
  const std::string yaml = dump_config_yaml(*first.config);
  EXPECT_NE(yaml.find("mode: full"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("circuit_breaker"), std::string::npos) << yaml;
  ConfigLoad second = load(yaml);
  ASSERT_TRUE(second.config) << yaml << joined(second.errors);
  EXPECT_EQ(*second.config, *first.config) << yaml;
  EXPECT_EQ(dump_config_yaml(*second.config), yaml);
  // A listener's maintenance is shown when it differs from the defaults, and "off" is quoted
  // then: a YAML 1.1 reader would take it for false.
  EXPECT_EQ(dump_config_yaml(default_config()).find("maintenance"), std::string::npos);
  Config c = default_config();
  c.listeners[0].maintenance.message = "soon";
  const std::string off = dump_config_yaml(c);
  EXPECT_NE(off.find("mode: \"off\""), std::string::npos) << off;
  ConfigLoad again = load(off);
  ASSERT_TRUE(again.config) << off << joined(again.errors);
  EXPECT_EQ(again.config->listeners[0].maintenance, c.listeners[0].maintenance);
}

}  // namespace
}  // namespace sluice
