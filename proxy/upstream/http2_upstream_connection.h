#pragma once
// Http2UpstreamConnection: one HTTP/2 client connection to an upstream address (RFC 9113),
// nghttp2 driven with mem_recv/mem_send over a TcpStream (TLS with ALPN h2, or cleartext with
// prior knowledge). Owns its socket, the nghttp2 session and its streams (Http2UpstreamStream,
// each the UpstreamSide of one exchange). Owned by its Http2UpstreamPool while open; after
// close() it is detached and frees itself on a later loop turn, once its socket closed. Streams
// are freed only by a deferred sweep, never inside an nghttp2 or exchange callback.
//
// Flow control is backpressure both ways: no automatic WINDOW_UPDATE; the connection window is
// credited as DATA is handed to a stream, a stream's window only for the bytes its exchange took
// while not paused. Request bodies leave through a deferred data provider; frames are produced
// only while the socket's queue is under its high watermark, and the socket is not read while it
// is above it (a server that does not read what it is sent is not read either).
//
// Liveness: after kPingIdleMs without a frame from the server a PING goes out; no ACK (nor any
// other frame) within kPingTimeoutMs closes the connection and fails its streams.
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "http/http2_session.h"
#include "http/http2_shim.h"
#include "http/message.h"
#include "net/tcp_stream.h"
#include "upstream/http2_request_fields.h"
#include "upstream/upstream_side.h"

namespace sluice {

class Http2UpstreamPool;
class Http2UpstreamConnection;
class TlsLayer;
class TlsSessionSlot;

// One request/response on a multiplexed connection: the exchange's UpstreamSide. Owned by its
// connection (swept once both nghttp2 and the exchange are done with it, then kept for a later
// request: its head buffers, body queue and timer keep what they allocated).
class Http2UpstreamStream final : public UpstreamSide {
 public:
  Http2UpstreamStream(Http2UpstreamConnection& conn, bool reused);

  // UpstreamSide
  bool reused() const override { return reused_; }
  void bind(UpstreamHandler* handler, bool head_request) override;
  int send_head(const Slice& head, Framing framing) override;
  int send_body(const Slice& data) override;
  int send_end(const Slice& trailers) override;
  void expect_response(uint64_t timeout_ms) override;
  size_t queued() const override { return out_bytes_; }
  void pause_response() override { paused_ = true; }
  void resume_response() override;
  void release(bool request_sent) override;
  void reset() override;
  std::unique_ptr<TcpStream> take_socket() override { return nullptr; }  // never upgraded

  Http2UpstreamConnection& connection() const { return conn_; }

  // Connection → stream.
  int32_t id() const { return id_; }
  // Neither nghttp2 nor the exchange nor a deferred task needs it: the sweep takes it.
  bool done() const { return !handler_ && h2_closed_ && !error_scheduled_; }
  // A done stream made new for another request; what it allocated stays (bounded).
  void recycle(bool reused);
  bool bound() const { return handler_ != nullptr; }
  void on_header(std::string_view name, std::string_view value);
  void on_headers_end(bool end_stream);
  void on_data(const Slice& data);
  void on_end_stream();
  // nghttp2 closed the stream (after END_STREAM both ways, RST_STREAM, GOAWAY or the session).
  void on_closed(uint32_t error_code);
  // The HEADERS could not be sent (GOAWAY arrived first): the server never saw the request.
  void on_not_sent();
  // The connection is gone: `e` unless the response completed.
  void connection_lost(UpstreamError e);
  h2::ssize read_body(uint8_t* buf, size_t length, uint32_t* flags);
  void notify_drained();

 private:
  void fail(UpstreamError e);
  static void on_timer(uv_timer_t* t);
  void fail_later(UpstreamError e);
  static void fail_task(void* self);
  bool submit_trailers();

  // Every field below is the request's: recycle() sets each back to what it is here.
  Http2UpstreamConnection& conn_;
  UpstreamHandler* handler_ = nullptr;
  int32_t id_ = -1;
  MessageHead head_;      // the response head (or an interim one) being received
  MessageHead trailers_;  // the trailer section being received
  SliceQueue out_;        // request body bytes not yet taken by nghttp2
  size_t out_bytes_ = 0;
  size_t unconsumed_ = 0;  // DATA delivered while paused: credited on resume
  OnDemandTimer timer_;    // response-head timeout
  // The request's HTTP/2 fields, which nghttp2 does not copy: kept until the stream is done.
  Http2RequestFields fields_{/*referenced=*/true};
  std::unique_ptr<Http2RequestFields> trailer_fields_;
  UpstreamError pending_error_ = UpstreamError::kReset;
  bool reused_;
  bool final_head_ = false;   // a final (non-1xx) response head arrived
  bool in_trailers_ = false;  // the HEADERS being received is the trailer section
  bool response_started_ = false;
  bool awaiting_head_ = false;
  bool body_end_ = false;    // send_end came
  bool deferred_ = false;    // the data provider answered DEFERRED
  bool above_high_ = false;  // queued passed the high watermark: drained is due
  bool paused_ = false;
  bool complete_ = false;   // END_STREAM received
  bool h2_closed_ = false;  // nghttp2 is done with it (or never had it)
  bool error_scheduled_ = false;
};

class Http2UpstreamConnection final : public ListNode, private StreamHandler, private Http2Sink {
 public:
  enum class State : uint8_t { kConnecting, kReady, kGoingAway, kClosed };

  Http2UpstreamConnection(LoopContext& ctx, Http2UpstreamPool* pool, bool https);
  ~Http2UpstreamConnection();
  int connect(const sockaddr* addr, uint64_t timeout_ms);
  bool start_tls(SSL_CTX* ctx, const std::string& name, bool verify, TlsSessionSlot* slot);

  // Pool → connection.
  State state() const { return state_; }
  // Streams open (bound or not yet swept): what counts against the server's limit.
  size_t active_streams() const { return active_; }
  // Whether another stream fits under the server's SETTINGS_MAX_CONCURRENT_STREAMS.
  uint32_t server_max_streams() const;
  bool has_room() const;
  // A new stream for an exchange (the caller checked has_room).
  Http2UpstreamStream* open_stream();
  uint64_t streams_opened() const { return opened_; }
  // Detaches from the pool, fails the streams still bound (with kReset) and closes. Idempotent.
  void close();
  void close_with(UpstreamError e);
  void start_idle_timer(uint64_t ms);
  // Reading stopped: the socket's queue is above its high watermark.
  bool input_paused() const { return h2_.input_paused(); }

  // Stream → connection.
  LoopContext& ctx() const { return stream_->context(); }
  nghttp2_session* session() { return h2_.get(); }
  bool https() const { return https_; }
  const std::string& authority() const;
  void schedule_send();
  void stream_drained(Http2UpstreamStream* s) { drained_.push_back(s); }
  // The stream ended for its exchange: it no longer counts (a slot is free for a waiter).
  void stream_finished(Http2UpstreamStream* s);
  void schedule_sweep();

 private:
  friend class Http2UpstreamPool;
  void on_stream_connected(int status) override;
  void on_stream_read(const Slice& data) override;
  void on_stream_eof() override;
  void on_stream_error(int status) override;
  void on_stream_drained() override;
  void on_stream_closed() override;
  // Http2Sink: the socket.
  int send_bytes(const Slice* slices, size_t count) override {
    return stream_->write(slices, count);
  }
  bool send_congested() const override { return stream_->above_high_watermark(); }
  void pause_input() override { stream_->read_stop(); }
  void resume_input() override { stream_->read_start(); }
  static void configure(nghttp2_session_callbacks* cb, nghttp2_option* opt);
  bool start_session();
  void send();
  static void send_task(void* self);
  static void sweep_task(void* self);
  void sweep();
  static void on_timer(uv_timer_t* t);
  void arm_ping_timer();
  void fail_connect(UpstreamError e);
  Http2UpstreamStream* stream(int32_t id);
  void on_goaway(int32_t last_stream_id, uint32_t error_code);
  void on_settings();

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int error, void* user);

  Http2UpstreamPool* pool_;
  std::unique_ptr<TcpStream> stream_;
  TlsLayer* tls_ = nullptr;
  Http2Session h2_;  // the nghttp2 session, its send loop and the input pause
  std::vector<std::unique_ptr<Http2UpstreamStream>> streams_;
  // Done streams kept for the next requests (an allocation, a timer and the head buffers' growth
  // saved on each); at most kSpareStreams.
  std::vector<std::unique_ptr<Http2UpstreamStream>> spare_;
  static constexpr size_t kSpareStreams = 16;
  std::vector<Http2UpstreamStream*> drained_;
  OnDemandTimer timer_;  // connect timeout, then PING / idle
  State state_ = State::kConnecting;
  size_t active_ = 0;
  uint64_t opened_ = 0;
  uint64_t last_frame_ms_ = 0;  // a frame arrived from the server (liveness)
  uint64_t idle_timeout_ms_ = 0;
  uint64_t idle_since_ms_ = 0;
  uint32_t connect_round_ = 0;
  bool https_;
  bool send_scheduled_ = false;
  bool sweep_scheduled_ = false;
  bool ping_outstanding_ = false;
  bool settings_seen_ = false;    // the server's SETTINGS arrived
  bool session_started_ = false;  // connected (and TLS done): frames flow
  bool closing_quietly_ = false;  // close() by the pool: no connect failure is reported
};

}  // namespace sluice
