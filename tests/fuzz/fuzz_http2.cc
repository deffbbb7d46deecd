// The HTTP/2 server session: frames from a client (after the connection preface, which the
// target adds) → Http2Connection in reads cut by the input, through a fake transport and fake
// upstream sides (no socket), the way tests/unit/http2_connection_test.cc drives it. Each
// request that reaches an upstream side may be answered, so responses, DATA and the data
// provider run too.
//
// Input: [split control byte][flags byte][frames...]
//   split control: see Splitter; flags: bit 0 the upstream answers each request (200 with a
//   small body) after the read that sent it; bit 1 the socket is congested every other read
//   (frames wait, reading pauses); bit 2 small limits (4 concurrent streams, 5 stream errors,
//   a 1 KiB header list, 8 fields).
//
// Invariants:
//  - no crash, no sanitizer report, no leak (ASan's leak check at exit);
//  - the bytes sluice writes stay bounded by what the client sent (no amplification beyond
//    a fixed factor: floods are cut);
//  - streams holding upstream work never exceed the cap (max_concurrent_streams), whatever
//    the client resets;
//  - when the input ends and the connection is closed, every exchange has let go of its
//    upstream side (released or reset), no exchange is left active, and the stream gauge is
//    back to zero once the connection is freed.
#include <uv.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "core/loop_context.h"
#include "fuzz_common.h"
#include "http/parser.h"
#include "net/tcp_stream.h"
#include "server/http2_connection.h"
#include "upstream/upstream_side.h"

namespace sluice::fuzz {
namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Side final : UpstreamSide {
  UpstreamHandler* handler = nullptr;
  bool answered = false, done = false;
  bool reused() const override { return false; }
  void bind(UpstreamHandler* h, bool) override { handler = h; }
  int send_head(const Slice&, Framing) override { return 0; }
  int send_body(const Slice&) override { return 0; }
  int send_end(const Slice&) override { return 0; }
  void expect_response(uint64_t) override {}
  size_t queued() const override { return 0; }
  void pause_response() override {}
  void resume_response() override {}
  void release(bool) override {
    handler = nullptr;
    done = true;
  }
  void reset() override {
    handler = nullptr;
    done = true;
  }
  std::unique_ptr<TcpStream> take_socket() override {
    handler = nullptr;
    done = true;
    return nullptr;
  }
};

struct Source final : UpstreamSource {
  std::vector<std::unique_ptr<Side>> sides;
  std::string host_ = "app.internal:8080", name_ = "app.internal:8080 (127.0.0.1)";
  Acquire acquire_side(PoolClient*, bool, UpstreamSide** side, PoolFailure*) override {
    sides.push_back(std::make_unique<Side>());
    *side = sides.back().get();
    return Acquire::kReady;
  }
  void cancel(PoolClient*) override {}
  const std::string& host() const override { return host_; }
  const std::string& name() const override { return name_; }
};

struct Set final : UpstreamSet {
  Source source;
  ClusterStats stats_;
  ClusterConfig config_;
  UpstreamSource* pick_source(const UpstreamSource*) override { return &source; }
  size_t address_count() const override { return 1; }
  ClusterStats& stats() override { return stats_; }
  const ClusterConfig& config() const override { return config_; }
};

struct Directory final : ClusterDirectory {
  Set* set = nullptr;
  UpstreamSet* route(size_t, std::string_view, std::string_view) override { return set; }
};

struct Transport final : Http2Transport {
  LoopContext* ctx = nullptr;
  RequestContext rc;
  size_t out = 0;
  bool congested = false, over = false;
  Http2Connection* conn = nullptr;
  LoopContext& loop_context() override { return *ctx; }
  const RequestContext& fresh_request_context() override { return rc; }
  int send_bytes(const Slice* s, size_t n) override {
    for (size_t i = 0; i < n; ++i) out += s[i].len;
    return 0;
  }
  bool send_congested() const override { return congested; }
  void pause_input() override {}
  void resume_input() override {}
  void session_over() override { over = true; }
  bool drain_asked() const override { return false; }
  std::set<Http2Stream*> grpc_calls;  // the worker's list of long-lived gRPC calls
  void add_grpc_call(Http2Stream* s) override { grpc_calls.insert(s); }
  void remove_grpc_call(Http2Stream* s) override { grpc_calls.erase(s); }
};

struct World {
  uv_loop_t loop;
  std::unique_ptr<LoopContext> ctx;
  BlockPool pool;
  std::shared_ptr<Config> config, small;
  World() {
    uv_loop_init(&loop);
    ctx = std::make_unique<LoopContext>(&loop, 7);
    ctx->start_deferred();
    config = std::make_shared<Config>(default_config());
    small = std::make_shared<Config>(default_config());
    small->limits.max_header_bytes = 1024;
    small->limits.max_header_fields = 8;
  }
};

World& world() {
  static World* w = new World();  // lives to the end of the process, as libFuzzer's loop does
  return *w;
}

void run_loop(World& w) {
  for (int i = 0; i < 4; ++i) uv_run(&w.loop, UV_RUN_NOWAIT);
}

MessageHead ok_head() {
  static const std::string text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
  struct Sink : BodySink {
    void on_body(const Slice&) override {}
  } sink;
  HttpParser parser(HTTP_RESPONSE, &sink);
  parser.execute(Slice{BlockRef(), text.data(), text.size()});
  return parser.head();
}

}  // namespace
}  // namespace sluice::fuzz

using namespace sluice;
using namespace sluice::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  World& w = world();
  const uint8_t control = data[0], flags = data[1];
  const bool answer = flags & 1, congest = flags & 2, small = flags & 4;
  std::string input(kPreface);
  input.append(reinterpret_cast<const char*>(data + 2), size - 2);

  Set set;
  Directory directory;
  directory.set = &set;
  ListenerStats stats;
  Transport t;
  t.ctx = w.ctx.get();
  t.rc.loop = w.ctx.get();
  t.rc.config = small ? w.small : w.config;
  t.rc.listener_stats = &stats;
  t.rc.client_ip = "192.0.2.7";
  t.rc.clusters = &directory;
  Http2Settings settings;
  if (small) {
    settings.max_concurrent_streams = 4;
    settings.max_stream_errors = 5;
  }
  const uint64_t active_before = w.ctx->stats.exchanges_active.get();
  {
    auto conn = std::make_unique<Http2Connection>(t, settings);
    check(conn->start(t.rc.config->limits.max_header_bytes), "start");
    Splitter split(control, input.size());
    size_t off = 0, reads = 0;
    while (off < input.size() && !t.over) {
      size_t n = split.next(input.size() - off);
      BlockRef b = w.pool.get(n);
      std::memcpy(b->data(), input.data() + off, n);
      off += n;
      if (congest) t.congested = (++reads % 2) == 0;
      conn->on_input(Slice{b, b->data(), n});
      if (!t.congested) conn->on_transport_drained();
      run_loop(w);
      check(conn->guard().upstream_work() <= settings.max_concurrent_streams,
            "upstream work over the cap: " + std::to_string(conn->guard().upstream_work()));
      if (answer) {
        for (auto& s : set.source.sides) {
          if (s->answered || !s->handler) continue;
          s->answered = true;
          UpstreamHandler* h = s->handler;
          h->on_upstream_head(ok_head());
          if (s->handler) h->on_upstream_body(Slice{BlockRef(), "ok", 2});
          if (s->handler) h->on_upstream_complete();
        }
        run_loop(w);
      }
    }
    // Bytes out: each input byte may be answered (a PING with its ACK, a tiny HEADERS with a
    // response), but not without bound.
    check(t.out <= 64 * 1024 + 256 * input.size(),
          "wrote " + std::to_string(t.out) + " bytes for " + std::to_string(input.size()));
    conn->close();
    run_loop(w);
    for (auto& s : set.source.sides)
      check(s->done || !s->handler, "an upstream side still bound after the close");
    check(w.ctx->stats.exchanges_active.get() == active_before, "an exchange left active");
  }
  run_loop(w);
  check(stats.http2_streams_active.get() == 0, "the stream gauge is not back to 0");
  check(t.grpc_calls.empty(), "a freed stream left on the gRPC call list");
  return 0;
}
