#include "server/http2_connection.h"

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "http/http2_shim.h"
#include "server/http2_stream.h"

namespace sluice {

namespace {

// The opaque data of the PING that follows the shutdown notice.
constexpr uint8_t kGoawayPing[8] = {'s', 'l', 'u', 'i', 'c', 'e', 'g', 'a'};

// Empty DATA frames without END_STREAM a connection may send in a burst (CVE-2019-9518); a tenth
// of it comes back each second.
constexpr uint32_t kMaxEmptyFrames = 100;
// PING and SETTINGS frames (each answered with an ACK) in a burst; a tenth back each second.
constexpr uint32_t kMaxControlFrames = 1000;
// nghttp2's limits, set explicitly (its defaults in 1.52 with Debian's backports): RST_STREAM
// frames in a burst and per second (Rapid Reset), CONTINUATION frames after a HEADERS (a
// CONTINUATION flood), SETTINGS and PING ACKs queued unsent (floods of either), entries in one
// SETTINGS frame.
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRate = 33;
constexpr size_t kMaxContinuations = 8;
constexpr size_t kMaxOutboundAck = 1000;
constexpr size_t kMaxSettings = 32;

// RST_STREAM codes that blame the client: each is a stream error it caused.
bool peer_caused(uint32_t code) {
  switch (code) {
    case NGHTTP2_PROTOCOL_ERROR:
    case NGHTTP2_FLOW_CONTROL_ERROR:
    case NGHTTP2_STREAM_CLOSED:
    case NGHTTP2_FRAME_SIZE_ERROR:
    case NGHTTP2_REFUSED_STREAM:
    case NGHTTP2_COMPRESSION_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

Http2Connection::Http2Connection(Http2Transport& transport, Http2Settings settings)
    : transport_(transport),
      settings_(settings),
      guard_({settings.max_concurrent_streams, settings.max_stream_errors, kMaxEmptyFrames,
              kMaxControlFrames},
             transport.loop_context().now_ms()),
      h2_(transport.loop_context(), transport) {}

Http2Connection::~Http2Connection() {
  close();
  h2_.destroy();  // before the streams its user data points to
  streams_.clear();
}

void Http2Connection::configure(nghttp2_session_callbacks* cb, nghttp2_option* opt) {
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, &on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, &on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &on_stream_close);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, &on_begin_frame);
  // The attack limits (README, "HTTP/2 from clients").
  nghttp2_option_set_max_outbound_ack(opt, kMaxOutboundAck);
  nghttp2_option_set_max_settings(opt, kMaxSettings);
#ifdef SLUICE_HAVE_NGHTTP2_RESET_RATE_LIMIT
  nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
#else
  (void)kResetBurst;
  (void)kResetRate;
#endif
#ifdef SLUICE_HAVE_NGHTTP2_MAX_CONTINUATIONS
  nghttp2_option_set_max_continuations(opt, kMaxContinuations);
#else
  (void)kMaxContinuations;
#endif
}

bool Http2Connection::start(uint64_t max_header_bytes) {
  // Explicit SETTINGS: without a stream limit nghttp2 allows any number. ENABLE_CONNECT_PROTOCOL
  // is not sent: WebSockets stay on HTTP/1.1 (RFC 8441 is not offered).
  const uint32_t header_list =
      static_cast<uint32_t>(std::min<uint64_t>(max_header_bytes, 1u << 30));
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.initial_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, header_list},
  };
  if (!h2_.start(Http2Session::Role::kServer, this, &Http2Connection::configure, iv,
                 sizeof iv / sizeof iv[0], static_cast<int32_t>(settings_.connection_window)))
    return false;
  idle_since_ms_ = ctx().now_ms();
  stats_ = transport_.fresh_request_context().listener_stats;
  return true;
}

Http2Stream* Http2Connection::stream(int32_t id) {
  return static_cast<Http2Stream*>(nghttp2_session_get_stream_user_data(h2_.get(), id));
}

void Http2Connection::on_input(const Slice& data) {
  if (closed_ || !h2_.get()) return;
  h2::ssize n = h2_.receive(data);
  if (closed_) return;
  if (n < 0) {
    LOG_INFO("http2 client: %s", nghttp2_strerror(static_cast<int>(n)));
    // Fatal for the session (bad preface, flood, out of memory): what nghttp2 queued (a
    // GOAWAY) goes out, then the connection closes. A flood is counted by its kind, and told
    // ENHANCE_YOUR_CALM if the socket still takes it.
    switch (static_cast<int>(n)) {
      case NGHTTP2_ERR_FLOODED:
        count_flood(last_frame_ == NGHTTP2_PING       ? Http2Flood::kPing
                    : last_frame_ == NGHTTP2_SETTINGS ? Http2Flood::kSettings
                                                      : Http2Flood::kOther);
        break;
      case NGHTTP2_ERR_TOO_MANY_SETTINGS:
        count_flood(Http2Flood::kSettings);
        break;
#ifdef SLUICE_HAVE_NGHTTP2_MAX_CONTINUATIONS
      case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        count_flood(Http2Flood::kContinuation);
        break;
#endif
      default:
        break;
    }
    if (flood_counted_ && goaway_reason_ < 0) {
      goaway_reason_ = static_cast<int8_t>(Http2Goaway::kFlood);
      nghttp2_session_terminate_session(h2_.get(), NGHTTP2_ENHANCE_YOUR_CALM);
    }
    send();
    finish();
    return;
  }
  send();
}

void Http2Connection::on_transport_drained() {
  if (closed_) return;
  h2_.resume_input();
  send();
}

void Http2Connection::schedule_send() {
  if (closed_ || h2_.in_recv() || send_scheduled_) return;  // after mem_recv, send() runs anyway
  send_scheduled_ = true;
  ctx().defer(&Http2Connection::send_task, this);
}

void Http2Connection::send_task(void* p) {
  auto* self = static_cast<Http2Connection*>(p);
  self->send_scheduled_ = false;
  self->send();
}

void Http2Connection::send() {
  if (closed_) return;
  const Http2Session::Sent sent = h2_.send();
  if (sent == Http2Session::Sent::kSkipped || closed_) return;
  if (sent == Http2Session::Sent::kSessionError)
    LOG_INFO("http2: %s", nghttp2_strerror(h2_.error()));
  if (sent != Http2Session::Sent::kDone) {
    finish();
    return;
  }
  if (calm_ && transport_.send_congested()) {
    // Ending because of an attack, and the client does not read: its GOAWAY may never leave.
    finish();
    return;
  }
  // A client that does not read what it asks for is not read either (PING/SETTINGS floods).
  h2_.pause_input_if_congested();
  if (!drained_.empty()) {
    std::vector<Http2Stream*> drained;
    drained.swap(drained_);
    for (Http2Stream* s : drained) s->notify_drained();  // freed only by a deferred sweep
  }
  if (h2_.over()) finish();
}

void Http2Connection::reset_stalled_streams(uint64_t timeout_ms) {
  if (closed_) return;
  const uint64_t now = ctx().now_ms();
  bool any = false;
  for (auto& s : streams_) any |= s->reset_if_stalled(now, timeout_ms);
  if (!any) return;
  send();
  if (closed_ || !transport_.send_congested()) return;
  // The client has read nothing for as long (its socket's queue is still high), and every
  // stream it has open was just reset: the resets would wait behind the rest for ever. The
  // connection ends instead of holding its socket (CVE-2019-9517).
  for (auto& s : streams_)
    if (!s->closed() && !s->refused()) return;
  LOG_INFO("client %s: http2: reads nothing and every stream stalled; closing",
           std::string(transport_.fresh_request_context().client_ip).c_str());
  finish();
}

void Http2Connection::shutdown() {
  if (closed_ || !h2_.get() || goaway_ != 0) return;
  goaway_ = 1;
  if (goaway_reason_ < 0)
    goaway_reason_ = static_cast<int8_t>(draining() ? Http2Goaway::kDrain : Http2Goaway::kIdle);
  for (auto& s : streams_) s->drain_event_stream();
  if (nghttp2_submit_shutdown_notice(h2_.get()) != 0 ||
      nghttp2_submit_ping(h2_.get(), NGHTTP2_FLAG_NONE, kGoawayPing) != 0) {
    final_goaway();
  } else {
    goaway_timer_.start(ctx().loop, this, &Http2Connection::on_goaway_timer, kGoawayWaitMs);
  }
  send();
}

void Http2Connection::on_goaway_timer(uv_timer_t* t) {
  auto* self = static_cast<Http2Connection*>(t->data);
  self->final_goaway();
  self->send();
}

void Http2Connection::final_goaway() {
  if (closed_ || goaway_ == 2) return;
  goaway_ = 2;
  goaway_timer_.stop();
  if (open_streams() == 0 && transport_.send_congested()) {
    // Nothing in flight, and the client has not read what sluice sent (the notice, its PING, ACKs
    // of its own PINGs) for a round trip's worth: it never will. Closed, not held open.
    finish();
    return;
  }
  if (nghttp2_submit_goaway(h2_.get(), NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(h2_.get()), NGHTTP2_NO_ERROR,
                            nullptr, 0) != 0) {
    finish();
    return;
  }
  schedule_send();
}

void Http2Connection::finish() {
  if (over_) return;
  over_ = true;
  close();
  transport_.session_over();
}

void Http2Connection::close() {
  if (closed_) return;
  closed_ = true;
  goaway_timer_.release();
  header_timer_.release();
  drained_.clear();
  for (auto& s : streams_) s->abort();
}

void Http2Connection::count_flood(Http2Flood kind) {
  if (flood_counted_) return;
  flood_counted_ = true;
  if (stats_) stats_->http2_flood_closes[static_cast<size_t>(kind)].add();
  LOG_INFO("client %s: http2 connection closed as an attack (%s)",
           std::string(transport_.fresh_request_context().client_ip).c_str(),
           kHttp2FloodKinds[static_cast<size_t>(kind)]);
}

void Http2Connection::count_goaway(uint32_t code) {
  if (goaway_counted_) return;
  goaway_counted_ = true;
  Http2Goaway why;
  if (goaway_reason_ >= 0) {
    why = static_cast<Http2Goaway>(goaway_reason_);
  } else if (code == NGHTTP2_ENHANCE_YOUR_CALM) {
    why = Http2Goaway::kFlood;
  } else if (code == NGHTTP2_INTERNAL_ERROR && resets_received_ > kResetBurst) {
    // nghttp2's RST_STREAM rate limit (Rapid Reset): the session ends after the streams it has.
    why = Http2Goaway::kFlood;
    count_flood(Http2Flood::kRapidReset);
  } else if (code == NGHTTP2_NO_ERROR || code == NGHTTP2_INTERNAL_ERROR) {
    why = Http2Goaway::kOther;
  } else {
    why = Http2Goaway::kProtocolError;
  }
  if (stats_) stats_->http2_goaway[static_cast<size_t>(why)].add();
}

void Http2Connection::calm(Http2Flood kind, const char* why) {
  if (calm_ || closed_) return;
  calm_ = true;
  LOG_INFO("client %s: http2: %s; GOAWAY ENHANCE_YOUR_CALM",
           std::string(transport_.fresh_request_context().client_ip).c_str(), why);
  count_flood(kind);
  if (goaway_reason_ < 0) goaway_reason_ = static_cast<int8_t>(Http2Goaway::kEnhanceYourCalm);
  // The GOAWAY names the last stream taken; the session ends once it is sent.
  if (nghttp2_session_terminate_session(h2_.get(), NGHTTP2_ENHANCE_YOUR_CALM) != 0) {
    finish();
    return;
  }
  schedule_send();
}

void Http2Connection::stream_error(Http2Flood kind) {
  if (!guard_.stream_error(ctx().now_ms()))
    calm(kind, kind == Http2Flood::kRapidReset
                   ? "more streams refused over the upstream-work cap than the budget allows"
                   : "the client made more streams fail than its budget allows");
}

void Http2Connection::arm_header_timer() {
  if (header_timer_armed_ || settings_.header_timeout_ms == 0 || closed_) return;
  uint64_t oldest = UINT64_MAX;
  for (auto& s : streams_)
    if (s->awaiting_headers()) oldest = std::min(oldest, s->opened_ms());
  if (oldest == UINT64_MAX) return;
  const uint64_t now = ctx().now_ms();
  const uint64_t due = oldest + settings_.header_timeout_ms;
  header_timer_armed_ = true;
  header_timer_.start(ctx().loop, this, &Http2Connection::on_header_timer,
                      due > now ? due - now : 0);
}

void Http2Connection::on_header_timer(uv_timer_t* t) {
  auto* self = static_cast<Http2Connection*>(t->data);
  self->header_timer_armed_ = false;
  if (self->closed_) return;
  const uint64_t now = self->ctx().now_ms();
  for (auto& s : self->streams_) {
    if (s->awaiting_headers() && now - s->opened_ms() >= self->settings_.header_timeout_ms) {
      // A header block cannot be cut short (the HPACK state is the connection's): the
      // connection ends, as an HTTP/1.1 head that does not arrive in time does.
      LOG_INFO(
          "client %s: http2 stream %d: header block not complete within the header "
          "timeout; closing the connection",
          std::string(self->transport_.fresh_request_context().client_ip).c_str(), s->id());
      if (self->goaway_reason_ < 0)
        self->goaway_reason_ = static_cast<int8_t>(Http2Goaway::kHeaderTimeout);
      if (nghttp2_session_terminate_session(self->h2_.get(), NGHTTP2_ENHANCE_YOUR_CALM) != 0) {
        self->finish();
        return;
      }
      self->send();
      if (!self->closed_) self->finish();  // the client is not reading frames mid-block either
      return;
    }
  }
  self->arm_header_timer();
}

void Http2Connection::retire(Http2Stream* s) {
  ++retired_;
  if (open_streams() == 0) idle_since_ms_ = ctx().now_ms();
  if (!sweep_scheduled_) {
    sweep_scheduled_ = true;
    ctx().defer(&Http2Connection::sweep_task, this);
  }
}

void Http2Connection::sweep_task(void* p) {
  auto* self = static_cast<Http2Connection*>(p);
  self->sweep_scheduled_ = false;
  self->sweep();
}

void Http2Connection::sweep() {
  for (size_t i = 0; i < streams_.size();) {
    if (streams_[i]->closed()) {
      streams_[i] = std::move(streams_.back());
      streams_.pop_back();
      --retired_;
    } else {
      ++i;
    }
  }
}

// nghttp2 callbacks. None of them frees a stream: closed streams are swept on a later turn.

int Http2Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                                      void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (self->closed_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (self->calm_) return 0;  // ending: the stream is not taken (the GOAWAY says so)
  if (!self->guard_.may_start_upstream_work()) {
    // Rapid Reset: as many streams hold upstream work (reset ones included, until their
    // upstream is closed) as the cap allows. The stream is refused before anything is built
    // for it; each refusal spends the stream-error budget.
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;  // counted as a stream error when the RST_STREAM is sent (on_frame_send)
  }
  auto s = std::make_unique<Http2Stream>(*self, frame->hd.stream_id,
                                         self->transport_.fresh_request_context());
  if (nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s.get()) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  self->streams_.push_back(std::move(s));
  self->arm_header_timer();
  return 0;
}

int Http2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                               size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                               void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Http2Stream* s = self->stream(frame->hd.stream_id);
  if (!s || s->refused()) return 0;
  s->on_header(std::string_view(reinterpret_cast<const char*>(name), namelen),
               std::string_view(reinterpret_cast<const char*>(value), valuelen),
               frame->headers.cat != NGHTTP2_HCAT_REQUEST);
  return 0;
}

int Http2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      Http2Stream* s = self->stream(frame->hd.stream_id);
      if (!s || s->refused()) return 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->on_request_headers(end_stream);
      } else if (end_stream) {
        s->on_request_end();  // trailers
      }
      return 0;
    }
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
          !self->guard_.control_frame(self->ctx().now_ms()))
        self->calm(Http2Flood::kSettings, "too many SETTINGS frames");
      return 0;
    case NGHTTP2_PING:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        if (!self->guard_.control_frame(self->ctx().now_ms()))
          self->calm(Http2Flood::kPing, "too many PING frames");
        return 0;
      }
      // The ACK of the PING after the shutdown notice: the final GOAWAY can go.
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && self->goaway_ == 1 &&
          std::memcmp(frame->ping.opaque_data, kGoawayPing, sizeof kGoawayPing) == 0)
        self->final_goaway();
      return 0;
    case NGHTTP2_RST_STREAM:
      ++self->resets_received_;
      if (self->stats_) self->stats_->http2_resets[0].add();
      return 0;
    case NGHTTP2_DATA: {
      if (!end_stream) {
        // DATA with no payload and no END_STREAM moves nothing: a budget of them (CVE-2019-9518).
        if (frame->hd.length <= frame->data.padlen &&
            !self->guard_.empty_frame(self->ctx().now_ms()))
          self->calm(Http2Flood::kEmptyFrames, "too many empty DATA frames");
        return 0;
      }
      Http2Stream* s = self->stream(frame->hd.stream_id);
      if (s && !s->refused()) s->on_request_end();
      return 0;
    }
    default:
      return 0;
  }
}

int Http2Connection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                   const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  // Each stream is bounded by its own window: the connection's is credited at once, so a
  // paused stream never holds up the others.
  if (nghttp2_session_consume_connection(session, len) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  Http2Stream* s = self->stream(stream_id);
  if (!s || s->refused()) return 0;
  size_t credit = s->on_data(self->h2_.data_slice(data, len));
  if (credit > 0 && nghttp2_session_consume_stream(session, stream_id, credit) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return 0;
}

int Http2Connection::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
  static_cast<Http2Connection*>(user)->last_frame_ = hd->type;
  return 0;
}

int Http2Connection::on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    if (self->stats_) self->stats_->http2_resets[1].add();
    const uint32_t code = frame->rst_stream.error_code;
    if (peer_caused(code))  // MadeYouReset; refusals over the cap: Rapid Reset
      self->stream_error(code == NGHTTP2_REFUSED_STREAM ? Http2Flood::kRapidReset
                                                        : Http2Flood::kStreamErrors);
    return 0;
  }
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // The shutdown notice (last stream 2^31-1) and the final GOAWAY count once, as the drain's
    // or the idle timeout's.
    self->count_goaway(frame->goaway.error_code);
    return 0;
  }
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    if (Http2Stream* s = self->stream(frame->hd.stream_id)) s->on_response_ended();
  }
  return 0;
}

int Http2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                     void* user) {
  auto* self = static_cast<Http2Connection*>(user);
  Http2Stream* s = self->stream(stream_id);
  if (!s) return 0;
  s->on_closed(error_code);
  if (!self->closed_) self->retire(s);  // closed: the streams go with the connection
  if (self->shutdown_after_stream_ && !self->closed_) self->shutdown();
  return 0;
}

}  // namespace sluice
