#include "tls/tls_layer.h"

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <cstring>

#include "tls/tls_context.h"

namespace sluice {

namespace {

int slot_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool is_ip_literal(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

TlsSessionSlot::~TlsSessionSlot() {
  for (SSL_SESSION* s : sessions_) SSL_SESSION_free(s);
}

SSL_SESSION* TlsSessionSlot::take() {
  if (sessions_.empty()) return nullptr;
  SSL_SESSION* s = sessions_.back();
  sessions_.pop_back();
  return s;
}

void TlsSessionSlot::store(SSL_SESSION* s) {
  if (sessions_.size() >= kMaxSessions) {
    SSL_SESSION_free(sessions_.front());
    sessions_.erase(sessions_.begin());
  }
  sessions_.push_back(s);
}

int tls_store_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<TlsSessionSlot*>(SSL_get_ex_data(ssl, slot_index()));
  if (!slot) return 0;
  // A copy: OpenSSL marks the connection's own session not resumable when the connection
  // ends without close_notify (an idle pooled connection closed by either side, say).
  if (SSL_SESSION* copy = SSL_SESSION_dup(session)) slot->store(copy);
  return 0;  // OpenSSL keeps (and frees) the original
}

TlsLayer::TlsLayer(BlockPool& blocks, SSL* ssl) : blocks_(blocks), ssl_(ssl) {
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio_, -1);  // an empty read BIO means "want more", not EOF
  SSL_set_bio(ssl_, rbio_, wbio_);
}

TlsLayer::~TlsLayer() {
  SSL_free(ssl_);  // frees both BIOs
}

std::unique_ptr<TlsLayer> TlsLayer::server(BlockPool& blocks, SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  std::unique_ptr<TlsLayer> t(new TlsLayer(blocks, ssl));
  SSL_set_accept_state(ssl);
  return t;
}

std::unique_ptr<TlsLayer> TlsLayer::client(BlockPool& blocks, SSL_CTX* ctx, const std::string& name,
                                           bool verify, TlsSessionSlot* slot) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  std::unique_ptr<TlsLayer> t(new TlsLayer(blocks, ssl));
  SSL_set_connect_state(ssl);
  bool ip = is_ip_literal(name);
  if (!ip && !name.empty()) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (verify && !name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, name.c_str());
    }
  }
  if (slot) {
    t->slot_ = slot;
    SSL_set_ex_data(ssl, slot_index(), slot);
    if (SSL_SESSION* s = slot->take()) {
      SSL_set_session(ssl, s);  // takes its own reference
      SSL_SESSION_free(s);
    }
  }
  return t;
}

bool TlsLayer::offer_alpn(std::string_view wire) {
  return SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                             static_cast<unsigned>(wire.size())) == 0;
}

void TlsLayer::forget_session_slot() {
  if (!slot_) return;
  SSL_set_ex_data(ssl_, slot_index(), nullptr);
  slot_ = nullptr;
}

bool TlsLayer::resumed() const {
  return SSL_session_reused(ssl_) == 1;
}

void TlsLayer::drain_write_bio(Output& out) {
  while (size_t pending = BIO_ctrl_pending(wbio_)) {
    BlockRef b = pending <= 1024 ? blocks_.get_small(pending) : blocks_.get();
    int n = BIO_read(wbio_, b->data(),
                     static_cast<int>(std::min(pending, static_cast<size_t>(b->capacity))));
    if (n <= 0) break;
    out.ciphertext.push_back(Slice{std::move(b), nullptr, static_cast<size_t>(n)});
    out.ciphertext.back().data = out.ciphertext.back().block->data();
  }
}

void TlsLayer::fail(Output& out, const char* during, int ssl_error) {
  failed_ = true;
  out.failed = true;
  std::string why;
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    why = "unexpected end of the connection";
  } else {
    why = openssl_errors();
  }
  ERR_clear_error();
  out.error = std::string(during) + ": " + why;
}

void TlsLayer::step(Output& out) {
  if (failed_) return;
  if (!handshake_done_) {
    int r = SSL_do_handshake(ssl_);
    drain_write_bio(out);  // handshake records (also an alert on failure)
    if (r != 1) {
      int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) fail(out, "TLS handshake", e);
      return;
    }
    handshake_done_ = true;
    out.handshake_done = true;
    if (slot_) {
      Counter* n = resumed() ? slot_->resumed_handshakes : slot_->full_handshakes;
      if (n) n->add();
    }
  }
  for (;;) {
    BlockRef b = blocks_.get();
    int n = SSL_read(ssl_, b->data(), static_cast<int>(b->capacity));
    drain_write_bio(out);  // e.g. a key update answer
    if (n > 0) {
      char* base = b->data();
      out.plaintext.push_back(Slice{std::move(b), base, static_cast<size_t>(n)});
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      out.peer_closed = true;
      return;
    }
    fail(out, "TLS read", e);
    return;
  }
}

void TlsLayer::start_handshake(Output& out) {
  step(out);
}

void TlsLayer::feed(const char* data, size_t len, Output& out) {
  if (failed_) return;
  BIO_write(rbio_, data, static_cast<int>(len));
  step(out);
}

void TlsLayer::encrypt(const Slice* slices, size_t count, Output& out) {
  if (failed_) return;
  // Small pieces (a response head, chunk framing, a small body) go out as one record rather
  // than a record each: one encryption, one header and tag, as nginx's ssl_buffer_size does.
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) total += slices[i].len;
  if (count > 1 && total <= kCoalesceBytes) {
    BlockRef b = blocks_.get(total);
    size_t off = 0;
    for (size_t i = 0; i < count; ++i) {
      std::memcpy(b->data() + off, slices[i].data, slices[i].len);
      off += slices[i].len;
    }
    Slice one{b, b->data(), total};
    encrypt(&one, 1, out);
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    if (slices[i].len == 0) continue;
    size_t written = 0;
    // A memory BIO grows as needed: SSL_write takes everything at once.
    if (SSL_write_ex(ssl_, slices[i].data, slices[i].len, &written) != 1 ||
        written != slices[i].len) {
      fail(out, "TLS write", SSL_get_error(ssl_, 0));
      return;
    }
    drain_write_bio(out);
  }
}

void TlsLayer::close_notify(Output& out) {
  if (failed_ || !handshake_done_) return;
  SSL_shutdown(ssl_);
  drain_write_bio(out);
}

std::string_view TlsLayer::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

}  // namespace sluice
