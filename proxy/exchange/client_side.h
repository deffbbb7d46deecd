#pragma once
// ClientSide: the exchange's view of its client — an HTTP/1.1 connection serving one request at
// a time today (server/DownstreamConnection), one stream of an HTTP/2 connection next. The
// exchange hands it the response as a head, body pieces and an end; the side frames them for
// its protocol (chunked or not, Connection: close or not; DATA frames) and decides whether its
// connection stays open. Calls that write may find the client gone: the side then aborts the
// exchange (Exchange::abort) before it returns, so the exchange re-checks that it is active.
#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "core/block.h"
#include "exchange/request_context.h"
#include "http/message.h"
#include "http/rewrite.h"

namespace sluice {

class TcpStream;

class ClientSide {
 public:
  // The context of the request being served (fixed when its head arrived).
  virtual const RequestContext& request_context() const = 0;

  // "100 Continue" for a request that expects it, where the protocol has one.
  virtual void send_continue() = 0;
  // Another interim (1xx) response, passed on where the client can take it.
  virtual void send_interim(const MessageHead& head) = 0;
  // The final response head (101 included). Returns the bytes written, for the access log.
  virtual size_t send_head(const MessageHead& head) = 0;
  virtual void send_body(const Slice& data) = 0;
  // The response's trailer fields, only the forwardable ones (http/trailers.h) and at least
  // one, right before send_end(): a chunked trailer section for HTTP/1.1, a trailing HEADERS
  // frame for HTTP/2. A side whose response framing has no place for them (a Content-Length or
  // close-delimited HTTP/1.1 body) drops them.
  virtual void send_trailers(const MessageHead& trailers) = 0;
  // The response body is complete.
  virtual void send_end() = 0;
  // Whether the response may end before the upstream's does (a drained event stream): true for
  // a chunked or close-delimited HTTP/1.1 body and for HTTP/2, false under a Content-Length.
  virtual bool can_end_response_early() const = 0;
  // A whole response sluice makes itself: `status` with a short text saying why. `malformed`:
  // the request was malformed, the connection must not serve another one. `extra`: headers to
  // add (Retry-After). Returns the bytes written.
  virtual size_t send_error(int status, std::string_view why, bool malformed,
                            std::span<const ExtraHeader> extra = {}) = 0;
  // A whole response that is a head alone, sluice's own (a gRPC Trailers-Only response): one
  // HEADERS frame with END_STREAM for HTTP/2; for HTTP/1.1 the head with Content-Length: 0.
  // Returns the bytes written.
  virtual size_t send_head_only(const MessageHead& head) = 0;
  // The response cannot be completed (the upstream failed mid-body): the client must never
  // take the truncated response for a whole one. Aborts the exchange.
  virtual void cut_response() = 0;

  // Response backpressure: bytes queued to the client over the high watermark. The side calls
  // Exchange::on_client_drained when they fall to the low one.
  virtual bool above_high_watermark() const = 0;
  // Request backpressure: stop and resume taking request body bytes from the client.
  virtual void pause_request_body() = 0;
  virtual void resume_request_body() = 0;

  // The exchange is over (the response was sent whole, or sluice answered itself).
  virtual void exchange_done() = 0;
  // After a 101: the client and the upstream socket become a tunnel. `from_server` holds bytes
  // of the new protocol that came with the response head.
  virtual void start_tunnel(std::unique_ptr<TcpStream> upstream, const Slice& from_server,
                            bool websocket) = 0;
  // A drain asked the client to stop sending new work on this connection.
  virtual bool draining() const = 0;

 protected:
  ~ClientSide() = default;
};

}  // namespace sluice
