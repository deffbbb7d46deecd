#include "upstream/upstream_connection.h"

#include "core/log.h"
#include "tunnel/tunnel.h"
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
  }
  return "?";
}

UpstreamConnection::UpstreamConnection(LoopContext& ctx, UpstreamPool* pool)
    : pool_(pool),
      stream_(ctx, this, /*cork=*/true),
      parser_(new HttpParser(HTTP_RESPONSE, static_cast<BodySink*>(this))) {}

int UpstreamConnection::connect(const sockaddr* addr, uint64_t timeout_ms) {
  int r = stream_.connect(addr);
  if (r != 0) return r;
  if (timeout_ms)
    timer_.start(stream_.context().loop, this, &UpstreamConnection::on_timer, timeout_ms);
  return 0;
}

void UpstreamConnection::on_stream_connected(int status) {
  timer_.stop();
  if (status == TcpStream::kTlsFailed && stream_.tls()) {
    LOG_WARN("upstream %s: %s", pool_ ? pool_->name().c_str() : "?", stream_.tls_error().c_str());
    fail(UpstreamError::kTlsHandshake);
    return;
  }
  if (status < 0) {
    LOG_DEBUG("upstream connect failed: %s", uv_strerror(status));
    fail(UpstreamError::kConnectRefused);
    return;
  }
  stream_.read_start();  // also watches for the upstream closing it while idle
  pool_->on_connected(this);
}

void UpstreamConnection::make_idle(uint64_t idle_timeout_ms) {
  state_ = State::kIdle;
  handler_ = nullptr;
  parser_->release_memory();
  stream_.read_start();
  // 0 = no idle timeout: the connection stays until the upstream closes it.
  if (idle_timeout_ms) {
    timer_.start(stream_.context().loop, this, &UpstreamConnection::on_timer, idle_timeout_ms);
  } else {
    timer_.stop();
  }
}

void UpstreamConnection::bind(UpstreamHandler* handler, bool head_request) {
  state_ = State::kBusy;
  handler_ = handler;
  parser_->set_skip_body(head_request);
  response_started_ = false;
  awaiting_head_ = true;
  response_timer_armed_ = false;  // a pending idle timer fires harmlessly (on_timer)
  reusable_ = false;
  ++requests_;
  stream_.read_start();
}

void UpstreamConnection::start_response_timer(uint64_t timeout_ms) {
  if (state_ != State::kBusy || !awaiting_head_ || !timeout_ms) return;
  response_timer_armed_ = true;
  timer_.start(stream_.context().loop, this, &UpstreamConnection::on_timer, timeout_ms);
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
    case State::kTunnel:
      self->close();
      break;
    case State::kClosed:
      break;
  }
}

void UpstreamConnection::on_stream_read(const Slice& data) {
  if (state_ == State::kTunnel) {
    if (tunnel_) tunnel_->from_server(data);
    return;
  }
  if (state_ != State::kBusy) {
    // Bytes on an idle connection: the upstream is confused; never reuse it.
    close();
    return;
  }
  response_started_ = true;
  Slice rest = data;
  for (;;) {
    ParseResult r = parser_->execute(rest);
    // A body callback may have ended the exchange (the client went away) and closed us.
    if (state_ != State::kBusy || !handler_) return;
    rest = rest.sub(r.consumed, rest.len - r.consumed);
    switch (r.event) {
      case ParseEvent::kNeedMore:
        return;
      case ParseEvent::kError:
        LOG_WARN("upstream sent a malformed response: %s", parser_->error_reason());
        fail(UpstreamError::kBadResponse);
        return;
      case ParseEvent::kHead: {
        const MessageHead& head = parser_->head();
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
        if (parser_->head().status == 101) {
          UpstreamHandler* h = handler_;
          handler_ = nullptr;
          h->on_upstream_upgraded(rest);
          return;
        }
        if (parser_->head().status < 200) break;  // interim
        reusable_ = parser_->should_keep_alive() && rest.len == 0 && !parser_->upgrade();
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
  if (state_ == State::kTunnel) {
    if (tunnel_) {
      tunnel_->server_eof();
    } else {
      close();
    }
    return;
  }
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
  if (parser_->in_message() && parser_->finish() == ParseEvent::kMessageComplete) {
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
    LOG_WARN("upstream %s: %s", pool_ ? pool_->name().c_str() : "(tunnel)",
             stream_.tls_error().c_str());
  } else {
    LOG_DEBUG("upstream connection error: %s", uv_strerror(status));
  }
  if (state_ == State::kTunnel) {
    if (tunnel_) {
      tunnel_->server_error();
    } else {
      close();
    }
  } else if (state_ == State::kBusy) {
    fail(UpstreamError::kReset);
  } else if (state_ == State::kConnecting && stream_.tls() && status != TcpStream::kTlsFailed) {
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
  } else if (state_ == State::kTunnel) {
    if (tunnel_) {
      tunnel_->server_drained();
    } else if (stream_.queued() == 0) {
      close();  // end_tunnel() was waiting for the last bytes
    }
  }
}

void UpstreamConnection::become_tunnel(Tunnel* tunnel) {
  state_ = State::kTunnel;
  tunnel_ = tunnel;
  handler_ = nullptr;
  pool_ = nullptr;
  timer_.release();  // an idle session needs no timer
  // The HTTP parser is not needed any more; it is on the stack of the read callback that got
  // here, so it is freed on a later loop turn.
  stream_.context().defer([](void* p) { delete static_cast<HttpParser*>(p); }, parser_.release());
  stream_.set_compact(true);
  stream_.read_start();
}

void UpstreamConnection::end_tunnel() {
  tunnel_ = nullptr;
  if (state_ == State::kClosed) return;
  if (stream_.flush_now()) {
    close();
    return;
  }
  stream_.read_stop();
  // Bytes still queued: close once they are written, or after the linger time at most.
  timer_.start(stream_.context().loop, this, &UpstreamConnection::on_timer, 2000);
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
  tunnel_ = nullptr;
  state_ = State::kClosed;
  timer_.release();
  stream_.close();
}

void UpstreamConnection::on_stream_closed() {
  // Freed on a later turn, after the cork flush task this connection may have queued.
  stream_.context().defer([](void* p) { delete static_cast<UpstreamConnection*>(p); }, this);
}

}  // namespace sluice
