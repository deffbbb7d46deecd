// The TLS settings of the configuration file: listener termination (tls.cert/key or
// tls.certificates) and cluster origination (tls: {} and its keys). The loader only checks that
// the PEM files can be read, so the files here are plain temporary files whose content does not
// matter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "config_test_helpers.h"

namespace sluice {
namespace {

using namespace config_test;

// Stand-ins for PEM files: the loader reads none of them.
struct PemFiles {
  TempFile cert{"-----BEGIN CERTIFICATE-----\nnot parsed by the loader\n"};
  TempFile key{"-----BEGIN PRIVATE KEY-----\nSECRET-KEY-MATERIAL\n"};
  TempFile cert2{"second certificate\n"};
  TempFile key2{"SECRET-KEY-MATERIAL-2\n"};
  TempFile ca{"CA bundle\n"};
};

// One listener "in" (with `tls_lines` under it) in front of cluster "app".
std::string with_listener_tls(const std::string& tls_lines) {
  return "listeners:\n"
         "  - name: in\n"
         "    address: 127.0.0.1:8443\n"
         "    cluster: app\n" +
         tls_lines + "clusters: [{name: app, endpoints: [127.0.0.1:4000]}]\n";
}

// "LINE:COL" of the last `needle` in `line_text`, for lines that hold temporary file names: the
// values looked for come after the names, and a random name may itself hold a short needle
// ("0s" in /tmp/sluice-...-X0sYzq made HandshakeTimeout fail now and then).
std::string at(int line, const std::string& line_text, const std::string& needle) {
  return std::to_string(line) + ":" + std::to_string(line_text.rfind(needle) + 1);
}

TEST(ConfigTls, OffByDefault) {
  ConfigLoad r = expect_ok(with_cluster("    endpoints: [127.0.0.1:4000]\n"));
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->listeners[0].tls, ListenerTls{});
  EXPECT_FALSE(r.config->listeners[0].tls.enabled);
  EXPECT_EQ(r.config->clusters[0].tls, ClusterTls{});
  EXPECT_FALSE(r.config->clusters[0].tls.enabled);
  // No tls section in the dump or in GET /config when TLS is off.
  EXPECT_EQ(dump_config_yaml(default_config()).find("tls"), std::string::npos);
  nlohmann::json j = config_to_json(default_config());
  EXPECT_FALSE(j["listeners"][0].contains("tls"));
  EXPECT_FALSE(j["clusters"][0].contains("tls"));
}

TEST(ConfigTls, ListenerWithOneCertificate) {
  PemFiles pem;
  ConfigLoad r = expect_ok(
      with_listener_tls("    tls: {cert: " + pem.cert.path() + ", key: " + pem.key.path() + "}\n"));
  ASSERT_TRUE(r.config);
  const ListenerTls& tls = r.config->listeners[0].tls;
  EXPECT_TRUE(tls.enabled);
  ASSERT_EQ(tls.certificates.size(), 1u);
  EXPECT_EQ(tls.certificates[0], (TlsCertificate{pem.cert.path(), pem.key.path()}));
  EXPECT_EQ(tls.client_ca, "");
  EXPECT_EQ(tls.handshake_timeout, Millis(10000));
  EXPECT_EQ(tls.min_version, "1.2");
  EXPECT_EQ(tls.ciphers, "");
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);

  ConfigLoad all =
      expect_ok(with_listener_tls("    tls:\n"
                                  "      cert: " +
                                  pem.cert.path() +
                                  "\n"
                                  "      key: " +
                                  pem.key.path() +
                                  "\n"
                                  "      client_ca: " +
                                  pem.ca.path() +
                                  "\n"
                                  "      handshake_timeout: 2500ms\n"
                                  "      min_version: 1.3\n"));
  ASSERT_TRUE(all.config);
  const ListenerTls& t = all.config->listeners[0].tls;
  EXPECT_EQ(t.client_ca, pem.ca.path());
  EXPECT_EQ(t.handshake_timeout, Millis(2500));
  EXPECT_EQ(t.min_version, "1.3");
}

TEST(ConfigTls, ListenerWithSeveralCertificates) {
  PemFiles pem;
  ConfigLoad r =
      expect_ok(with_listener_tls("    tls:\n"
                                  "      certificates:\n"
                                  "        - {cert: " +
                                  pem.cert.path() + ", key: " + pem.key.path() +
                                  "}\n"
                                  "        - cert: " +
                                  pem.cert2.path() +
                                  "\n"
                                  "          key: " +
                                  pem.key2.path() +
                                  "\n"
                                  "      ciphers: \"ECDHE+AESGCM:!aNULL\"\n"));
  ASSERT_TRUE(r.config);
  const ListenerTls& tls = r.config->listeners[0].tls;
  EXPECT_TRUE(tls.enabled);
  // In the file's order: the first is the default certificate.
  EXPECT_EQ(tls.certificates, (std::vector<TlsCertificate>{{pem.cert.path(), pem.key.path()},
                                                           {pem.cert2.path(), pem.key2.path()}}));
  EXPECT_EQ(tls.ciphers, "ECDHE+AESGCM:!aNULL");
}

TEST(ConfigTls, ListenerCertificateForms) {
  PemFiles pem;
  const std::string cert = pem.cert.path(), key = pem.key.path();
  // Both forms at once.
  expect_error(with_listener_tls("    tls:\n"
                                 "      cert: " +
                                 cert +
                                 "\n"
                                 "      key: " +
                                 key +
                                 "\n"
                                 "      certificates: [{cert: " +
                                 cert + ", key: " + key + "}]\n"),
               "8:7",
               "listeners[in].tls: give either 'cert' and 'key' (one certificate) or "
               "'certificates' (several, chosen by SNI), not both");
  // Neither: a TLS listener without a certificate.
  expect_error(with_listener_tls("    tls: {client_ca: " + pem.ca.path() + "}\n"), "5:5",
               "listeners[in].tls: a TLS listener needs a certificate: 'cert: FILE' and 'key: "
               "FILE', or 'certificates: [{cert: FILE, key: FILE}, ...]'");
  expect_error(with_listener_tls("    tls:\n"), "5:5", "a TLS listener needs a certificate");
  // Half a pair.
  expect_error(with_listener_tls("    tls: {cert: " + cert + "}\n"), "5:11",
               "listeners[in].tls: 'cert' needs its 'key' (the certificate's private key, PEM)");
  expect_error(with_listener_tls("    tls: {key: " + key + "}\n"), "5:11",
               "listeners[in].tls: 'key' needs its 'cert'");
  expect_error(with_listener_tls("    tls: {cert: \"\", key: " + key + "}\n"), "5:17",
               "listeners[in].tls.cert: expected a file name, got an empty string");
  // The list form.
  expect_error(with_listener_tls("    tls: {certificates: []}\n"), "5:25",
               "listeners[in].tls.certificates: empty; give at least one {cert: FILE, key: FILE}");
  expect_error(with_listener_tls("    tls:\n"
                                 "      certificates:\n"
                                 "        - {cert: " +
                                 cert + "}\n"),
               "7:12", "listeners[in].tls.certificates[0]: 'cert' needs its 'key'");
  expect_error(with_listener_tls("    tls:\n"
                                 "      certificates:\n"
                                 "        - " +
                                 cert + "\n"),
               "7:11",
               "listeners[in].tls.certificates[0]: expected a map {cert: FILE, key: FILE}, got");
  expect_error(with_listener_tls("    tls: {certificates: " + cert + "}\n"), "5:25",
               "listeners[in].tls.certificates: expected a list of {cert: FILE, key: FILE}");
}

TEST(ConfigTls, UnreadableFiles) {
  PemFiles pem;
  // A missing key file: its position, the setting, the path and the system's reason.
  expect_error(with_listener_tls("    tls:\n"
                                 "      cert: " +
                                 pem.cert.path() +
                                 "\n"
                                 "      key: /nonexistent/tls.key\n"),
               "7:12",
               "listeners[in].tls.key: '/nonexistent/tls.key': cannot read it: No such file or "
               "directory");
  expect_error(with_listener_tls("    tls: {cert: /tmp, key: " + pem.key.path() + "}\n"), "5:17",
               "listeners[in].tls.cert: '/tmp': cannot read it: Is a directory");
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {ca: /nonexistent/ca.pem}\n"),
               "6:15", "clusters[app].tls.ca: '/nonexistent/ca.pem': cannot read it: No such file");

  // Every problem of one load is reported, each at its own line.
  const std::string second = "        - {cert: " + pem.cert.path() + ", key: /nonexistent/b.key}\n";
  ConfigLoad r = load(
      "listeners:\n"
      "  - name: in\n"
      "    address: 127.0.0.1:8443\n"
      "    cluster: app\n"
      "    tls:\n"
      "      certificates:\n"
      "        - {cert: /nonexistent/a.crt, key: " +
      pem.key.path() + "}\n" + second +
      "      client_ca: /nonexistent/clients.pem\n"
      "clusters:\n"
      "  - name: app\n"
      "    endpoints: [127.0.0.1:443]\n"
      "    tls: {cert: /nonexistent/client.crt, key: /nonexistent/client.key}\n");
  EXPECT_FALSE(r.config);
  std::vector<std::string> expected{
      "t.yaml:7:18: listeners[in].tls.certificates[0].cert: '/nonexistent/a.crt': cannot read "
      "it: No such file or directory",
      "t.yaml:" + at(8, second, "/nonexistent") +
          ": listeners[in].tls.certificates[1].key: '/nonexistent/b.key': cannot read it: No "
          "such file or directory",
      "t.yaml:9:18: listeners[in].tls.client_ca: '/nonexistent/clients.pem': cannot read it: No "
      "such file or directory",
      "t.yaml:13:17: clusters[app].tls.cert: '/nonexistent/client.crt': cannot read it: No such "
      "file or directory",
      "t.yaml:13:47: clusters[app].tls.key: '/nonexistent/client.key': cannot read it: No such "
      "file or directory",
  };
  EXPECT_EQ(r.errors, expected) << joined(r.errors);
}

TEST(ConfigTls, RelativePathsAreFromTheWorkingDirectory) {
  PemFiles pem;
  char old[PATH_MAX];
  ASSERT_TRUE(getcwd(old, sizeof old));
  ASSERT_EQ(chdir("/tmp"), 0);
  const std::string cert = pem.cert.path().substr(5), key = pem.key.path().substr(5);  // "/tmp/"
  ConfigLoad r = load(with_listener_tls("    tls: {cert: " + cert + ", key: " + key + "}\n"));
  ConfigLoad elsewhere;
  if (chdir("/") == 0)
    elsewhere = load(with_listener_tls("    tls: {cert: " + cert + ", key: " + key + "}\n"));
  ASSERT_EQ(chdir(old), 0);
  ASSERT_TRUE(r.config) << joined(r.errors);
  EXPECT_EQ(r.config->listeners[0].tls.certificates[0].cert, cert);  // kept as written
  EXPECT_EQ(elsewhere.errors.size(), 2u) << joined(elsewhere.errors);
}

TEST(ConfigTls, MinVersion) {
  PemFiles pem;
  const std::string pair = "cert: " + pem.cert.path() + ", key: " + pem.key.path();
  for (const char* v : {"1.2", "\"1.2\"", "'1.3'", "1.3"}) {
    ConfigLoad r =
        expect_ok(with_listener_tls("    tls: {" + pair + ", min_version: " + v + "}\n"));
    ASSERT_TRUE(r.config);
    EXPECT_EQ(r.config->listeners[0].tls.min_version,
              std::string(v).find('2') != std::string::npos ? "1.2" : "1.3");
  }
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {min_version: 1.4}\n"),
               "6:24",
               "clusters[app].tls.min_version: invalid value '1.4' (expected '1.2' or '1.3')");
  // TLS 1.0 and 1.1, however they are spelled, are refused with the reason.
  const std::string refused =
      ": TLS 1.0 and 1.1 are not supported (RFC 8996 deprecates them); sluice speaks TLS 1.2 and "
      "1.3 (expected '1.2' or '1.3')";
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {min_version: 1.1}\n"),
               "6:24", "clusters[app].tls.min_version: invalid value '1.1'" + refused);
  const std::string tls11 = "    tls: {" + pair + ", min_version: TLSv1.1}\n";
  expect_error(with_listener_tls(tls11), at(5, tls11, "TLSv1.1"),
               "listeners[in].tls.min_version: invalid value 'TLSv1.1'" + refused);
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {min_version: \"1.0\"}\n"),
               "6:24", "invalid value '1.0'" + refused);
  // OpenSSL's spelling of a supported version: say what to write instead.
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {min_version: TLSv1.3}\n"),
               "6:24", "invalid value 'TLSv1.3': write the version alone, '1.3'");
}

TEST(ConfigTls, ClusterDefaults) {
  // tls: {} needs no file: the system's CA bundle, verification on, SNI from the endpoint.
  for (const char* tls : {"    tls: {}\n", "    tls:\n"}) {
    ConfigLoad r = expect_ok(with_cluster("    endpoints: [api.example.com:443]\n") + tls);
    ASSERT_TRUE(r.config);
    const ClusterTls& t = r.config->clusters[0].tls;
    EXPECT_TRUE(t.enabled);
    EXPECT_TRUE(t.verify);
    EXPECT_EQ(t.ca, "");
    EXPECT_EQ(t.sni, "");
    EXPECT_EQ(t.cert, "");
    EXPECT_EQ(t.key, "");
    EXPECT_EQ(t.min_version, "1.2");
    EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);
  }
}

TEST(ConfigTls, ClusterSettings) {
  PemFiles pem;
  ConfigLoad r =
      expect_ok(with_cluster("    endpoints: [10.0.0.7:8443]\n"
                             "    tls:\n"
                             "      ca: " +
                             pem.ca.path() +
                             "\n"
                             "      sni: Payments.internal\n"
                             "      cert: " +
                             pem.cert.path() +
                             "\n"
                             "      key: " +
                             pem.key.path() +
                             "\n"
                             "      min_version: \"1.3\"\n"
                             "      verify: true\n"));
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->clusters[0].tls, (ClusterTls{true, true, pem.ca.path(), "Payments.internal",
                                                   pem.cert.path(), pem.key.path(), "1.3"}));
  EXPECT_TRUE(r.warnings.empty()) << joined(r.warnings);
}

TEST(ConfigTls, ClusterClientCertificateNeedsBothFiles) {
  PemFiles pem;
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {cert: " +
                            pem.cert.path() + "}\n"),
               "6:11",
               "clusters[app].tls: 'cert' needs its 'key' (the certificate's private key, PEM)");
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls:\n"
                            "      key: " +
                            pem.key.path() + "\n"),
               "7:7", "clusters[app].tls: 'key' needs its 'cert' (the certificate chain, PEM)");
  // "" is "none" (what the dump writes for an unset file): neither is fine, one is not.
  expect_ok(
      with_cluster("    endpoints: [127.0.0.1:443]\n"
                   "    tls: {cert: \"\", key: \"\", ca: \"\", sni: \"\"}\n"));
  const std::string no_key = "    tls: {cert: " + pem.cert.path() + ", key: \"\"}\n";
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n" + no_key), at(6, no_key, "\"\""),
               "'cert' needs its 'key'");
}

TEST(ConfigTls, Sni) {
  for (const char* ok : {"api.example.com", "payments", "my-svc.ns.svc.cluster.local"}) {
    ConfigLoad r =
        expect_ok(with_cluster("    endpoints: [127.0.0.1:443]\n"
                               "    tls: {sni: " +
                               std::string(ok) + "}\n"));
    ASSERT_TRUE(r.config);
    EXPECT_EQ(r.config->clusters[0].tls.sni, ok);
  }
  auto sni = [](const std::string& value) {
    return with_cluster("    endpoints: [127.0.0.1:443]\n    tls: {sni: \"" + value + "\"}\n");
  };
  const std::string expected = " (expected a host name such as 'api.example.com')";
  expect_error(sni("10.0.0.1"), "6:16",
               "clusters[app].tls.sni: invalid value '10.0.0.1': SNI carries a host name, never "
               "an IP address (RFC 6066)" +
                   expected);
  expect_error(sni("::1"), "6:16", "invalid value '::1': SNI carries a host name, never an IP");
  expect_error(sni("[::1]"), "6:16", "invalid value '[::1]': SNI carries a host name");
  expect_error(sni("*.example.com"), "6:16",
               "invalid value '*.example.com': a wildcard matches certificates, it is not a name "
               "to ask for");
  expect_error(sni("api.example.com:443"), "6:16",
               "invalid value 'api.example.com:443': without a port");
  expect_error(sni("api..example.com"), "6:16",
               "clusters[app].tls.sni: invalid value 'api..example.com'" + expected);
  expect_error(sni("api.example.com."), "6:16", "invalid value 'api.example.com.'");
  expect_error(sni("bad name"), "6:16", "invalid value 'bad name'");
  expect_error(sni(std::string(64, 'a') + ".com"), "6:16", "invalid value 'aaaa");
}

TEST(ConfigTls, VerifyOffIsAWarning) {
  ConfigLoad r =
      expect_ok(with_cluster("    endpoints: [127.0.0.1:443]\n"
                             "    tls:\n"
                             "      verify: false\n"));
  ASSERT_TRUE(r.config);
  EXPECT_FALSE(r.config->clusters[0].tls.verify);
  std::vector<std::string> expected{
      "t.yaml:7:15: warning: cluster 'app': TLS verification is off (tls.verify: false): any "
      "certificate is accepted, so anyone on the path can pose as the endpoints; only for tests"};
  EXPECT_EQ(r.warnings, expected);

  PemFiles pem;
  ConfigLoad with_ca =
      expect_ok(with_cluster("    endpoints: [127.0.0.1:443]\n"
                             "    tls: {verify: false, ca: " +
                             pem.ca.path() + "}\n"));
  ASSERT_EQ(with_ca.warnings.size(), 1u);
  EXPECT_NE(with_ca.warnings[0].find("TLS verification is off"), std::string::npos);
  EXPECT_NE(with_ca.warnings[0].find("(tls.ca is not used)"), std::string::npos);

  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {verify: sometimes}\n"),
               "6:19",
               "clusters[app].tls.verify: invalid value 'sometimes' (expected true or false)");
}

TEST(ConfigTls, CiphersWithTls13OnlyIsAWarning) {
  PemFiles pem;
  ConfigLoad r =
      expect_ok(with_listener_tls("    tls:\n"
                                  "      cert: " +
                                  pem.cert.path() +
                                  "\n"
                                  "      key: " +
                                  pem.key.path() +
                                  "\n"
                                  "      min_version: \"1.3\"\n"
                                  "      ciphers: ECDHE+AESGCM\n"));
  std::vector<std::string> expected{
      "t.yaml:9:16: warning: listeners[in].tls.ciphers: not used with min_version '1.3' (the "
      "list is for TLS 1.2 only)"};
  EXPECT_EQ(r.warnings, expected);
}

TEST(ConfigTls, HandshakeTimeout) {
  PemFiles pem;
  const std::string pair = "cert: " + pem.cert.path() + ", key: " + pem.key.path();
  const std::string zero = "    tls: {" + pair + ", handshake_timeout: 0s}\n";
  expect_error(with_listener_tls(zero), at(5, zero, "0s"),
               "listeners[in].tls.handshake_timeout: must be above 0");
  const std::string unitless = "    tls: {" + pair + ", handshake_timeout: 10}\n";
  expect_error(with_listener_tls(unitless), at(5, unitless, "10}"),
               "listeners[in].tls.handshake_timeout: invalid value '10' (expected a whole number "
               "with a unit");
}

TEST(ConfigTls, KeysAndShapes) {
  PemFiles pem;
  const std::string pair = "cert: " + pem.cert.path() + ", key: " + pem.key.path();
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: {verfy: false}\n"),
               "6:11", "unknown key 'verfy' in clusters[app].tls (did you mean 'verify'?)");
  const std::string cipher = "    tls: {" + pair + ", cipher: ECDHE+AESGCM}\n";
  expect_error(with_listener_tls(cipher), at(5, cipher, "cipher:"),
               "unknown key 'cipher' in listeners[in].tls (did you mean 'ciphers'?)");
  const std::string dashed = "    tls: {" + pair + ", client-ca: x}\n";
  expect_error(with_listener_tls(dashed), at(5, dashed, "client-ca"),
               "(did you mean 'client_ca'?)");
  const std::string with_sni = "        - {" + pair + ", sni: a.example.com}\n";
  expect_error(with_listener_tls("    tls:\n      certificates:\n" + with_sni),
               at(7, with_sni, "sni:"),
               "unknown key 'sni' in listeners[in].tls.certificates[0] (expected one of 'cert', "
               "'key')");
  // TLS keys one level too high.
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    verify: false\n"),
               "6:5",
               "unknown key 'verify' in clusters[app] ('verify' belongs under 'tls': "
               "clusters[app].tls.verify)");
  expect_error(with_listener_tls("    cert: " + pem.cert.path() + "\n"), "5:5",
               "('cert' belongs under 'tls': listeners[in].tls.cert)");
  // tls is a map; true and false say what to write instead.
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: true\n"),
               "6:10",
               "clusters[app].tls: expected a map, got 'true' (write 'tls: {}' to turn TLS on "
               "with the defaults)");
  expect_error(with_cluster("    endpoints: [127.0.0.1:443]\n"
                            "    tls: false\n"),
               "6:10", "(leave 'tls' out for plain HTTP)");
  expect_error(with_listener_tls("    tls: on\n"), "5:10",
               "listeners[in].tls: expected a map, got 'on' (TLS needs a certificate: tls: "
               "{cert: FILE, key: FILE})");
  expect_error(with_listener_tls("    tls: [" + pem.cert.path() + "]\n"), "5:10",
               "listeners[in].tls: expected a map, got a list");
}

TEST(ConfigTls, DumpRoundTrip) {
  PemFiles pem;
  ConfigLoad first = expect_ok(
      "listeners:\n"
      "  - name: one\n"
      "    address: 127.0.0.1:8443\n"
      "    cluster: api\n"
      "    tls: {cert: " +
      pem.cert.path() + ", key: " + pem.key.path() +
      "}\n"
      "  - name: several\n"
      "    address: 127.0.0.1:9443\n"
      "    cluster: lab\n"
      "    tls:\n"
      "      certificates:\n"
      "        - {cert: " +
      pem.cert.path() + ", key: " + pem.key.path() +
      "}\n"
      "        - {cert: " +
      pem.cert2.path() + ", key: " + pem.key2.path() +
      "}\n"
      "      client_ca: " +
      pem.ca.path() +
      "\n"
      "      handshake_timeout: 1500ms\n"
      "      ciphers: \"!aNULL:ECDHE+AESGCM:@SECLEVEL=2\"\n"
      "clusters:\n"
      "  - {name: api, endpoints: [api.example.com:443], tls: {}}\n"
      "  - name: lab\n"
      "    endpoints: [10.1.2.3:8443]\n"
      "    tls:\n"
      "      verify: false\n"
      "      ca: " +
      pem.ca.path() +
      "\n"
      "      sni: lab.internal\n"
      "      cert: " +
      pem.cert2.path() +
      "\n"
      "      key: " +
      pem.key2.path() +
      "\n"
      "      min_version: 1.3\n"
      "  - {name: plain, endpoints: [127.0.0.1:4000]}\n");
  ASSERT_TRUE(first.config);
  std::string yaml = dump_config_yaml(*first.config);
  ConfigLoad second = load(yaml);
  ASSERT_TRUE(second.config) << yaml << joined(second.errors);
  EXPECT_EQ(*second.config, *first.config) << yaml;
  EXPECT_EQ(dump_config_yaml(*second.config), yaml);

  // File names only, never what they hold; versions quoted, so YAML 1.1 readers keep strings.
  EXPECT_EQ(yaml.find("SECRET"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find(pem.key2.path()), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("min_version: \"1.3\""), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("min_version: 1."), std::string::npos) << yaml;

  nlohmann::json j = config_to_json(*first.config);
  EXPECT_EQ(j.dump().find("SECRET"), std::string::npos);
  EXPECT_EQ(j["listeners"][0]["tls"]["cert"], pem.cert.path());
  EXPECT_EQ(j["listeners"][0]["tls"]["key"], pem.key.path());
  EXPECT_EQ(j["listeners"][1]["tls"]["certificates"][1]["key"], pem.key2.path());
  EXPECT_EQ(j["listeners"][1]["tls"]["client_ca"], pem.ca.path());
  EXPECT_EQ(j["listeners"][1]["tls"]["handshake_timeout"], "1500ms");
  EXPECT_EQ(j["listeners"][1]["tls"]["min_version"], "1.2");
  EXPECT_EQ(j["clusters"][0]["tls"], nlohmann::json({{"verify", true},
                                                     {"ca", ""},
                                                     {"sni", ""},
                                                     {"cert", ""},
                                                     {"key", ""},
                                                     {"min_version", "1.2"}}));
  EXPECT_EQ(j["clusters"][1]["tls"]["verify"], false);
  EXPECT_EQ(j["clusters"][1]["tls"]["sni"], "lab.internal");
  EXPECT_FALSE(j["clusters"][2].contains("tls"));  // plain HTTP: no tls section
}

}  // namespace
}  // namespace sluice
