#pragma once
// Http2Stream: one stream of an HTTP/2 client connection, the client side (ClientSide) of the
// exchange that serves its request. Owns its RequestContext (the configuration snapshot taken
// when the stream opened) and its Exchange; gathers the request's header block, hands the head
// to the exchange as an HTTP/1.1 MessageHead, relays DATA both ways with HTTP/2 flow control as
// the backpressure, and frames the response as HEADERS and DATA through a deferred data
// provider. Owned by its Http2Connection, which frees it on a later loop turn once nghttp2
// closed the stream (by then its exchange is over: the close aborts it).
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/block.h"
#include "core/intrusive_list.h"
#include "exchange/client_side.h"
#include "exchange/exchange.h"
#include "exchange/request_context.h"
#include "http/http2_shim.h"
#include "http/message.h"

namespace sluice {

class Http2Connection;
struct Http2RequestBlock;

// A ListNode for the worker's list of long-lived gRPC calls (Http2Transport::add_grpc_call).
class Http2Stream final : public ListNode, private ClientSide {
 public:
  Http2Stream(Http2Connection& conn, int32_t id, const RequestContext& rc);
  Http2Stream(const Http2Stream&) = delete;
  Http2Stream& operator=(const Http2Stream&) = delete;
  ~Http2Stream();

  int32_t id() const { return id_; }

  // From the connection's nghttp2 callbacks.
  // One decoded field of the request's header block (or of its trailers). False: the stream
  // was refused (reset); the connection ignores the rest of its frames.
  bool on_header(std::string_view name, std::string_view value, bool trailer);
  // The request's header block is complete; `end_stream`: it has no body.
  void on_request_headers(bool end_stream);
  // Request body bytes (a slice of the read buffer, or a copy). Returns the bytes whose stream
  // window may be credited now (0 while the exchange holds the body back).
  size_t on_data(const Slice& data);
  void on_request_end();
  // nghttp2 sent a frame with END_STREAM on this stream.
  void on_response_ended();
  // nghttp2 closed the stream (ended, reset by either side, or the connection went away).
  void on_closed(uint32_t error_code);
  // The data provider's read callback.
  h2::ssize read_body(uint8_t* buf, size_t length, uint32_t* flags);
  // Called by the connection after a send pass in which this stream's queue fell to its low
  // watermark.
  void notify_drained();
  // Drain: an event stream ends at its next event boundary.
  void drain_event_stream() { exchange_.drain_event_stream(); }
  // Drain, at the call's slot in the spread window: a gRPC call ends at its next response
  // message boundary with grpc-status 14 (Exchange::drain_grpc_call). False: no such call.
  bool drain_grpc_call(uint64_t end_by_ms) { return exchange_.drain_grpc_call(end_by_ms); }
  // The connection is going away: let the exchange go.
  void abort() { exchange_.abort(); }
  // A request body that stopped arriving for `timeout_ms` (while sluice was not holding it
  // back), as the same stall closes an HTTP/1.1 connection, or a response the client took no
  // byte of for as long (a window kept at zero: the upstream connection would be held for
  // ever), resets the stream (CANCEL) and aborts its exchange. True if it did.
  bool reset_if_stalled(uint64_t now_ms, uint64_t timeout_ms);

  bool closed() const { return closed_; }
  bool refused() const { return refused_; }
  // Its header block has begun and is not complete (the header timeout runs).
  bool awaiting_headers() const { return gathering_ && !refused_ && !closed_; }
  uint64_t opened_ms() const { return opened_ms_; }

 private:
  // ClientSide
  const RequestContext& request_context() const override { return rc_; }
  void send_continue() override;
  void send_interim(const MessageHead& head) override;
  size_t send_head(const MessageHead& head) override;
  void send_body(const Slice& data) override;
  void send_trailers(const MessageHead& trailers) override;
  void send_end() override;
  bool can_end_response_early() const override { return true; }
  size_t send_error(int status, std::string_view why, bool malformed,
                    std::span<const ExtraHeader> extra) override;
  size_t send_head_only(const MessageHead& head) override;
  void cut_response() override;
  bool above_high_watermark() const override;
  void pause_request_body() override { body_paused_ = true; }
  void resume_request_body() override;
  void exchange_done() override { end_upstream_work(); }
  void start_tunnel(std::unique_ptr<TcpStream> upstream, const Slice& from_server,
                    bool websocket) override;
  bool draining() const override;

  // Refuses the stream with RST_STREAM (a malformed request: PROTOCOL_ERROR).
  void reset(uint32_t error_code);
  // A response sluice makes itself before (or without) an exchange.
  size_t respond_text(int status, std::string_view why, std::span<const ExtraHeader> extra = {});
  // From the data provider at the end of the body: the trailing HEADERS frame (END_STREAM).
  // False when nghttp2 would not take it: the body then ends without them.
  bool submit_trailers();
  // The stream no longer holds upstream work (its exchange ended, or the stream is freed).
  void end_upstream_work();
  // Submits a final response head; `has_body`: DATA follows through the data provider.
  bool submit_head(int status, const nghttp2_nv* fields, size_t count, bool has_body);
  void resume_data();

  Http2Connection& conn_;
  const int32_t id_;
  RequestContext rc_;
  Exchange exchange_;

  // A request refused before its exchange began (431, 400, 501): counted with the listener's
  // requests and written to the access log with `reason`, as the exchange would have.
  void refuse(int status, std::string_view why, std::string_view reason,
              const Http2RequestBlock& b);
  MessageHead trailers_;

  // The response body queued for DATA frames, oldest first.
  SliceQueue out_;
  size_t out_bytes_ = 0;
  std::unique_ptr<MessageHead> trailers_out_;  // the response's trailers, until submitted
  size_t held_credit_ = 0;   // request bytes received while paused: window not yet credited
  uint64_t body_at_ms_ = 0;  // when request body bytes last arrived (or the head)
  uint64_t out_at_ms_ = 0;   // when the client last took response bytes (or some were queued)
  uint64_t opened_ms_ = 0;   // when its HEADERS began

  bool gathering_ = true;       // its request's header block is being gathered (the connection's)
  bool started_ = false;        // the exchange has the request head
  bool request_ended_ = false;  // the client's END_STREAM arrived
  bool body_paused_ = false;    // the exchange asked to hold the request body back
  bool head_request_ = false;
  bool response_submitted_ = false;
  bool response_has_body_ = false;
  bool body_end_ = false;            // all of the response body is queued
  bool deferred_ = false;            // the data provider answered DEFERRED
  mutable bool above_high_ = false;  // the exchange saw the queue over the high watermark
  bool response_ended_ = false;      // END_STREAM sent
  bool refused_ = false;
  bool closed_ = false;
  bool upstream_work_ = false;   // counted in the connection's guard (Http2Guard)
  uint64_t response_at_ms_ = 0;  // when response body bytes were last queued (gRPC idle)
};

}  // namespace sluice
