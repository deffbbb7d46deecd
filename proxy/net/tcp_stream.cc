#include "net/tcp_stream.h"

#include <cstdlib>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace sluice {

struct TcpStream::WriteReq {
  uv_write_t req;
  TcpStream* stream;
  size_t bytes;
  // Keep the blocks alive until the kernel has the bytes. Small inline capacity covers
  // head + body + chunk framing without a second allocation.
  static constexpr size_t kInline = 4;
  Slice inline_slices[kInline];
  std::vector<Slice> more;
};

TcpStream::TcpStream(LoopContext& ctx, StreamHandler* handler, bool cork)
    : handler_(handler), cork_enabled_(cork) {
  if (ctx.loop->data != &ctx) std::abort();  // context() finds it there: one per loop
  std::memset(&h_, 0, sizeof h_);
  h_.handle.loop = ctx.loop;  // until the init: for context()
  h_.handle.data = this;
}

int TcpStream::init_handle(Kind kind) {
  if (kind_ != kUnopened) return UV_EALREADY;
  uv_loop_t* loop = h_.handle.loop;
  // Neither creates a socket, so neither fails for these arguments; checked all the same.
  int r = kind == kPipe ? uv_pipe_init(loop, &h_.pipe, /*ipc=*/0) : uv_tcp_init(loop, &h_.tcp);
  if (r != 0) return r;
  h_.handle.data = this;
  kind_ = kind;
  return 0;
}

int TcpStream::accept(uv_stream_t* server) {
  int r = init_handle(server->type == UV_NAMED_PIPE ? kPipe : kTcp);
  if (r != 0) return r;
  r = uv_accept(server, stream());
  if (r == 0 && kind_ == kTcp) uv_tcp_nodelay(&h_.tcp, 1);
  return r;
}

int TcpStream::open(int fd) {
  int r = init_handle(kTcp);
  if (r != 0) return r;
  r = uv_tcp_open(&h_.tcp, fd);
  if (r == 0) uv_tcp_nodelay(&h_.tcp, 1);
  return r;
}

int TcpStream::connect(const sockaddr* addr) {
  const bool unix_socket = addr->sa_family == AF_UNIX;
  int r = init_handle(unix_socket ? kPipe : kTcp);
  if (r != 0) return r;
  auto* req = new uv_connect_t;
  req->data = this;
  if (unix_socket) {
    // sun_path need not be terminated when the path fills it: copy it out, bounded.
    const auto* un = reinterpret_cast<const sockaddr_un*>(addr);
    char path[sizeof un->sun_path + 1];
    std::memcpy(path, un->sun_path, sizeof un->sun_path);
    path[sizeof un->sun_path] = '\0';
    // Returns nothing: every error, even a synchronous one, comes to on_connect.
    uv_pipe_connect(req, &h_.pipe, path, &TcpStream::on_connect);
    return 0;
  }
  r = uv_tcp_connect(req, &h_.tcp, addr, &TcpStream::on_connect);
  if (r != 0) {
    delete req;
    return r;
  }
  uv_tcp_nodelay(&h_.tcp, 1);
  return 0;
}

void TcpStream::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->data);
  delete req;  // always called, before the close callback, even when cancelled
  if (status == UV_ECANCELED || self->closing_) return;
  if (status == 0 && self->filter_) {
    // The handler hears of the connection once the handshake is done (tls_input).
    StreamFilter::Output out;
    self->filter_->start_handshake(out);
    if (self->filter_output(out)) self->read_start();
    return;
  }
  self->handler_->on_stream_connected(status);
}

const std::string& TcpStream::tls_error() const {
  static const std::string kNone;
  return filter_ ? filter_->error() : kNone;
}

void TcpStream::filter_input(const Slice& data) {
  StreamFilter::Output out;
  const bool was_done = filter_->handshake_done();
  filter_->feed(data.data, data.len, out);
  if (!filter_output(out)) return;
  if (out.handshake_done && !was_done) {
    if (filter_->server_side()) {
      handler_->on_stream_secure();
    } else {
      handler_->on_stream_connected(0);  // client side: now the pool may use it
    }
    if (closing_) return;
  }
  for (const Slice& s : out.plaintext) {
    handler_->on_stream_read(s);
    if (closing_) return;
  }
  if (out.peer_closed) {
    read_stop();
    handler_->on_stream_eof();
  }
}

bool TcpStream::filter_output(StreamFilter::Output& out) {
  if (!out.ciphertext.empty()) {
    int r = write_now(out.ciphertext.data(), out.ciphertext.size());
    if (r != 0 && !out.failed) {
      read_stop();
      handler_->on_stream_error(r);
      return false;
    }
  }
  if (out.failed) {
    filter_->set_error(out.error);
    read_stop();
    if (!filter_->handshake_done() && !filter_->server_side()) {
      handler_->on_stream_connected(kTlsFailed);  // client handshake: a failed connect
    } else {
      handler_->on_stream_error(kTlsFailed);
    }
    return false;
  }
  return !closing_;
}

void TcpStream::read_start() {
  if (reading_ || closing_ || kind_ == kUnopened) return;
  int r = uv_read_start(stream(), &TcpStream::on_alloc, &TcpStream::on_read);
  if (r == 0) reading_ = true;
}

void TcpStream::read_stop() {
  if (!reading_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void TcpStream::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(h->data);
  LoopContext& ctx = self->context();
  ctx.read_block = ctx.blocks.get();
  buf->base = ctx.read_block->data();
  buf->len = ctx.read_block->capacity;
}

void TcpStream::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  BlockRef block = std::move(self->context().read_block);
  if (self->closing_) return;
  if (nread > 0) {
    Slice slice{std::move(block), buf->base, static_cast<size_t>(nread)};
    if (self->filter_) {
      self->filter_input(slice);
    } else {
      self->handler_->on_stream_read(slice);
    }
  } else if (nread == UV_EOF) {
    self->read_stop();
    self->handler_->on_stream_eof();
  } else if (nread < 0) {
    self->read_stop();
    self->handler_->on_stream_error(static_cast<int>(nread));
  }
}

int TcpStream::write(const Slice* slices, size_t count) {
  if (closing_ || shutdown_) return UV_EPIPE;
  if (cork_enabled_) {
    for (size_t i = 0; i < count; ++i) {
      if (slices[i].len == 0) continue;
      cork_.push_back(slices[i]);
      corked_bytes_ += static_cast<uint32_t>(slices[i].len);
    }
    if (!flush_scheduled_ && corked_bytes_) {
      flush_scheduled_ = true;
      context().defer(&TcpStream::flush_task, this);
    }
    return 0;
  }
  return send(slices, count);
}

int TcpStream::send(const Slice* slices, size_t count) {
  if (!filter_) return write_now(slices, count);
  StreamFilter::Output out;
  filter_->encrypt(slices, count, out);
  if (out.failed) {
    filter_->set_error(out.error);
    return kTlsFailed;
  }
  return write_now(out.ciphertext.data(), out.ciphertext.size());
}

void TcpStream::flush_task(void* p) {
  auto* self = static_cast<TcpStream*>(p);
  self->flush_scheduled_ = false;
  self->flush();
}

void TcpStream::flush() {
  if (cork_.empty()) return;
  // A source may be waiting for the queue to fall to the low watermark (it stopped above the
  // high one, and a write callback may have come while these bytes were corked). If the kernel
  // takes them now, no write callback will say so: signal the drain here.
  const bool was_above_low = queued() > kLowWatermark;
  std::vector<Slice> out;
  out.swap(cork_);
  corked_bytes_ = 0;
  if (closing_) return;
  int r = send(out.data(), out.size());
  out.clear();
  if (cork_.empty() && !compact_) cork_.swap(out);  // keep the capacity for the next turn
  if (r != 0) {
    handler_->on_stream_error(r);
  } else if (was_above_low && queued_ <= kLowWatermark) {
    handler_->on_stream_drained();
  }
}

int TcpStream::write_now(const Slice* slices, size_t count) {
  uv_buf_t stack_bufs[8];
  std::vector<uv_buf_t> heap_bufs;
  uv_buf_t* bufs = stack_bufs;
  if (count > 8) {
    heap_bufs.resize(count);
    bufs = heap_bufs.data();
  }
  size_t total = 0;
  size_t n = 0;
  for (size_t i = 0; i < count; ++i) {
    if (slices[i].len == 0) continue;
    bufs[n++] =
        uv_buf_init(const_cast<char*>(slices[i].data), static_cast<unsigned>(slices[i].len));
    total += slices[i].len;
  }
  if (total == 0) return 0;
  if (kind_ == kUnopened) return UV_ENOTCONN;

  size_t written = 0;
  if (queued_ == 0) {
    int r = uv_try_write(stream(), bufs, static_cast<unsigned>(n));
    if (r >= 0) {
      written = static_cast<size_t>(r);
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      return r;
    }
    if (written == total) return 0;
  }

  // Queue what the kernel did not take, keeping each slice's block alive.
  auto* req = new WriteReq;
  req->req.data = req;
  req->stream = this;
  req->bytes = total - written;
  size_t skip = written;
  size_t first = 0;
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    if (skip >= bufs[i].len) {
      skip -= bufs[i].len;
      ++first;
      continue;
    }
    bufs[i].base += skip;
    bufs[i].len -= skip;
    skip = 0;
    break;
  }
  for (size_t i = 0; i < count; ++i) {
    if (slices[i].len == 0) continue;
    if (kept < WriteReq::kInline) {
      req->inline_slices[kept].block = slices[i].block;
    } else {
      req->more.push_back(Slice{slices[i].block, nullptr, 0});
    }
    ++kept;
  }
  int r = uv_write(&req->req, stream(), bufs + first, static_cast<unsigned>(n - first),
                   &TcpStream::on_write);
  if (r != 0) {
    delete req;
    return r;
  }
  queued_ += req->bytes;
  return 0;
}

void TcpStream::on_write(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  TcpStream* self = w->stream;
  self->queued_ -= w->bytes;
  delete w;
  if (self->closing_ || status == UV_ECANCELED) return;
  if (status < 0) {
    self->handler_->on_stream_error(status);
    return;
  }
  if (self->queued_ <= kLowWatermark) self->handler_->on_stream_drained();
}

void TcpStream::shutdown() {
  if (closing_ || shutdown_) return;
  if (kind_ == kUnopened) {
    close();  // nothing was ever sent
    return;
  }
  flush();
  if (closing_) return;
  if (filter_ && filter_->handshake_done()) {
    // close_notify first, so the peer can tell a complete response from a cut one.
    StreamFilter::Output out;
    filter_->close_notify(out);
    if (!out.ciphertext.empty() && write_now(out.ciphertext.data(), out.ciphertext.size()) != 0) {
      close();
      return;
    }
  }
  shutdown_ = true;
  auto* req = new uv_shutdown_t;
  req->data = this;
  int r = uv_shutdown(req, stream(), &TcpStream::on_shutdown);
  if (r != 0) {
    delete req;
    close();
  }
}

void TcpStream::on_shutdown(uv_shutdown_t* req, int status) {
  // Nothing else to do: the owner keeps reading until EOF or its linger timer, then closes.
  delete req;
}

void TcpStream::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  cork_.clear();
  corked_bytes_ = 0;
  // Never opened: a TCP handle without a socket (nothing to fail) just to close it, so that
  // on_stream_closed() comes from the loop as always.
  if (kind_ == kUnopened && init_handle(kTcp) != 0) std::abort();
  uv_close(&h_.handle, &TcpStream::on_close);
}

void TcpStream::on_close(uv_handle_t* h) {
  auto* self = static_cast<TcpStream*>(h->data);
  self->handler_->on_stream_closed();
}

bool TcpStream::peek_clean() const {
  uv_os_fd_t fd;
  // The same for a Unix socket: recv(MSG_PEEK) on its descriptor.
  if (closing_ || kind_ == kUnopened || uv_fileno(&h_.handle, &fd) != 0) return false;
  char c;
  ssize_t r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (filter_ && filter_->has_pending()) return false;
  return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::string TcpStream::peer_ip() const {
  if (kind_ != kTcp) return "";
  sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&h_.tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char ip[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), ip, sizeof ip);
  }
  return ip;
}

}  // namespace sluice
