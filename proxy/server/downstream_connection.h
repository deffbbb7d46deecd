#pragma once
// DownstreamConnection: one HTTP/1.1 client connection, the client side (ClientSide) of one
// exchange at a time. Owns its TcpStream, an on-demand timer (header, idle, linger or WebSocket
// close timeout, by state) and, while it speaks HTTP, the HTTP_REQUEST parser, the request's
// context (the configuration snapshot it started under) and the Exchange that serves the
// current request; after a 101 it owns the Tunnel instead (as its TunnelClient). Serves one
// request at a time: the parser pauses after each request until its response is complete, and
// pipelined bytes wait (bounded) meanwhile. Frames responses for HTTP/1.1 (chunked or not,
// Connection: close or not). A client that opens with the HTTP/2 preface (plain listeners,
// prior knowledge) or agrees on ALPN h2 (TLS listeners) is served by an Http2Connection the
// connection owns instead, as its Http2Transport. Owned by its Worker's connection list; after
// close() it frees itself on a later loop turn, once its socket closed.
#include <uv.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "exchange/client_side.h"
#include "exchange/exchange.h"
#include "http/parser.h"
#include "http/rewrite.h"
#include "net/tcp_stream.h"
#include "server/http2_connection.h"
#include "tls/tls_context.h"
#include "tunnel/tunnel.h"

namespace sluice {

class Worker;

class DownstreamConnection final : public ListNode,
                                   private ClientSide,
                                   private TunnelClient,
                                   private StreamHandler,
                                   private BodySink,
                                   private Http2Transport {
 public:
  // Reasons reading is disabled; reading resumes when none is left.
  enum ReadBlock : uint8_t { kBackpressure = 1, kPipelineFull = 2 };

  DownstreamConnection(Worker& worker, uint16_t listener);
  int accept(uv_stream_t* server);
  int adopt(int fd);  // a descriptor accepted outside libuv (drain of the accept queue)
  bool secure() const { return stream_.tls(); }
  // Over a connection limit: a plain client gets a 503 and the connection closes after it; a
  // TLS client is closed at once (no handshake is spent on it).
  // `linger`: read the client's request before closing (no reset destroys the 503); off when
  // descriptors are short.
  void refuse(const char* reason, bool linger);
  // Refused for its address at accept (a ban, the listener's IP rules): `forbidden` answers 403
  // before closing (plain listeners); otherwise, and on TLS listeners, it is closed at once.
  void deny(const char* list, bool forbidden);
  const IpAddress& peer_address() const { return http_->rc.peer; }
  // Idempotent: aborts the exchange and closes the socket now.
  void close();

  LoopContext& ctx() override;
  // The limits of the configuration this connection's current request runs under.
  const Limits& limits() const;
  // The client's address as sent in X-Forwarded-For (HTTP only: kept with the HTTP state).
  std::string_view client_ip() const {
    return http_ ? std::string_view(http_->client_ip) : std::string_view();
  }
  // Asks the socket; for the rare log line of a tunnel.
  std::string peer_ip() const override { return stream_.peer_ip(); }
  Worker& worker() { return worker_; }
  uint16_t listener() const { return listener_; }
  // Accepted by a listener with `drain: false` (egress): a drain leaves it alone until the end.
  bool drain_exempt() const { return drain_exempt_; }
  Tunnel* tunnel() { return tunnel_.get(); }
  Http2Connection* http2() { return h2_.get(); }
  // Drain: a keep-alive connection between requests, with no next request already waiting in
  // its socket, closes now; others close after their response. A connection that has not sent
  // its first request yet is not idle: it is served (with Connection: close).
  bool idle_keep_alive() const {
    return state_ == State::kIdle && http_ && http_->held.empty() && served_ > 0 &&
           stream_.peek_clean();
  }
  Exchange* exchange() { return http_ ? &http_->exchange : nullptr; }
  bool draining() const override;
  bool closing() const { return state_ >= State::kClosing; }

 private:
  // ClientSide
  const RequestContext& request_context() const override { return http_->rc; }
  void send_continue() override;
  void send_interim(const MessageHead& head) override;
  size_t send_head(const MessageHead& head) override;
  void send_body(const Slice& data) override;
  void send_trailers(const MessageHead& trailers) override;
  void send_end() override;
  bool can_end_response_early() const override {
    return http_->response_framing == Framing::kChunked ||
           http_->response_framing == Framing::kClose;
  }
  size_t send_error(int status, std::string_view why, bool malformed,
                    std::span<const ExtraHeader> extra) override;
  size_t send_head_only(const MessageHead& head) override;
  void cut_response() override { close(); }
  bool above_high_watermark() const override { return stream_.above_high_watermark(); }
  void pause_request_body() override { block_reading(kBackpressure); }
  void resume_request_body() override { unblock_reading(kBackpressure); }
  void exchange_done() override;
  void start_tunnel(std::unique_ptr<TcpStream> upstream, const Slice& from_server,
                    bool websocket) override;
  // TunnelClient
  int write(const Slice& s) override { return stream_.write(s); }
  void pause_client() override { block_reading(kBackpressure); }
  void resume_client() override { unblock_reading(kBackpressure); }
  void finish_tunnel() override { close_after_flush(false); }
  void arm_tunnel_timeout() override;
  TunnelRegistry& tunnel_registry() override;
  // Http2Transport
  LoopContext& loop_context() override { return ctx(); }
  const RequestContext& fresh_request_context() override;
  int send_bytes(const Slice* slices, size_t count) override {
    return stream_.write(slices, count);
  }
  bool send_congested() const override { return stream_.above_high_watermark(); }
  void pause_input() override { block_reading(kBackpressure); }
  void resume_input() override { unblock_reading(kBackpressure); }
  void session_over() override { close_after_flush(false); }
  bool drain_asked() const override { return draining(); }
  void add_grpc_call(Http2Stream* s) override;
  void remove_grpc_call(Http2Stream* s) override;

  enum class State : uint8_t { kIdle, kHead, kActive, kTunnel, kHttp2, kClosing, kClosed };

  void on_stream_read(const Slice& data) override;
  void on_stream_secure() override;
  void on_stream_eof() override;
  void on_stream_error(int status) override;
  void on_stream_drained() override;
  void on_stream_closed() override;
  void on_body(const Slice& data) override;
  static void on_timer(uv_timer_t* t);
  static void resume_task(void* self);
  static void delete_task(void* self);

  void process(Slice input);
  // The first bytes of a plain connection: true when they were taken (the HTTP/2 preface, or
  // a part of it that may become one).
  bool take_preface(const Slice& data);
  void start_http2(const Slice& first);
  void count_protocol(bool http2);
  void hold(const Slice& s);
  void resume_held();
  void start_request();
  void request_complete();
  void next_request();
  void parse_error();
  void close_after_flush(bool linger);
  int start();  // after accept/adopt: TLS if the listener has it, timers, reading
  void arm_timer(Millis timeout);
  void block_reading(ReadBlock reason);
  void unblock_reading(ReadBlock reason);
  // Writes a piece of the response; a client that is gone is closed (aborting the exchange).
  void write_or_close(const Slice& s);
  // Takes the worker's current configuration for what comes next on this connection.
  void refresh_snapshot();
  // The request's body is all read, or it has none.
  bool request_body_done() const { return request_done_ || !body_timer_; }

  // Everything only HTTP needs; freed when the connection becomes a tunnel, so an idle
  // WebSocket session does not carry it.
  struct HttpState {
    HttpState(DownstreamConnection& down, BodySink* sink)
        : parser(HTTP_REQUEST, sink), exchange(down) {}
    HttpParser parser;
    Exchange exchange;
    RequestContext rc;  // rc.client_ip views client_ip
    std::string client_ip;
    // The current request and its response's framing.
    Framing response_framing = Framing::kNone;
    bool http10 = false;
    bool keep_alive = false;  // the client asked for it (and did not ask to upgrade)
    bool head_request = false;
    bool close_after = false;    // the connection closes after this response
    bool trailers_sent = false;  // the response's last chunk went out with its trailers
    std::vector<Slice> held;     // pipelined bytes waiting for the current exchange to finish
    std::shared_ptr<const ServerTls> handshake_tls;  // held until the TLS handshake completes
    size_t held_bytes = 0;
    std::string preface;  // first bytes that may be the start of the HTTP/2 preface
  };

  Worker& worker_;
  TcpStream stream_;
  OnDemandTimer timer_;
  std::unique_ptr<HttpState> http_;
  std::unique_ptr<Tunnel> tunnel_;
  std::unique_ptr<Http2Connection> h2_;
  uint32_t served_ = 0;  // requests started on this connection
  uint16_t listener_;    // index into the config's listeners
  State state_ = State::kIdle;
  uint8_t read_blocks_ = 0;
  // Flags in two bytes: every idle connection and WebSocket session carries them.
  bool drain_exempt_ : 1;           // its listener had `drain: false` when it was accepted
  bool request_done_ : 1 = false;   // the parser finished the current request
  bool response_done_ : 1 = false;  // the exchange finished the current response
  bool keep_alive_ : 1 = false;
  bool in_process_ : 1 = false;
  bool resume_scheduled_ : 1 = false;
  bool peer_eof_ : 1 = false;
  bool linger_ : 1 = false;
  bool head_timer_armed_ : 1 = false;
  bool body_timer_ : 1 = false;        // the current request has a body: its pauses are timed
  bool preface_checked_ : 1 = false;   // the first bytes were not the HTTP/2 preface
  bool protocol_counted_ : 1 = false;  // in sluice_downstream_connections_total
  uint64_t body_at_ = 0;  // when body bytes last arrived  // kClosing: FIN sent, reading until EOF
                          // or the linger timeout
};

}  // namespace sluice
