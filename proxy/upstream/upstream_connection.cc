#include "upstream/upstream_connection.h"

#include "core/log.h"
#include "tls/tls_layer.h"
#include "upstream/upstream_pool.h"

namespace sluice {

const char* upstream_error_name(UpstreamError e) {
  switch (e) {
    case UpstreamError::kConnectRefused:
      return "connect failed";
    case UpstreamError::kConnectTimeout:
      return "connect timeout";
    case UpstreamError::kTlsHandshake:
      return "TLS handshake failed";
    case UpstreamError::kReset:
      return "connection reset";
    case UpstreamError::kClosed:
      return "upstream closed the connection";
    case UpstreamError::kResponseTimeout:
      return "response timeout";
    case UpstreamError::kBadResponse:
      return "malformed response";
    case UpstreamError::kUnprocessed:
      return "upstream did not process the request (HTTP/2 GOAWAY or REFUSED_STREAM)";
    case UpstreamError::kUpgradeOverHttp2:
      return "protocol upgrades (WebSocket) cannot be forwarded to an HTTP/2 cluster";
  }
  return "?";
}

UpstreamConnection::UpstreamConnection(LoopContext& ctx, UpstreamPool* pool)
    : pool_(pool),
      stream_(std::make_unique<TcpStream>(ctx, static_cast<StreamHandler*>(this), /*cork=*/true)),
      parser_(HTTP_RESPONSE, static_cast<BodySink*>(this)) {}

bool UpstreamConnection::start_tls(SSL_CTX* ctx, const std::string& name, bool verify,
                                   TlsSessionSlot* slot) {
  std::unique_ptr<TlsLayer> layer =
      TlsLayer::client(stream_->context().blocks, ctx, name, verify, slot);
  if (!layer) return false;
  tls_ = layer.get();
  stream_->set_filter(std::move(layer));
  return true;
}

int UpstreamConnection::connect(const sockaddr* addr, uint64_t timeout_ms) {
  int r = stream_->connect(addr);
  if (r != 0) return r;
  if (timeout_ms)
    timer_.start(stream_->context().loop, this, &UpstreamConnection::on_timer, timeout_ms);
  return 0;
}

void UpstreamConnection::on_stream_connected(int status) {
  timer_.stop();
  if (status == TcpStream::kTlsFailed && stream_->tls()) {
    LOG_WARN("upstream %s: %s", pool_ ? pool_->name().c_str() : "?", stream_->tls_error().c_str());
    fail(UpstreamError::kTlsHandshake);
    return;
  }
  if (status < 0) {
    LOG_DEBUG("upstream connect failed: %s", uv_strerror(status));
    fail(UpstreamError::kConnectRefused);
    return;
  }
  stream_->read_start();  // also watches for the upstream closing it while idle
  pool_->on_connected(this);
}

void UpstreamConnection::make_idle(uint64_t idle_timeout_ms) {
  state_ = State::kIdle;
  handler_ = nullptr;
  parser_.release_memory();
  stream_->read_start();
  // 0 = no idle timeout: the connection stays until the upstream closes it.
  if (idle_timeout_ms) {
    timer_.start(stream_->context().loop, this, &UpstreamConnection::on_timer, idle_timeout_ms);
  } else {
    timer_.stop();
  }
}

void UpstreamConnection::bind(UpstreamHandler* handler, bool head_request) {
  state_ = State::kBusy;
  handler_ = handler;
  parser_.set_skip_body(head_request);
  response_started_ = false;
  awaiting_head_ = true;
  response_timer_armed_ = false;  // a pending idle timer fires harmlessly (on_timer)
  reusable_ = false;
  ++requests_;
  stream_->read_start();
}

int UpstreamConnection::send_head(const Slice& head, Framing framing) {
  request_framing_ = framing;
  return stream_->write(head);
}

int UpstreamConnection::send_body(const Slice& data) {
  if (request_framing_ == Framing::kChunked) {
    Slice parts[3] = {chunk_header(stream_->context().blocks, data.len), data, kChunkEnd};
    return stream_->write(parts, 3);
  }
  return stream_->write(data);
}

int UpstreamConnection::send_end(const Slice& trailers) {
  if (request_framing_ != Framing::kChunked) return 0;
  return stream_->write(trailers.len ? trailers : kLastChunk);
}

void UpstreamConnection::release(bool request_sent) {
  // A connection whose request was not fully written cannot carry another request.
  if (request_sent && pool_) {
    pool_->release(this);
  } else {
    close();
  }
}

std::unique_ptr<TcpStream> UpstreamConnection::take_socket() {
  LoopContext& ctx = stream_->context();
  if (pool_) pool_->take_for_tunnel(this);
  pool_ = nullptr;
  handler_ = nullptr;
  state_ = State::kClosed;
  timer_.release();
  // The pool's session slot may be deleted (a reload removed the cluster) while the socket
  // lives on: a NewSessionTicket arriving later must not be stored there.
  if (tls_) tls_->forget_session_slot();
  tls_ = nullptr;
  stream_->read_stop();
  std::unique_ptr<TcpStream> s = std::move(stream_);
  // Called from this connection's read callback (the 101 completed): freed on a later turn.
  ctx.defer([](void* p) { delete static_cast<UpstreamConnection*>(p); }, this);
  return s;
}

void UpstreamConnection::expect_response(uint64_t timeout_ms) {
  if (state_ != State::kBusy || !awaiting_head_ || !timeout_ms) return;
  response_timer_armed_ = true;
  timer_.start(stream_->context().loop, this, &UpstreamConnection::on_timer, timeout_ms);
}

void UpstreamConnection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<UpstreamConnection*>(t->data);
  switch (self->state_) {
    case State::kConnecting:
      self->fail(UpstreamError::kConnectTimeout);
      break;
    case State::kBusy:
      if (self->awaiting_head_ && self->response_timer_armed_)
        self->fail(UpstreamError::kResponseTimeout);
      break;
    case State::kIdle:
      self->close();
      break;
    case State::kClosed:
      break;
  }
}

void UpstreamConnection::on_stream_read(const Slice& data) {
  if (state_ != State::kBusy) {
    // Bytes on an idle connection: the upstream is confused; never reuse it.
    close();
    return;
  }
  response_started_ = true;
  Slice rest = data;
  for (;;) {
    ParseResult r = parser_.execute(rest);
    // A body callback may have ended the exchange (the client went away) and closed us.
    if (state_ != State::kBusy || !handler_) return;
    rest = rest.sub(r.consumed, rest.len - r.consumed);
    switch (r.event) {
      case ParseEvent::kNeedMore:
        return;
      case ParseEvent::kError:
        LOG_WARN("upstream sent a malformed response: %s", parser_.error_reason());
        fail(UpstreamError::kBadResponse);
        return;
      case ParseEvent::kHead: {
        const MessageHead& head = parser_.head();
        // The response timer is not stopped here (a heap operation per request): when it
        // fires after the head, on_timer ignores it.
        if (head.status >= 200 || head.status == 101) awaiting_head_ = false;
        handler_->on_upstream_head(head);
        if (state_ != State::kBusy) return;  // the handler closed this connection
        break;
      }
      case ParseEvent::kUpgrade:
        fail(UpstreamError::kBadResponse);
        return;
      case ParseEvent::kMessageComplete: {
        if (parser_.head().status == 101) {
          UpstreamHandler* h = handler_;
          handler_ = nullptr;
          h->on_upstream_upgraded(rest);
          return;
        }
        if (parser_.head().status < 200) break;  // interim
        reusable_ = parser_.should_keep_alive() && rest.len == 0 && !parser_.upgrade();
        if (parser_.trailers().header_count()) {
          handler_->on_upstream_trailers(parser_.trailers());
          if (state_ != State::kBusy || !handler_) return;  // the exchange let go (reset)
        }
        UpstreamHandler* h = handler_;
        handler_ = nullptr;
        h->on_upstream_complete();
        return;
      }
    }
  }
}

void UpstreamConnection::on_body(const Slice& data) {
  if (handler_) handler_->on_upstream_body(data);
}

void UpstreamConnection::on_stream_eof() {
  if (state_ == State::kConnecting) {
    // Only with TLS is EOF possible before the stream counts as connected: the upstream
    // closed during the handshake. A failed connect, so a waiter learns of it now.
    LOG_WARN("upstream %s: TLS handshake: the upstream closed the connection",
             pool_ ? pool_->name().c_str() : "?");
    fail(UpstreamError::kTlsHandshake);
    return;
  }
  if (state_ != State::kBusy) {
    close();  // the upstream closed an idle pooled connection: it leaves the pool now
    return;
  }
  if (parser_.in_message() && parser_.finish() == ParseEvent::kMessageComplete) {
    reusable_ = false;  // a close-delimited body ended
    UpstreamHandler* h = handler_;
    handler_ = nullptr;
    h->on_upstream_complete();
    return;
  }
  fail(UpstreamError::kClosed);
}

void UpstreamConnection::on_stream_error(int status) {
  if (status == TcpStream::kTlsFailed) {
    // After the handshake: e.g. a TLS 1.3 server that wanted a client certificate says so
    // only now, with an alert.
    LOG_WARN("upstream %s: %s", pool_ ? pool_->name().c_str() : "?", stream_->tls_error().c_str());
  } else {
    LOG_DEBUG("upstream connection error: %s", uv_strerror(status));
  }
  if (state_ == State::kBusy) {
    fail(UpstreamError::kReset);
  } else if (state_ == State::kConnecting && stream_->tls() && status != TcpStream::kTlsFailed) {
    // TCP was up, the TLS handshake was under way (e.g. reset by the upstream).
    LOG_WARN("upstream %s: TLS handshake: %s", pool_ ? pool_->name().c_str() : "?",
             uv_strerror(status));
    fail(UpstreamError::kTlsHandshake);
  } else if (state_ == State::kConnecting) {
    fail(status == TcpStream::kTlsFailed ? UpstreamError::kTlsHandshake
                                         : UpstreamError::kConnectRefused);
  } else {
    close();
  }
}

void UpstreamConnection::on_stream_drained() {
  if (state_ == State::kBusy && handler_) {
    handler_->on_upstream_drained();
  }
}

void UpstreamConnection::fail(UpstreamError e) {
  State was = state_;
  UpstreamHandler* h = handler_;
  UpstreamPool* pool = pool_;
  bool started = response_started_;
  close();
  if (was == State::kConnecting && pool) {
    pool->on_connect_failed(e, connect_round_);
  } else if (was == State::kBusy && h) {
    h->on_upstream_error(e, started);
  }
}

void UpstreamConnection::close() {
  if (state_ == State::kClosed) return;
  if (pool_) pool_->detach(this);
  pool_ = nullptr;
  handler_ = nullptr;
  state_ = State::kClosed;
  timer_.release();
  stream_->close();
}

void UpstreamConnection::on_stream_closed() {
  // Freed on a later turn, after the cork flush task this connection may have queued.
  stream_->context().defer([](void* p) { delete static_cast<UpstreamConnection*>(p); }, this);
}

}  // namespace sluice
