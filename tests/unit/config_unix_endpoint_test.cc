// Unix-socket upstream endpoints (`unix:/run/app/app.sock`, issue #16): how the file and the
// --upstream flag read them, what they refuse and why, and how they are shown again.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config_file.h"
#include "config/setting_values.h"
#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

HostPort unix_endpoint(const std::string& path) {
  HostPort hp;
  hp.unix_path = path;
  return hp;
}

TEST(UnixEndpoint, ParsedFromTheText) {
  std::string problem;
  auto hp = parse_endpoint("unix:/run/app/app.sock", &problem);
  ASSERT_TRUE(hp) << problem;
  EXPECT_TRUE(hp->is_unix());
  EXPECT_EQ(hp->unix_path, "/run/app/app.sock");
  EXPECT_EQ(hp->host, "");
  EXPECT_EQ(hp->port, 0);
  EXPECT_EQ(hp->str(), "unix:/run/app/app.sock");
  EXPECT_FALSE(parse_endpoint("127.0.0.1:4000")->is_unix());
  EXPECT_EQ(parse_endpoint("127.0.0.1:4000")->str(), "127.0.0.1:4000");
}

TEST(UnixEndpoint, BadPathsSayWhy) {
  struct Case {
    std::string text;
    std::string why;
  };
  const std::vector<Case> cases{
      {"unix:", "needs a path after 'unix:'"},
      {"unix:app.sock", "must be absolute"},
      {"unix:./app.sock", "must be absolute"},
      {"unix:@abstract", "must be absolute"},
      {std::string("unix:/run/a\0b", 13), "NUL byte"},
      {std::string("unix:/").append(kMaxUnixPath, 'x'), "at most 107 fit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    std::string problem;
    EXPECT_FALSE(parse_endpoint(c.text, &problem));
    EXPECT_NE(problem.find(c.why), std::string::npos) << problem;
  }
  // The longest path a sockaddr_un holds (sun_path less its NUL) is accepted.
  std::string longest = std::string("/").append(kMaxUnixPath - 1, 'x');
  ASSERT_EQ(longest.size(), 107u);
  auto hp = parse_endpoint("unix:" + longest);
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->unix_path, longest);
  // Not "unix:" exactly: read as HOST:PORT, and refused as one.
  EXPECT_FALSE(parse_endpoint("UNIX:/run/app.sock"));
  EXPECT_FALSE(parse_endpoint("unix/run/app.sock"));
}

TEST(UnixEndpoint, EndpointListTakesThemWithTcpEndpoints) {
  auto eps = parse_endpoint_list("unix:/run/a.sock, unix:/run/b.sock");
  ASSERT_TRUE(eps);
  EXPECT_EQ(*eps,
            (std::vector<HostPort>{unix_endpoint("/run/a.sock"), unix_endpoint("/run/b.sock")}));
  std::string problem;
  EXPECT_FALSE(parse_endpoint_list("unix:/run/a.sock,unix:b.sock", &problem));
  EXPECT_NE(problem.find("must be absolute"), std::string::npos) << problem;
}

TEST(UnixEndpoint, FileReadsThemAndDumpsThemBack) {
  ConfigLoad r = expect_ok(
      with_cluster("    endpoints: [unix:/run/app/app.sock, \"unix:/run/app/second.sock\"]\n"
                   "    readiness: true\n"));
  ASSERT_TRUE(r.config);
  const ClusterConfig& c = r.config->clusters[0];
  EXPECT_EQ(c.endpoints, (std::vector<HostPort>{unix_endpoint("/run/app/app.sock"),
                                                unix_endpoint("/run/app/second.sock")}));
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);

  // The dump (check-config, /config) shows them as written and reads back the same.
  std::string yaml = dump_config_yaml(*r.config);
  EXPECT_NE(yaml.find("unix:/run/app/app.sock"), std::string::npos) << yaml;
  ConfigLoad again = expect_ok(yaml);
  ASSERT_TRUE(again.config);
  EXPECT_EQ(*again.config, *r.config);
  const std::string json = config_to_json(*r.config).dump();
  EXPECT_NE(json.find("\"unix:/run/app/second.sock\""), std::string::npos) << json;
}

TEST(UnixEndpoint, FileErrorsArePositioned) {
  expect_error(with_cluster("    endpoints: [unix:app.sock]\n"), "5:17",
               "clusters[app].endpoints[0]: invalid value 'unix:app.sock': the Unix socket path "
               "must be absolute");
  expect_error(with_cluster("    endpoints: [\"unix:\"]\n"), "5:17",
               "a Unix socket endpoint needs a path after 'unix:'");
  expect_error(with_cluster(std::string("    endpoints: [unix:/").append(200, 'p') + "]\n"), "5:17",
               "the Unix socket path is 201 bytes long; at most 107 fit in a socket address");
}

TEST(UnixEndpoint, ListenersDoNotTakeThem) {
  expect_error(
      "listeners:\n"
      "  - {name: ingress, address: unix:/run/sluice.sock, cluster: app}\n"
      "clusters:\n"
      "  - {name: app, endpoints: [unix:/run/app.sock]}\n",
      "2:30", "sluice listens on TCP; Unix sockets are for upstream endpoints");
}

TEST(UnixEndpoint, OneKindPerCluster) {
  expect_error(with_cluster("    endpoints: [unix:/run/app.sock, 127.0.0.1:4000]\n"), "5:5",
               "clusters[app].endpoints: unix:/run/app.sock and 127.0.0.1:4000: a cluster's "
               "endpoints are either all Unix sockets or all HOST:PORT; put them in two clusters");
  // Two clusters, one of each kind, are fine.
  ConfigLoad r = expect_ok(
      "listeners:\n"
      "  - name: ingress\n"
      "    address: 127.0.0.1:8080\n"
      "    routes: [{prefix: /tcp, cluster: tcp}, {prefix: /, cluster: app}]\n"
      "clusters:\n"
      "  - {name: app, endpoints: [unix:/run/app.sock]}\n"
      "  - {name: tcp, endpoints: [127.0.0.1:4000]}\n");
  ASSERT_TRUE(r.config);
}

TEST(UnixEndpoint, TlsNeedsAnSniToVerify) {
  expect_error(with_cluster("    endpoints: [unix:/run/app.sock]\n"
                            "    tls: {}\n"),
               "6:5",
               "clusters[app].tls: needs 'sni' with Unix-socket endpoints: there is no host name");
  ConfigLoad r =
      expect_ok(with_cluster("    endpoints: [unix:/run/app.sock]\n"
                             "    tls: {sni: app.internal}\n"));
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->clusters[0].tls.sni, "app.internal");
  // Without verification there is nothing to check the name against: no SNI is sent (and the
  // usual warning says verification is off).
  r =
      expect_ok(with_cluster("    endpoints: [unix:/run/app.sock]\n"
                             "    tls: {verify: false}\n"));
  ASSERT_TRUE(r.config);
  ASSERT_EQ(r.warnings.size(), 1u) << joined(r.warnings);
  EXPECT_NE(r.warnings[0].find("TLS verification is off"), std::string::npos) << r.warnings[0];
}

TEST(UnixEndpoint, UpstreamFlag) {
  ConfigLoad r = load_config(nullptr, {{"upstream", "unix:/run/app/app.sock", ""}});
  ASSERT_TRUE(r.config) << joined(r.errors);
  EXPECT_EQ(r.config->clusters[0].endpoints,
            (std::vector<HostPort>{unix_endpoint("/run/app/app.sock")}));

  r = load_config(nullptr, {{"upstream", "unix:run/app.sock", ""}});
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  EXPECT_NE(r.errors[0].find("--upstream: invalid value 'unix:run/app.sock'"), std::string::npos)
      << r.errors[0];
  EXPECT_NE(r.errors[0].find("the Unix socket path must be absolute"), std::string::npos)
      << r.errors[0];

  r = load_config(nullptr, {{"upstream", "unix:/run/app.sock,127.0.0.1:4000", ""}});
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  EXPECT_NE(r.errors[0].find("--upstream"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[0].find("either all Unix sockets or all HOST:PORT"), std::string::npos)
      << r.errors[0];

  // The flag replaces a file's TCP endpoints; the file's TLS then needs its sni.
  ConfigLoad f = load(with_cluster("    endpoints: [127.0.0.1:4000]\n"
                                   "    tls: {}\n"),
                      {{"upstream", "unix:/run/app.sock", ""}});
  EXPECT_FALSE(f.config);
  ASSERT_EQ(f.errors.size(), 1u) << joined(f.errors);
  EXPECT_NE(f.errors[0].find("t.yaml:6:5: clusters[app].tls: needs 'sni'"), std::string::npos)
      << f.errors[0];
}

}  // namespace
}  // namespace sluice
