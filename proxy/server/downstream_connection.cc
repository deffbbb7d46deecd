#include "server/downstream_connection.h"

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "http/rewrite.h"
#include "http/trailers.h"
#include "server/worker.h"
#include "tls/tls_layer.h"
#include "tunnel/tunnel_upstream.h"

namespace sluice {

namespace {
// Pipelined bytes held while a response is pending; beyond this, reading pauses.
constexpr size_t kMaxHeldBytes = 64 * 1024;
// How long a closing connection keeps reading (and discarding) after its response was
// flushed and FIN sent, so a client's unread pipelined bytes do not turn into an RST that
// could destroy the response in flight.
constexpr Millis kLingerTimeout{2000};
const Slice k100Continue{BlockRef(), "HTTP/1.1 100 Continue\r\n\r\n", 25};
// RFC 9113 §3.4: a client with prior knowledge opens with this.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
}  // namespace

DownstreamConnection::DownstreamConnection(Worker& worker, uint16_t listener)
    : worker_(worker),
      stream_(worker.ctx(), this, /*cork=*/true),
      http_(std::make_unique<HttpState>(*this, static_cast<BodySink*>(this))),
      listener_(listener),
      drain_exempt_(!worker.config().listeners[listener].drain) {
  RequestContext& rc = http_->rc;
  rc.loop = &worker.ctx();
  rc.config = worker.config_ptr();
  rc.listener = listener;
  rc.listener_stats = &worker.listener_stats(listener);
  rc.colour_log = worker.colour_log();
  rc.clusters = &worker;
  rc.maintenance = worker.maintenance(listener);
  rc.guard = worker.guard_policy();
  http_->parser.set_limits(rc.config->limits.max_header_bytes, rc.config->limits.max_header_fields);
}

LoopContext& DownstreamConnection::ctx() {
  return worker_.ctx();
}

const Limits& DownstreamConnection::limits() const {
  return http_ ? http_->rc.config->limits : worker_.config().limits;
}

void DownstreamConnection::refresh_snapshot() {
  RequestContext& rc = http_->rc;
  if (rc.config.get() != &worker_.config()) {
    rc.config = worker_.config_ptr();
    http_->parser.set_limits(rc.config->limits.max_header_bytes,
                             rc.config->limits.max_header_fields);
  }
  rc.access_log = worker_.access_log();
  if (rc.guard != worker_.guard_policy()) rc.guard = worker_.guard_policy();
}

bool DownstreamConnection::draining() const {
  return worker_.drain().draining() && !drain_exempt();
}

int DownstreamConnection::adopt(int fd) {
  int r = stream_.open(fd);
  return r != 0 ? r : start();
}

int DownstreamConnection::accept(uv_stream_t* server) {
  int r = stream_.accept(server);
  return r != 0 ? r : start();
}

void DownstreamConnection::add_grpc_call(Http2Stream* s) {
  if (!drain_exempt()) worker_.add_grpc_call(s);  // a `drain: false` listener's stay to the end
}

void DownstreamConnection::remove_grpc_call(Http2Stream* s) {
  worker_.remove_grpc_call(s);
}

const RequestContext& DownstreamConnection::fresh_request_context() {
  refresh_snapshot();
  return http_->rc;
}

int DownstreamConnection::start() {
  http_->client_ip = stream_.peer_ip();
  http_->rc.client_ip = http_->client_ip;
  http_->rc.peer = parse_ip(http_->client_ip).value_or(IpAddress{});
  if (const auto& tls = worker_.listener_tls(listener_)) {
    std::unique_ptr<TlsLayer> layer = TlsLayer::server(ctx().blocks, tls->default_ctx());
    if (!layer) return UV_ENOMEM;
    stream_.set_filter(std::move(layer));
    http_->rc.secure = true;
    preface_checked_ = true;     // TLS clients choose HTTP/2 by ALPN
    http_->handshake_tls = tls;  // its SNI callback runs in the handshake, even after a rotation
    // The handshake first, within its own timeout; then the header timeout starts.
    arm_timer(worker_.config().listeners[listener_].tls.handshake_timeout);
  } else {
    arm_timer(limits().header_timeout);  // a new connection must send its first request in time
  }
  stream_.read_start();
  return 0;
}

void DownstreamConnection::refuse(const char* reason, bool linger) {
  LOG_DEBUG("client %s: refused (%s)", std::string(client_ip()).c_str(), reason);
  if (stream_.tls()) {
    close();
    return;
  }
  BlockWriter w(ctx().blocks);
  write_error_response(w, 503, std::string("connection limit reached (") + reason + ")", true);
  stream_.write(w.finish());
  close_after_flush(linger);
}

void DownstreamConnection::deny(const char* list, bool forbidden) {
  LOG_DEBUG("client %s: refused at accept (%s)", std::string(client_ip()).c_str(), list);
  if (stream_.tls() || !forbidden) {
    close();
    return;
  }
  BlockWriter w(ctx().blocks);
  write_error_response(w, 403, "denied by the listener's IP rules", true);
  stream_.write(w.finish());
  close_after_flush(true);
}

void DownstreamConnection::on_stream_secure() {
  if (http_) http_->handshake_tls.reset();
  if (state_ == State::kIdle && served_ == 0) {
    if (stream_.alpn() == "h2") {
      start_http2(Slice());
      return;
    }
    arm_timer(limits().header_timeout);
  }
}

void DownstreamConnection::arm_timer(Millis timeout) {
  if (timeout.count() > 0) {
    timer_.start(stream_.context().loop, this, &DownstreamConnection::on_timer,
                 static_cast<uint64_t>(timeout.count()));
  } else {
    timer_.stop();
  }
}

void DownstreamConnection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<DownstreamConnection*>(t->data);
  switch (self->state_) {
    case State::kIdle:
      LOG_DEBUG("client %s: idle timeout", std::string(self->client_ip()).c_str());
      self->close();
      break;
    case State::kHead:
      LOG_INFO("client %s: request head not received within the header timeout",
               std::string(self->client_ip()).c_str());
      self->close();
      break;
    case State::kClosing:
      self->close();
      break;
    case State::kTunnel:
      self->tunnel_->force_close(TunnelEnd::kDrainForced);
      break;
    case State::kHttp2: {
      // The idle timeout runs while no stream is open; then GOAWAY, and the session ends.
      const Millis timeout = self->limits().idle_timeout;
      if (timeout.count() <= 0) break;
      if (self->h2_->open_streams() > 0) {
        // Streams whose request body stopped arriving are reset (checked every half timeout:
        // a stall is caught within 1.5 times the timeout).
        self->h2_->reset_stalled_streams(static_cast<uint64_t>(timeout.count()));
        if (self->state_ == State::kHttp2) self->arm_timer(Millis(timeout.count() / 2 + 1));
        break;
      }
      const uint64_t quiet = self->ctx().now_ms() - self->h2_->idle_since_ms();
      if (quiet < static_cast<uint64_t>(timeout.count())) {
        self->arm_timer(Millis(static_cast<uint64_t>(timeout.count()) - quiet));
      } else {
        LOG_DEBUG("client %s: http2 idle timeout", std::string(self->client_ip()).c_str());
        self->h2_->shutdown();
      }
      break;
    }
    case State::kActive:
      // Waiting for the response is the upstream timeouts' business; a request body that
      // stops arriving is the client's, unless sluice itself stopped reading (backpressure).
      if (!self->request_done_ && self->body_timer_) {
        const uint64_t timeout = static_cast<uint64_t>(self->limits().idle_timeout.count());
        const uint64_t quiet = self->ctx().now_ms() - self->body_at_;
        if (self->read_blocks_ & kBackpressure) {
          self->arm_timer(self->limits().idle_timeout);
        } else if (quiet < timeout) {
          self->arm_timer(Millis(timeout - quiet));  // bytes came since: time from the last ones
        } else {
          LOG_INFO("client %s: request body stalled for %s; closing",
                   std::string(self->client_ip()).c_str(),
                   format_duration(self->limits().idle_timeout).c_str());
          self->close();
        }
      }
      break;
    case State::kClosed:
      break;
  }
}

void DownstreamConnection::on_stream_read(const Slice& data) {
  if (state_ == State::kTunnel) {
    tunnel_->from_client(data);
    return;
  }
  if (state_ == State::kHttp2) {
    h2_->on_input(data);
    return;
  }
  if (state_ == State::kClosing) return;  // lingering: discard
  if (!preface_checked_ && take_preface(data)) return;
  if (!http_->held.empty() || (state_ == State::kActive && request_done_)) {
    hold(data);
    return;
  }
  process(data);
}

bool DownstreamConnection::take_preface(const Slice& data) {
  std::string& early = http_->preface;
  Slice in = data;
  if (!early.empty()) {  // the preface is arriving in pieces (rare): look at all of it
    early.append(data.data, data.len);
    BlockWriter w(ctx().blocks, early.size());
    w.append(early);
    in = w.finish();
    early.clear();
  }
  const size_t n = std::min(in.len, kHttp2Preface.size());
  if (std::memcmp(in.data, kHttp2Preface.data(), n) != 0) {
    preface_checked_ = true;
    if (in.data == data.data) return false;  // HTTP/1.1: the usual path
    process(in);
    return true;
  }
  if (n < kHttp2Preface.size()) {
    early.assign(in.data, in.len);
    return true;
  }
  preface_checked_ = true;
  if (!worker_.config().listeners[listener_].http2.enabled) {
    // HTTP/2 is off on this listener (`http2.enabled: false`): the preface's request line says
    // HTTP/2.0, so the answer is HTTP/1.1's 505, and the connection closes.
    LOG_DEBUG("client %s: HTTP/2 preface on a listener without HTTP/2",
              std::string(client_ip()).c_str());
    BlockWriter w(ctx().blocks);
    write_error_response(w, 505, "HTTP/2 is not enabled on this listener", true);
    stream_.write(w.finish());
    ctx().stats.sluice_errors.add();
    worker_.listener_stats(listener_).requests[status_class(505)].add();
    close_after_flush(true);
    return true;
  }
  start_http2(in);
  return true;
}

// sluice_downstream_connections_total{protocol}: counted once the protocol is known (the first
// HTTP/1.1 request head, the HTTP/2 preface or ALPN h2); a connection that closes before that
// counts as HTTP/1.1, the protocol it was served with (a refusal's 503, a timeout).
void DownstreamConnection::count_protocol(bool http2) {
  if (protocol_counted_) return;
  protocol_counted_ = true;
  worker_.listener_stats(listener_).connections_total[http2 ? 1 : 0].add();
}

void DownstreamConnection::start_http2(const Slice& first) {
  state_ = State::kHttp2;
  ++served_;
  const ListenerHttp2& cfg = http_->rc.config->listeners[listener_].http2;
  Http2Settings settings;
  settings.max_concurrent_streams = cfg.max_concurrent_streams;
  settings.initial_window = cfg.initial_stream_window;
  settings.connection_window = cfg.connection_window;
  settings.max_stream_errors = cfg.max_stream_errors;
  settings.header_timeout_ms = static_cast<uint64_t>(limits().header_timeout.count());
  h2_ = std::make_unique<Http2Connection>(static_cast<Http2Transport&>(*this), settings);
  count_protocol(true);
  ctx().stats.http2_connections_active.add();  // both back in Worker::remove_connection
  worker_.listener_stats(listener_).http2_connections_active.add();
  if (!h2_->start(limits().max_header_bytes)) {
    LOG_WARN("client %s: could not start an HTTP/2 session", std::string(client_ip()).c_str());
    close();
    return;
  }
  arm_timer(limits().idle_timeout);
  h2_->on_input(first);  // the preface (nghttp2 checks it) and what came with it; our SETTINGS
  // Accepted (or its handshake done) after the drain started: it gets the two GOAWAYs too, in
  // the delay once its first stream is served (Http2Connection::shutdown_after_first_stream),
  // later at once.
  if (state_ == State::kHttp2 && draining()) {
    if (worker_.drain().get() == DrainPhase::kDelay) {
      h2_->shutdown_after_first_stream();
    } else {
      h2_->shutdown();
    }
  }
}

void DownstreamConnection::hold(const Slice& s) {
  if (s.len == 0) return;
  http_->held.push_back(s);
  http_->held_bytes += s.len;
  if (http_->held_bytes > kMaxHeldBytes) block_reading(kPipelineFull);
}

void DownstreamConnection::process(Slice rest) {
  in_process_ = true;
  while (state_ < State::kClosing) {
    if (state_ == State::kActive && request_done_) {
      hold(rest);  // pipelined: waits until the current response is complete
      break;
    }
    if (state_ == State::kIdle) {
      if (rest.len == 0) break;
      state_ = State::kHead;
      head_timer_armed_ = false;
    }
    ParseResult r = http_->parser.execute(rest);
    if (state_ >= State::kClosing) break;  // a body callback ended the connection
    rest = rest.sub(r.consumed, rest.len - r.consumed);
    if (r.event == ParseEvent::kNeedMore) {
      // Most heads arrive in one read; the header timer is armed only for one that did not.
      if (state_ == State::kHead && !head_timer_armed_) {
        head_timer_armed_ = true;
        arm_timer(limits().header_timeout);
      }
      break;
    }
    if (r.event == ParseEvent::kError) {
      parse_error();
      break;
    }
    if (r.event == ParseEvent::kHead) {
      start_request();
    } else if (r.event == ParseEvent::kMessageComplete) {
      request_complete();
    } else {  // kUpgrade: the bytes after the head wait for the 101 (or the close)
      hold(rest);
      break;
    }
  }
  in_process_ = false;
}

void DownstreamConnection::start_request() {
  state_ = State::kActive;
  if (served_ == 0) count_protocol(false);
  ++served_;
  request_done_ = response_done_ = false;
  refresh_snapshot();
  // A bodiless request leaves the idle/header timer pending: in kActive its expiry is ignored
  // (the upstream timeouts govern) and next_request() re-arms it, a heap operation saved per
  // request. A request with a body must keep sending it: the idle timeout bounds each pause.
  const MessageHead& head = http_->parser.head();
  body_timer_ = head.chunked || head.content_length > 0;
  http_->http10 = head.http_major == 1 && head.http_minor == 0;
  http_->keep_alive = head.keep_alive && !head.upgrade;
  http_->head_request = head.method == HTTP_HEAD;
  http_->close_after = false;
  http_->response_framing = Framing::kNone;
  if (body_timer_) {
    body_at_ = ctx().now_ms();
    arm_timer(limits().idle_timeout);
  }
  http_->exchange.begin(http_->parser.head());
}

void DownstreamConnection::on_body(const Slice& data) {
  body_at_ = ctx().now_ms();  // the timer re-arms itself from this when it fires
  http_->exchange.on_request_body(data);
}

void DownstreamConnection::request_complete() {
  request_done_ = true;
  http_->exchange.on_request_complete(http_->parser.trailers());
  if (response_done_ && keep_alive_) next_request();
}

void DownstreamConnection::write_or_close(const Slice& s) {
  if (stream_.write(s) != 0) close();
}

void DownstreamConnection::send_continue() {
  if (!http_->http10) write_or_close(k100Continue);
}

void DownstreamConnection::send_interim(const MessageHead& head) {
  if (http_->http10) return;  // HTTP/1.0 clients get no interim responses
  BlockWriter w(ctx().blocks);
  write_response_head(w, head, ResponseRewrite{});
  write_or_close(w.finish());
}

size_t DownstreamConnection::send_head(const MessageHead& head) {
  HttpState& h = *http_;
  const ResponseRewrite rw =
      plan_response_rewrite(head, ResponseClient{.head_request = h.head_request,
                                                 .http10 = h.http10,
                                                 .keep_alive = h.keep_alive,
                                                 .body_done = request_body_done(),
                                                 .draining = draining()});
  h.close_after = rw.close;
  h.response_framing = rw.framing;
  h.trailers_sent = false;
  BlockWriter w(ctx().blocks);
  write_response_head(w, head, rw);
  Slice out = w.finish();
  const size_t n = out.len;
  write_or_close(out);
  return n;
}

void DownstreamConnection::send_body(const Slice& data) {
  int r;
  if (http_->response_framing == Framing::kChunked) {
    Slice parts[3] = {chunk_header(ctx().blocks, data.len), data, kChunkEnd};
    r = stream_.write(parts, 3);
  } else {
    r = stream_.write(data);
  }
  if (r != 0) close();
}

void DownstreamConnection::send_trailers(const MessageHead& trailers) {
  // Only a chunked body has a place for them (RFC 9112 §7.1.2): its last chunk.
  if (http_->response_framing != Framing::kChunked) return;
  http_->trailers_sent = true;
  BlockWriter w(ctx().blocks);
  write_last_chunk(w, trailers);
  write_or_close(w.finish());
}

void DownstreamConnection::send_end() {
  if (http_->response_framing == Framing::kChunked && !http_->trailers_sent)
    write_or_close(kLastChunk);
}

size_t DownstreamConnection::send_head_only(const MessageHead& head) {
  MessageHead h;
  h.status = head.status;
  for (size_t i = 0; i < head.header_count(); ++i) h.add_header(head.name(i), head.value(i));
  h.has_content_length = true;
  h.content_length = 0;
  h.add_header("Content-Length", "0");
  const size_t n = send_head(h);
  if (http_) send_end();
  return n;
}

size_t DownstreamConnection::send_error(int status, std::string_view why, bool malformed,
                                        std::span<const ExtraHeader> extra) {
  HttpState& h = *http_;
  h.close_after = malformed || !h.keep_alive || !request_body_done() || draining();
  h.response_framing = Framing::kNone;
  BlockWriter w(ctx().blocks);
  write_error_response(w, status, why, h.close_after, h.head_request, extra);
  Slice out = w.finish();
  const size_t n = out.len;
  write_or_close(out);
  return n;
}

void DownstreamConnection::exchange_done() {
  const bool keep_alive = !http_->close_after;
  response_done_ = true;
  keep_alive_ = keep_alive;
  if (!keep_alive) {
    // Linger only when the client may still send bytes sluice will not read.
    close_after_flush(!request_done_ || !http_->held.empty());
    return;
  }
  if (request_done_) next_request();
  // Otherwise the rest of a bodiless request is parsed next; next_request() follows it.
}

void DownstreamConnection::next_request() {
  state_ = State::kIdle;
  request_done_ = response_done_ = false;
  if (draining() && worker_.drain().get() >= DrainPhase::kDraining) {
    // No new requests once the drain closes listeners (a drain: false one stays open).
    close_after_flush(!http_->held.empty());
    return;
  }
  // Backpressure was the finished exchange's: it can end (a 502 after a connect failure, an
  // early answer) while its request body still sits over the high watermark, and no drain
  // callback would lift the block then. The next request must be read.
  unblock_reading(kBackpressure);
  if (http_->held.empty()) {
    if (peer_eof_) {
      close_after_flush(false);
      return;
    }
    http_->parser.release_memory();
    arm_timer(limits().idle_timeout);
    return;
  }
  // Pipelined requests are parsed on a later loop turn, never from inside the exchange's
  // upstream callback that finished this response.
  if (!in_process_ && !resume_scheduled_) {
    resume_scheduled_ = true;
    ctx().defer(&DownstreamConnection::resume_task, this);
  }
}

void DownstreamConnection::resume_task(void* p) {
  auto* self = static_cast<DownstreamConnection*>(p);
  self->resume_scheduled_ = false;
  if (self->state_ >= State::kTunnel || !self->http_) return;
  self->resume_held();
}

void DownstreamConnection::resume_held() {
  std::vector<Slice> held;
  held.swap(http_->held);
  http_->held_bytes = 0;
  unblock_reading(kPipelineFull);
  for (auto& s : held) {
    if (state_ >= State::kClosing) break;
    if (!http_->held.empty() || (state_ == State::kActive && request_done_)) {
      hold(s);
    } else {
      process(s);
    }
  }
  if (state_ == State::kIdle && http_->held.empty() && peer_eof_) close_after_flush(false);
}

void DownstreamConnection::parse_error() {
  int status = http_->parser.error_status() ? http_->parser.error_status() : 400;
  LOG_INFO("client %s: bad request (%d): %s", std::string(client_ip()).c_str(), status,
           http_->parser.error_reason() ? http_->parser.error_reason() : "parse error");
  if (http_->exchange.active()) {
    http_->exchange.respond_error(
        status, http_->parser.error_reason() ? http_->parser.error_reason() : "bad request");
    close_after_flush(true);
    return;
  }
  BlockWriter w(ctx().blocks);
  write_error_response(w, status, {}, true);
  stream_.write(w.finish());
  ctx().stats.sluice_errors.add();
  worker_.listener_stats(listener_).requests[status_class(status)].add();
  close_after_flush(true);
}

void DownstreamConnection::block_reading(ReadBlock reason) {
  read_blocks_ |= reason;
  stream_.read_stop();
}

void DownstreamConnection::unblock_reading(ReadBlock reason) {
  if (!(read_blocks_ & reason)) return;
  read_blocks_ &= static_cast<uint8_t>(~reason);
  if (read_blocks_ == 0 && state_ < State::kClosing && !peer_eof_) stream_.read_start();
}

void DownstreamConnection::on_stream_eof() {
  peer_eof_ = true;
  if (state_ == State::kHttp2) {
    close();  // HTTP/2 clients do not half-close: what is in flight is abandoned
    return;
  }
  if (state_ == State::kTunnel) {
    tunnel_->client_eof();
    return;
  }
  if (state_ == State::kClosing) {
    close();
    return;
  }
  if (state_ == State::kActive && request_done_) return;  // the response still goes out
  if (state_ == State::kIdle && http_->held.empty()) {
    close();
    return;
  }
  if (!http_->held.empty()) return;  // pipelined requests are still served
  // EOF in the middle of a request head or body: nothing complete to answer.
  close();
}

void DownstreamConnection::on_stream_error(int status) {
  if (status == TcpStream::kTlsFailed) {
    LOG_INFO("client %s: %s", std::string(client_ip()).c_str(), stream_.tls_error().c_str());
  } else {
    LOG_DEBUG("client %s: %s", std::string(client_ip()).c_str(), uv_strerror(status));
  }
  close();
}

void DownstreamConnection::start_tunnel(std::unique_ptr<TcpStream> upstream,
                                        const Slice& from_server, bool websocket) {
  state_ = State::kTunnel;
  timer_.release();  // an idle session needs none; a drain makes one for its close timeout
  tunnel_ = std::make_unique<Tunnel>(static_cast<TunnelClient&>(*this),
                                     TunnelUpstream::adopt(std::move(upstream)), websocket,
                                     listener_, bool(drain_exempt_));
  stream_.set_compact(true);
  // The client may have sent bytes of the new protocol right after its request.
  std::vector<Slice> held;
  held.swap(http_->held);
  // HTTP is over on this connection. The exchange that called us is still on the stack, so
  // its state is freed on a later loop turn.
  ctx().defer([](void* p) { delete static_cast<HttpState*>(p); }, http_.release());
  read_blocks_ &= static_cast<uint8_t>(~kPipelineFull);
  if (read_blocks_ == 0) stream_.read_start();
  for (auto& s : held) tunnel_->from_client(s);
  if (state_ == State::kTunnel) tunnel_->from_server(from_server);
}

TunnelRegistry& DownstreamConnection::tunnel_registry() {
  return worker_;
}

void DownstreamConnection::arm_tunnel_timeout() {
  arm_timer(worker_.config().drain.ws_close_timeout);
}

void DownstreamConnection::on_stream_drained() {
  if (state_ == State::kTunnel) {
    tunnel_->client_drained();
    return;
  }
  if (state_ == State::kHttp2) {
    h2_->on_transport_drained();
    return;
  }
  if (state_ == State::kClosing) {
    if (stream_.queued() != 0) return;
    if (linger_) {
      arm_timer(kLingerTimeout);
    } else {
      close();
    }
    return;
  }
  http_->exchange.on_client_drained();
}

void DownstreamConnection::close_after_flush(bool linger) {
  if (state_ >= State::kClosing) return;
  state_ = State::kClosing;
  linger_ = linger && !peer_eof_;
  if (h2_) h2_->close();
  if (http_) {
    http_->exchange.abort();
    http_->held.clear();
    http_->held_bytes = 0;
  }
  read_blocks_ = 0;
  if (!linger_) {
    // The request was read whole: close as soon as the response is written.
    if (stream_.flush_now()) {
      close();
    } else {
      stream_.read_stop();
      arm_timer(limits().idle_timeout);  // a reader that stops reading is cut eventually
    }
    return;
  }
  stream_.shutdown();  // FIN after the queued response bytes
  stream_.read_start();
  // Give a slow reader the idle timeout to take the queued bytes; once they are all written,
  // the linger timeout applies (on_stream_drained).
  arm_timer(stream_.queued() == 0 ? kLingerTimeout : limits().idle_timeout);
}

void DownstreamConnection::close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  if (h2_) h2_->close();
  if (http_) {
    http_->exchange.abort();
    http_->held.clear();
    http_->held_bytes = 0;
  }
  if (tunnel_) tunnel_->close(TunnelEnd::kError);
  count_protocol(false);
  worker_.remove_connection(this);
  timer_.release();
  stream_.close();
}

void DownstreamConnection::on_stream_closed() {
  // Deleted on a later turn, after any task this connection queued before it closed.
  ctx().defer(&DownstreamConnection::delete_task, this);
}

void DownstreamConnection::delete_task(void* p) {
  delete static_cast<DownstreamConnection*>(p);
}

}  // namespace sluice
