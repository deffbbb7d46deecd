// TlsLayer back to back in memory: a client and a server layer exchange ciphertext through
// the test, in chunks of every size from one byte up, so every partial record and handshake
// message boundary is crossed. Certificates are made here with the OpenSSL API.
#include "tls/tls_layer.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "tls/tls_context.h"

namespace sluice {
namespace {

struct KeyCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~KeyCert() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

// A certificate for `dns` signed by `issuer` (self-signed when null), valid from `from_days`
// to `to_days` around now.
std::unique_ptr<KeyCert> make_cert(const char* cn, const char* dns, const KeyCert* issuer, bool ca,
                                   long from_days = -1, long to_days = 30) {
  auto kc = std::make_unique<KeyCert>();
  kc->key = EVP_EC_gen("P-256");
  kc->cert = X509_new();
  X509_set_version(kc->cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(kc->cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(kc->cert), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(kc->cert), to_days * 86400);
  X509_set_pubkey(kc->cert, kc->key);
  X509_NAME* name = X509_get_subject_name(kc->cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509_set_issuer_name(kc->cert, issuer ? X509_get_subject_name(issuer->cert) : name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer->cert : kc->cert, kc->cert, nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    X509_add_ext(kc->cert, ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca) add(NID_key_usage, "critical,keyCertSign,cRLSign");
  if (dns) add(NID_subject_alt_name, (std::string("DNS:") + dns).c_str());
  X509_sign(kc->cert, issuer ? issuer->key : kc->key, EVP_sha256());
  return kc;
}

std::string write_pem(const std::string& dir, const char* file, X509* cert, EVP_PKEY* key) {
  std::string path = dir + "/" + file;
  FILE* f = fopen(path.c_str(), "w");
  if (cert) PEM_write_X509(f, cert);
  if (key) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  return path;
}

class TlsLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-tls-unit-XXXXXX";
    dir_ = mkdtemp(tmpl);
    ca_ = make_cert("test CA", nullptr, nullptr, true);
    server_ = make_cert("localhost", "localhost", ca_.get(), false);
    expired_ = make_cert("localhost", "localhost", ca_.get(), false, -10, -1);
    ca_path_ = write_pem(dir_, "ca.pem", ca_->cert, nullptr);
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    if (system(cmd.c_str()) != 0) ADD_FAILURE() << cmd;
  }

  std::shared_ptr<const ServerTls> server_tls(const KeyCert& kc) {
    ListenerTls settings;
    settings.enabled = true;
    settings.certificates.push_back({write_pem(dir_, "srv.pem", kc.cert, nullptr),
                                     write_pem(dir_, "srv.key", nullptr, kc.key)});
    std::string error;
    auto tls = ServerTls::build("test", settings, error);
    EXPECT_TRUE(tls) << error;
    return tls;
  }
  std::shared_ptr<const ClientTls> client_tls() {
    ClusterTls settings;
    settings.enabled = true;
    settings.ca = ca_path_;
    std::string error;
    auto tls = ClientTls::build("test", settings, error);
    EXPECT_TRUE(tls) << error;
    return tls;
  }

  // Moves ciphertext between the two in chunks of `chunk` bytes until neither has more to say.
  struct Pair {
    std::unique_ptr<TlsLayer> client, server;
    std::string to_server, to_client;  // ciphertext in flight
    std::string client_got, server_got;
    bool client_done = false, server_done = false, failed = false;
    std::string error;         // the first failure, either side
    std::string client_error;  // the client's own (verification happens there)
    bool peer_closed_at_server = false;

    void take(TlsLayer::Output& out, std::string& wire, std::string& got, bool& done) {
      for (const Slice& s : out.ciphertext) wire.append(s.data, s.len);
      for (const Slice& s : out.plaintext) got.append(s.data, s.len);
      if (out.handshake_done) done = true;
      if (out.failed) {
        if (!failed) error = out.error;
        failed = true;
        if (&got == &client_got) client_error = out.error;
      }
      if (&got == &server_got && out.peer_closed) peer_closed_at_server = true;
    }
    void pump(size_t chunk) {
      for (int guard = 0; guard < 100000 && (!to_server.empty() || !to_client.empty()); ++guard) {
        if (!to_server.empty()) {
          size_t n = std::min(chunk, to_server.size());
          TlsLayer::Output out;
          server->feed(to_server.data(), n, out);
          to_server.erase(0, n);
          take(out, to_client, server_got, server_done);
        }
        if (!to_client.empty()) {
          size_t n = std::min(chunk, to_client.size());
          TlsLayer::Output out;
          client->feed(to_client.data(), n, out);
          to_client.erase(0, n);
          take(out, to_server, client_got, client_done);
        }
      }
    }
  };

  Pair connect(SSL_CTX* server_ctx, SSL_CTX* client_ctx, const char* name, size_t chunk,
               TlsSessionSlot* slot = nullptr) {
    Pair p;
    p.server = TlsLayer::server(blocks_, server_ctx);
    p.client = TlsLayer::client(blocks_, client_ctx, name, true, slot);
    TlsLayer::Output out;
    p.client->start_handshake(out);
    p.take(out, p.to_server, p.client_got, p.client_done);
    p.pump(chunk);
    return p;
  }

  BlockPool blocks_;
  std::string dir_, ca_path_;
  std::unique_ptr<KeyCert> ca_, server_, expired_;
};

TEST_F(TlsLayerTest, HandshakeAndDataAcrossEveryChunkSize) {
  auto stls = server_tls(*server_);
  auto ctls = client_tls();
  const std::string request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  const std::string response(40000, 'r');  // several records
  for (size_t chunk : {1, 2, 3, 5, 7, 16, 100, 517, 1500, 16384, 100000}) {
    SCOPED_TRACE(chunk);
    Pair p = connect(stls->default_ctx(), ctls->ctx(), "localhost", chunk);
    ASSERT_FALSE(p.failed) << p.error;
    ASSERT_TRUE(p.client_done);
    ASSERT_TRUE(p.server_done);
    TlsLayer::Output out;
    Slice req{BlockRef(), request.data(), request.size()};
    p.client->encrypt(&req, 1, out);
    p.take(out, p.to_server, p.client_got, p.client_done);
    p.pump(chunk);
    EXPECT_EQ(p.server_got, request);
    TlsLayer::Output out2;
    Slice resp{BlockRef(), response.data(), response.size()};
    p.server->encrypt(&resp, 1, out2);
    p.take(out2, p.to_client, p.server_got, p.server_done);
    p.pump(chunk);
    EXPECT_EQ(p.client_got, response);
    // close_notify: the server sees an orderly end, not an error.
    TlsLayer::Output out3;
    p.client->close_notify(out3);
    p.take(out3, p.to_server, p.client_got, p.client_done);
    p.pump(chunk);
    EXPECT_TRUE(p.peer_closed_at_server);
    EXPECT_FALSE(p.failed) << p.error;
  }
}

TEST_F(TlsLayerTest, SessionsAreResumedAndEachIsUsedOnce) {
  auto stls = server_tls(*server_);
  auto ctls = client_tls();
  TlsSessionSlot slot;
  Counter full, resumed;
  slot.full_handshakes = &full;
  slot.resumed_handshakes = &resumed;
  Pair first = connect(stls->default_ctx(), ctls->ctx(), "localhost", 4096, &slot);
  ASSERT_TRUE(first.client_done);
  EXPECT_FALSE(first.client->resumed());
  EXPECT_GE(slot.size(), 1u);  // TLS 1.3 tickets arrived after the handshake
  size_t kept = slot.size();
  Pair second = connect(stls->default_ctx(), ctls->ctx(), "localhost", 4096, &slot);
  ASSERT_TRUE(second.client_done);
  EXPECT_TRUE(second.client->resumed());
  EXPECT_EQ(full.get(), 1u);
  EXPECT_EQ(resumed.get(), 1u);
  EXPECT_GE(slot.size(), kept);  // one used, new ones received
}

TEST_F(TlsLayerTest, VerificationFailuresSayWhy) {
  auto ctls = client_tls();
  {
    auto stls = server_tls(*server_);
    Pair p = connect(stls->default_ctx(), ctls->ctx(), "other.test", 4096);
    EXPECT_TRUE(p.failed);
    EXPECT_NE(p.client_error.find("certificate verify failed: hostname mismatch"),
              std::string::npos)
        << p.client_error;
  }
  {
    auto stls = server_tls(*expired_);
    Pair p = connect(stls->default_ctx(), ctls->ctx(), "localhost", 4096);
    EXPECT_TRUE(p.failed);
    EXPECT_NE(p.client_error.find("certificate verify failed: certificate has expired"),
              std::string::npos)
        << p.client_error;
  }
  {
    auto other_ca = make_cert("other CA", nullptr, nullptr, true);
    auto stranger = make_cert("localhost", "localhost", other_ca.get(), false);
    auto stls = server_tls(*stranger);
    Pair p = connect(stls->default_ctx(), ctls->ctx(), "localhost", 4096);
    EXPECT_TRUE(p.failed);
    EXPECT_NE(p.client_error.find("unable to get local issuer certificate"), std::string::npos)
        << p.client_error;
  }
}

TEST_F(TlsLayerTest, BrokenFilesAreClearErrors) {
  ListenerTls settings;
  settings.enabled = true;
  std::string junk = dir_ + "/junk.pem";
  FILE* f = fopen(junk.c_str(), "w");
  fputs("not a certificate\n", f);
  fclose(f);
  settings.certificates.push_back({junk, junk});
  std::string error;
  EXPECT_FALSE(ServerTls::build("ingress", settings, error));
  EXPECT_NE(error.find("listener ingress: " + junk + ": not a PEM certificate chain"),
            std::string::npos)
      << error;
  // A key that does not belong to the certificate.
  auto other = make_cert("x", "x.test", ca_.get(), false);
  settings.certificates = {{write_pem(dir_, "a.pem", server_->cert, nullptr),
                            write_pem(dir_, "b.key", nullptr, other->key)}};
  EXPECT_FALSE(ServerTls::build("ingress", settings, error));
  EXPECT_NE(error.find("does not belong to the certificate"), std::string::npos) << error;
  settings.certificates = {{dir_ + "/missing.pem", dir_ + "/missing.key"}};
  EXPECT_FALSE(ServerTls::build("ingress", settings, error));
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
  ListenerTls bad_ciphers;
  bad_ciphers.enabled = true;
  bad_ciphers.ciphers = "NOT-A-CIPHER";
  bad_ciphers.certificates = {{write_pem(dir_, "c.pem", server_->cert, nullptr),
                               write_pem(dir_, "c.key", nullptr, server_->key)}};
  EXPECT_FALSE(ServerTls::build("ingress", bad_ciphers, error));
  EXPECT_NE(error.find("ciphers 'NOT-A-CIPHER'"), std::string::npos) << error;
}

// A TLS 1.3 server may send a NewSessionTicket at any time. A connection whose socket outlives
// its pool (handed to a tunnel after a 101; the pool deleted by a reload) forgets the pool's
// slot: a late ticket is dropped instead of stored in freed memory (run under ASan in CI).
TEST_F(TlsLayerTest, ALateTicketGoesToTheSlotUnlessItWasForgotten) {
  auto stls = server_tls(*server_);
  auto ctls = client_tls();
  enum class Case { kKept, kForgotten, kForgottenAndDeleted };
  for (Case c : {Case::kKept, Case::kForgotten, Case::kForgottenAndDeleted}) {
    SCOPED_TRACE(static_cast<int>(c));
    auto slot = std::make_unique<TlsSessionSlot>();
    // The server is raw OpenSSL: the test must make it send a ticket after the handshake.
    SSL* srv = SSL_new(stls->default_ctx());
    BIO* rbio = BIO_new(BIO_s_mem());
    BIO* wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(srv, rbio, wbio);
    SSL_set_accept_state(srv);
    std::unique_ptr<TlsLayer> client =
        TlsLayer::client(blocks_, ctls->ctx(), "localhost", true, slot.get());
    std::string to_server, got;
    auto take = [&](TlsLayer::Output& out) {
      for (const Slice& s : out.ciphertext) to_server.append(s.data, s.len);
      for (const Slice& s : out.plaintext) got.append(s.data, s.len);
      EXPECT_FALSE(out.failed) << out.error;
    };
    auto server_to_client = [&] {
      std::string wire;
      char buf[4096];
      for (int n; (n = BIO_read(wbio, buf, sizeof buf)) > 0;) wire.append(buf, n);
      if (wire.empty()) return;
      TlsLayer::Output out;
      client->feed(wire.data(), wire.size(), out);
      take(out);
    };
    TlsLayer::Output out;
    client->start_handshake(out);
    take(out);
    for (int i = 0; i < 8 && (!client->handshake_done() || SSL_is_init_finished(srv) != 1); ++i) {
      BIO_write(rbio, to_server.data(), static_cast<int>(to_server.size()));
      to_server.clear();
      SSL_do_handshake(srv);
      server_to_client();
    }
    ASSERT_TRUE(client->handshake_done());
    ASSERT_EQ(SSL_is_init_finished(srv), 1);
    const size_t before = slot->size();
    if (c != Case::kKept) client->forget_session_slot();
    if (c == Case::kForgottenAndDeleted) slot.reset();
    ASSERT_EQ(SSL_new_session_ticket(srv), 1);
    ASSERT_EQ(SSL_write(srv, "late", 4), 4);  // the ticket goes out first
    server_to_client();
    EXPECT_EQ(got, "late");
    if (c == Case::kKept) EXPECT_EQ(slot->size(), before + 1);
    if (c == Case::kForgotten) EXPECT_EQ(slot->size(), before);
    SSL_free(srv);
  }
}

}  // namespace
}  // namespace sluice
