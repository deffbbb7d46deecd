// Exchange through fake sides: a ClientSide and an UpstreamSide (and the source and set that
// hand it out) that record what the exchange does to them, and let the test play the peers'
// events in any order. No socket anywhere; the loop exists for the block pool, the clock and
// the request ids, and is closed clean at the end.
#include "exchange/exchange.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "fake_upstream.h"
#include "http/parser.h"
#include "net/tcp_stream.h"

namespace sluice {
namespace {

using namespace test;

struct FakeClient final : ClientSide {
  RequestContext rc;
  Exchange exchange{*this};
  int continues = 0;
  std::vector<int> interim;
  int status = 0;
  std::string body;
  std::string trailers;  // "name: value\n" per field sent with send_trailers
  bool ended = false, done = false, cut = false;
  int error_status = 0;
  bool error_malformed = false;
  // Copies: the views sluice passes point at its own buffers, gone once send_error returns.
  std::vector<std::pair<std::string, std::string>> extra_headers;
  bool above = false, body_paused = false, early_end_ok = true, tunnel = false;
  bool abort_on_trailers = false;

  const RequestContext& request_context() const override { return rc; }
  void send_continue() override { ++continues; }
  void send_interim(const MessageHead& h) override { interim.push_back(h.status); }
  MessageHead head;  // the last response head
  size_t send_head(const MessageHead& h) override {
    status = h.status;
    head = h;
    return 100;
  }
  std::string header(std::string_view name) const {
    size_t i = head.find(name);
    return i == std::string_view::npos ? std::string() : std::string(head.value(i));
  }
  void send_body(const Slice& d) override { body.append(d.view()); }
  void send_trailers(const MessageHead& t) override {
    EXPECT_FALSE(ended);
    if (abort_on_trailers) {  // the HTTP/1.1 side's write failed: it closes, aborting
      exchange.abort();
      return;
    }
    for (size_t i = 0; i < t.header_count(); ++i)
      trailers += std::string(t.name(i)) + ": " + std::string(t.value(i)) + "\n";
  }
  void send_end() override { ended = true; }
  bool can_end_response_early() const override { return early_end_ok; }
  size_t send_error(int s, std::string_view, bool malformed,
                    std::span<const ExtraHeader> extra) override {
    extra_headers.clear();
    for (const ExtraHeader& h : extra) extra_headers.emplace_back(h.name, h.value);
    error_status = s;
    error_malformed = malformed;
    return 50;
  }
  int head_only = 0;  // send_head_only calls (the head is kept in `head`)
  size_t send_head_only(const MessageHead& h) override {
    ++head_only;
    status = h.status;
    head = h;
    ended = true;
    return 60;
  }
  void cut_response() override {
    cut = true;
    exchange.abort();  // the HTTP/1.1 side closes its connection, which aborts the exchange
  }
  bool above_high_watermark() const override { return above; }
  void pause_request_body() override { body_paused = true; }
  void resume_request_body() override { body_paused = false; }
  void exchange_done() override { done = true; }
  void start_tunnel(std::unique_ptr<TcpStream>, const Slice&, bool) override { tunnel = true; }
  bool draining() const override { return false; }
};

class ExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_ = std::make_unique<LoopContext>(&loop_, 7);
    ctx_->start_deferred();
    directory_.set = &set_;
    client_ = std::make_unique<FakeClient>();
    RequestContext& rc = client_->rc;
    rc.loop = ctx_.get();
    rc.config = std::make_shared<Config>(default_config());
    rc.listener_stats = &listener_stats_;
    rc.client_ip = "192.0.2.7";
    rc.clusters = &directory_;
  }
  void TearDown() override {
    client_.reset();
    ctx_->stop_deferred();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    ctx_.reset();
  }
  Exchange& ex() { return client_->exchange; }
  FakeSource& source() { return set_.source; }
  void begin(const std::string& head) { ex().begin(parse_head(HTTP_REQUEST, head)); }
  void respond(FakeSide* side, const std::string& head) {
    ASSERT_NE(side->handler, nullptr);
    side->handler->on_upstream_head(parse_head(HTTP_RESPONSE, head));
  }
  void limits(uint64_t max_body) {
    auto c = std::make_shared<Config>(*client_->rc.config);
    c->limits.max_body_bytes = max_body;
    client_->rc.config = c;
  }

  uv_loop_t loop_;
  std::unique_ptr<LoopContext> ctx_;
  BlockPool pool_;
  FakeSet set_;
  FakeDirectory directory_;
  ListenerStats listener_stats_;
  std::unique_ptr<FakeClient> client_;
  MessageHead no_trailers_;
};

const char kGet[] = "GET /a?b=1 HTTP/1.1\r\nHost: App.Example:8080\r\nAccept: */*\r\n\r\n";

TEST_F(ExchangeTest, AGetGoesUpAndItsResponseComesBack) {
  begin(kGet);
  FakeSide* side = source().last();
  ASSERT_NE(side, nullptr);
  EXPECT_EQ(side->head.rfind("GET /a?b=1 HTTP/1.1\r\n", 0), 0u) << side->head;
  EXPECT_NE(side->head.find("X-Forwarded-For: 192.0.2.7\r\n"), std::string::npos);
  EXPECT_NE(side->head.find("X-Request-Id: "), std::string::npos);
  EXPECT_EQ(side->framing, Framing::kNone);
  ex().on_request_complete(no_trailers_);
  EXPECT_TRUE(side->ended);
  EXPECT_EQ(side->response_timeout_ms, 30000u);
  EXPECT_EQ(set_.users(), 1u);
  EXPECT_EQ(source().users(), 1u);
  respond(side, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(client_->status, 200);
  side->handler->on_upstream_body(slice_of(pool_, "hello"));
  side->handler->on_upstream_complete();
  EXPECT_EQ(client_->body, "hello");
  EXPECT_TRUE(client_->ended);
  EXPECT_TRUE(client_->done);
  EXPECT_EQ(side->released, std::optional<bool>(true));
  EXPECT_FALSE(ex().active());
  EXPECT_EQ(set_.users(), 0u);
  EXPECT_EQ(source().users(), 0u);
  EXPECT_EQ(listener_stats_.requests[status_class(200)].get(), 1u);
  EXPECT_EQ(set_.stats_.requests[status_class(200)].get(), 1u);
}

// The request body arrives in pieces of every size: the upstream gets the same bytes, framed
// as the client framed them, and the end only after the last piece.
TEST_F(ExchangeTest, EverySplitOfARequestAndResponseBody) {
  const std::string payload = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (size_t piece = 1; piece <= payload.size(); ++piece) {
    SCOPED_TRACE(piece);
    begin("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 36\r\n\r\n");
    FakeSide* side = source().last();
    for (size_t i = 0; i < payload.size(); i += piece) {
      EXPECT_FALSE(side->ended);
      ex().on_request_body(slice_of(pool_, std::string_view(payload).substr(i, piece)));
    }
    ex().on_request_complete(no_trailers_);
    EXPECT_EQ(side->body, payload);
    EXPECT_EQ(side->framing, Framing::kContentLength);
    EXPECT_TRUE(side->ended);
    respond(side, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    client_->body.clear();
    for (size_t i = 0; i < payload.size(); i += piece)
      side->handler->on_upstream_body(slice_of(pool_, std::string_view(payload).substr(i, piece)));
    side->handler->on_upstream_complete();
    EXPECT_EQ(client_->body, payload);
    EXPECT_TRUE(client_->done);
    client_->done = client_->ended = false;
  }
}

// A pipelined request behind a slow response: the HTTP/1.1 side holds the second request's
// bytes until the first exchange is done, then begins it on the same Exchange. Nothing of the
// first request leaks into the second (its id, framing, status, upstream side), and the first
// response reaches the client whole before the second request goes up.
TEST_F(ExchangeTest, APipelinedRequestBehindASlowResponseStartsClean) {
  begin("GET /slow HTTP/1.1\r\nHost: a\r\nX-Request-Id: one\r\n\r\n");
  ex().on_request_complete(no_trailers_);
  FakeSide* first = source().last();
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(ex().active());  // the upstream is slow: nothing yet
  EXPECT_EQ(client_->status, 0);
  respond(first, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  first->handler->on_upstream_body(slice_of(pool_, "slow answer"));
  EXPECT_FALSE(client_->done);
  first->handler->on_upstream_complete();
  EXPECT_TRUE(client_->done);
  EXPECT_EQ(client_->body, "slow answer");
  EXPECT_FALSE(ex().active());

  client_->done = client_->ended = false;
  client_->status = 0;
  client_->body.clear();
  begin("POST /next HTTP/1.1\r\nHost: b\r\nContent-Length: 4\r\nX-Request-Id: two\r\n\r\n");
  FakeSide* second = source().last();
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second, first);
  EXPECT_EQ(second->head.rfind("POST /next HTTP/1.1\r\n", 0), 0u) << second->head;
  EXPECT_NE(second->head.find("X-Request-Id: two\r\n"), std::string::npos) << second->head;
  EXPECT_EQ(second->head.find("one"), std::string::npos) << second->head;
  EXPECT_EQ(second->framing, Framing::kContentLength);
  ex().on_request_body(slice_of(pool_, "next"));
  ex().on_request_complete(no_trailers_);
  EXPECT_EQ(second->body, "next");
  respond(second, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(client_->status, 201);
  second->handler->on_upstream_body(slice_of(pool_, "ok"));
  second->handler->on_upstream_complete();
  EXPECT_EQ(client_->body, "ok");
  EXPECT_TRUE(client_->done);
  EXPECT_EQ(listener_stats_.requests[status_class(200)].get(), 2u);  // both, once each
}

// Body bytes that come before the upstream side is ready wait, and are sent in order.
TEST_F(ExchangeTest, BodyBeforeTheConnectionIsReadyWaitsInOrder) {
  source().queue = true;
  begin("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_NE(source().waiting, nullptr);
  ex().on_request_body(slice_of(pool_, "one,"));
  ex().on_request_body(slice_of(pool_, "two"));
  ex().on_request_complete(no_trailers_);
  FakeSide* side = source().new_side();
  PoolClient* waiter = source().waiting;
  source().waiting = nullptr;
  waiter->on_pool_ready(side);
  EXPECT_EQ(side->body, "one,two");
  EXPECT_EQ(side->framing, Framing::kChunked);
  EXPECT_TRUE(side->ended);
}

// Trailer fields both ways, filtered (RFC 9110 §6.5.1): what only means something to one
// connection, to the framing or to routing stays behind; the rest passes in its order.
MessageHead trailer_section(const std::string& fields) {
  struct Sink : BodySink {
    void on_body(const Slice&) override {}
  } sink;
  HttpParser parser(HTTP_RESPONSE, &sink);
  BlockPool pool;
  const std::string text =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + fields + "\r\n";
  Slice in = slice_of(pool, text);
  ParseResult r = parser.execute(in);
  EXPECT_EQ(r.event, ParseEvent::kHead);
  r = parser.execute(in.sub(r.consumed, in.len - r.consumed));
  EXPECT_EQ(r.event, ParseEvent::kMessageComplete) << text;
  return parser.trailers();
}

const char kMixedTrailers[] =
    "X-Checksum: abc\r\nContent-Length: 5\r\nConnection: close\r\nHost: evil.example\r\n"
    "Transfer-Encoding: chunked\r\nTE: trailers\r\nKeep-Alive: 5\r\nTrailer: X\r\n"
    "grpc-status: 0\r\ngrpc-message: fine\r\n";

TEST_F(ExchangeTest, ResponseTrailersReachTheClientFilteredBeforeTheEnd) {
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  side->handler->on_upstream_body(slice_of(pool_, "data"));
  side->handler->on_upstream_trailers(trailer_section(kMixedTrailers));
  EXPECT_FALSE(client_->ended);
  side->handler->on_upstream_complete();
  EXPECT_EQ(client_->trailers, "X-Checksum: abc\ngrpc-status: 0\ngrpc-message: fine\n");
  EXPECT_EQ(client_->body, "data");
  EXPECT_TRUE(client_->ended);
  EXPECT_EQ(side->released, std::optional<bool>(true));
  // Only fields that stay behind: the client hears of no trailers at all.
  client_->trailers.clear();
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  side->handler->on_upstream_trailers(trailer_section("Content-Length: 1\r\nHost: x\r\n"));
  side->handler->on_upstream_complete();
  EXPECT_EQ(client_->trailers, "");
  EXPECT_TRUE(client_->done);
}

// A client that goes away while its trailers are written aborts the exchange: the upstream
// side is reset, never released, and nothing more reaches the client.
TEST_F(ExchangeTest, AClientGoneAtTheTrailersLetsTheUpstreamSideGo) {
  client_->abort_on_trailers = true;
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  side->handler->on_upstream_trailers(trailer_section("X-A: 1\r\n"));
  EXPECT_TRUE(side->was_reset);
  EXPECT_EQ(side->handler, nullptr);
  EXPECT_FALSE(side->released.has_value());
  EXPECT_FALSE(ex().active());
  EXPECT_FALSE(client_->ended);
}

TEST_F(ExchangeTest, RequestTrailersReachTheUpstreamFilteredInTheLastChunk) {
  begin("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  FakeSide* side = source().last();
  ex().on_request_body(slice_of(pool_, "abc"));
  ex().on_request_complete(trailer_section(kMixedTrailers));
  EXPECT_TRUE(side->ended);
  EXPECT_EQ(side->trailers, "0\r\nX-Checksum: abc\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n");
  // Nothing forwardable: the plain last chunk (the side writes it for an empty section).
  begin("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  side = source().last();
  ex().on_request_complete(trailer_section("Content-Length: 3\r\n"));
  EXPECT_TRUE(side->ended);
  EXPECT_EQ(side->trailers, "");
  // A body framed by Content-Length has no place for trailers.
  begin("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n");
  side = source().last();
  ex().on_request_body(slice_of(pool_, "abc"));
  ex().on_request_complete(trailer_section("X-A: 1\r\n"));
  EXPECT_TRUE(side->ended);
  EXPECT_EQ(side->trailers, "");
}

TEST_F(ExchangeTest, BackpressureBothWays) {
  begin("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
  FakeSide* side = source().last();
  // The upstream does not take the bytes: reading the client's body stops, and resumes once
  // the upstream's queue falls to the low watermark.
  side->queued_bytes = TcpStream::kHighWatermark + 1;
  ex().on_request_body(slice_of(pool_, "x"));
  EXPECT_TRUE(client_->body_paused);
  side->queued_bytes = TcpStream::kLowWatermark;
  side->handler->on_upstream_drained();
  EXPECT_FALSE(client_->body_paused);
  // The client does not take the response: the upstream's response stops, and resumes once
  // the client's queue drained.
  respond(side, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  client_->above = true;
  side->handler->on_upstream_body(slice_of(pool_, "12345"));
  EXPECT_TRUE(side->paused);
  client_->above = false;
  ex().on_client_drained();
  EXPECT_FALSE(side->paused);
}

// The client goes away at each phase: whatever the exchange holds is let go, never reused.
TEST_F(ExchangeTest, AbortAtEachPhase) {
  // Waiting for a connection: it leaves the queue.
  source().queue = true;
  begin(kGet);
  ex().abort();
  EXPECT_EQ(source().cancels, 1);
  EXPECT_EQ(source().waiting, nullptr);
  EXPECT_EQ(set_.users(), 0u);
  source().queue = false;
  // Request sent, no response yet: the upstream side is reset.
  begin(kGet);
  FakeSide* side = source().last();
  ex().abort();
  EXPECT_TRUE(side->was_reset);
  EXPECT_FALSE(side->released.has_value());
  // Mid-response.
  begin(kGet);
  side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  ex().abort();
  EXPECT_TRUE(side->was_reset);
  EXPECT_FALSE(ex().active());
  ex().abort();  // idempotent
  EXPECT_EQ(source().users(), 0u);
}

TEST_F(ExchangeTest, SluiceAnswersWhatItRefuses) {
  begin("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(client_->error_status, 400);
  EXPECT_TRUE(client_->error_malformed);
  EXPECT_TRUE(client_->done);
  EXPECT_EQ(source().acquires, 0);
  begin("GET / HTTP/1.1\r\nHost: unrouted.example\r\n\r\n");
  EXPECT_EQ(client_->error_status, 404);
  EXPECT_FALSE(client_->error_malformed);
  limits(10);
  begin("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
  EXPECT_EQ(client_->error_status, 413);
  EXPECT_EQ(source().acquires, 0);
  // Over the limit while streaming: 413 and the upstream side is let go.
  begin("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  FakeSide* side = source().last();
  ex().on_request_body(slice_of(pool_, "0123456789"));
  EXPECT_FALSE(side->was_reset);
  ex().on_request_body(slice_of(pool_, "!"));
  EXPECT_EQ(client_->error_status, 413);
  EXPECT_TRUE(side->was_reset);
  EXPECT_FALSE(ex().active());
}

TEST_F(ExchangeTest, PoolFailuresAndUpstreamErrorsBecomeStatuses) {
  source().fail = PoolFailure::kConnectRefused;
  begin(kGet);
  EXPECT_EQ(client_->error_status, 502);
  source().fail = PoolFailure::kQueueTimeout;
  begin(kGet);
  EXPECT_EQ(client_->error_status, 503);
  source().fail.reset();
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  source().last()->handler->on_upstream_error(UpstreamError::kResponseTimeout, false);
  EXPECT_EQ(client_->error_status, 504);
  EXPECT_EQ(set_.stats_.timeouts.get(), 1u);
  // After the head went to the client, a failure cuts the response rather than answering.
  client_->error_status = 0;
  begin(kGet);
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  side->handler->on_upstream_error(UpstreamError::kClosed, true);
  EXPECT_TRUE(client_->cut);
  EXPECT_EQ(client_->error_status, 0);
  EXPECT_FALSE(ex().active());
}

// A reused keep-alive connection that turns out stale before any response byte: the request
// is sent again on a fresh connection, once.
TEST_F(ExchangeTest, AStaleReusedConnectionIsRetriedOnceOnAFreshOne) {
  source().next_reused = true;
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  FakeSide* first = source().last();
  ASSERT_TRUE(first->was_reused);
  first->handler->on_upstream_error(UpstreamError::kClosed, false);
  EXPECT_EQ(source().acquires, 2);
  EXPECT_TRUE(source().asked_fresh);
  FakeSide* second = source().last();
  ASSERT_NE(first, second);
  EXPECT_EQ(second->head, first->head);
  EXPECT_TRUE(second->ended);
  EXPECT_EQ(set_.stats_.retries[0].get(), 1u);
  second->handler->on_upstream_error(UpstreamError::kClosed, false);
  EXPECT_EQ(client_->error_status, 502);  // not a second retry
}

TEST_F(ExchangeTest, InterimResponsesAndExpectContinue) {
  begin("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(client_->continues, 1);
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 100 Continue\r\n\r\n");  // sluice answered it already
  respond(side, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
  EXPECT_EQ(client_->interim, std::vector<int>{103});
  EXPECT_EQ(client_->status, 0);
}

TEST_F(ExchangeTest, AnUpgradeHandsTheSocketOver) {
  begin("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  FakeSide* side = source().last();
  EXPECT_NE(side->head.find("Upgrade: websocket\r\n"), std::string::npos);
  respond(side,
          "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(client_->status, 101);
  side->handler->on_upstream_upgraded(Slice());
  EXPECT_TRUE(client_->tunnel);
  EXPECT_FALSE(ex().active());
  EXPECT_FALSE(client_->done);  // the connection is a tunnel now, not a finished exchange
  EXPECT_EQ(source().users(), 0u);
}

// A drain ends a text/event-stream response at its next event boundary, never inside an event.
TEST_F(ExchangeTest, ADrainedEventStreamEndsBetweenEvents) {
  begin("GET /events HTTP/1.1\r\nHost: a\r\n\r\n");
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
  side->handler->on_upstream_body(slice_of(pool_, "data: one\n\ndata: tw"));
  ex().drain_event_stream();
  EXPECT_FALSE(client_->ended);  // in the middle of an event
  side->handler->on_upstream_body(slice_of(pool_, "o\n\ndata: three\n\n"));
  EXPECT_EQ(client_->body, "data: one\n\ndata: two\n\n");
  EXPECT_TRUE(client_->ended);
  EXPECT_TRUE(client_->done);
  EXPECT_TRUE(side->was_reset);  // its response was unfinished: never reused
}

TEST_F(ExchangeTest, AnEventStreamUnderAContentLengthIsNotEndedEarly) {
  client_->early_end_ok = false;
  begin("GET /events HTTP/1.1\r\nHost: a\r\n\r\n");
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 99\r\n\r\n");
  ex().drain_event_stream();
  side->handler->on_upstream_body(slice_of(pool_, "data: one\n\n"));
  EXPECT_FALSE(client_->ended);
}

// ---- issue 17: maintenance, circuit breaker, caps, retry budget -----------------------------

const char kPost[] = "POST /orders HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\n";

TEST_F(ExchangeTest, ReadOnlyMaintenanceRefusesAPostWithRetryAfterAndLetsAGetThrough) {
  MaintenanceSwitch sw;
  auto v = std::make_shared<MaintenanceView>();
  v->settings.mode = MaintenanceMode::kReadOnly;
  v->settings.retry_after = Millis(90000);
  sw.publish(v);
  client_->rc.maintenance = &sw;
  begin(kPost);
  EXPECT_EQ(client_->status, 503);
  EXPECT_EQ(client_->header("Retry-After"), "90");
  EXPECT_NE(client_->body.find("read-only mode: POST"), std::string::npos) << client_->body;
  EXPECT_TRUE(client_->ended && client_->done);
  EXPECT_EQ(source().acquires, 0);
  EXPECT_EQ(listener_stats_.maintenance_rejected.get(), 1u);
  client_->done = false;
  begin(kGet);
  EXPECT_EQ(source().acquires, 1);
  respond(source().last(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(client_->status, 200);
}

TEST_F(ExchangeTest, AnOpenBreakerFailsFastWithoutTouchingThePool) {
  set_.config_.name = "api";
  set_.config_.circuit_breaker.enabled = true;
  set_.config_.circuit_breaker.min_requests = 1;
  ClusterGuard guard(set_.config_, 1);
  set_.guard_ptr = &guard;
  begin(kGet);
  respond(source().last(), "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(client_->status, 503);
  EXPECT_TRUE(client_->header("X-Sluice-Circuit").empty());  // the upstream's own 503
  EXPECT_EQ(guard.breaker()->state(), CircuitState::kOpen);
  EXPECT_EQ(set_.stats_.circuit_transitions[1].get(), 1u);
  source().last()->handler->on_upstream_complete();
  begin(kGet);
  EXPECT_EQ(source().acquires, 1);
  EXPECT_EQ(client_->status, 503);
  EXPECT_EQ(client_->header("X-Sluice-Circuit"), "open");
  EXPECT_EQ(client_->header("Retry-After"), "30");
  EXPECT_EQ(guard.requests_in_flight(), 0u);
  set_.guard_ptr = nullptr;
}

TEST_F(ExchangeTest, MaxRequestsAndMaxPendingAnswer503AndReleaseOnEnd) {
  set_.config_.caps = ClusterCaps{1, 0};
  ClusterGuard guard(set_.config_, 1);
  set_.guard_ptr = &guard;
  source().queue = true;
  begin(kGet);
  EXPECT_EQ(guard.requests_in_flight(), 1u);
  FakeClient other;
  other.rc = client_->rc;
  other.exchange.begin(parse_head(HTTP_REQUEST, kGet));
  EXPECT_EQ(other.status, 503);
  EXPECT_EQ(set_.stats_.overflow[0].get(), 1u);
  ex().abort();  // the client went away while waiting: nothing stays counted
  EXPECT_EQ(guard.requests_in_flight(), 0u);
  set_.guard_ptr = nullptr;

  set_.config_.caps = ClusterCaps{0, 1};
  ClusterGuard pending(set_.config_, 1);
  set_.guard_ptr = &pending;
  begin(kGet);
  EXPECT_EQ(pending.pending(), 1u);
  PoolClient* waiter = source().waiting;
  ASSERT_NE(waiter, nullptr);
  FakeClient third;
  third.rc = client_->rc;
  third.exchange.begin(parse_head(HTTP_REQUEST, kGet));  // queued, then over max_pending
  EXPECT_EQ(third.status, 503);
  EXPECT_EQ(set_.stats_.overflow[1].get(), 1u);
  EXPECT_EQ(pending.pending(), 1u);
  source().waiting = nullptr;
  waiter->on_pool_ready(source().new_side());
  EXPECT_EQ(pending.pending(), 0u);
  respond(source().last(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  source().last()->handler->on_upstream_complete();
  EXPECT_EQ(pending.requests_in_flight(), 0u);
  set_.guard_ptr = nullptr;
}

TEST_F(ExchangeTest, ASpentRetryBudgetRefusesTheStaleRetry) {
  set_.config_.retry_budget = RetryBudgetSettings{0, 0};
  ClusterGuard guard(set_.config_, 1);
  set_.guard_ptr = &guard;
  source().next_reused = true;
  begin(kGet);
  ex().on_request_complete(no_trailers_);
  source().last()->handler->on_upstream_error(UpstreamError::kClosed, false);
  EXPECT_EQ(client_->error_status, 502);
  EXPECT_EQ(source().acquires, 1);  // not retried
  EXPECT_EQ(set_.stats_.retry_budget_exhausted.get(), 1u);
  EXPECT_EQ(guard.retries_in_flight(), 0u);
  EXPECT_EQ(guard.requests_in_flight(), 0u);
  set_.guard_ptr = nullptr;
}

// A request the HTTP/2 upstream refused unprocessed (above a GOAWAY's last stream id) is sent
// again whatever its method, even with the retry budget spent: the app did no work for it, and
// a graceful restart refuses every stream in flight at once. Bounded: three times, then 502.
TEST_F(ExchangeTest, AnUnprocessedRequestIsSentAgainOutsideTheBudgetAtMostThreeTimes) {
  set_.config_.retry_budget = RetryBudgetSettings{0, 0};
  set_.config_.protocol = UpstreamProtocol::kH2c;  // a POST's body is kept for a resend
  ClusterGuard guard(set_.config_, 1);
  set_.guard_ptr = &guard;
  begin(kPost);
  ex().on_request_body(slice_of(pool_, "hi"));
  ex().on_request_complete(no_trailers_);
  const auto goaway = static_cast<size_t>(RetryReason::kGoawayUnprocessed);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    FakeSide* side = source().last();
    EXPECT_EQ(side->body, "hi") << attempt;
    side->handler->on_upstream_error(UpstreamError::kUnprocessed, false);
    EXPECT_EQ(source().acquires, attempt + 1);
    EXPECT_EQ(set_.stats_.retries[goaway].get(), static_cast<uint64_t>(attempt));
    EXPECT_EQ(client_->error_status, 0);
  }
  FakeSide* last = source().last();
  EXPECT_EQ(last->body, "hi");
  last->handler->on_upstream_error(UpstreamError::kUnprocessed, false);
  EXPECT_EQ(client_->error_status, 502);
  EXPECT_EQ(source().acquires, 4);
  EXPECT_EQ(set_.stats_.retry_budget_exhausted.get(), 0u);
  EXPECT_EQ(guard.retries_in_flight(), 0u);
  set_.guard_ptr = nullptr;
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Issue #17 in the exchange: the client IP from a trusted proxy, rate limits answered with 429
// and an exact Retry-After, and a ban refusing an open connection's next request.
class ExchangeGuardTest : public ExchangeTest {
 protected:
  void guard(const std::string& yaml) {
    ConfigLoad r = load_config_text(yaml, "t.yaml", {});
    ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0]);
    client_->rc.config = r.config;
    client_->rc.guard = guard_.configure(*r.config);
    client_->rc.peer = *parse_ip("192.0.2.7");
  }
  // One request through to a 200; false when sluice answered it itself.
  bool serve(const std::string& head) {
    client_->error_status = 0;
    FakeSide* before = source().last();
    begin(head);
    FakeSide* side = source().last();
    if (side == before || !side) return false;
    ex().on_request_complete(no_trailers_);
    respond(side, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    side->handler->on_upstream_complete();
    return true;
  }
  std::string extra(std::string_view name) const {
    for (const auto& [n, v] : client_->extra_headers)
      if (n == name) return v;
    return "";
  }
  Guard guard_;
};

TEST_F(ExchangeGuardTest, RateLimitedWith429AndTheBucketsRetryAfter) {
  guard("rate_limits: [{name: slow, rate: 1/h, burst: 2}]\n");
  EXPECT_TRUE(serve(kGet));
  EXPECT_TRUE(serve(kGet));
  EXPECT_FALSE(serve(kGet));
  EXPECT_EQ(client_->error_status, 429);
  EXPECT_FALSE(client_->error_malformed);  // the connection may carry the next request
  const int retry_after = std::stoi(extra("Retry-After"));
  EXPECT_GE(retry_after, 3599);  // 1 h after the first request, minus the test's own time
  EXPECT_LE(retry_after, 3600);
  EXPECT_TRUE(client_->done);
  EXPECT_EQ(set_.users(), 0u);  // routed, then let go of without asking for an upstream
}

TEST_F(ExchangeGuardTest, ClientIpFromATrustedProxyKeysTheBuckets) {
  guard(
      "trusted_proxies: [192.0.2.0/24]\n"
      "rate_limits: [{name: per-ip, rate: 1/h, burst: 1}]\n");
  auto get = [](const char* xff) {
    return std::string("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: ") + xff + "\r\n\r\n";
  };
  EXPECT_TRUE(serve(get("198.51.100.1")));
  EXPECT_TRUE(serve(get("198.51.100.2")));
  EXPECT_FALSE(serve(get("203.0.113.5, 198.51.100.1")));
  EXPECT_EQ(client_->error_status, 429);
  // The socket's address is still what X-Forwarded-For gets appended.
  EXPECT_TRUE(serve(get("198.51.100.3")));
  EXPECT_NE(source().last()->head.find("X-Forwarded-For: 198.51.100.3, 192.0.2.7\r\n"),
            std::string::npos)
      << source().last()->head;
}

TEST_F(ExchangeGuardTest, ABanRefusesTheNextRequestAndClosesTheConnection) {
  guard("listeners: [{name: ingress, cluster: app}]\n");
  EXPECT_TRUE(serve(kGet));
  guard_.bans().add(*parse_network("192.0.2.0/24"), guard_now_ms(), 60000);
  EXPECT_FALSE(serve(kGet));
  EXPECT_EQ(client_->error_status, 403);
  EXPECT_TRUE(client_->error_malformed);
}

TEST_F(ExchangeGuardTest, DenyWithCloseCutsWithoutAnAnswer) {
  guard(
      "listeners: [{name: ingress, cluster: app,"
      " ip_rules: {deny: [192.0.2.7], action: close}}]\n");
  EXPECT_FALSE(serve(kGet));
  EXPECT_TRUE(client_->cut);
  EXPECT_EQ(client_->error_status, 0);
  EXPECT_FALSE(ex().active());
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// gRPC calls (issue 16): sluice's own answers as Trailers-Only responses, the grpc-timeout,
// the final grpc-status counted, and the drain's end at a message boundary.
// How long a drained call may take at most, in the drain tests: longer than any of them runs.
constexpr uint64_t kDrainEndBy = 60'000;

class ExchangeGrpcTest : public ExchangeTest {
 protected:
  void SetUp() override {
    ExchangeTest::SetUp();
    client_->rc.protocol = "HTTP/2";
  }
  static std::string call(std::string_view host = "a", std::string_view extra = "") {
    return "POST /pkg.Svc/Method HTTP/1.1\r\nHost: " + std::string(host) +
           "\r\nContent-Type: application/grpc\r\nTE: trailers\r\n" + std::string(extra) +
           "Transfer-Encoding: chunked\r\n\r\n";
  }
  static std::string message(std::string_view payload) {
    std::string m(1, '\0');
    for (int i = 3; i >= 0; --i) m.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xff));
    m.append(payload);
    return m;
  }
  std::string header(std::string_view name) const { return client_->header(name); }
  void expect_trailers_only(int grpc_status) {
    EXPECT_EQ(client_->head_only, 1);
    EXPECT_EQ(client_->status, 200);
    EXPECT_EQ(client_->error_status, 0);  // never an HTTP error page
    EXPECT_EQ(header("content-type"), "application/grpc");
    EXPECT_EQ(header("grpc-status"), std::to_string(grpc_status));
    EXPECT_TRUE(client_->done);
    EXPECT_FALSE(ex().active());
    client_->head_only = 0;
    client_->done = client_->ended = false;
  }
  // Starts a call and relays the upstream's response head.
  FakeSide* started_call() {
    client_->ended = client_->done = false;
    begin(call());
    FakeSide* side = source().last();
    respond(side,
            "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n"
            "Transfer-Encoding: chunked\r\n\r\n");
    return side;
  }
  void trailers(FakeSide* side, const std::string& text) {
    side->handler->on_upstream_trailers(
        parse_head(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\n" + text + "\r\n"));
    if (side->handler) side->handler->on_upstream_complete();
  }
};

TEST_F(ExchangeGrpcTest, NoRouteIsUnimplementedAsTrailersOnly) {
  begin(call("unrouted.example"));
  expect_trailers_only(12);
  EXPECT_EQ(header("grpc-message"),
            "no route for host 'unrouted.example' and path '/pkg.Svc/Method'");
  EXPECT_EQ(listener_stats_.grpc_responses[12].get(), 1u);
  EXPECT_EQ(source().acquires, 0);
}

TEST_F(ExchangeGrpcTest, UpstreamFailuresAreUnavailableAndTimeoutsDeadlineExceeded) {
  source().fail = PoolFailure::kConnectRefused;
  begin(call());
  expect_trailers_only(14);
  EXPECT_EQ(header("grpc-message"), "upstream connect failed");
  source().fail = PoolFailure::kQueueTimeout;
  begin(call());
  expect_trailers_only(14);
  source().fail.reset();
  begin(call());
  ex().on_request_complete(no_trailers_);
  source().last()->handler->on_upstream_error(UpstreamError::kResponseTimeout, false);
  expect_trailers_only(4);
  begin(call());
  ex().on_request_complete(no_trailers_);
  source().last()->handler->on_upstream_error(UpstreamError::kBadResponse, false);
  expect_trailers_only(14);
  EXPECT_EQ(listener_stats_.grpc_responses[14].get(), 3u);
  EXPECT_EQ(listener_stats_.grpc_responses[4].get(), 1u);
}

TEST_F(ExchangeGrpcTest, AGrpcCallOverHttp1GetsAClearError) {
  client_->rc.protocol = "HTTP/1.1";
  begin(call());
  EXPECT_EQ(client_->error_status, 505);
  EXPECT_EQ(client_->head_only, 0);
  EXPECT_EQ(source().acquires, 0);
}

TEST_F(ExchangeGrpcTest, AMalformedGrpcTimeoutIsInternal) {
  begin(call("a", "grpc-timeout: 123456789S\r\n"));
  expect_trailers_only(13);
  begin(call("a", "grpc-timeout: 10s\r\n"));
  expect_trailers_only(13);
}

TEST_F(ExchangeGrpcTest, TheGrpcTimeoutBoundsTheResponseTimeout) {
  begin(call("a", "grpc-timeout: 250m\r\n"));
  FakeSide* side = source().last();
  ex().on_request_complete(no_trailers_);
  EXPECT_EQ(side->response_timeout_ms, 250u);
  ex().abort();
  begin(call("a", "grpc-timeout: 1H\r\n"));
  side = source().last();
  ex().on_request_complete(no_trailers_);
  EXPECT_EQ(side->response_timeout_ms, 30000u);  // the cluster's is smaller
  ex().abort();
}

TEST_F(ExchangeGrpcTest, TheDeadlinePassingBeforeTheHeadIsDeadlineExceeded) {
  // The deadline counts from the loop's time when the call arrives (uv_now, cached at the last
  // loop turn): brought up to date first, so that it does not start before `start` does.
  uv_update_time(&loop_);
  const uint64_t start = uv_hrtime();
  begin(call("a", "grpc-timeout: 20m\r\n"));
  FakeSide* side = source().last();
  while (client_->head_only == 0 && uv_hrtime() - start < 5'000'000'000ull)
    uv_run(&loop_, UV_RUN_ONCE);
  expect_trailers_only(4);
  EXPECT_TRUE(side->was_reset);
  EXPECT_GE(uv_hrtime() - start, 19'000'000ull);
}

TEST_F(ExchangeGrpcTest, TheDeadlinePassingMidCallEndsItAtAMessageBoundary) {
  begin(call("a", "grpc-timeout: 20m\r\n"));
  FakeSide* side = source().last();
  respond(side, "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n\r\n");
  const std::string m = message("hello");
  side->handler->on_upstream_body(slice_of(pool_, m.substr(0, 3)));
  const uint64_t start = uv_hrtime();
  while (uv_hrtime() - start < 40'000'000ull) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(client_->ended);  // in the middle of a message
  side->handler->on_upstream_body(slice_of(pool_, m.substr(3) + m));
  EXPECT_EQ(client_->body, m);  // the whole message, and nothing of the next
  EXPECT_EQ(client_->trailers, "grpc-status: 4\ngrpc-message: deadline exceeded (grpc-timeout)\n");
  EXPECT_TRUE(client_->ended);
  EXPECT_TRUE(side->was_reset);
}

TEST_F(ExchangeGrpcTest, TheUpstreamsGrpcStatusIsCounted) {
  FakeSide* side = started_call();
  ex().on_request_body(slice_of(pool_, message("q")));
  ex().on_request_complete(no_trailers_);
  side->handler->on_upstream_body(slice_of(pool_, message("answer")));
  trailers(side, "grpc-status: 0\r\n");
  EXPECT_EQ(client_->trailers, "grpc-status: 0\n");
  EXPECT_EQ(listener_stats_.grpc_responses[0].get(), 1u);
  // A Trailers-Only response from the upstream carries it in its head.
  begin(call());
  side = source().last();
  ex().on_request_complete(no_trailers_);
  respond(side,
          "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 5\r\n"
          "Content-Length: 0\r\n\r\n");
  side->handler->on_upstream_complete();
  EXPECT_EQ(listener_stats_.grpc_responses[5].get(), 1u);
  // An upstream that is no gRPC server: what the client makes of its HTTP status.
  begin(call());
  side = source().last();
  ex().on_request_complete(no_trailers_);
  respond(side, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  side->handler->on_upstream_complete();
  EXPECT_EQ(listener_stats_.grpc_responses[14].get(), 1u);
}

TEST_F(ExchangeGrpcTest, TheDrainEndsAStreamAtTheNextMessageBoundary) {
  FakeSide* side = started_call();
  ex().on_request_body(slice_of(pool_, message("subscribe")));
  ex().on_request_complete(no_trailers_);
  const std::string one = message("one"), two = message("two"), three = message("three");
  side->handler->on_upstream_body(slice_of(pool_, one + two + three.substr(0, 6)));
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  EXPECT_FALSE(client_->ended);  // in the middle of the third message
  side->handler->on_upstream_body(slice_of(pool_, three.substr(6) + message("four")));
  EXPECT_EQ(client_->body, one + two + three);
  EXPECT_EQ(client_->trailers, "grpc-status: 14\ngrpc-message: server is draining\n");
  EXPECT_TRUE(client_->ended);
  EXPECT_TRUE(client_->done);
  EXPECT_TRUE(side->was_reset);  // CANCEL on an HTTP/2 upstream; closed on HTTP/1.1
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 1u);
  EXPECT_EQ(listener_stats_.grpc_responses[14].get(), 1u);
  // At a boundary already: at once.
  client_->body.clear();
  client_->trailers.clear();
  side = started_call();
  side->handler->on_upstream_body(slice_of(pool_, one + two));
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  EXPECT_TRUE(client_->ended);
  EXPECT_EQ(client_->body, one + two);
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 2u);
}

// A unary call whose answer went out finishes with its own trailers: the drain does not fail it.
TEST_F(ExchangeGrpcTest, TheDrainLetsAUnaryCallFinish) {
  FakeSide* side = started_call();
  ex().on_request_body(slice_of(pool_, message("question")));
  ex().on_request_complete(no_trailers_);
  side->handler->on_upstream_body(slice_of(pool_, message("answer")));
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  EXPECT_FALSE(client_->ended);
  trailers(side, "grpc-status: 0\r\n");
  EXPECT_EQ(client_->trailers, "grpc-status: 0\n");
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 0u);
  EXPECT_EQ(side->released, std::optional<bool>(true));
  // ...but one that turns out to stream ends before its second message.
  client_->body.clear();
  client_->trailers.clear();
  side = started_call();
  ex().on_request_body(slice_of(pool_, message("question")));
  ex().on_request_complete(no_trailers_);
  side->handler->on_upstream_body(slice_of(pool_, message("first")));
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  side->handler->on_upstream_body(slice_of(pool_, message("second")));
  EXPECT_EQ(client_->body, message("first"));
  EXPECT_EQ(client_->trailers, "grpc-status: 14\ngrpc-message: server is draining\n");
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 1u);
  // Not a gRPC call, or not started: nothing for the drain.
  client_->rc.protocol = "HTTP/2";
  begin(kGet);
  EXPECT_FALSE(ex().drain_grpc_call(kDrainEndBy));
  ex().abort();
}

// A unary call may send its response head before its message (an app that sends its initial
// metadata early): the drain lets that message through whole, at every split, then its trailers.
TEST_F(ExchangeGrpcTest, TheDrainLetsAUnaryCallWhoseHeadCameFirstFinishAtEverySplit) {
  const std::string answer = message("answer");
  for (size_t cut = 0; cut <= answer.size(); ++cut) {
    client_->body.clear();
    client_->trailers.clear();
    FakeSide* side = started_call();
    ex().on_request_body(slice_of(pool_, message("question")));
    ex().on_request_complete(no_trailers_);
    EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
    if (cut > 0) side->handler->on_upstream_body(slice_of(pool_, answer.substr(0, cut)));
    if (cut < answer.size()) side->handler->on_upstream_body(slice_of(pool_, answer.substr(cut)));
    EXPECT_FALSE(client_->ended) << cut;
    EXPECT_EQ(client_->body, answer) << cut;
    trailers(side, "grpc-status: 0\r\n");
    EXPECT_EQ(client_->trailers, "grpc-status: 0\n") << cut;
  }
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 0u);
  // Its message and a second one in one read: a stream; the second never reaches the client.
  client_->body.clear();
  client_->trailers.clear();
  FakeSide* side = started_call();
  ex().on_request_complete(no_trailers_);
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  side->handler->on_upstream_body(slice_of(pool_, answer + message("more")));
  EXPECT_EQ(client_->body, answer);
  EXPECT_EQ(client_->trailers, "grpc-status: 14\ngrpc-message: server is draining\n");
  EXPECT_TRUE(side->was_reset);
}

// A server-streaming call that sent one message and went quiet looks unary: its trailers get
// kUnaryTrailersGraceMs, then it ends at its boundary like any stream (not at the drain's budget).
TEST_F(ExchangeGrpcTest, TheDrainEndsAUnaryShapedCallGoneQuietAfterTheGrace) {
  FakeSide* side = started_call();
  ex().on_request_body(slice_of(pool_, message("subscribe")));
  ex().on_request_complete(no_trailers_);
  side->handler->on_upstream_body(slice_of(pool_, message("first")));
  uv_update_time(&loop_);
  const uint64_t start = uv_hrtime();
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  EXPECT_FALSE(client_->ended);
  while (!client_->ended && uv_hrtime() - start < 10'000'000'000ull) uv_run(&loop_, UV_RUN_ONCE);
  EXPECT_GE(uv_hrtime() - start, (Exchange::kUnaryTrailersGraceMs - 5) * 1'000'000ull);
  EXPECT_EQ(client_->body, message("first"));
  EXPECT_EQ(client_->trailers, "grpc-status: 14\ngrpc-message: server is draining\n");
  EXPECT_TRUE(side->was_reset);
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 1u);
}

// A call that sent its head and no message yet may be a slow unary call or a stream that has
// not sent anything: it gets until its end-by time, then ends at its boundary (before the budget
// would reset it); a message arriving in time goes whole and its trailers still end the call.
TEST_F(ExchangeGrpcTest, TheDrainEndsACallWithoutAMessageAtItsEndByTime) {
  FakeSide* side = started_call();
  ex().on_request_complete(no_trailers_);
  uv_update_time(&loop_);
  const uint64_t start = uv_hrtime();
  EXPECT_TRUE(ex().drain_grpc_call(50));
  EXPECT_FALSE(client_->ended);
  while (!client_->ended && uv_hrtime() - start < 10'000'000'000ull) uv_run(&loop_, UV_RUN_ONCE);
  EXPECT_GE(uv_hrtime() - start, 45'000'000ull);
  EXPECT_EQ(client_->body, "");
  EXPECT_EQ(client_->trailers, "grpc-status: 14\ngrpc-message: server is draining\n");
  EXPECT_TRUE(side->was_reset);
  // Its message in time, split: whole; the grace after it is cut to what is left of end-by.
  client_->body.clear();
  client_->trailers.clear();
  side = started_call();
  ex().on_request_complete(no_trailers_);
  EXPECT_TRUE(ex().drain_grpc_call(kDrainEndBy));
  const std::string answer = message("answer");
  side->handler->on_upstream_body(slice_of(pool_, answer.substr(0, 7)));
  side->handler->on_upstream_body(slice_of(pool_, answer.substr(7)));
  EXPECT_EQ(client_->body, answer);
  trailers(side, "grpc-status: 0\r\n");
  EXPECT_EQ(client_->trailers, "grpc-status: 0\n");
}

// The stream's idle timeout between two messages ends the call with trailers; in the middle of
// a message it cannot (the stream is reset instead).
TEST_F(ExchangeGrpcTest, AnIdleCallEndsWithUnavailableOnlyAtABoundary) {
  FakeSide* side = started_call();
  side->handler->on_upstream_body(slice_of(pool_, message("one")));
  EXPECT_TRUE(ex().end_idle_grpc_call());
  EXPECT_EQ(client_->trailers,
            "grpc-status: 14\ngrpc-message: stream idle timeout (limits.idle_timeout)\n");
  EXPECT_TRUE(client_->ended);
  EXPECT_TRUE(side->was_reset);
  side = started_call();
  side->handler->on_upstream_body(slice_of(pool_, message("one").substr(0, 6)));
  EXPECT_FALSE(ex().end_idle_grpc_call());
  EXPECT_TRUE(ex().active());
  ex().abort();
}

TEST_F(ExchangeGrpcTest, AnUpstreamLostMidCallEndsItWithUnavailableBetweenMessages) {
  FakeSide* side = started_call();
  side->handler->on_upstream_body(slice_of(pool_, message("one")));
  side->handler->on_upstream_error(UpstreamError::kReset, true);
  EXPECT_FALSE(client_->cut);
  EXPECT_EQ(client_->trailers,
            "grpc-status: 14\ngrpc-message: upstream failed: connection reset\n");
  EXPECT_TRUE(client_->ended);
  // In the middle of a message: the stream is reset, the client never sees half a message.
  side = started_call();
  side->handler->on_upstream_body(slice_of(pool_, message("one").substr(0, 4)));
  side->handler->on_upstream_error(UpstreamError::kClosed, true);
  EXPECT_TRUE(client_->cut);
}

class ExchangeGrpcGuardTest : public ExchangeGuardTest {
 protected:
  void SetUp() override {
    ExchangeGuardTest::SetUp();
    client_->rc.protocol = "HTTP/2";
  }
};

TEST_F(ExchangeGrpcGuardTest, RateLimitedCallsAreResourceExhaustedWithRetryAfter) {
  guard("rate_limits: [{name: slow, rate: 1/h, burst: 1}]\n");
  const std::string call =
      "POST /pkg.Svc/M HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc+proto\r\n"
      "Content-Length: 0\r\n\r\n";
  EXPECT_TRUE(serve(call));
  EXPECT_FALSE(serve(call));
  EXPECT_EQ(client_->error_status, 0);
  EXPECT_EQ(client_->status, 200);
  EXPECT_EQ(client_->header("grpc-status"), "8");
  EXPECT_EQ(client_->header("grpc-message"), "rate limited");
  const int retry_after = std::stoi(client_->header("retry-after"));
  EXPECT_GE(retry_after, 3599);
  EXPECT_LE(retry_after, 3600);
  EXPECT_EQ(listener_stats_.grpc_responses[8].get(), 1u);
}

}  // namespace
}  // namespace sluice
