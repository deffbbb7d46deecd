// A server-side TlsLayer, as a TLS listener makes one for each client, fed arbitrary ciphertext
// in reads cut by the input: ClientHello parsing, SNI and ALPN selection, alerts, records that
// lie about their length. It must never crash, leak (LeakSanitizer checks every input) or
// produce anything after it reported a failure.
//
// The listener's context comes from ServerTls::build, as sluice builds it, with a certificate
// made once here with the OpenSSL API (P-256, self-signed, localhost).
//
// Input: [split control byte][ciphertext...] (see Splitter). The seeds are ClientHellos
// (TLS 1.2 and 1.3, with and without SNI and ALPN) written by make_corpus.py.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "fuzz_common.h"
#include "tls/tls_context.h"
#include "tls/tls_layer.h"

namespace sluice::fuzz {
namespace {

std::shared_ptr<const ServerTls> g_tls;

void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, "cannot write " + path);
  if (cert) PEM_write_X509(f, cert);
  if (key) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

void make_server_tls() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), 30 * 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost");
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(cert, key, EVP_sha256());

  char tmpl[] = "/tmp/sluice-fuzz-tls-XXXXXX";
  check(mkdtemp(tmpl) != nullptr, "mkdtemp");
  const std::string dir = tmpl;
  ListenerTls settings;
  settings.enabled = true;
  settings.certificates.push_back({dir + "/cert.pem", dir + "/key.pem"});
  write_pem(settings.certificates[0].cert, cert, nullptr);
  write_pem(settings.certificates[0].key, nullptr, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  std::string error;
  g_tls = ServerTls::build("fuzz", settings, error);
  // The context holds the certificate and key now; the files are not read again.
  unlink(settings.certificates[0].cert.c_str());
  unlink(settings.certificates[0].key.c_str());
  rmdir(dir.c_str());
  check(g_tls != nullptr, "ServerTls::build: " + error);
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sluice::fuzz::make_server_tls();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  using sluice::TlsLayer;
  if (size < 1) return 0;
  const char* in = reinterpret_cast<const char*>(data + 1);
  const size_t n = size - 1;
  sluice::BlockPool pool;
  {
    std::unique_ptr<TlsLayer> tls = TlsLayer::server(pool, g_tls->default_ctx());
    check(tls != nullptr, "TlsLayer::server returned null");
    Splitter split(data[0], n);
    bool failed = false;
    bool closed = false;
    for (size_t pos = 0; pos < n;) {
      size_t len = split.next(n - pos);
      TlsLayer::Output out;
      tls->feed(in + pos, len, out);
      pos += len;
      for (const sluice::Slice& s : out.ciphertext)
        check(s.block && s.len > 0 && s.data == s.block->data() && s.len <= s.block->capacity,
              "a ciphertext slice outside its block");
      for (const sluice::Slice& s : out.plaintext)
        check(s.block && s.len > 0 && s.len <= s.block->capacity,
              "a plaintext slice outside its block");
      if (failed) {
        check(out.ciphertext.empty() && out.plaintext.empty() && !out.handshake_done && !out.failed,
              "output after a failure");
      }
      if (out.failed) {
        check(!out.error.empty(), "a failure without a reason");
        failed = true;
      }
      // Without the client's keys no input can complete a handshake, let alone carry data.
      check(!out.handshake_done && out.plaintext.empty() && !tls->handshake_done(),
            "a handshake completed with random input");
      closed = closed || out.peer_closed;
    }
    (void)closed;
    if (!failed) {
      TlsLayer::Output out;
      tls->close_notify(out);  // before the handshake: nothing to send
      check(out.ciphertext.empty(), "close_notify before a handshake wrote something");
    }
  }
  check(pool.outstanding() == 0, "a block outlived its TlsLayer");
  return 0;
}
