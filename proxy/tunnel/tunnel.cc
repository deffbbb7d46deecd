#include "tunnel/tunnel.h"

#include <cstring>

#include "core/log.h"

namespace sluice {

const char* tunnel_end_name(TunnelEnd e) {
  switch (e) {
    case TunnelEnd::kClient:
      return "client";
    case TunnelEnd::kUpstream:
      return "upstream";
    case TunnelEnd::kDrainClose:
      return "drain_close";
    case TunnelEnd::kDrainForced:
      return "drain_forced";
    case TunnelEnd::kError:
      return "error";
  }
  return "?";
}

Tunnel::Tunnel(TunnelClient& down, TunnelServer& up, bool websocket, uint16_t listener,
               bool drain_exempt)
    : down_(down),
      up_(&up),
      listener_(listener),
      websocket_(websocket),
      drain_exempt_(drain_exempt) {
  down_.tunnel_registry().add_tunnel(this, drain_exempt_);
  up_->attach(this);
}

Tunnel::~Tunnel() {
  close(TunnelEnd::kError);
}

void Tunnel::forward(const Slice& data, bool to_server) {
  if (data.len == 0 || closed_) return;
  if (to_server) {
    if (up_->write(data) != 0) return end(TunnelEnd::kError);
    if (up_->above_high_watermark()) down_.pause_client();
  } else {
    if (down_.write(data) != 0) return end(TunnelEnd::kError);
    if (down_.above_high_watermark()) up_->pause_reading();
  }
}

void Tunnel::from_client(const Slice& data) {
  if (closed_) return;
  if (!websocket_) return forward(data, true);
  size_t off = 0;
  while (off < data.len && !closed_) {
    size_t n = 0;
    if (c2s_.feed(data.data + off, data.len - off, &n) != WsFrameTracker::Result::kOk) {
      LOG_INFO("websocket from client %s: %s", down_.peer_ip().c_str(), c2s_.error());
      return end(TunnelEnd::kError);
    }
    if (!close_sent_to_server_) {
      forward(data.sub(off, n), true);
      if (drain_started_ && c2s_.at_boundary()) inject_close(true);
    }
    // Once sluice's Close went to the server, nothing more goes there: the client's Close
    // (its answer to sluice's) is swallowed.
    if (drain_started_ && c2s_.close_completed()) client_replied_ = true;
    if (!drain_started_ && closer_ == Closer::kNone && c2s_.close_completed())
      closer_ = Closer::kClient;
    off += n;
  }
  maybe_finish();
}

void Tunnel::from_server(const Slice& data) {
  if (closed_) return;
  if (!websocket_) return forward(data, false);
  size_t off = 0;
  while (off < data.len && !closed_) {
    size_t n = 0;
    if (s2c_.feed(data.data + off, data.len - off, &n) != WsFrameTracker::Result::kOk) {
      LOG_INFO("websocket from upstream: %s", s2c_.error());
      return end(TunnelEnd::kError);
    }
    if (!close_sent_to_client_) {
      forward(data.sub(off, n), false);
      if (drain_started_ && s2c_.at_boundary()) inject_close(false);
    }
    if (drain_started_ && s2c_.close_completed()) server_replied_ = true;
    if (!drain_started_ && closer_ == Closer::kNone && s2c_.close_completed())
      closer_ = Closer::kServer;
    off += n;
  }
  maybe_finish();
}

void Tunnel::inject_close(bool to_server) {
  if (to_server ? close_sent_to_server_ : close_sent_to_client_) return;
  BlockRef b = down_.ctx().blocks.get_small(32);
  uint32_t key = static_cast<uint32_t>(down_.ctx().random());
  size_t n = write_ws_close_frame(reinterpret_cast<uint8_t*>(b->data()), 1001, "going away",
                                  to_server, key);
  Slice frame{b, b->data(), n};
  if (to_server) {
    close_sent_to_server_ = true;
    forward(frame, true);
  } else {
    close_sent_to_client_ = true;
    forward(frame, false);
  }
}

void Tunnel::drain_close() {
  if (closed_ || drain_started_) return;
  drain_started_ = true;
  if (!websocket_) return end(TunnelEnd::kDrainClose);  // no protocol to speak: close it
  if (s2c_.at_boundary()) inject_close(false);
  if (c2s_.at_boundary()) inject_close(true);
  // A side in the middle of a frame gets its Close at the frame's end; either way the
  // handshake must finish within the close timeout.
  down_.arm_tunnel_timeout();
  maybe_finish();
}

void Tunnel::maybe_finish() {
  if (closed_ || !drain_started_) return;
  bool client_done = client_replied_ || client_eof_;
  bool server_done = server_replied_ || server_eof_;
  if (close_sent_to_client_ && close_sent_to_server_ && client_done && server_done)
    end(client_eof_ && !client_replied_ ? TunnelEnd::kClient : TunnelEnd::kDrainClose);
}

void Tunnel::client_eof() {
  client_eof_ = true;
  if (drain_started_) {
    // The server may still be owed its Close; finish the handshake on that side.
    if (!close_sent_to_server_ && c2s_.at_boundary()) inject_close(true);
    close_sent_to_client_ = true;  // nothing can be sent to a client that is gone
    maybe_finish();
    return;
  }
  end(closer_ == Closer::kServer ? TunnelEnd::kUpstream : TunnelEnd::kClient);
}

void Tunnel::server_eof() {
  server_eof_ = true;
  if (drain_started_) {
    if (!close_sent_to_client_ && s2c_.at_boundary()) inject_close(false);
    close_sent_to_server_ = true;
    maybe_finish();
    return;
  }
  end(closer_ == Closer::kClient ? TunnelEnd::kClient : TunnelEnd::kUpstream);
}

void Tunnel::server_error() {
  end(TunnelEnd::kError);
}

void Tunnel::client_drained() {
  if (!closed_) up_->resume_reading();
}

void Tunnel::server_drained() {
  if (!closed_) down_.resume_client();
}

void Tunnel::force_close(TunnelEnd why) {
  if (closed_) return;
  LOG_INFO("websocket session of %s: close handshake unfinished, closing", down_.peer_ip().c_str());
  end(why);
}

void Tunnel::end(TunnelEnd why) {
  if (closed_) return;
  close(why);
  down_.finish_tunnel();  // flushes what is queued for the client, then closes
}

void Tunnel::close(TunnelEnd why) {
  if (closed_) return;
  closed_ = true;
  down_.tunnel_registry().remove_tunnel(this, why);
  if (up_) {
    up_->end();  // flushes what is queued for the upstream, then closes
    up_ = nullptr;
  }
}

}  // namespace sluice
