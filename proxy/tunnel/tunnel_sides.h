#pragma once
// What a Tunnel needs from the objects around it, as interfaces, so that the tunnel layer
// depends on nothing above it (and its unit tests need no socket): its client connection
// (TunnelClient, the HTTP/1.1 client connection that switched protocols), its upstream end
// (TunnelServer, the socket the upstream connection gave up after its 101: TunnelUpstream) and
// the registry of open sessions the drain walks (TunnelRegistry, the worker).
#include <cstddef>
#include <string>

#include "core/block.h"
#include "core/loop_context.h"

namespace sluice {

class Tunnel;
class TunnelRegistry;

// Why a session ended (the label of sluice_websocket_sessions_closed_total).
enum class TunnelEnd : uint8_t { kClient, kUpstream, kDrainClose, kDrainForced, kError };
const char* tunnel_end_name(TunnelEnd e);

class TunnelClient {
 public:
  virtual LoopContext& ctx() = 0;
  // Bytes for the client; 0 or a uv error (the tunnel ends).
  virtual int write(const Slice& s) = 0;
  virtual bool above_high_watermark() const = 0;
  // Backpressure on the client's bytes (the upstream's write queue is over its watermark).
  virtual void pause_client() = 0;
  virtual void resume_client() = 0;
  // The tunnel is over: flush what is queued for the client, then close.
  virtual void finish_tunnel() = 0;
  // The drain's close handshake must finish within the close timeout.
  virtual void arm_tunnel_timeout() = 0;
  virtual std::string peer_ip() const = 0;
  // Where the session is registered while it is open (the worker's session lists).
  virtual TunnelRegistry& tunnel_registry() = 0;

 protected:
  ~TunnelClient() = default;
};

class TunnelServer {
 public:
  // From now on the server's bytes and events go to `t` (reading starts), until end().
  virtual void attach(Tunnel* t) = 0;
  // Bytes for the server; 0 or a uv error (the tunnel ends).
  virtual int write(const Slice& s) = 0;
  virtual bool above_high_watermark() const = 0;
  // Backpressure on the server's bytes (the client's write queue is over its watermark).
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  // The tunnel is over: no event reaches it any more; what is queued for the server is flushed,
  // then the end closes (and frees itself: the tunnel never deletes it). Idempotent.
  virtual void end() = 0;

 protected:
  ~TunnelServer() = default;
};

class TunnelRegistry {
 public:
  // An open session; `drain_exempt`: its listener has `drain: false`.
  virtual void add_tunnel(Tunnel* t, bool drain_exempt) = 0;
  virtual void remove_tunnel(Tunnel* t, TunnelEnd why) = 0;

 protected:
  ~TunnelRegistry() = default;
};

}  // namespace sluice
