#pragma once
// TcpStream: the byte transport of one connection side, over TCP or a Unix-domain socket (an
// upstream endpoint `unix:/path`; the name stayed, the bytes do not care). Owns one libuv stream
// handle, a uv_tcp_t or a uv_pipe_t in a union (and, while they run, a connect or shutdown
// request, allocated on demand so an idle stream is small); it is a member of its connection
// object, which is freed only after on_stream_closed(). The handle's kind is chosen when the
// stream is opened: accept() takes the listening handle's kind, open() is TCP, connect() goes by
// the address family (AF_UNIX: a pipe). Everything else — cork, try_write, the TLS filter,
// peek_clean, shutdown, the handover to a tunnel — is the same for both. Reads borrow a
// pool block per read and give it back when the handler is done with the bytes; writes try the
// socket first (uv_try_write) and queue only the remainder, holding block references until the
// write callback.
//
// TLS, when a connection has it, is a StreamFilter (tls/TlsLayer) the stream owns: ciphertext is
// what the socket sees, plaintext is what the handler sees; the handler's interface does not
// change. The stream knows the filter only through its interface: bytes and handles do not
// depend on the TLS layer above them.
#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/block.h"
#include "core/loop_context.h"
#include "net/stream_filter.h"

namespace sluice {

class StreamHandler {
 public:
  // Connected; for a TLS client stream, once the handshake is done. kTlsFailed: the TCP
  // connection opened but the handshake failed (filter_error() says why).
  virtual void on_stream_connected(int status) {}
  // A TLS server stream completed its handshake.
  virtual void on_stream_secure() {}
  virtual void on_stream_read(const Slice& data) = 0;
  virtual void on_stream_eof() = 0;
  virtual void on_stream_error(int uv_status) = 0;
  // Queued write bytes fell to the low watermark or below (called only from write callbacks).
  virtual void on_stream_drained() {}
  // The handle is closed; the owner may free itself once all its handles are closed.
  virtual void on_stream_closed() = 0;

 protected:
  ~StreamHandler() = default;
};

class TcpStream {
 public:
  static constexpr int kTlsFailed = UV_EPROTO;
  // Queued bytes above which the source feeding this stream stops reading; resumes at low.
  static constexpr size_t kHighWatermark = 256 * 1024;
  static constexpr size_t kLowWatermark = kHighWatermark / 2;

  // With `cork`, writes collect in a cork buffer that is flushed once at the end of the loop
  // iteration (one syscall for a response head and body, or for several pipelined
  // responses). The owner must then free itself through ctx.defer() after on_stream_closed(),
  // so the flush task queued before the close runs first.
  TcpStream(LoopContext& ctx, StreamHandler* handler, bool cork = false);
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  // Each opens the stream once (a second call answers UV_EALREADY). A stream closed before it
  // was opened still gets on_stream_closed() from the loop.
  int accept(uv_stream_t* server);  // a TCP or pipe listening handle: this stream's kind
  int open(int fd);                 // an accepted TCP descriptor
  // TCP (AF_INET, AF_INET6: TCP_NODELAY) or a Unix socket (AF_UNIX, the sockaddr_un's path;
  // without TCP's options). A Unix connect's errors (ENOENT, ECONNREFUSED, EACCES, EAGAIN when
  // the listen backlog is full) come to on_stream_connected() like a refused TCP connect.
  int connect(const sockaddr* addr);
  bool unix_socket() const { return kind_ == kPipe; }
  // A filter (TLS) on this stream: a server-side one after accept (before reading), a
  // client-side one before connect.
  void set_filter(std::unique_ptr<StreamFilter> filter) { filter_ = std::move(filter); }
  bool tls() const { return filter_ != nullptr; }
  // The protocol the TLS handshake agreed on (ALPN "h2", "http/1.1"), empty without one.
  std::string_view alpn() const { return filter_ ? filter_->alpn() : std::string_view(); }
  // Why the filter failed (empty when it did not, or without one).
  const std::string& tls_error() const;
  // Another object takes the stream over (an upstream socket handed to a tunnel after a 101);
  // events go to `handler` from now on, including the rest of the read in progress.
  void set_handler(StreamHandler* handler) { handler_ = handler; }
  void read_start();
  void read_stop();
  bool reading() const { return reading_; }
  LoopContext& context() const { return LoopContext::of(h_.handle.loop); }
  // Mostly idle streams (tunnels) give the cork buffer's memory back after each flush.
  void set_compact(bool compact) { compact_ = compact; }
  // Writes (or queues) the slices in order. Returns 0 or a uv error; on error nothing is queued
  // and the caller should close.
  int write(const Slice* slices, size_t count);
  int write(const Slice& s) { return write(&s, 1); }
  size_t queued() const { return queued_ + corked_bytes_; }
  bool above_high_watermark() const { return queued() > kHighWatermark; }
  // Writes the cork buffer now; true when nothing is left queued (the socket may be closed
  // without losing bytes).
  bool flush_now() {
    flush();
    return !closing_ && queued_ == 0;
  }
  // Sends FIN once every queued byte is written; reading continues (lingering close).
  void shutdown();
  // Idempotent. on_stream_closed() follows from the loop, never from inside close().
  void close();
  bool closing() const { return closing_; }
  // Non-blocking check that an idle connection has neither unread bytes nor a pending EOF.
  bool peek_clean() const;
  // The peer's IP address; empty for a Unix socket (or before the stream is open).
  std::string peer_ip() const;

 private:
  struct WriteReq;
  enum Kind { kUnopened, kTcp, kPipe };
  // Initialises the handle as `kind` (once); the loop pointer was stored by the constructor.
  int init_handle(Kind kind);
  uv_stream_t* stream() { return &h_.stream; }
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_connect(uv_connect_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_close(uv_handle_t* h);
  static void flush_task(void* self);
  int write_now(const Slice* slices, size_t count);
  void flush();
  // Plaintext out: encrypted first when TLS is on.
  int send(const Slice* slices, size_t count);
  // Ciphertext in: decrypted and handed to the handler.
  void filter_input(const Slice& data);
  // Writes the ciphertext a filter call produced; reports failures. False: the stream is done.
  bool filter_output(StreamFilter::Output& out);

  // One handle; which member is live says kind_. All begin with uv_handle_t's fields, so
  // h_.handle.loop and .data are valid whatever the kind (the loop is set before the init, so
  // context() works on a stream not opened yet; the loop's data is the LoopContext).
  // uv_pipe_t is 16 bytes larger than uv_tcp_t.
  union Handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h_;
  std::unique_ptr<StreamFilter> filter_;  // null without TLS: a plain stream pays one pointer
  StreamHandler* handler_;
  std::vector<Slice> cork_;
  size_t queued_ = 0;
  uint32_t corked_bytes_ = 0;  // bounded by the watermarks, far below 4 GiB
  // One byte of flags: every idle connection and WebSocket session has two streams.
  bool reading_ : 1 = false;
  bool closing_ : 1 = false;
  bool shutdown_ : 1 = false;
  bool cork_enabled_ : 1 = false;
  bool flush_scheduled_ : 1 = false;
  bool compact_ : 1 = false;
  Kind kind_ : 2 = kUnopened;
};

}  // namespace sluice
