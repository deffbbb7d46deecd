#pragma once
// UpstreamConnection: one HTTP/1.1 client connection to an upstream endpoint (TCP or a Unix
// socket: its TcpStream connects by the address family), the upstream side of one exchange at
// a time. Owns its TcpStream (on the heap: after a 101 the socket is handed to a tunnel, and
// the connection is gone), an on-demand timer (connect, response-head or idle timeout, by
// state) and an HTTP_RESPONSE parser. Owned by its UpstreamPool while open; after close() it is
// detached and frees itself on a later loop turn, once its socket closed.
#include <openssl/ssl.h>
#include <uv.h>

#include <cstdint>
#include <memory>

#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "http/parser.h"
#include "net/tcp_stream.h"
#include "upstream/upstream_side.h"

namespace sluice {

class UpstreamPool;
class TlsLayer;
class TlsSessionSlot;

class UpstreamConnection final : public ListNode,
                                 public UpstreamSide,
                                 private StreamHandler,
                                 private BodySink {
 public:
  enum class State : uint8_t { kConnecting, kIdle, kBusy, kClosed };

  UpstreamConnection(LoopContext& ctx, UpstreamPool* pool);
  int connect(const sockaddr* addr, uint64_t timeout_ms);
  // TLS to the upstream (before connect): `name` for SNI and verification.
  bool start_tls(SSL_CTX* ctx, const std::string& name, bool verify, TlsSessionSlot* slot);

  // Pool → connection.
  void make_idle(uint64_t idle_timeout_ms);
  bool still_clean() const { return stream_->peek_clean(); }

  // UpstreamSide (exchange → connection).
  bool reused() const override { return requests_ > 0; }
  void bind(UpstreamHandler* handler, bool head_request) override;
  int send_head(const Slice& head, Framing framing) override;
  int send_body(const Slice& data) override;
  int send_end(const Slice& trailers) override;
  void expect_response(uint64_t timeout_ms) override;
  size_t queued() const override { return stream_->queued(); }
  void pause_response() override { stream_->read_stop(); }
  void resume_response() override {
    if (state_ != State::kClosed) stream_->read_start();
  }
  void release(bool request_sent) override;
  void reset() override { close(); }
  std::unique_ptr<TcpStream> take_socket() override;

  // After the response completed: whether the connection may carry another request.
  bool reusable() const { return reusable_; }
  // Detaches from the pool and the handler; no callback follows. Idempotent.
  void close();

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
  // `status`: the uv error behind a failed connect, for the pool's log line (0: none).
  void fail(UpstreamError e, int status = 0);

  UpstreamPool* pool_;
  UpstreamHandler* handler_ = nullptr;
  std::unique_ptr<TcpStream> stream_;  // null once handed to a tunnel
  TlsLayer* tls_ = nullptr;            // the stream's filter, when it has TLS
  OnDemandTimer timer_;
  HttpParser parser_;
  State state_ = State::kConnecting;
  Framing request_framing_ = Framing::kNone;
  uint32_t requests_ = 0;
  uint32_t connect_round_ = 0;  // the pool's failure round when the connect started

  bool response_started_ = false;
  bool awaiting_head_ = false;
  bool response_timer_armed_ = false;
  bool reusable_ = false;
};

}  // namespace sluice
