// TcpStream and UpstreamPool over a Unix-domain socket (issue #16): a real uv_pipe_t server in a
// temporary directory on the test's loop, whose connections are TcpStreams too (accept() takes
// the listening handle's kind). Every test ends by closing every handle and asserting
// uv_loop_close() == 0.
#include <gtest/gtest.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/loop_context.h"
#include "net/tcp_stream.h"
#include "upstream/upstream_connection.h"
#include "upstream/upstream_pool.h"

namespace sluice {
namespace {

constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
constexpr std::string_view kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

Slice static_slice(std::string_view s) {
  return Slice{BlockRef(), s.data(), s.size()};
}

uint64_t now_ms() {
  return uv_hrtime() / 1000000;
}

// One accepted connection of the app: answers every request head with kResponse.
class AppConnection final : public StreamHandler {
 public:
  explicit AppConnection(LoopContext& ctx) : stream(ctx, this) {}
  TcpStream stream;
  std::string received;
  int requests = 0;
  bool eof = false;
  bool closed = false;

  void on_stream_read(const Slice& data) override {
    received.append(data.view());
    for (size_t end; (end = received.find("\r\n\r\n")) != std::string::npos;) {
      received.erase(0, end + 4);
      ++requests;
      EXPECT_EQ(stream.write(static_slice(kResponse)), 0);
    }
  }
  void on_stream_eof() override {
    eof = true;
    stream.close();
  }
  void on_stream_error(int) override { stream.close(); }
  void on_stream_closed() override { closed = true; }
};

// A client stream that records what happens to it.
class Recorder final : public StreamHandler {
 public:
  explicit Recorder(LoopContext& ctx) : stream(ctx, this) {}
  TcpStream stream;
  std::vector<int> connected;  // statuses
  std::string received;
  bool eof = false;
  int closed = 0;

  void on_stream_connected(int status) override { connected.push_back(status); }
  void on_stream_read(const Slice& data) override { received.append(data.view()); }
  void on_stream_eof() override { eof = true; }
  void on_stream_error(int) override { stream.close(); }
  void on_stream_closed() override { ++closed; }
};

// One exchange, reduced to what the pool sees.
class OneRequest final : public PoolClient, public UpstreamHandler {
 public:
  explicit OneRequest(UpstreamPool& pool) : pool_(pool) {}
  UpstreamConnection* conn = nullptr;
  std::vector<PoolFailure> failures;
  std::vector<UpstreamError> errors;
  int status = 0;
  std::string body;
  bool complete = false;

  UpstreamPool::Acquire start() {
    UpstreamConnection* c = nullptr;
    PoolFailure f{};
    UpstreamPool::Acquire r = pool_.acquire(this, false, &c, &f);
    if (r == UpstreamPool::Acquire::kReady) send(c);
    if (r == UpstreamPool::Acquire::kFailed) failures.push_back(f);
    return r;
  }
  bool done() const { return complete || !failures.empty() || !errors.empty(); }
  void release() {
    UpstreamConnection* c = conn;
    conn = nullptr;
    pool_.release(c);
  }

  void on_pool_ready(UpstreamSide* side) override { send(static_cast<UpstreamConnection*>(side)); }
  void on_pool_failure(PoolFailure f) override { failures.push_back(f); }
  void on_upstream_head(const MessageHead& head) override { status = head.status; }
  void on_upstream_body(const Slice& data) override { body.append(data.view()); }
  void on_upstream_trailers(const MessageHead&) override {}
  void on_upstream_complete() override { complete = true; }
  void on_upstream_error(UpstreamError e, bool) override {
    errors.push_back(e);
    conn = nullptr;
  }
  void on_upstream_drained() override {}
  void on_upstream_upgraded(const Slice&) override { ADD_FAILURE() << "unexpected upgrade"; }

 private:
  void send(UpstreamConnection* c) {
    conn = c;
    c->bind(this, /*head_request=*/false);
    EXPECT_EQ(c->send_head(static_slice(kRequest), Framing::kNone), 0);
  }
  UpstreamPool& pool_;
};

class UnixStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_.start_deferred();
    ASSERT_EQ(uv_timer_init(&loop_, &guard_), 0);
    char dir[] = "/tmp/sluice-unix-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/app.sock";
  }

  void TearDown() override {
    if (pool_) pool_->shutdown();
    for (auto& c : app_) c->stream.close();
    for (auto& r : recorders_) r->stream.close();
    if (listening_) uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks, then the deferred deletions
    ctx_.stop_deferred();
    uv_run(&loop_, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop_), 0);
    EXPECT_EQ(ctx_.blocks.outstanding(), 0u);
    for (auto& c : app_) EXPECT_TRUE(c->closed);
    for (auto& r : recorders_) EXPECT_EQ(r->closed, 1);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  // The app: a listening uv_pipe_t at path_, each connection a TcpStream accepted from it.
  void listen() {
    ASSERT_EQ(uv_pipe_init(&loop_, &server_, 0), 0);
    server_.data = this;
    listening_ = true;
    ASSERT_EQ(uv_pipe_bind(&server_, path_.c_str()), 0);
    ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 16,
                        [](uv_stream_t* s, int status) {
                          auto* self = static_cast<UnixStreamTest*>(s->data);
                          ASSERT_EQ(status, 0);
                          self->app_.push_back(std::make_unique<AppConnection>(self->ctx_));
                          TcpStream& stream = self->app_.back()->stream;
                          ASSERT_EQ(stream.accept(s), 0);
                          EXPECT_TRUE(stream.unix_socket());
                          stream.read_start();
                        }),
              0);
  }

  sockaddr_storage address(const std::string& path) const {
    sockaddr_storage ss{};
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    return ss;
  }

  Recorder& recorder() {
    recorders_.push_back(std::make_unique<Recorder>(ctx_));
    return *recorders_.back();
  }

  void make_pool(const std::string& path) {
    pool_ = std::make_unique<UpstreamPool>(ctx_, address(path), "unix:" + path, "unix:" + path,
                                           config_, stats_);
  }

  OneRequest& request() {
    requests_.push_back(std::make_unique<OneRequest>(*pool_));
    return *requests_.back();
  }

  template <typename Pred>
  bool run_until(Pred pred, uint64_t timeout_ms) {
    bool expired = false;
    guard_.data = &expired;
    uv_update_time(&loop_);
    uv_timer_start(
        &guard_, [](uv_timer_t* t) { *static_cast<bool*>(t->data) = true; }, timeout_ms, 0);
    const uint64_t hard_deadline = now_ms() + timeout_ms + 1000;
    while (!pred() && !expired && now_ms() < hard_deadline) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&guard_);
    return pred();
  }

  uv_loop_t loop_;
  LoopContext ctx_{&loop_, 1};
  uv_timer_t guard_;
  uv_pipe_t server_;
  bool listening_ = false;
  std::string dir_, path_;
  std::vector<std::unique_ptr<AppConnection>> app_;
  std::vector<std::unique_ptr<Recorder>> recorders_;
  ClusterConfig config_;
  ClusterStats stats_;
  std::unique_ptr<UpstreamPool> pool_;
  std::vector<std::unique_ptr<OneRequest>> requests_;  // outlive the pool's shutdown callbacks
};

TEST_F(UnixStreamTest, ConnectsWritesAndReadsBothWays) {
  listen();
  Recorder& r = recorder();
  sockaddr_storage ss = address(path_);
  ASSERT_EQ(r.stream.connect(reinterpret_cast<const sockaddr*>(&ss)), 0);
  EXPECT_TRUE(r.stream.unix_socket());
  ASSERT_TRUE(run_until([&] { return !r.connected.empty() && app_.size() == 1; }, 2000));
  EXPECT_EQ(r.connected, std::vector<int>{0});
  EXPECT_EQ(r.stream.peer_ip(), "");  // no IP address on a Unix socket
  r.stream.read_start();
  ASSERT_EQ(r.stream.write(static_slice(kRequest)), 0);
  ASSERT_TRUE(run_until([&] { return r.received.size() == kResponse.size(); }, 2000));
  EXPECT_EQ(r.received, kResponse);
  EXPECT_EQ(app_[0]->requests, 1);

  // Shutdown sends EOF; the app closes its end, and the client sees EOF in turn.
  r.stream.shutdown();
  ASSERT_TRUE(run_until([&] { return app_[0]->eof && r.eof; }, 2000));
  r.stream.close();
  r.stream.close();  // idempotent
  ASSERT_TRUE(run_until([&] { return r.closed == 1; }, 2000));
}

TEST_F(UnixStreamTest, PeekCleanSeesBytesAndEofOnAPipe) {
  listen();
  Recorder& r = recorder();
  sockaddr_storage ss = address(path_);
  ASSERT_EQ(r.stream.connect(reinterpret_cast<const sockaddr*>(&ss)), 0);
  ASSERT_TRUE(run_until([&] { return !r.connected.empty() && app_.size() == 1; }, 2000));
  EXPECT_TRUE(r.stream.peek_clean());  // idle, nothing unread
  // Bytes the client has not read: not clean (a pooled connection must not be handed out).
  ASSERT_EQ(app_[0]->stream.write(static_slice("x")), 0);
  ASSERT_TRUE(run_until([&] { return !r.stream.peek_clean(); }, 2000));
  r.stream.read_start();
  ASSERT_TRUE(run_until([&] { return r.received == "x"; }, 2000));
  EXPECT_TRUE(r.stream.peek_clean());
  r.stream.read_stop();
  // The app closes: the pending EOF makes it unclean too.
  app_[0]->stream.close();
  ASSERT_TRUE(run_until([&] { return !r.stream.peek_clean(); }, 2000));
}

TEST_F(UnixStreamTest, MissingSocketIsAFailedConnect) {
  Recorder& r = recorder();
  sockaddr_storage ss = address(dir_ + "/missing.sock");
  ASSERT_EQ(r.stream.connect(reinterpret_cast<const sockaddr*>(&ss)), 0);  // errors come later
  ASSERT_TRUE(run_until([&] { return !r.connected.empty(); }, 2000));
  EXPECT_EQ(r.connected, std::vector<int>{UV_ENOENT});
  r.stream.close();
}

TEST_F(UnixStreamTest, ClosedBeforeOpeningStillReportsClosedFromTheLoop) {
  Recorder& r = recorder();
  r.stream.close();
  EXPECT_EQ(r.closed, 0);  // never from inside close()
  EXPECT_EQ(r.stream.write(static_slice("x")), UV_EPIPE);
  ASSERT_TRUE(run_until([&] { return r.closed == 1; }, 2000));
}

TEST_F(UnixStreamTest, PoolReusesOneConnectionAndSendsHostLocalhost) {
  listen();
  make_pool(path_);
  EXPECT_EQ(pool_->host(), "localhost");  // the Host of HTTP/1.0 requests: a path is none
  EXPECT_EQ(pool_->name(), "unix:" + path_);
  UpstreamConnection* first = nullptr;
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    OneRequest& q = request();
    UpstreamPool::Acquire a = q.start();
    EXPECT_EQ(a, i == 0 ? UpstreamPool::Acquire::kQueued : UpstreamPool::Acquire::kReady);
    ASSERT_TRUE(run_until([&] { return q.done(); }, 2000));
    ASSERT_TRUE(q.complete);
    EXPECT_EQ(q.status, 200);
    EXPECT_EQ(q.body, "hello\n");
    if (i == 0) first = q.conn;
    EXPECT_EQ(q.conn, first);
    q.release();
    EXPECT_EQ(pool_->idle_count(), 1u);
  }
  EXPECT_EQ(pool_->connections_created(), 1u);
  EXPECT_EQ(app_.size(), 1u);
  EXPECT_EQ(app_[0]->requests, 5);
}

TEST_F(UnixStreamTest, PoolFailsARequestToAMissingSocketAsRefused) {
  make_pool(path_);  // nothing listens there yet
  OneRequest& q = request();
  EXPECT_EQ(q.start(), UpstreamPool::Acquire::kQueued);
  // The cluster's only address: retried after backoffs (50, 100, 200 ms), then failed.
  ASSERT_TRUE(run_until([&] { return q.done(); }, 5000));
  EXPECT_EQ(q.failures, std::vector<PoolFailure>{PoolFailure::kConnectRefused});
  EXPECT_GE(stats_.connect_failures.get(), 1u);

  // The app creates its socket at that path: the next request connects.
  listen();
  OneRequest& later = request();
  later.start();
  ASSERT_TRUE(run_until([&] { return later.done(); }, 5000));
  EXPECT_TRUE(later.complete);
  EXPECT_EQ(later.status, 200);
  later.release();
}

}  // namespace
}  // namespace sluice
