#pragma once
// Fake upstream sides for unit tests of what drives an Exchange (tests/unit/exchange_test.cc,
// http2_connection_test.cc): an UpstreamSide, the source and set that hand it out, and the
// routing, each recording what was done to it. No socket anywhere.
#include <llhttp.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exchange/request_context.h"
#include "http/parser.h"
#include "net/tcp_stream.h"
#include "upstream/cluster_guard.h"
#include "upstream/upstream_side.h"

namespace sluice::test {

// A head as the parser gives it.
inline MessageHead parse_head(llhttp_type_t type, const std::string& text) {
  struct Sink : BodySink {
    void on_body(const Slice&) override {}
  } sink;
  HttpParser parser(type, &sink);
  BlockPool pool;
  BlockRef b = pool.get();
  std::memcpy(b->data(), text.data(), text.size());
  ParseResult r = parser.execute(Slice{b, b->data(), text.size()});
  EXPECT_EQ(r.event, ParseEvent::kHead) << text;
  return parser.head();
}

inline Slice slice_of(BlockPool& pool, std::string_view s) {
  BlockRef b = pool.get(s.size());  // sized: test slices may exceed a block
  std::memcpy(b->data(), s.data(), s.size());
  return Slice{b, b->data(), s.size()};
}

struct FakeSide final : UpstreamSide {
  UpstreamHandler* handler = nullptr;
  bool was_reused = false;
  std::string head, body, trailers;
  Framing framing = Framing::kNone;
  bool ended = false;
  uint64_t response_timeout_ms = 0;
  size_t queued_bytes = 0;
  bool paused = false;
  std::optional<bool> released;  // the value passed to release()
  bool was_reset = false;
  int fail_body_writes_after = -1;  // a write error after this many body writes

  bool reused() const override { return was_reused; }
  void bind(UpstreamHandler* h, bool) override { handler = h; }
  int send_head(const Slice& h, Framing f) override {
    head.assign(h.view());
    framing = f;
    return 0;
  }
  int send_body(const Slice& d) override {
    if (fail_body_writes_after == 0) return UV_EPIPE;
    if (fail_body_writes_after > 0) --fail_body_writes_after;
    body.append(d.view());
    return 0;
  }
  int send_end(const Slice& t) override {
    ended = true;
    trailers.assign(t.view());
    return 0;
  }
  void expect_response(uint64_t ms) override { response_timeout_ms = ms; }
  size_t queued() const override { return queued_bytes; }
  void pause_response() override { paused = true; }
  void resume_response() override { paused = false; }
  void release(bool request_sent) override {
    released = request_sent;
    handler = nullptr;
  }
  void reset() override {
    was_reset = true;
    handler = nullptr;
  }
  std::unique_ptr<TcpStream> take_socket() override {
    handler = nullptr;
    return nullptr;  // the fake client records the tunnel without a socket
  }
};

struct FakeSource final : UpstreamSource {
  std::vector<std::unique_ptr<FakeSide>> sides;
  bool queue = false;  // answer kQueued and keep the client
  std::optional<PoolFailure> fail;
  bool next_reused = false;
  size_t next_queued = 0;  // what the next side's socket holds already (a slow upstream)
  PoolClient* waiting = nullptr;
  int acquires = 0, cancels = 0;
  bool asked_fresh = false;
  std::string host_ = "app.internal:8080", name_ = "app.internal:8080 (127.0.0.1)";

  Acquire acquire_side(PoolClient* c, bool fresh, UpstreamSide** side,
                       PoolFailure* failure) override {
    ++acquires;
    asked_fresh = fresh;
    if (fail) {
      *failure = *fail;
      return Acquire::kFailed;
    }
    if (queue) {
      waiting = c;
      return Acquire::kQueued;
    }
    *side = new_side();
    return Acquire::kReady;
  }
  FakeSide* new_side() {
    sides.push_back(std::make_unique<FakeSide>());
    sides.back()->was_reused = next_reused;
    sides.back()->queued_bytes = next_queued;
    next_reused = false;
    return sides.back().get();
  }
  void cancel(PoolClient* c) override {
    ++cancels;
    if (waiting == c) waiting = nullptr;
  }
  const std::string& host() const override { return host_; }
  const std::string& name() const override { return name_; }
  uint32_t users() const { return users_; }
  FakeSide* last() { return sides.empty() ? nullptr : sides.back().get(); }
};

struct FakeSet final : UpstreamSet {
  FakeSource source;
  ClusterStats stats_;
  ClusterConfig config_;
  UpstreamSource* pick_source(const UpstreamSource*) override { return &source; }
  size_t address_count() const override { return 1; }
  ClusterStats& stats() override { return stats_; }
  const ClusterConfig& config() const override { return config_; }
  ClusterGuard* guard_ptr =
      nullptr;  // the cluster's breaker, caps and budget, when a test sets one
  ClusterGuard* guard() override { return guard_ptr; }
  uint32_t users() const { return users_; }
};

struct FakeDirectory final : ClusterDirectory {
  FakeSet* set = nullptr;
  UpstreamSet* route(size_t, std::string_view host, std::string_view) override {
    return host == "unrouted.example" ? nullptr : set;
  }
};

}  // namespace sluice::test
