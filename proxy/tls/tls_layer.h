#pragma once
// TlsLayer: one connection's TLS state between the socket and the HTTP code, OpenSSL with
// memory BIOs: ciphertext read from the socket goes into the read BIO, plaintext comes out of
// SSL_read; plaintext written goes through SSL_write and the write BIO is drained into blocks
// for the socket after every SSL call. No blocking call anywhere; the owning TcpStream keeps
// its backpressure (queued ciphertext counts like plaintext would).
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "core/block.h"
#include "core/stats.h"
#include "net/stream_filter.h"

namespace sluice {

// Where client connections to one address keep sessions (TLS 1.3 tickets) for the next
// connections to resume (owned by the pool: per worker and address, no locks). Each session is
// used once (RFC 8446 appendix C.4; servers with anti-replay refuse a ticket used twice),
// newest first; every handshake brings new ones.
class TlsSessionSlot {
 public:
  TlsSessionSlot() = default;
  ~TlsSessionSlot();
  TlsSessionSlot(const TlsSessionSlot&) = delete;
  TlsSessionSlot& operator=(const TlsSessionSlot&) = delete;
  SSL_SESSION* take();         // the caller owns the reference; null when none is kept
  void store(SSL_SESSION* s);  // takes the reference
  size_t size() const { return sessions_.size(); }
  static constexpr size_t kMaxSessions = 8;
  Counter* full_handshakes = nullptr;  // counted here when set (the cluster's stats)
  Counter* resumed_handshakes = nullptr;

 private:
  std::vector<SSL_SESSION*> sessions_;  // oldest first
};

// A client context's new-session callback: stores the session in the connection's slot.
int tls_store_new_session(SSL* ssl, SSL_SESSION* session);

// The TLS filter of one TcpStream (set_filter), which owns it.
class TlsLayer final : public StreamFilter {
 public:
  using Output = StreamFilter::Output;

  static std::unique_ptr<TlsLayer> server(BlockPool& blocks, SSL_CTX* ctx);
  // `name` is sent as SNI (unless it is an IP literal) and checked against the certificate
  // when `verify` is set; `slot` (may be null) holds the session to resume and receives the new.
  static std::unique_ptr<TlsLayer> client(BlockPool& blocks, SSL_CTX* ctx, const std::string& name,
                                          bool verify, TlsSessionSlot* slot);
  ~TlsLayer() override;
  // A client offers these protocols (ALPN wire format: length-prefixed names) instead of its
  // context's (an HTTP/2 cluster offers h2 alone). Before the handshake. False on failure.
  bool offer_alpn(std::string_view wire);
  TlsLayer(const TlsLayer&) = delete;
  TlsLayer& operator=(const TlsLayer&) = delete;

  bool server_side() const override { return SSL_is_server(ssl_) == 1; }
  void start_handshake(Output& out) override;  // client: the ClientHello
  void feed(const char* data, size_t len, Output& out) override;
  void encrypt(const Slice* slices, size_t count, Output& out) override;
  void close_notify(Output& out) override;
  bool handshake_done() const override { return handshake_done_; }
  bool resumed() const;
  bool has_pending() const override { return SSL_pending(ssl_) > 0; }
  const char* version() const { return SSL_get_version(ssl_); }
  std::string_view alpn() const override;
  const std::string& error() const override { return error_; }
  void set_error(std::string e) override { error_ = std::move(e); }
  // The connection outlives the pool whose slot it stores sessions in (a socket handed to a
  // tunnel after a 101): sessions that arrive later are dropped instead of stored.
  void forget_session_slot();

 private:
  // Pieces written together up to this size are copied into one TLS record.
  static constexpr size_t kCoalesceBytes = 16 * 1024;
  TlsLayer(BlockPool& blocks, SSL* ssl);
  void drain_write_bio(Output& out);
  void step(Output& out);  // handshake, then reads, as far as the input allows
  void fail(Output& out, const char* during, int ssl_error);

  BlockPool& blocks_;
  SSL* ssl_;
  BIO* rbio_;  // ciphertext in (owned by ssl_)
  BIO* wbio_;  // ciphertext out (owned by ssl_)
  TlsSessionSlot* slot_ = nullptr;
  std::string error_;
  bool handshake_done_ = false;
  bool failed_ = false;
};

}  // namespace sluice
