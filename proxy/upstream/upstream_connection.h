#pragma once
// UpstreamConnection: one HTTP/1.1 client connection to an upstream endpoint. Owns its
// TcpStream, an on-demand timer (connect, response-head or idle timeout, by state) and an
// HTTP_RESPONSE parser. Owned by its UpstreamPool while open, or by a Tunnel after a 101; after
// close() it is detached and frees itself on a later loop turn, once its socket closed.
#include <uv.h>

#include <cstdint>
#include <memory>

#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "http/parser.h"
#include "net/tcp_stream.h"

namespace sluice {

class UpstreamPool;
class Tunnel;

enum class UpstreamError : uint8_t {
  kConnectRefused,   // connect failed (refused, unreachable): 502
  kConnectTimeout,   // 503
  kTlsHandshake,     // TCP connected, TLS failed (verification, protocol): 502
  kReset,            // read/write error on an established connection
  kClosed,           // the upstream closed the connection before the response was complete
  kResponseTimeout,  // no response head in time: 504
  kBadResponse,      // unparsable response: 502
};
const char* upstream_error_name(UpstreamError e);

// The exchange currently using a connection.
class UpstreamHandler {
 public:
  virtual void on_upstream_head(const MessageHead& head) = 0;
  virtual void on_upstream_body(const Slice& data) = 0;
  virtual void on_upstream_complete() = 0;
  // The connection is already closed when this is called; `response_started` says whether any
  // response byte had arrived.
  virtual void on_upstream_error(UpstreamError e, bool response_started) = 0;
  virtual void on_upstream_drained() = 0;
  // A 101 response head completed: the connection now carries another protocol; `rest` holds
  // the bytes that followed the head in the same read.
  virtual void on_upstream_upgraded(const Slice& rest) = 0;

 protected:
  ~UpstreamHandler() = default;
};

class UpstreamConnection final : public ListNode, private StreamHandler, private BodySink {
 public:
  enum class State : uint8_t { kConnecting, kIdle, kBusy, kTunnel, kClosed };

  UpstreamConnection(LoopContext& ctx, UpstreamPool* pool);
  int connect(const sockaddr* addr, uint64_t timeout_ms);
  // TLS to the upstream (before connect): `name` for SNI and verification.
  bool start_tls(SSL_CTX* ctx, const std::string& name, bool verify, TlsSessionSlot* slot) {
    return stream_.start_tls_client(ctx, name, verify, slot);
  }

  // Pool → connection.
  void make_idle(uint64_t idle_timeout_ms);
  bool still_clean() const { return stream_.peek_clean(); }
  // Exchange → connection.
  void bind(UpstreamHandler* handler, bool head_request);
  // The whole request is written: the response head must come within the timeout (like
  // Envoy's route timeout, it does not count the time a large upload takes).
  void start_response_timer(uint64_t timeout_ms);
  int write(const Slice* slices, size_t n) { return stream_.write(slices, n); }
  int write(const Slice& s) { return stream_.write(s); }
  size_t queued() const { return stream_.queued(); }
  bool above_high_watermark() const { return stream_.above_high_watermark(); }
  void pause_reading() { stream_.read_stop(); }
  void resume_reading() {
    if (state_ != State::kClosed) stream_.read_start();
  }
  // After the response completed: whether the connection may carry another request.
  bool reusable() const { return reusable_; }
  // Detaches from the pool and the handler; no callback follows. Idempotent.
  void close();
  // After an upgrade (the pool has let go of it): bytes and events go to the tunnel.
  void become_tunnel(Tunnel* tunnel);
  // The tunnel is over: flush what is queued, then close.
  void end_tunnel();

  State state() const { return state_; }
  uint32_t requests() const { return requests_; }
  bool response_started() const { return response_started_; }

 private:
  friend class UpstreamPool;
  void on_stream_connected(int status) override;
  void on_stream_read(const Slice& data) override;
  void on_stream_eof() override;
  void on_stream_error(int status) override;
  void on_stream_drained() override;
  void on_stream_closed() override;
  void on_body(const Slice& data) override;
  static void on_timer(uv_timer_t* t);
  void fail(UpstreamError e);

  UpstreamPool* pool_;
  UpstreamHandler* handler_ = nullptr;
  Tunnel* tunnel_ = nullptr;
  TcpStream stream_;
  OnDemandTimer timer_;
  std::unique_ptr<HttpParser> parser_;  // freed when the connection becomes a tunnel
  State state_ = State::kConnecting;
  uint32_t requests_ = 0;
  uint32_t connect_round_ = 0;  // the pool's failure round when the connect started

  bool response_started_ = false;
  bool awaiting_head_ = false;
  bool response_timer_armed_ = false;
  bool reusable_ = false;
};

}  // namespace sluice
