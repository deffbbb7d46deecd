#include "upstream/http2_upstream_connection.h"

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "tls/tls_layer.h"
#include "upstream/http2_upstream_pool.h"

namespace sluice {

namespace {

// SETTINGS sluice sends: a stream window within 64 KiB–1 MiB bounds what one response may
// buffer before its client takes it; the connection window is credited at once (streams are
// bounded by their own).
constexpr uint32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 16 * 1024 * 1024;
constexpr uint32_t kMaxHeaderList = 64 * 1024;
// A PING when the server has sent nothing for this long while streams wait on it or a stream
// starts after a quiet period; no answer within kPingTimeoutMs and the connection is dead.
constexpr uint64_t kPingIdleMs = 10000;
constexpr uint64_t kPingTimeoutMs = 5000;
constexpr uint8_t kPingData[8] = {'s', 'l', 'u', 'i', 'c', 'e', 'u', 'p'};
constexpr char kAlpnH2[] = "\x02h2";

h2::ssize read_callback(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                        nghttp2_data_source* source, void*) {
  return static_cast<Http2UpstreamStream*>(source->ptr)->read_body(buf, length, flags);
}

}  // namespace

// ---- Http2UpstreamStream -------------------------------------------------------------------

Http2UpstreamStream::Http2UpstreamStream(Http2UpstreamConnection& conn, bool reused)
    : conn_(conn), reused_(reused) {}

void Http2UpstreamStream::recycle(bool reused) {
  // done(): unbound, nghttp2 is done with it and no task of it is queued.
  handler_ = nullptr;
  id_ = -1;
  head_.release_memory();
  trailers_.release_memory();
  out_.clear();
  out_bytes_ = 0;
  unconsumed_ = 0;
  timer_.stop();
  fields_.release_memory();
  trailer_fields_.reset();
  pending_error_ = UpstreamError::kReset;
  reused_ = reused;
  final_head_ = in_trailers_ = response_started_ = awaiting_head_ = false;
  body_end_ = deferred_ = above_high_ = paused_ = complete_ = h2_closed_ = false;
  error_scheduled_ = false;
}

// A HEAD response has no DATA in HTTP/2 (the server ends the stream with its HEADERS).
void Http2UpstreamStream::bind(UpstreamHandler* handler, bool) {
  handler_ = handler;
}

int Http2UpstreamStream::send_head(const Slice& head, Framing framing) {
  if (!handler_ || conn_.state() == Http2UpstreamConnection::State::kClosed) return UV_ECONNRESET;
  Http2RequestFields& f = fields_;
  switch (f.build(head.view(), conn_.https(), conn_.authority())) {
    case Http2RequestFields::Result::kOk:
      break;
    case Http2RequestFields::Result::kUpgrade:
      // Nothing is sent; the exchange hears why on a later turn (not inside its own call).
      h2_closed_ = true;
      fail_later(UpstreamError::kUpgradeOverHttp2);
      return 0;
    case Http2RequestFields::Result::kMalformed:
      LOG_ERROR("upstream %s: cannot convert a request head to HTTP/2", conn_.authority().c_str());
      h2_closed_ = true;
      fail_later(UpstreamError::kBadResponse);
      return 0;
  }
  h2::DataProvider prd;
  prd.source.ptr = this;
  prd.read_callback = &read_callback;
  const bool has_body = framing != Framing::kNone;
  int32_t id =
      h2::submit_request(conn_.session(), f.data(), f.size(), has_body ? &prd : nullptr, this);
  if (id < 0) {
    LOG_WARN("upstream %s: request not submitted: %s", conn_.authority().c_str(),
             nghttp2_strerror(id));
    h2_closed_ = true;
    return UV_ECONNRESET;
  }
  id_ = id;
  if (!has_body) body_end_ = true;
  conn_.schedule_send();
  return 0;
}

int Http2UpstreamStream::send_body(const Slice& data) {
  if (h2_closed_ || id_ < 0) return error_scheduled_ ? 0 : UV_ECONNRESET;
  if (data.len == 0) return 0;
  out_.push_back(data);
  out_bytes_ += data.len;
  if (out_bytes_ > TcpStream::kHighWatermark) above_high_ = true;
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session(), id_);
  }
  conn_.schedule_send();
  return 0;
}

int Http2UpstreamStream::send_end(const Slice& trailers) {
  if (h2_closed_ || id_ < 0) return error_scheduled_ ? 0 : UV_ECONNRESET;
  if (body_end_) return 0;  // no body: HEADERS carried END_STREAM
  body_end_ = true;
  if (trailers.len) {
    trailer_fields_ = std::make_unique<Http2RequestFields>();
    if (!trailer_fields_->build_trailers(trailers.view()) || trailer_fields_->size() == 0)
      trailer_fields_.reset();
  }
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session(), id_);
  }
  conn_.schedule_send();
  return 0;
}

bool Http2UpstreamStream::submit_trailers() {
  if (!trailer_fields_) return false;
  int rv = nghttp2_submit_trailer(conn_.session(), id_, trailer_fields_->data(),
                                  trailer_fields_->size());
  trailer_fields_.reset();
  return rv == 0;
}

h2::ssize Http2UpstreamStream::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  const size_t n = out_.take(buf, length);
  out_bytes_ -= n;
  if (above_high_ && out_bytes_ <= TcpStream::kLowWatermark) {
    above_high_ = false;
    conn_.stream_drained(this);
  }
  if (out_.empty() && body_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    // With trailers the last DATA frame leaves the stream open for their HEADERS frame.
    if (trailer_fields_ && submit_trailers()) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return static_cast<h2::ssize>(n);
  }
  if (n == 0) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<h2::ssize>(n);
}

void Http2UpstreamStream::notify_drained() {
  if (handler_) handler_->on_upstream_drained();
}

void Http2UpstreamStream::expect_response(uint64_t timeout_ms) {
  if (!handler_ || final_head_ || !timeout_ms) return;
  awaiting_head_ = true;
  timer_.start(conn_.ctx().loop, this, &Http2UpstreamStream::on_timer, timeout_ms);
}

void Http2UpstreamStream::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Http2UpstreamStream*>(t->data);
  if (!self->handler_ || self->final_head_ || !self->awaiting_head_) return;
  if (!self->h2_closed_ && self->id_ >= 0) {
    nghttp2_submit_rst_stream(self->conn_.session(), NGHTTP2_FLAG_NONE, self->id_, NGHTTP2_CANCEL);
    self->conn_.schedule_send();
  }
  self->fail(UpstreamError::kResponseTimeout);
}

void Http2UpstreamStream::resume_response() {
  paused_ = false;
  if (unconsumed_ && !h2_closed_ && id_ >= 0) {
    nghttp2_session_consume_stream(conn_.session(), id_, unconsumed_);
    conn_.schedule_send();
  }
  unconsumed_ = 0;
}

void Http2UpstreamStream::release(bool request_sent) {
  // The response completed; a request still being sent is cut (the server answered early).
  if (!h2_closed_ && id_ >= 0 && !request_sent) {
    nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    conn_.schedule_send();
  }
  if (!handler_) return;
  handler_ = nullptr;
  timer_.stop();
  conn_.stream_finished(this);
}

void Http2UpstreamStream::reset() {
  if (!h2_closed_ && id_ >= 0) {
    nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_CANCEL);
    conn_.schedule_send();
  }
  out_.clear();
  out_bytes_ = 0;
  if (!handler_) return;
  handler_ = nullptr;
  timer_.stop();
  conn_.stream_finished(this);
}

void Http2UpstreamStream::fail(UpstreamError e) {
  UpstreamHandler* h = handler_;
  if (!h) return;
  const bool started = response_started_;
  handler_ = nullptr;
  timer_.stop();
  out_.clear();
  out_bytes_ = 0;
  conn_.stream_finished(this);
  h->on_upstream_error(e, started);
}

void Http2UpstreamStream::fail_later(UpstreamError e) {
  if (error_scheduled_) return;
  error_scheduled_ = true;
  pending_error_ = e;
  conn_.ctx().defer(&Http2UpstreamStream::fail_task, this);
}

// Deferred: the connection sweeps a stream only once it is unbound (fail clears handler_), and
// the sweep is itself queued after this task.
void Http2UpstreamStream::fail_task(void* p) {
  auto* self = static_cast<Http2UpstreamStream*>(p);
  self->error_scheduled_ = false;
  self->fail(self->pending_error_);
}

void Http2UpstreamStream::on_header(std::string_view name, std::string_view value) {
  if (!handler_) return;
  MessageHead& m = final_head_ ? trailers_ : head_;
  if (!final_head_ && name == ":status") {
    int status = 0;
    for (char c : value) status = status * 10 + (c - '0');  // nghttp2 checked: 3 digits
    m.status = status;
    return;
  }
  if (!name.empty() && name[0] == ':') return;  // nghttp2 rejects any other pseudo-field
  m.add_header(name, value);
}

void Http2UpstreamStream::on_headers_end(bool end_stream) {
  if (!handler_) return;
  if (!final_head_) {
    response_started_ = true;
    head_.http_major = 2;
    head_.http_minor = 0;
    head_.keep_alive = true;
    if (head_.status >= 200) {
      final_head_ = true;
      awaiting_head_ = false;
      timer_.stop();
      size_t cl = head_.find("content-length");
      if (cl != std::string_view::npos) {
        uint64_t n = 0;
        bool ok = !head_.value(cl).empty();
        for (char c : head_.value(cl)) {
          if (c < '0' || c > '9') ok = false;
          n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        head_.has_content_length = ok;
        head_.content_length = ok ? n : 0;
      }
      // A head that ends the stream has an empty body, whatever it says: framed so (an
      // HTTP/2 client gets one HEADERS frame with END_STREAM, which is what makes a gRPC
      // Trailers-Only response; an HTTP/1.1 client gets Content-Length: 0).
      if (end_stream) {
        head_.has_content_length = true;
        head_.content_length = 0;
      }
    }
    handler_->on_upstream_head(head_);
    head_.clear();
    if (!handler_) return;
    if (end_stream && final_head_) on_end_stream();
    return;
  }
  // A trailer section ends the stream.
  if (trailers_.header_count()) handler_->on_upstream_trailers(trailers_);
  trailers_.clear();
  if (handler_ && end_stream) on_end_stream();
}

void Http2UpstreamStream::on_data(const Slice& data) {
  if (!handler_ || h2_closed_) return;
  handler_->on_upstream_body(data);
  // Credited only for bytes its client took: a paused exchange holds them back.
  if (paused_ || !handler_) {
    if (handler_) unconsumed_ += data.len;
    return;
  }
  nghttp2_session_consume_stream(conn_.session(), id_, data.len);
}

void Http2UpstreamStream::on_end_stream() {
  if (complete_) return;
  complete_ = true;
  if (!handler_ || !final_head_) return;
  UpstreamHandler* h = handler_;
  // Stays bound until the exchange calls release() (it does so from on_upstream_complete).
  h->on_upstream_complete();
}

void Http2UpstreamStream::on_closed(uint32_t error_code) {
  h2_closed_ = true;
  if (!handler_) return;
  if (complete_ && final_head_) return;  // completion already reported
  // Streams the server refused, or above a GOAWAY's last stream id, were never processed.
  UpstreamError e = UpstreamError::kReset;
  if (error_code == NGHTTP2_REFUSED_STREAM && !response_started_) e = UpstreamError::kUnprocessed;
  fail(e);
}

void Http2UpstreamStream::on_not_sent() {
  h2_closed_ = true;
  if (handler_ && !response_started_) fail(UpstreamError::kUnprocessed);
}

void Http2UpstreamStream::connection_lost(UpstreamError e) {
  h2_closed_ = true;
  if (!handler_) return;
  // A request whose HEADERS never left reached nobody.
  fail(id_ < 0 && !error_scheduled_ ? UpstreamError::kUnprocessed : e);
}

// ---- Http2UpstreamConnection ---------------------------------------------------------------

Http2UpstreamConnection::Http2UpstreamConnection(LoopContext& ctx, Http2UpstreamPool* pool,
                                                 bool https)
    : pool_(pool),
      stream_(std::make_unique<TcpStream>(ctx, static_cast<StreamHandler*>(this), /*cork=*/true)),
      h2_(ctx, *static_cast<Http2Sink*>(this)),
      https_(https) {}

Http2UpstreamConnection::~Http2UpstreamConnection() {
  h2_.destroy();  // before the streams its user data points to
  streams_.clear();
}

const std::string& Http2UpstreamConnection::authority() const {
  static const std::string kNone = "upstream";
  return pool_ ? pool_->authority() : kNone;
}

bool Http2UpstreamConnection::start_tls(SSL_CTX* ctx, const std::string& name, bool verify,
                                        TlsSessionSlot* slot) {
  std::unique_ptr<TlsLayer> layer =
      TlsLayer::client(stream_->context().blocks, ctx, name, verify, slot);
  if (!layer || !layer->offer_alpn(std::string_view(kAlpnH2, 3))) return false;
  tls_ = layer.get();
  stream_->set_filter(std::move(layer));
  return true;
}

int Http2UpstreamConnection::connect(const sockaddr* addr, uint64_t timeout_ms) {
  int r = stream_->connect(addr);
  if (r != 0) return r;
  if (timeout_ms)
    timer_.start(stream_->context().loop, this, &Http2UpstreamConnection::on_timer, timeout_ms);
  return 0;
}

void Http2UpstreamConnection::configure(nghttp2_session_callbacks* cb, nghttp2_option*) {
  nghttp2_session_callbacks_set_on_header_callback(cb, &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &on_stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, &on_frame_not_send);
}

bool Http2UpstreamConnection::start_session() {
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
  };
  return h2_.start(Http2Session::Role::kClient, this, &Http2UpstreamConnection::configure, iv,
                   sizeof iv / sizeof iv[0], kConnectionWindow);
}

void Http2UpstreamConnection::on_stream_connected(int status) {
  // The connect timeout runs on until the server's SETTINGS make the connection ready.
  if (status == TcpStream::kTlsFailed && stream_->tls()) {
    LOG_WARN("upstream %s: %s", authority().c_str(), stream_->tls_error().c_str());
    fail_connect(UpstreamError::kTlsHandshake);
    return;
  }
  if (status < 0) {
    LOG_DEBUG("upstream connect failed: %s", uv_strerror(status));
    fail_connect(UpstreamError::kConnectRefused);
    return;
  }
  if (stream_->tls() && stream_->alpn() != "h2") {
    LOG_WARN(
        "upstream %s: the server did not choose HTTP/2 in the TLS handshake (ALPN %s); the "
        "cluster has protocol h2: does the server speak HTTP/2 over TLS?",
        authority().c_str(),
        stream_->alpn().empty() ? "none" : std::string(stream_->alpn()).c_str());
    fail_connect(UpstreamError::kTlsHandshake);
    return;
  }
  if (!start_session()) {
    LOG_ERROR("upstream %s: cannot create an HTTP/2 session", authority().c_str());
    fail_connect(UpstreamError::kConnectRefused);
    return;
  }
  // Ready once the server's SETTINGS arrive (its first frame, a moment later): streams are
  // then opened within its real limit. The connect timeout still runs until then.
  session_started_ = true;
  last_frame_ms_ = ctx().now_ms();
  stream_->read_start();
  send();
}

void Http2UpstreamConnection::on_settings() {
  settings_seen_ = true;
  if (state_ == State::kConnecting) {
    state_ = State::kReady;
    timer_.stop();
    arm_ping_timer();
    if (pool_) pool_->on_connected(this);
    return;
  }
  // The server's limit may have changed: waiters may fit now.
  if (pool_ && state_ == State::kReady) pool_->on_room(this);
}

void Http2UpstreamConnection::fail_connect(UpstreamError e) {
  close_with(e);
}

uint32_t Http2UpstreamConnection::server_max_streams() const {
  return h2_.get() ? nghttp2_session_get_remote_settings(h2_.get(),
                                                         NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                   : 100;
}

bool Http2UpstreamConnection::has_room() const {
  if (state_ != State::kReady || !h2_.get()) return false;
  uint32_t max =
      nghttp2_session_get_remote_settings(h2_.get(), NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  // Stream ids run out at 2^31: a connection near the end takes no more.
  if (nghttp2_session_get_next_stream_id(h2_.get()) > (1u << 31) - 1000) return false;
  return active_ < max;
}

Http2UpstreamStream* Http2UpstreamConnection::open_stream() {
  std::unique_ptr<Http2UpstreamStream> s;
  if (spare_.empty()) {
    s = std::make_unique<Http2UpstreamStream>(*this, opened_ > 0);
  } else {
    s = std::move(spare_.back());
    spare_.pop_back();
    s->recycle(opened_ > 0);
  }
  Http2UpstreamStream* p = s.get();
  streams_.push_back(std::move(s));
  ++active_;
  ++opened_;
  if (pool_) pool_->stream_opened();
  // A stream after a quiet period: a PING soon tells whether the connection still lives.
  if (ctx().now_ms() - last_frame_ms_ >= kPingIdleMs && !ping_outstanding_ &&
      nghttp2_submit_ping(h2_.get(), NGHTTP2_FLAG_NONE, kPingData) == 0) {
    ping_outstanding_ = true;
    timer_.start(ctx().loop, this, &Http2UpstreamConnection::on_timer, kPingTimeoutMs);
  }
  return p;
}

void Http2UpstreamConnection::stream_finished(Http2UpstreamStream* s) {
  --active_;
  if (pool_) pool_->stream_closed();  // a closed connection's streams left the pool's count
  schedule_sweep();
  if (state_ == State::kClosed) return;
  if (active_ == 0) {
    idle_since_ms_ = ctx().now_ms();
    if (state_ == State::kGoingAway) {
      // Its last stream ended: nothing more will come on it.
      close();
      return;
    }
  }
  if (pool_ && state_ == State::kReady) pool_->on_room(this);
  if (pool_) pool_->sync_gauges();
}

void Http2UpstreamConnection::start_idle_timer(uint64_t ms) {
  idle_timeout_ms_ = ms;
  if (active_ == 0) idle_since_ms_ = ctx().now_ms();
  arm_ping_timer();
}

void Http2UpstreamConnection::arm_ping_timer() {
  if (state_ == State::kClosed) return;
  uint64_t wait = kPingIdleMs;
  if (idle_timeout_ms_ && active_ == 0) wait = std::min(wait, idle_timeout_ms_);
  timer_.start(ctx().loop, this, &Http2UpstreamConnection::on_timer, wait);
}

void Http2UpstreamConnection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Http2UpstreamConnection*>(t->data);
  if (self->state_ == State::kClosed) return;
  if (self->state_ == State::kConnecting) {
    self->fail_connect(UpstreamError::kConnectTimeout);
    return;
  }
  const uint64_t now = self->ctx().now_ms();
  if (self->ping_outstanding_) {
    if (now - self->last_frame_ms_ >= kPingTimeoutMs) {
      LOG_WARN("upstream %s: no answer to a PING within %llu ms; closing the connection",
               self->authority().c_str(), static_cast<unsigned long long>(kPingTimeoutMs));
      self->close_with(UpstreamError::kClosed);
      return;
    }
    self->timer_.start(self->ctx().loop, self, &Http2UpstreamConnection::on_timer,
                       kPingTimeoutMs - (now - self->last_frame_ms_));
    return;
  }
  if (self->active_ == 0 && self->idle_timeout_ms_ &&
      now - self->idle_since_ms_ >= self->idle_timeout_ms_) {
    LOG_DEBUG("upstream %s: idle HTTP/2 connection closed", self->authority().c_str());
    self->close();
    return;
  }
  if (now - self->last_frame_ms_ >= kPingIdleMs && (self->active_ > 0 || !self->idle_timeout_ms_)) {
    // Streams wait on a server that has been quiet (or a kept connection idles): is it there?
    if (nghttp2_submit_ping(self->h2_.get(), NGHTTP2_FLAG_NONE, kPingData) == 0) {
      self->ping_outstanding_ = true;
      self->send();
      if (self->state_ == State::kClosed) return;
      self->timer_.start(self->ctx().loop, self, &Http2UpstreamConnection::on_timer,
                         kPingTimeoutMs);
      return;
    }
  }
  uint64_t wait = kPingIdleMs - std::min(kPingIdleMs, now - self->last_frame_ms_);
  if (wait == 0) wait = kPingIdleMs;
  if (self->active_ == 0 && self->idle_timeout_ms_) {
    const uint64_t idle_left = self->idle_timeout_ms_ - (now - self->idle_since_ms_);
    wait = std::min(wait, idle_left);
  }
  self->timer_.start(self->ctx().loop, self, &Http2UpstreamConnection::on_timer, wait);
}

Http2UpstreamStream* Http2UpstreamConnection::stream(int32_t id) {
  if (!h2_.get()) return nullptr;
  return static_cast<Http2UpstreamStream*>(nghttp2_session_get_stream_user_data(h2_.get(), id));
}

void Http2UpstreamConnection::on_stream_read(const Slice& data) {
  if (state_ == State::kClosed || !h2_.get()) return;
  last_frame_ms_ = ctx().now_ms();
  h2::ssize n = h2_.receive(data);
  if (state_ == State::kClosed) return;
  if (n < 0) {
    LOG_WARN("upstream %s: HTTP/2: %s", authority().c_str(), nghttp2_strerror(static_cast<int>(n)));
    send();  // its GOAWAY, if it can still leave
    close_with(UpstreamError::kBadResponse);
    return;
  }
  send();
}

void Http2UpstreamConnection::on_stream_eof() {
  if (state_ == State::kConnecting && !session_started_) {
    LOG_WARN("upstream %s: the upstream closed the connection during the TLS handshake",
             authority().c_str());
    fail_connect(UpstreamError::kTlsHandshake);
    return;
  }
  close_with(UpstreamError::kClosed);
}

void Http2UpstreamConnection::on_stream_error(int status) {
  if (state_ == State::kConnecting) {
    fail_connect(stream_->tls() ? UpstreamError::kTlsHandshake : UpstreamError::kConnectRefused);
    return;
  }
  LOG_DEBUG("upstream %s: HTTP/2 connection error: %s", authority().c_str(), uv_strerror(status));
  close_with(UpstreamError::kReset);
}

void Http2UpstreamConnection::on_stream_drained() {
  if (state_ == State::kClosed) return;
  h2_.resume_input();
  send();
}

void Http2UpstreamConnection::schedule_send() {
  if (state_ == State::kClosed || h2_.in_recv() || send_scheduled_) return;
  send_scheduled_ = true;
  ctx().defer(&Http2UpstreamConnection::send_task, this);
}

// Deferred tasks run before the deferred delete queued after on_stream_closed (FIFO).
void Http2UpstreamConnection::send_task(void* p) {
  auto* self = static_cast<Http2UpstreamConnection*>(p);
  self->send_scheduled_ = false;
  self->send();
}

void Http2UpstreamConnection::send() {
  if (state_ == State::kClosed || !session_started_) return;
  const Http2Session::Sent sent = h2_.send();
  if (sent == Http2Session::Sent::kSkipped || state_ == State::kClosed) return;
  if (sent == Http2Session::Sent::kSessionError)
    LOG_WARN("upstream %s: HTTP/2: %s", authority().c_str(), nghttp2_strerror(h2_.error()));
  if (sent != Http2Session::Sent::kDone) {
    close_with(UpstreamError::kReset);
    return;
  }
  // A server that does not read what it is sent is not read either, as a client is not
  // (Http2Connection): what it sends waits in the socket until the queue drains. One that
  // reads nothing for the PING deadline is taken for dead, as one that sends nothing is.
  h2_.pause_input_if_congested();
  if (!drained_.empty()) {
    std::vector<Http2UpstreamStream*> drained;
    drained.swap(drained_);
    for (Http2UpstreamStream* s : drained) s->notify_drained();  // freed only by a sweep
    if (state_ == State::kClosed) return;
  }
  if (h2_.over()) close_with(UpstreamError::kClosed);
}

void Http2UpstreamConnection::on_goaway(int32_t last_stream_id, uint32_t error_code) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    // Turned away before it was ready: a failed connect.
    LOG_WARN("upstream %s: GOAWAY before the connection was ready (%s)", authority().c_str(),
             nghttp2_http2_strerror(error_code));
    close_with(UpstreamError::kConnectRefused);
    return;
  }
  if (state_ != State::kGoingAway) {
    LOG_INFO("upstream %s: GOAWAY (last stream %d, %s): no new streams on this connection",
             authority().c_str(), last_stream_id, nghttp2_http2_strerror(error_code));
    state_ = State::kGoingAway;
    if (pool_) pool_->on_goaway(this);  // moves it from ready to going away
  }
}

void Http2UpstreamConnection::close_with(UpstreamError e) {
  if (state_ == State::kClosed) return;
  Http2UpstreamPool* pool = pool_;
  const bool connecting = state_ == State::kConnecting;
  if (pool) pool->detach(this);
  pool_ = nullptr;
  state_ = State::kClosed;
  timer_.release();
  drained_.clear();
  // Each bound stream hears it once; an exchange may start a retry on another connection.
  std::vector<Http2UpstreamStream*> bound;
  for (auto& s : streams_)
    if (s->bound()) bound.push_back(s.get());
  for (Http2UpstreamStream* s : bound) s->connection_lost(e);
  stream_->close();
  // A connection that never became ready failed to connect: the pool decides what its
  // waiters do (a retry after a backoff, or the failure).
  if (connecting && pool && !closing_quietly_) {
    pool->on_connect_failed(this,
                            e == UpstreamError::kConnectTimeout || e == UpstreamError::kTlsHandshake
                                ? e
                                : UpstreamError::kConnectRefused);
  }
}

void Http2UpstreamConnection::close() {
  closing_quietly_ = true;  // the pool's own decision: nothing to report back
  close_with(UpstreamError::kReset);
}

void Http2UpstreamConnection::on_stream_closed() {
  // Freed on a later turn, after the cork flush and send tasks it may have queued.
  ctx().defer([](void* p) { delete static_cast<Http2UpstreamConnection*>(p); }, this);
}

void Http2UpstreamConnection::schedule_sweep() {
  if (sweep_scheduled_ || state_ == State::kClosed) return;
  sweep_scheduled_ = true;
  ctx().defer(&Http2UpstreamConnection::sweep_task, this);
}

void Http2UpstreamConnection::sweep_task(void* p) {
  auto* self = static_cast<Http2UpstreamConnection*>(p);
  self->sweep_scheduled_ = false;
  self->sweep();
}

void Http2UpstreamConnection::sweep() {
  if (state_ == State::kClosed) return;  // all of them go with the connection
  for (size_t i = 0; i < streams_.size();) {
    Http2UpstreamStream* s = streams_[i].get();
    if (s->done()) {
      if (h2_.get() && s->id() >= 0 && nghttp2_session_find_stream(h2_.get(), s->id()))
        nghttp2_session_set_stream_user_data(h2_.get(), s->id(), nullptr);
      if (spare_.size() < kSpareStreams) spare_.push_back(std::move(streams_[i]));
      streams_[i] = std::move(streams_.back());
      streams_.pop_back();
    } else {
      ++i;
    }
  }
}

// nghttp2 callbacks. None of them frees a stream: done streams are swept on a later turn.

int Http2UpstreamConnection::on_header(nghttp2_session*, const nghttp2_frame* frame,
                                       const uint8_t* name, size_t namelen, const uint8_t* value,
                                       size_t valuelen, uint8_t, void* user) {
  auto* self = static_cast<Http2UpstreamConnection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (Http2UpstreamStream* s = self->stream(frame->hd.stream_id))
    s->on_header({reinterpret_cast<const char*>(name), namelen},
                 {reinterpret_cast<const char*>(value), valuelen});
  return 0;
}

int Http2UpstreamConnection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame,
                                           void* user) {
  auto* self = static_cast<Http2UpstreamConnection*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (Http2UpstreamStream* s = self->stream(frame->hd.stream_id))
        s->on_headers_end(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
      break;
    case NGHTTP2_DATA:
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        if (Http2UpstreamStream* s = self->stream(frame->hd.stream_id)) s->on_end_stream();
      break;
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) self->ping_outstanding_ = false;
      break;
    case NGHTTP2_SETTINGS:
      // The server's limit may have grown: waiters may fit now.
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) self->on_settings();
      break;
    case NGHTTP2_GOAWAY:
      self->on_goaway(frame->goaway.last_stream_id, frame->goaway.error_code);
      break;
    default:
      break;
  }
  return 0;
}

int Http2UpstreamConnection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                           const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<Http2UpstreamConnection*>(user);
  // The connection window is credited at once: each stream is bounded by its own window.
  nghttp2_session_consume_connection(session, len);
  Http2UpstreamStream* s = self->stream(stream_id);
  if (!s) {
    nghttp2_session_consume_stream(session, stream_id, len);
    return 0;
  }
  s->on_data(self->h2_.data_slice(data, len));
  return 0;
}

int Http2UpstreamConnection::on_stream_close(nghttp2_session*, int32_t stream_id,
                                             uint32_t error_code, void* user) {
  auto* self = static_cast<Http2UpstreamConnection*>(user);
  if (Http2UpstreamStream* s = self->stream(stream_id)) s->on_closed(error_code);
  return 0;
}

int Http2UpstreamConnection::on_frame_not_send(nghttp2_session*, const nghttp2_frame* frame, int,
                                               void* user) {
  auto* self = static_cast<Http2UpstreamConnection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (Http2UpstreamStream* s = self->stream(frame->hd.stream_id)) s->on_not_sent();
  return 0;
}

}  // namespace sluice
