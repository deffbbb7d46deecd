#include "tls/tls_context.h"

#include "tls/tls_layer.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice {

namespace {

// TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are all fine).
constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
const unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
// What a listener offers, in its order of preference: HTTP/2, then HTTP/1.1.

bool read_file(const std::string& path, std::string& out, std::string& error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    error = path + ": " + strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

int min_version(const std::string& v) {
  return v == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const unsigned char* data = ASN1_STRING_get0_data(n->d.dNSName);
      names.push_back(lower(std::string(reinterpret_cast<const char*>(data),
                                        static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {  // no subjectAltName: the common name
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
      names.push_back(lower(cn));
  }
  return names;
}

bool name_matches(const std::string& pattern, const std::string& name) {
  if (pattern.size() > 2 && pattern.compare(0, 2, "*.") == 0) {
    // One label: "*.example.com" matches "a.example.com", not "a.b.example.com" (RFC 6125).
    size_t dot = name.find('.');
    return dot != std::string::npos && dot > 0 &&
           name.compare(dot, std::string::npos, pattern, 1, std::string::npos) == 0;
  }
  return pattern == name;
}

// The settings every context shares: versions, no renegotiation, no compression, buffers
// released while idle (an idle keep-alive or WebSocket connection holds none).
bool common_settings(SSL_CTX* ctx, const std::string& version, const std::string& ciphers) {
  SSL_CTX_set_min_proto_version(ctx, min_version(version));
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return SSL_CTX_set_cipher_list(ctx, ciphers.empty() ? kDefaultCiphers : ciphers.c_str()) == 1;
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

ServerTls::~ServerTls() = default;

int ServerTls::on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                       const unsigned char* in, unsigned int inlen, void* arg) {
  const std::string& offer = static_cast<const ServerTls*>(arg)->alpn_;
  unsigned char* selected = nullptr;
  // The server's order decides: h2 when the client offers it (and HTTP/2 is on), else
  // http/1.1.
  if (!offer.empty() &&
      SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(offer.data()),
                            static_cast<unsigned int>(offer.size()), in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // none in common: carry on without ALPN (HTTP/1.1)
}

std::shared_ptr<const ServerTls> ServerTls::build(const std::string& listener,
                                                  const ListenerTls& settings,
                                                  const ListenerHttp2& http2, std::string& error) {
  auto tls = std::shared_ptr<ServerTls>(new ServerTls());
  for (const std::string& p : http2.alpn) {
    if (p == "h2" && !http2.enabled) continue;
    tls->alpn_.push_back(static_cast<char>(p.size()));
    tls->alpn_ += p;
  }
  tls->fingerprint_ = "alpn:" + tls->alpn_ + ";";
  const std::string who = "listener " + listener + ": ";
  ERR_clear_error();
  std::string client_ca_pem;
  if (!settings.client_ca.empty() && !read_file(settings.client_ca, client_ca_pem, error)) {
    error = who + "client_ca " + error;
    return nullptr;
  }
  for (const TlsCertificate& c : settings.certificates) {
    std::string cert_pem, key_pem;
    if (!read_file(c.cert, cert_pem, error) || !read_file(c.key, key_pem, error)) {
      error = who + error;
      return nullptr;
    }
    tls->fingerprint_ += cert_pem + key_pem;
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
      error = who + openssl_errors();
      return nullptr;
    }
    if (!common_settings(ctx.get(), settings.min_version, settings.ciphers)) {
      error = who + "ciphers '" + settings.ciphers + "': no cipher suite OpenSSL knows (" +
              openssl_errors() + ")";
      return nullptr;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.cert.c_str()) != 1) {
      error = who + c.cert + ": not a PEM certificate chain (" + openssl_errors() + ")";
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        error = who + c.key + " does not belong to the certificate in " + c.cert;
        ERR_clear_error();
      } else {
        error = who + c.key + ": not a PEM private key (" + openssl_errors() + ")";
      }
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      error = who + c.key + " does not belong to the certificate in " + c.cert;
      ERR_clear_error();
      return nullptr;
    }
    if (!settings.client_ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx.get(), settings.client_ca.c_str(), nullptr) != 1) {
        error = who + settings.client_ca + ": not a PEM CA bundle (" + openssl_errors() + ")";
        return nullptr;
      }
      SSL_CTX_set_client_CA_list(ctx.get(), SSL_load_client_CA_file(settings.client_ca.c_str()));
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    SSL_CTX_set_alpn_select_cb(ctx.get(), &ServerTls::on_alpn, tls.get());
    // Session tickets (stateless resumption) with a key per context, so a rotation also
    // rotates the ticket key; a session id context lets client-certificate sessions resume.
    static const unsigned char kSid[] = "sluice";
    SSL_CTX_set_session_id_context(ctx.get(), kSid, sizeof kSid - 1);
    // Resumption is by stateless tickets only: OpenSSL's internal server cache would store a
    // session per handshake behind a lock and sweep the whole cache every 255 handshakes.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    Cert entry;
    entry.names = certificate_names(SSL_CTX_get0_certificate(ctx.get()));
    entry.ctx = std::move(ctx);
    tls->certs_.push_back(std::move(entry));
  }
  tls->fingerprint_ += client_ca_pem;
  if (tls->certs_.empty()) {
    error = who + "no certificate";
    return nullptr;
  }
  if (tls->certs_.size() > 1) {
    for (Cert& c : tls->certs_) {
      SSL_CTX_set_tlsext_servername_callback(c.ctx.get(), &ServerTls::on_servername);
      SSL_CTX_set_tlsext_servername_arg(c.ctx.get(), tls.get());
    }
  }
  return tls;
}

const ServerTls::Cert* ServerTls::match(const std::string& name) const {
  for (const Cert& c : certs_)
    for (const std::string& n : c.names)
      if (n == name) return &c;
  for (const Cert& c : certs_)
    for (const std::string& n : c.names)
      if (name_matches(n, name)) return &c;
  return nullptr;
}

int ServerTls::on_servername(SSL* ssl, int*, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  const Cert* c = static_cast<const ServerTls*>(arg)->match(lower(name));
  if (c && c->ctx.get() != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx.get());
  return SSL_TLSEXT_ERR_OK;
}

std::shared_ptr<const ClientTls> ClientTls::build(const std::string& cluster,
                                                  const ClusterTls& settings, std::string& error) {
  auto tls = std::shared_ptr<ClientTls>(new ClientTls());
  const std::string who = "cluster " + cluster + ": ";
  ERR_clear_error();
  tls->settings_ = settings;
  tls->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = tls->ctx_.get();
  if (!ctx) {
    error = who + openssl_errors();
    return nullptr;
  }
  common_settings(ctx, settings.min_version, {});  // the built-in list is valid
  if (settings.verify) {
    int ok = settings.ca.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                 : SSL_CTX_load_verify_locations(ctx, settings.ca.c_str(), nullptr);
    if (ok != 1) {
      error = who + (settings.ca.empty() ? std::string("the system CA bundle") : settings.ca) +
              ": cannot load (" + openssl_errors() + ")";
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!settings.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert.c_str()) != 1) {
      error = who + settings.cert + ": not a PEM certificate chain (" + openssl_errors() + ")";
      return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, settings.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      error = who + settings.key + ": not the private key of " + settings.cert + " (" +
              openssl_errors() + ")";
      return nullptr;
    }
  }
  SSL_CTX_set_alpn_protos(ctx, kAlpnHttp11, sizeof kAlpnHttp11);
  // Sessions are kept per pool (per worker and address) by the connections themselves; the
  // context's own cache is not used.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, &tls_store_new_session);
  return tls;
}

}  // namespace sluice
