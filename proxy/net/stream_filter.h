#pragma once
// StreamFilter: a transformation a TcpStream applies between its socket and its handler — TLS
// today (tls/TlsLayer). The stream calls through this interface, so the byte layer does not
// depend on the layer above it: the owner of a connection, which knows which TLS it wants,
// builds the filter and gives it to the stream (TcpStream::set_filter).
#include <string>
#include <string_view>
#include <vector>

#include "core/block.h"

namespace sluice {

class StreamFilter {
 public:
  // What one call produced.
  struct Output {
    std::vector<Slice> ciphertext;  // for the socket, in order
    std::vector<Slice> plaintext;   // for the handler, in order
    bool handshake_done = false;    // the handshake completed in this call
    bool peer_closed = false;       // the peer ended its side (close_notify)
    bool failed = false;            // a fatal error; `error` says what
    std::string error;
  };

  virtual ~StreamFilter() = default;
  // The accepting side (a client connection to sluice) or the connecting side.
  virtual bool server_side() const = 0;
  virtual void start_handshake(Output& out) = 0;  // connecting side: the first flight
  virtual void feed(const char* data, size_t len, Output& out) = 0;
  virtual void encrypt(const Slice* slices, size_t count, Output& out) = 0;
  virtual void close_notify(Output& out) = 0;
  virtual bool handshake_done() const = 0;
  // Input already taken from the socket but not yet handed out (a peek sees nothing of it).
  virtual bool has_pending() const = 0;
  // The application protocol the handshake agreed on (ALPN), empty when none.
  virtual std::string_view alpn() const { return {}; }
  // The failure that ended the connection, for its log line.
  virtual const std::string& error() const = 0;
  virtual void set_error(std::string e) = 0;
};

}  // namespace sluice
