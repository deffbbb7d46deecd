// trusted_proxies, ip_rules and rate_limits in the configuration file (issue #17): values read,
// every error at its line and column, and --print-config loading back to the same settings.
#include <gtest/gtest.h>

#include "config/config_file.h"
#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

const char kHead[] =
    "listeners:\n"
    "  - {name: ingress, address: 127.0.0.1:8080, cluster: app}\n"
    "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n";

TEST(ConfigGuard, ReadsEverySetting) {
  ConfigLoad r = expect_ok(R"(
trusted_proxies: [10.0.0.0/8, "fd00::/8"]
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    cluster: app
    ip_rules: {allow: [10.0.0.0/8], deny: [10.1.2.3], action: close, match: client}
  - name: egress
    address: 127.0.0.1:8081
    cluster: app
    trusted_proxies: []
clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]
rate_limits:
  - name: login
    listener: ingress
    host: "*.example.com"
    prefix: /login
    methods: [POST, PUT]
    rate: 5/m
    burst: 3
    max_keys: 1000
  - {name: keyed, key: header, header: X-Api-Key, rate: 100/10s, dry_run: true}
  - {name: all, key: none, rate: 1000/s}
)");
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  ASSERT_EQ(c.trusted_proxies.size(), 2u);
  EXPECT_EQ(c.trusted_proxies[1].str(), "fd00::/8");
  EXPECT_FALSE(c.listeners[0].trusted_proxies);  // inherits the top level
  ASSERT_TRUE(c.listeners[1].trusted_proxies);
  EXPECT_TRUE(c.listeners[1].trusted_proxies->empty());
  const IpRules& ir = c.listeners[0].ip_rules;
  EXPECT_EQ(ir.deny[0].str(), "10.1.2.3");
  EXPECT_EQ(ir.action, IpRules::Action::kClose);
  EXPECT_EQ(ir.match, IpRules::Match::kClient);
  ASSERT_EQ(c.rate_limits.size(), 3u);
  const RateLimitRule& login = c.rate_limits[0];
  EXPECT_EQ(login.listener, "ingress");
  EXPECT_EQ(login.requests, 5u);
  EXPECT_EQ(login.period.count(), 60000);
  EXPECT_EQ(login.effective_burst(), 3u);
  EXPECT_EQ(login.methods, (std::vector<std::string>{"POST", "PUT"}));
  EXPECT_EQ(login.key, RateLimitKey::kClientIp);
  EXPECT_EQ(c.rate_limits[1].header, "x-api-key");
  EXPECT_TRUE(c.rate_limits[1].dry_run);
  EXPECT_EQ(c.rate_limits[1].period.count(), 10000);
  EXPECT_EQ(c.rate_limits[1].effective_burst(), 10u);  // one second's worth by default
  EXPECT_EQ(c.rate_limits[2].effective_burst(), 1000u);
  EXPECT_EQ(c.rate_limits[2].max_keys, 100000u);

  // --print-config loads back to the same configuration.
  ConfigLoad again = expect_ok(dump_config_yaml(c));
  ASSERT_TRUE(again.config);
  EXPECT_TRUE(*again.config == c) << dump_config_yaml(c);
  // A slow rate's default burst is one request.
  EXPECT_EQ(expect_ok(std::string(kHead) + "rate_limits: [{name: a, rate: 1/h}]\n")
                .config->rate_limits[0]
                .effective_burst(),
            1u);
}

TEST(ConfigGuard, NetworkErrorsAtTheirPosition) {
  expect_error("trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\n", "1:31",
               "trusted_proxies[1]: invalid value '10.0.0.1/8': host bits are set: did you mean "
               "10.0.0.0/8?");
  expect_error("trusted_proxies: 10.0.0.0/8\n", "1:18", "a list of networks");
  expect_error("trusted_proxies: [10.0.0.0/33]\n", "1:19", "0 to 32");
  expect_error(
      "listeners:\n"
      "  - name: ingress\n"
      "    cluster: app\n"
      "    ip_rules: {deny: [example.com]}\n"
      "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n",
      "4:23", "listeners[ingress].ip_rules.deny[0]: invalid value 'example.com'");
  expect_error(
      "listeners:\n"
      "  - name: ingress\n"
      "    cluster: app\n"
      "    ip_rules: {action: drop}\n"
      "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n",
      "4:24", "403 (answer 403 Forbidden) or close");
  expect_error(
      "listeners:\n"
      "  - name: ingress\n"
      "    cluster: app\n"
      "    ip_rules: {match: xff}\n"
      "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n",
      "4:23", "peer (the socket's address");
  expect_error(
      "listeners:\n"
      "  - name: ingress\n"
      "    cluster: app\n"
      "    ip_rules: {alow: [10.0.0.0/8]}\n"
      "clusters: [{name: app, endpoints: ['127.0.0.1:4000']}]\n",
      "4:16", "alow");
}

TEST(ConfigGuard, RuleErrorsAtTheirPosition) {
  const std::string h = kHead;
  expect_error(h + "rate_limits: [{name: a, rate: 10/x}]\n", "4:31",
               "rate_limits[a].rate: invalid value '10/x' (expected a number of requests per "
               "period");
  expect_error(h + "rate_limits: [{name: a, rate: 0/s}]\n", "4:31", "invalid value '0/s'");
  expect_error(h + "rate_limits: [{name: a}]\n", "4:15", "a rate-limit rule needs a 'rate'");
  expect_error(h + "rate_limits: [{rate: 1/s}]\n", "4:15", "needs a 'name'");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s}, {name: a, rate: 2/s}]\n", "4:44",
               "a rule named 'a' is already defined");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, listener: egress}]\n", "4:46",
               "rate_limits[a].listener: invalid value 'egress': no such listener (expected the "
               "name of a listener: 'ingress')");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, methods: [post]}]\n", "4:46",
               "did you mean 'POST'?");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, methods: [FETCH]}]\n", "4:46",
               "an HTTP method");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, key: ip}]\n", "4:41",
               "client_ip (a bucket per client)");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, key: header}]\n", "4:41",
               "'key: header' needs 'header'");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, header: X-Key}]\n", "4:44",
               "'header' is used only with 'key: header'");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, key: header, header: 'X Key'}]\n", "4:57",
               "a header name");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, burst: 0}]\n", "4:43", "burst");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, max_keys: 0}]\n", "4:46", "max_keys");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, prefix: api}]\n", "4:44", "prefix");
  expect_error(h + "rate_limits: [{name: a, rate: 1/s, burts: 2}]\n", "4:36", "burts");
  expect_error(h + "rate_limits: {name: a}\n", "4:14", "a list of rate-limit rules");
}

}  // namespace
}  // namespace sluice
