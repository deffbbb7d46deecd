#pragma once
// Tunnel: what a client connection and its upstream connection become after a successful
// Upgrade (101). Bytes pass both ways untouched with backpressure. For WebSocket sessions it
// follows frame boundaries in both directions (WsFrameTracker) so that a drain can inject a
// Close frame (1001) at a boundary on each side, answer the close handshake and swallow the
// replies. Owned by its client connection (through the TunnelClient interface); uses the
// upstream end it was given (TunnelServer: in production a TunnelUpstream, which frees itself
// once closed) until it ends it. Registered in its registry (the worker's session lists) while
// open.
#include <cstdint>

#include "core/block.h"
#include "core/intrusive_list.h"
#include "tunnel/tunnel_sides.h"
#include "tunnel/ws_frame_tracker.h"

namespace sluice {

class Tunnel : public ListNode {
 public:
  // `up`: the upstream end (attached here; ended, never deleted, by the tunnel).
  // Registered in down.tunnel_registry() until it ends.
  Tunnel(TunnelClient& down, TunnelServer& up, bool websocket, uint16_t listener,
         bool drain_exempt);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // From the client connection.
  void from_client(const Slice& data);
  void client_eof();
  void client_drained();
  // From the upstream connection.
  void from_server(const Slice& data);
  void server_eof();
  void server_error();
  void server_drained();

  // Drain: send 1001 both ways at frame boundaries and run the close handshake. Opaque tunnels
  // are shut down instead. Idempotent.
  void drain_close();
  // The close handshake did not finish in time, or the budget ran out.
  void force_close(TunnelEnd why);
  // Closes the upstream side and unregisters (the client side is closed by its owner).
  void close(TunnelEnd why);
  bool closing_handshake() const { return drain_started_; }
  bool drain_exempt() const { return drain_exempt_; }
  size_t listener() const { return listener_; }

 private:
  void forward(const Slice& data, bool to_server);
  void inject_close(bool to_server);
  void maybe_finish();
  void end(TunnelEnd why);

  TunnelClient& down_;
  TunnelServer* up_;  // null once ended
  uint16_t listener_;
  WsFrameTracker c2s_{WsFrameTracker::Direction::kClientToServer};
  WsFrameTracker s2c_{WsFrameTracker::Direction::kServerToClient};
  bool websocket_;
  bool drain_exempt_;
  bool closed_ = false;
  bool client_eof_ = false;
  // Who sent the first Close frame (outside a drain): the side that ended the session, even
  // when the other closes its TCP connection first (servers usually do).
  enum class Closer : uint8_t { kNone, kClient, kServer } closer_ = Closer::kNone;
  bool server_eof_ = false;
  bool drain_started_ = false;
  bool close_sent_to_client_ = false;
  bool close_sent_to_server_ = false;
  bool client_replied_ = false;  // the client's Close arrived after sluice's
  bool server_replied_ = false;
};

}  // namespace sluice
