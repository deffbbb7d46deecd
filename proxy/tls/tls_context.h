#pragma once
// TLS contexts, built from the configuration on the main thread and shared read-only by the
// workers (an SSL_CTX may create SSL objects from several threads).
// - ServerTls: a listener's certificates (the first is the default, others chosen by SNI),
//   optional client-certificate verification, TLS 1.2+, ALPN h2 and http/1.1, no
//   renegotiation.
//   Rebuilt on SIGHUP and when a file changes; a broken file leaves the running one in place.
// - ClientTls: a cluster's origination settings: verification against the system bundle or
//   `ca`, SNI and host name checks, an optional client certificate, ALPN http/1.1.
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace sluice {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// The OpenSSL error queue as one line (and cleared), for logs.
std::string openssl_errors();

class ServerTls {
 public:
  // Reads every file; nullptr and `error` ("listener ingress: cert.pem: ...") on failure.
  // ALPN offers `http2.alpn` in its order, without h2 when HTTP/2 is off.
  static std::shared_ptr<const ServerTls> build(const std::string& listener,
                                                const ListenerTls& settings,
                                                const ListenerHttp2& http2, std::string& error);
  static std::shared_ptr<const ServerTls> build(const std::string& listener,
                                                const ListenerTls& settings, std::string& error) {
    return build(listener, settings, ListenerHttp2{}, error);
  }
  ~ServerTls();
  // The context new connections start with (SNI may switch them to another certificate's).
  SSL_CTX* default_ctx() const { return certs_.front().ctx.get(); }
  // A digest of every file read, to tell whether a rebuild changed anything.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  struct Cert {
    SslCtxPtr ctx;
    std::vector<std::string> names;  // lower-case DNS names from subjectAltName (or CN)
  };
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg);
  const Cert* match(const std::string& name) const;

  std::vector<Cert> certs_;
  std::string fingerprint_;
  std::string alpn_;  // the protocols offered, in ALPN's wire format
};

class ClientTls {
 public:
  static std::shared_ptr<const ClientTls> build(const std::string& cluster,
                                                const ClusterTls& settings, std::string& error);
  SSL_CTX* ctx() const { return ctx_.get(); }
  const ClusterTls& settings() const { return settings_; }

 private:
  SslCtxPtr ctx_;
  ClusterTls settings_;
};

}  // namespace sluice
