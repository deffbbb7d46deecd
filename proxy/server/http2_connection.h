#pragma once
// Http2Connection: the HTTP/2 session of one client connection (RFC 9113), nghttp2 driven from
// the worker's loop with mem_recv/mem_send above the TLS layer. Owns the nghttp2_session and the
// connection's streams (Http2Stream, each the client side of its own Exchange), and knows its
// socket only through Http2Transport (the DownstreamConnection that detected the preface or
// ALPN h2, and owns this object).
//
// Flow control is the backpressure: no automatic WINDOW_UPDATE. The connection window is
// credited as soon as DATA is handed to a stream (each stream is bounded by its own window); a
// stream's window only once its exchange takes the bytes and has not asked to pause. Frames are
// produced (mem_send) only while the socket's queue is under its high watermark; reading stops
// above it and both resume when it drains.
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/block.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "core/stats.h"
#include "exchange/request_context.h"
#include "http/http2_session.h"
#include "http/message.h"
#include "server/http2_guard.h"

namespace sluice {

class Http2Stream;

// The request header block a connection is gathering: one at a time (RFC 9113 §4.3, a header
// block is contiguous on its connection), so one per connection, reused for every stream. It
// becomes the exchange's MessageHead directly: the request target from :path, Host from
// :authority, the fields as they came, cookie crumbs joined (RFC 9113 §8.2.3). nghttp2 has
// already checked names, values, pseudo-headers and content-length (HTTP messaging is on).
struct Http2RequestBlock {
  MessageHead head;
  std::string method;        // :method as sent
  std::string cookies;       // cookie crumbs joined with "; "
  uint64_t bytes = 0;        // decoded size, counted as HPACK does (name + value + 32)
  uint32_t field_count = 0;  // decoded fields, each cookie crumb and pseudo-header included
  bool has_host = false;     // from :authority, or a host field without it
  bool too_large = false;
  bool too_many = false;
  bool grpc = false;  // content-type application/grpc*: refusals are gRPC statuses
  void reset() {
    head.clear();
    method.clear();
    cookies.clear();
    bytes = 0;
    field_count = 0;
    has_host = too_large = too_many = grpc = false;
  }
};

// What an HTTP/2 session needs of the connection under it: the socket (Http2Sink: writes,
// congestion, pausing its input), and more.
class Http2Transport : public Http2Sink {
 public:
  virtual LoopContext& loop_context() = 0;
  // The context for a new stream: the worker's current configuration snapshot, access log,
  // listener and client address.
  virtual const RequestContext& fresh_request_context() = 0;
  // The session is over: close once the queued bytes are written. Called at most once.
  virtual void session_over() = 0;
  virtual bool drain_asked() const = 0;
  // gRPC calls whose response head was sent, on the worker's list: the drain ends them at their
  // slot in the spread window (Worker). A stream leaves it when its call ends or it is freed.
  virtual void add_grpc_call(Http2Stream* s) = 0;
  virtual void remove_grpc_call(Http2Stream* s) = 0;

 protected:
  ~Http2Transport() = default;
};

// A connection's settings: the listener's `http2:` block and the header timeout.
struct Http2Settings {
  uint32_t max_concurrent_streams = 100;  // also the cap on streams with upstream work
  uint32_t initial_window = 64 * 1024;
  uint32_t connection_window = 1024 * 1024;
  uint32_t max_stream_errors = 100;
  uint64_t header_timeout_ms = 10000;  // a header block must be complete within it (0: none)
};

class Http2Connection {
 public:
  explicit Http2Connection(Http2Transport& transport, Http2Settings settings = {});
  ~Http2Connection();
  Http2Connection(const Http2Connection&) = delete;
  Http2Connection& operator=(const Http2Connection&) = delete;

  // Creates the session and queues sluice's SETTINGS. False when nghttp2 could not.
  bool start(uint64_t max_header_bytes);
  // Bytes from the client (the preface first).
  void on_input(const Slice& data);
  // The socket's queue fell to its low watermark.
  void on_transport_drained();
  // Graceful end in two GOAWAYs (RFC 9113 §6.8), for the idle timeout and the drain: first the
  // notice (last stream id 2^31-1) and a PING; when its ACK comes back (a round trip: every
  // stream the client opened before it saw the notice has arrived), or after kGoawayWait at
  // most, the final GOAWAY with the last stream sluice took. Streams in flight finish; the
  // connection ends after the last one. Idempotent.
  void shutdown();
  // For a connection opened while a drain's delay runs: the shutdown notice goes once its first
  // stream has closed, not at once. A client told to go away at once reconnects at once, and
  // while the pod is still in the endpoints that is here again: each round trip would add a
  // connection with its first streams in flight, a reconnect storm instead of a move. Served
  // first, it moves as a kept-alive HTTP/1.1 client does after its `Connection: close`.
  void shutdown_after_first_stream() { shutdown_after_stream_ = true; }
  static constexpr uint64_t kGoawayWaitMs = 1000;
  // Aborts every exchange and stops; the transport closes the socket. Idempotent.
  void close();

  size_t open_streams() const { return streams_.size() - retired_; }
  // Resets the streams whose request body stalled for `timeout_ms` (Http2Stream).
  void reset_stalled_streams(uint64_t timeout_ms);
  uint64_t idle_since_ms() const { return idle_since_ms_; }

  // For the streams.
  nghttp2_session* session() { return h2_.get(); }
  // The header block of the stream whose HEADERS are being received (Http2Stream).
  Http2RequestBlock& request_block() { return request_block_; }
  Http2Guard& guard() { return guard_; }
  // The client made a stream fail (sluice refused it): spends the stream-error budget, and
  // ends the connection with ENHANCE_YOUR_CALM when it is gone.
  void stream_error(Http2Flood kind = Http2Flood::kStreamErrors);
  ListenerStats* stats() { return stats_; }
  LoopContext& ctx() { return transport_.loop_context(); }
  bool draining() const { return transport_.drain_asked(); }
  Http2Transport& transport() { return transport_; }
  // Frames to send: produced on a later loop turn (one pass for all streams), or right after
  // the current mem_recv.
  void schedule_send();
  // A stream's queue fell to its low watermark in a send pass: its exchange hears it after it.
  void stream_drained(Http2Stream* s) { drained_.push_back(s); }

 private:
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user);
  static void configure(nghttp2_session_callbacks* cb, nghttp2_option* opt);
  static void send_task(void* self);
  static void on_header_timer(uv_timer_t* t);
  void arm_header_timer();
  // Ends the session with GOAWAY ENHANCE_YOUR_CALM: an attack guard's budget ran out.
  void calm(Http2Flood kind, const char* why);
  void count_flood(Http2Flood kind);
  void count_goaway(uint32_t error_code);
  static void on_goaway_timer(uv_timer_t* t);
  void final_goaway();
  static void sweep_task(void* self);

  Http2Stream* stream(int32_t id);
  void send();
  // The stream is closed: freed on a later loop turn.
  void retire(Http2Stream* s);
  void sweep();
  void finish();  // the session wants neither to read nor to write: hand the socket back

  Http2Transport& transport_;
  Http2Settings settings_;
  Http2Guard guard_;
  ListenerStats* stats_ = nullptr;  // the listener's shard (null in some tests)
  Http2Session h2_;                 // the nghttp2 session, its send loop and the input pause
  std::vector<std::unique_ptr<Http2Stream>> streams_;
  Http2RequestBlock request_block_;
  std::vector<Http2Stream*> drained_;
  size_t retired_ = 0;
  uint64_t idle_since_ms_ = 0;
  bool send_scheduled_ = false;
  bool sweep_scheduled_ = false;
  bool closed_ = false;
  bool over_ = false;   // session_over() was called
  uint8_t goaway_ = 0;  // 0: none sent; 1: the notice and its PING; 2: the final GOAWAY
  bool shutdown_after_stream_ = false;  // shutdown_after_first_stream() was asked
  OnDemandTimer goaway_timer_;          // the notice's PING round trip, capped
  OnDemandTimer header_timer_;          // the oldest incomplete header block's header timeout
  bool header_timer_armed_ = false;
  bool calm_ = false;            // ending with ENHANCE_YOUR_CALM: no new stream is taken
  bool goaway_counted_ = false;  // the first GOAWAY sent is counted, by why
  bool flood_counted_ = false;
  int8_t goaway_reason_ = -1;     // Http2Goaway of the GOAWAY sluice asked for (-1: none)
  uint8_t last_frame_ = 0xff;     // type of the frame being received (flood kinds)
  uint64_t resets_received_ = 0;  // RST_STREAM frames (nghttp2's rate limit is behind a GOAWAY)
};

}  // namespace sluice
