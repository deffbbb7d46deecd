// Http2UpstreamPool's state machine against a real HTTP/2 server: a small nghttp2 server on the
// same loop (127.0.0.1:0) whose stream limit, held responses and GOAWAY the tests control. Each
// test drives requests the way Exchange does (acquire_side → bind → send_head → send_end →
// complete → release) and checks the pool's connections, streams and counters; tear-down
// closes everything and asserts uv_loop_close() == 0.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/loop_context.h"
#include "upstream/http2_upstream_pool.h"
#include "upstream/upstream_pool.h"

namespace sluice {
namespace {

uint64_t now_ms() {
  return uv_hrtime() / 1000000;
}

// The test server: one nghttp2 server session per accepted connection.
class H2Server {
 public:
  struct Conn {
    H2Server* server;
    uv_tcp_t tcp;
    nghttp2_session* session = nullptr;
    std::vector<int32_t> held;       // streams whose response waits for release_held()
    std::string path;                // of the header block being received
    std::vector<std::string> paths;  // of every request, in order
    bool closed = false;
    bool reading = false;
  };

  // `window`: the stream and connection windows the server grants (0: nghttp2's 64 KiB);
  // `read`: whether it reads what its clients send (resume_reading() starts it later).
  H2Server(uv_loop_t* loop, uint32_t max_streams, int32_t window = 0, bool read = true)
      : loop_(loop), max_streams_(max_streams), window_(window), read_(read) {
    uv_tcp_init(loop, &listener_);
    listener_.data = this;
    sockaddr_in a{};
    uv_ip4_addr("127.0.0.1", 0, &a);
    EXPECT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&a), 0), 0);
    EXPECT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, &H2Server::on_accept), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }

  void close() {  // idempotent
    if (closed_) return;
    closed_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    for (auto& c : conns) close_conn(c.get());
  }

  // Answers every held stream.
  void release_held() {
    for (auto& c : conns) {
      if (c->closed) continue;
      for (int32_t id : c->held) respond(c.get(), id);
      c->held.clear();
      flush(c.get());
    }
  }

  // GOAWAY on every connection naming `last` as the last stream processed.
  void goaway(int32_t last) {
    for (auto& c : conns) {
      if (c->closed) continue;
      nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0);
      flush(c.get());
    }
  }

  size_t open_connections() const {
    size_t n = 0;
    for (auto& c : conns) n += !c->closed;
    return n;
  }

  int port = 0;
  std::vector<std::unique_ptr<Conn>> conns;

 private:
  static void on_accept(uv_stream_t* l, int status) {
    auto* self = static_cast<H2Server*>(l->data);
    if (status != 0) return;
    auto c = std::make_unique<Conn>();
    c->server = self;
    uv_tcp_init(self->loop_, &c->tcp);
    c->tcp.data = c.get();
    if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), nullptr);
      c->closed = true;
      self->conns.push_back(std::move(c));
      return;
    }
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &H2Server::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2Server::on_frame_recv);
    nghttp2_session_server_new(&c->session, cb, c.get());
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, self->max_streams_},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
         static_cast<uint32_t>(self->window_ ? self->window_ : NGHTTP2_INITIAL_WINDOW_SIZE)}};
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
    if (self->window_)
      nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, self->window_);
    if (self->read_) start_reading(c.get());
    self->flush(c.get());
    self->conns.push_back(std::move(c));
  }

  static void start_reading(Conn* c) {
    c->reading = true;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* b) {
          static char buf[65536];
          *b = uv_buf_init(buf, sizeof buf);
        },
        &H2Server::on_read);
  }

 public:
  // Starts reading on the connections that do not read yet.
  void resume_reading() {
    for (auto& c : conns)
      if (!c->closed && !c->reading) start_reading(c.get());
  }

 private:
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Conn*>(s->data);
    if (n < 0) {
      c->server->close_conn(c);
      return;
    }
    if (n == 0 || c->closed) return;
    if (nghttp2_session_mem_recv(c->session, reinterpret_cast<const uint8_t*>(buf->base),
                                 static_cast<size_t>(n)) < 0) {
      c->server->close_conn(c);
      return;
    }
    c->server->flush(c);
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* c = static_cast<Conn*>(user);
    if (f->hd.type == NGHTTP2_HEADERS &&
        std::string_view(reinterpret_cast<const char*>(name), namelen) == ":path") {
      c->path.assign(reinterpret_cast<const char*>(value), valuelen);
      c->paths.push_back(c->path);
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* user) {
    auto* c = static_cast<Conn*>(user);
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (c->path == "/hold") {
        c->held.push_back(f->hd.stream_id);
      } else {
        c->server->respond(c, f->hd.stream_id);
      }
    }
    return 0;
  }

  void respond(Conn* c, int32_t id) {
    static uint8_t status[] = ":status", ok[] = "200";
    nghttp2_nv nv = {status, ok, 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_response(c->session, id, &nv, 1, nullptr);
  }

  void flush(Conn* c) {
    if (c->closed) return;
    for (;;) {
      const uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(c->session, &p);
      if (n <= 0) break;
      auto* req = new uv_write_t;
      char* copy = new char[static_cast<size_t>(n)];
      std::memcpy(copy, p, static_cast<size_t>(n));
      req->data = copy;
      uv_buf_t b = uv_buf_init(copy, static_cast<unsigned>(n));
      if (uv_write(req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, [](uv_write_t* r, int) {
            delete[] static_cast<char*>(r->data);
            delete r;
          }) != 0) {
        delete[] copy;
        delete req;
        break;
      }
    }
  }

  void close_conn(Conn* c) {
    if (c->closed) return;
    c->closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), nullptr);
    nghttp2_session_del(c->session);
    c->session = nullptr;
  }

  uv_loop_t* loop_;
  uv_tcp_t listener_;
  uint32_t max_streams_;
  int32_t window_;
  bool read_;
  bool closed_ = false;
};

// One exchange, reduced to what the pool sees.
class Client final : public PoolClient, public UpstreamHandler {
 public:
  Client(UpstreamPool& pool, std::string path) : pool_(pool), path_(std::move(path)) {}
  UpstreamSource::Acquire acquire() {
    UpstreamSide* s = nullptr;
    PoolFailure f{};
    UpstreamSource::Acquire r = pool_.acquire_side(this, false, &s, &f);
    if (r == UpstreamSource::Acquire::kReady) send(s);
    if (r == UpstreamSource::Acquire::kFailed) failures.push_back(f);
    return r;
  }
  void on_pool_ready(UpstreamSide* s) override { send(s); }
  void on_pool_failure(PoolFailure f) override { failures.push_back(f); }
  void on_upstream_head(const MessageHead& h) override { status = h.status; }
  void on_upstream_body(const Slice&) override {}
  void on_upstream_trailers(const MessageHead&) override {}
  void on_upstream_complete() override {
    ++completed;
    UpstreamSide* s = side;
    side = nullptr;
    s->release(true);
  }
  void on_upstream_error(UpstreamError e, bool) override {
    side = nullptr;
    errors.push_back(e);
  }
  void on_upstream_drained() override {}
  void on_upstream_upgraded(const Slice&) override { ADD_FAILURE() << "upgrade"; }

  // A request body of pieces of this size (0: no body; send_end is the test's).
  int push_body() {
    static const std::string piece(1024 * 1024, 'b');
    return side->send_body(Slice{BlockRef(), piece.data(), std::min(body_bytes, piece.size())});
  }

  UpstreamSide* side = nullptr;
  size_t body_bytes = 0;
  uint64_t response_timeout_ms = 10000;
  int status = 0;
  int completed = 0;
  std::vector<UpstreamError> errors;
  std::vector<PoolFailure> failures;

 private:
  void send(UpstreamSide* s) {
    side = s;
    s->bind(this, false);
    if (body_bytes) {
      head_ = "POST " + path_ + " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
      EXPECT_EQ(s->send_head(Slice{BlockRef(), head_.data(), head_.size()}, Framing::kChunked), 0);
      return;
    }
    head_ = "GET " + path_ + " HTTP/1.1\r\nHost: t\r\n\r\n";
    EXPECT_EQ(s->send_head(Slice{BlockRef(), head_.data(), head_.size()}, Framing::kNone), 0);
    EXPECT_EQ(s->send_end(Slice()), 0);
    s->expect_response(response_timeout_ms);
  }
  UpstreamPool& pool_;
  std::string path_, head_;
};

class Http2UpstreamPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_.start_deferred();
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
  }
  void TearDown() override {
    // The clients outlive the pool's shutdown, which fails what still waits or is bound.
    if (pool_) pool_->shutdown();
    if (server_) server_->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    ctx_.stop_deferred();
    uv_run(&loop_, UV_RUN_DEFAULT);
    pool_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    clients_.clear();
    ASSERT_EQ(uv_loop_close(&loop_), 0);
    EXPECT_EQ(ctx_.blocks.outstanding(), 0u);
    EXPECT_EQ(stats_.upstream_streams_active.get(), 0u);
  }
  void start(uint32_t max_streams, PoolSettings settings = PoolSettings(), int32_t window = 0,
             bool read = true) {
    server_ = std::make_unique<H2Server>(&loop_, max_streams, window, read);
    sockaddr_storage a{};
    uv_ip4_addr("127.0.0.1", server_->port, reinterpret_cast<sockaddr_in*>(&a));
    config_.protocol = UpstreamProtocol::kH2c;
    config_.pool = settings;
    pool_ = std::make_unique<UpstreamPool>(ctx_, a, "t:1", "t:1", config_, stats_);
    ASSERT_NE(pool_->http2(), nullptr);
  }
  Client& client(const std::string& path) {
    clients_.push_back(std::make_unique<Client>(*pool_, path));
    return *clients_.back();
  }
  template <typename Pred>
  bool run_until(Pred pred, uint64_t timeout_ms = 5000) {
    bool expired = false;
    guard_.data = &expired;
    uv_update_time(&loop_);
    uv_timer_start(
        &guard_, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, timeout_ms, 0);
    const uint64_t hard = now_ms() + timeout_ms + 1000;
    while (!pred() && !expired && now_ms() < hard) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard_);
    return pred();
  }

  uv_loop_t loop_;
  LoopContext ctx_{&loop_, 1};
  uv_timer_t guard_;
  ClusterConfig config_;
  ClusterStats stats_;
  std::unique_ptr<H2Server> server_;
  std::unique_ptr<UpstreamPool> pool_;
  std::vector<std::unique_ptr<Client>> clients_;
};

// Streams fill each connection up to the server's limit; a new connection opens only for the
// waiters the full ones cannot take.
TEST_F(Http2UpstreamPoolTest, StreamsFillConnectionsUpToTheServersLimit) {
  start(2);
  std::vector<Client*> cs;
  for (int i = 0; i < 5; ++i) {
    cs.push_back(&client("/hold"));
    EXPECT_EQ(cs.back()->acquire(), UpstreamSource::Acquire::kQueued);
  }
  Http2UpstreamPool& h2 = *pool_->http2();
  ASSERT_TRUE(run_until([&] { return h2.active_streams() == 5; }));
  EXPECT_EQ(h2.open_count(), 3u);  // 2 + 2 + 1
  EXPECT_EQ(stats_.upstream_streams_active.get(), 5u);
  EXPECT_EQ(stats_.active_connections.get(), 3u);
  // A sixth waits: the third connection has room for one more.
  Client& sixth = client("/hold");
  EXPECT_EQ(sixth.acquire(), UpstreamSource::Acquire::kReady);
  EXPECT_EQ(h2.open_count(), 3u);
  ASSERT_TRUE(run_until([&] {
    size_t held = 0;
    for (auto& c : server_->conns) held += c->held.size();
    return held == 6;
  }));
  server_->release_held();
  ASSERT_TRUE(run_until([&] {
    for (auto& c : clients_)
      if (c->completed != 1) return false;
    return true;
  }));
  for (auto& c : clients_) EXPECT_EQ(c->status, 200);
  ASSERT_TRUE(run_until([&] { return h2.active_streams() == 0; }));
  EXPECT_EQ(stats_.idle_connections.get(), 3u);
  EXPECT_EQ(stats_.active_connections.get(), 0u);
  EXPECT_EQ(stats_.connections_created.get(), 3u);
  // The next request reuses a connection.
  Client& again = client("/x");
  EXPECT_EQ(again.acquire(), UpstreamSource::Acquire::kReady);
  EXPECT_TRUE(again.side->reused());
  ASSERT_TRUE(run_until([&] { return again.completed == 1; }));
}

// GOAWAY: streams above the last stream id fail as never processed; the one below it finishes;
// no new stream goes onto that connection.
TEST_F(Http2UpstreamPoolTest, GoawayFailsStreamsAboveTheLastOneAsUnprocessed) {
  start(100);
  Client& a = client("/hold");
  Client& b = client("/hold");
  Client& c = client("/hold");
  a.acquire();
  ASSERT_TRUE(run_until([&] { return pool_->http2()->active_streams() == 1; }));
  b.acquire();
  c.acquire();
  ASSERT_TRUE(
      run_until([&] { return !server_->conns.empty() && server_->conns[0]->held.size() == 3; }));
  server_->goaway(1);  // stream 1 (a) was processed; 3 and 5 were not
  ASSERT_TRUE(run_until([&] { return b.errors.size() == 1 && c.errors.size() == 1; }));
  EXPECT_EQ(b.errors[0], UpstreamError::kUnprocessed);
  EXPECT_EQ(c.errors[0], UpstreamError::kUnprocessed);
  EXPECT_EQ(stats_.upstream_goaways.get(), 1u);
  // A new request needs a new connection.
  Client& d = client("/x");
  EXPECT_EQ(d.acquire(), UpstreamSource::Acquire::kQueued);
  ASSERT_TRUE(run_until([&] { return d.completed == 1; }));
  server_->release_held();
  ASSERT_TRUE(run_until([&] { return a.completed == 1; }));
  EXPECT_EQ(a.status, 200);
  // The connection that went away closes with its last stream.
  ASSERT_TRUE(run_until([&] { return pool_->http2()->open_count() == 1; }));
}

// A connection without streams closes after pool.idle_timeout.
TEST_F(Http2UpstreamPoolTest, IdleConnectionCloses) {
  PoolSettings s;
  s.idle_timeout = Millis(100);
  start(100, s);
  Client& a = client("/x");
  a.acquire();
  ASSERT_TRUE(run_until([&] { return a.completed == 1; }));
  EXPECT_EQ(pool_->http2()->open_count(), 1u);
  ASSERT_TRUE(run_until([&] { return pool_->http2()->open_count() == 0; }, 3000));
  ASSERT_TRUE(run_until([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(stats_.idle_connections.get(), 0u);
}

// A refused connect on the only address is retried after a backoff, then the waiters fail.
TEST_F(Http2UpstreamPoolTest, RefusedConnectsFailTheWaitersAfterTheRetries) {
  start(100);
  server_->close();  // nothing listens there any more
  uv_run(&loop_, UV_RUN_NOWAIT);
  Client& a = client("/x");
  EXPECT_EQ(a.acquire(), UpstreamSource::Acquire::kQueued);
  ASSERT_TRUE(run_until([&] { return !a.failures.empty(); }));
  EXPECT_EQ(a.failures[0], PoolFailure::kConnectRefused);
  EXPECT_EQ(stats_.connect_retries.get(), 3u);
}

// The upstream connection stops reading its socket while its own write queue is above the high
// watermark (a server that does not read what it is sent is not read either, as a client is
// not), and reads again once the queue drains.
TEST_F(Http2UpstreamPoolTest, StopsReadingWhileItsWriteQueueIsAboveTheHighWatermark) {
  // Windows so large that only the socket holds the body back; a server that reads nothing.
  start(100, PoolSettings(), (1 << 30), /*read=*/false);
  Client& c = client("/upload");
  c.body_bytes = 1024 * 1024;
  c.acquire();
  ASSERT_TRUE(run_until([&] { return c.side != nullptr; }));
  auto* stream = static_cast<Http2UpstreamStream*>(c.side);
  Http2UpstreamConnection& conn = stream->connection();
  // Body in 1 MiB pieces (as an exchange sends it: while the stream's queue is under the
  // watermark) until nothing moves: the kernel's buffers are full, then the connection's queue.
  size_t pushed = 0;
  bool stuck = false;
  // Within the PING deadline (10 s of silence, then 5 s): a server that reads nothing for
  // longer is taken for dead.
  for (int round = 0; round < 40 && !stuck; ++round) {
    ASSERT_NE(c.side, nullptr);
    while (stream->queued() < TcpStream::kHighWatermark && pushed < (256u << 20)) {
      ASSERT_EQ(c.push_body(), 0);
      pushed += c.body_bytes;
    }
    const size_t queued = stream->queued();
    const bool paused = conn.input_paused();
    run_until([] { return false; }, 200);
    stuck = paused && conn.input_paused() && stream->queued() == queued;
  }
  ASSERT_TRUE(stuck);
  EXPECT_EQ(c.side->send_end(Slice()), 0);
  run_until([] { return false; }, 100);
  EXPECT_TRUE(conn.input_paused());
  EXPECT_EQ(c.completed, 0);
  // The server reads: the queue drains, reading resumes and the response arrives.
  server_->resume_reading();
  ASSERT_TRUE(run_until([&] { return c.completed == 1; }, 20000));
  EXPECT_EQ(c.status, 200);
  EXPECT_TRUE(c.errors.empty());
  ASSERT_TRUE(run_until([&] { return pool_->http2()->active_streams() == 0; }));
  ASSERT_EQ(pool_->http2()->open_count(), 1u);
  EXPECT_FALSE(conn.input_paused());
}

// A stream whose exchange is done is kept by its connection and serves a later request as new:
// its response, its completion and its response timeout are that request's own.
TEST_F(Http2UpstreamPoolTest, FinishedStreamsServeLaterRequestsAsNew) {
  start(100);
  Client& a = client("/x");
  a.acquire();
  ASSERT_TRUE(run_until([&] { return a.completed == 1; }));
  const UpstreamSide* first = nullptr;
  Client& b = client("/x");
  // Once the sweep has run (a later loop turn), the next request gets a kept stream.
  run_until([] { return false; }, 50);
  EXPECT_EQ(b.acquire(), UpstreamSource::Acquire::kReady);
  first = b.side;
  EXPECT_TRUE(b.side->reused());
  ASSERT_TRUE(run_until([&] { return b.completed == 1; }));
  EXPECT_EQ(b.status, 200);
  run_until([] { return false; }, 50);
  // The same object again, now for a response that does not come in time.
  Client& c = client("/hold");
  c.response_timeout_ms = 100;
  EXPECT_EQ(c.acquire(), UpstreamSource::Acquire::kReady);
  EXPECT_EQ(c.side, first);
  ASSERT_TRUE(run_until([&] { return !c.errors.empty(); }));
  EXPECT_EQ(c.errors[0], UpstreamError::kResponseTimeout);
  EXPECT_EQ(c.completed, 0);
  EXPECT_EQ(c.status, 0);
  // And again, answered.
  run_until([] { return false; }, 50);
  Client& d = client("/x");
  EXPECT_EQ(d.acquire(), UpstreamSource::Acquire::kReady);
  ASSERT_TRUE(run_until([&] { return d.completed == 1; }));
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(a.errors.size() + b.errors.size() + d.errors.size(), 0u);
}

// Requests submitted in the same loop turn leave in one send pass: each HEADERS frame carries its
// own request's fields (nghttp2 does not copy them; each stream keeps its own).
TEST_F(Http2UpstreamPoolTest, RequestsSubmittedTogetherKeepTheirOwnFields) {
  start(100);
  Client& a = client("/first");
  a.acquire();
  ASSERT_TRUE(run_until([&] { return a.completed == 1; }));
  std::vector<Client*> cs;
  for (const char* p : {"/a", "/bb", "/ccc", "/dddd"}) {
    cs.push_back(&client(p));
    EXPECT_EQ(cs.back()->acquire(), UpstreamSource::Acquire::kReady);
  }
  ASSERT_TRUE(run_until([&] {
    for (Client* c : cs)
      if (c->completed != 1) return false;
    return true;
  }));
  ASSERT_EQ(server_->conns.size(), 1u);
  EXPECT_EQ(server_->conns[0]->paths,
            (std::vector<std::string>{"/first", "/a", "/bb", "/ccc", "/dddd"}));
}

}  // namespace
}  // namespace sluice
