// clusters[].protocol: http1 (default), h2 (TLS with ALPN h2) and h2c (cleartext HTTP/2),
// their combinations with `tls`, and the --print-config round trip.
#include <gtest/gtest.h>

#include <string>

#include "config/config_file.h"
#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

constexpr const char* kEndpoints = "    endpoints: [127.0.0.1:4000]\n";

TEST(ConfigProtocol, DefaultIsHttp1) {
  ConfigLoad r = expect_ok(with_cluster(kEndpoints));
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->clusters[0].protocol, UpstreamProtocol::kHttp1);
}

TEST(ConfigProtocol, EveryValue) {
  ConfigLoad a = expect_ok(with_cluster(std::string(kEndpoints) + "    protocol: h2c\n"));
  ASSERT_TRUE(a.config);
  EXPECT_EQ(a.config->clusters[0].protocol, UpstreamProtocol::kH2c);
  ConfigLoad b =
      expect_ok(with_cluster(std::string(kEndpoints) + "    protocol: h2\n    tls: {}\n"));
  ASSERT_TRUE(b.config);
  EXPECT_EQ(b.config->clusters[0].protocol, UpstreamProtocol::kH2);
  ConfigLoad c = expect_ok(with_cluster(std::string(kEndpoints) + "    protocol: http1\n"));
  ASSERT_TRUE(c.config);
  EXPECT_EQ(c.config->clusters[0].protocol, UpstreamProtocol::kHttp1);
}

TEST(ConfigProtocol, BadValuesAndCombinations) {
  const std::string e = kEndpoints;
  expect_error(with_cluster(e + "    protocol: http2\n"), "6:15",
               "clusters[app].protocol: invalid value 'http2'");
  expect_error(with_cluster(e + "    protocol: h2\n"), "6:15",
               "protocol h2 is HTTP/2 over TLS (ALPN h2) and needs 'tls: {}'");
  expect_error(with_cluster(e + "    protocol: h2c\n    tls: {}\n"), "6:15",
               "protocol h2c is cleartext HTTP/2 and cannot be used with 'tls'");
}

TEST(ConfigProtocol, PrintConfigRoundTrip) {
  ConfigLoad first = expect_ok(with_cluster(std::string(kEndpoints) + "    protocol: h2c\n"));
  ASSERT_TRUE(first.config);
  const std::string yaml = dump_config_yaml(*first.config);
  EXPECT_NE(yaml.find("protocol: h2c"), std::string::npos) << yaml;
  ConfigLoad second = load(yaml);
  ASSERT_TRUE(second.config) << yaml << joined(second.errors);
  EXPECT_EQ(*second.config, *first.config) << yaml;
}

}  // namespace
}  // namespace sluice
