#include "tunnel/tunnel_upstream.h"

#include "core/log.h"
#include "tunnel/tunnel.h"

namespace sluice {

namespace {
// How long an ended tunnel's upstream socket may take to write its last bytes.
constexpr uint64_t kLingerMs = 2000;
}  // namespace

TunnelUpstream::TunnelUpstream(std::unique_ptr<TcpStream> stream) : stream_(std::move(stream)) {
  stream_->set_handler(this);
  stream_->set_compact(true);
}

void TunnelUpstream::attach(Tunnel* t) {
  tunnel_ = t;
  stream_->read_start();
}

void TunnelUpstream::on_stream_read(const Slice& data) {
  if (tunnel_) tunnel_->from_server(data);
}

void TunnelUpstream::on_stream_eof() {
  if (tunnel_) {
    tunnel_->server_eof();
  } else {
    close();
  }
}

void TunnelUpstream::on_stream_error(int status) {
  LOG_DEBUG("tunnel upstream: %s",
            status == TcpStream::kTlsFailed ? stream_->tls_error().c_str() : uv_strerror(status));
  if (tunnel_) {
    tunnel_->server_error();
  } else {
    close();
  }
}

void TunnelUpstream::on_stream_drained() {
  if (tunnel_) {
    tunnel_->server_drained();
  } else if (stream_->queued() == 0) {
    close();  // end() was waiting for the last bytes
  }
}

void TunnelUpstream::end() {
  if (!tunnel_) return;
  tunnel_ = nullptr;
  if (stream_->flush_now()) {
    close();
    return;
  }
  stream_->read_stop();
  // Bytes still queued: close once they are written, or after the linger time at most.
  timer_.start(stream_->context().loop, this, &TunnelUpstream::on_timer, kLingerMs);
}

void TunnelUpstream::on_timer(uv_timer_t* t) {
  static_cast<TunnelUpstream*>(t->data)->close();
}

void TunnelUpstream::close() {
  tunnel_ = nullptr;
  timer_.release();
  stream_->close();  // idempotent
}

void TunnelUpstream::on_stream_closed() {
  // Freed on a later turn, after the cork flush task the stream may have queued.
  stream_->context().defer([](void* p) { delete static_cast<TunnelUpstream*>(p); }, this);
}

}  // namespace sluice
