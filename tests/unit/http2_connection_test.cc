// Http2Connection's session glue through a fake transport and fake upstream sides: an nghttp2
// client session in the test builds real frames in memory, the server's bytes go back into it,
// and the exchanges the streams drive meet FakeSides the test answers. No socket; the loop is
// there for the block pool, the deferred tasks (sends, stream sweeps) and is closed clean.
#include "server/http2_connection.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config_file.h"
#include "exchange/exchange.h"
#include "fake_upstream.h"
#include "http/parser.h"
#include "net/tcp_stream.h"
#include "server/http2_stream.h"

namespace sluice {
namespace {

using namespace test;

MessageHead parse_response(const std::string& text) {
  struct Sink : BodySink {
    void on_body(const Slice&) override {}
  } sink;
  HttpParser parser(HTTP_RESPONSE, &sink);
  ParseResult r = parser.execute(Slice{BlockRef(), text.data(), text.size()});
  EXPECT_EQ(r.event, ParseEvent::kHead) << text;
  return parser.head();
}

struct FakeTransport final : Http2Transport {
  LoopContext* ctx = nullptr;
  RequestContext rc;
  std::string out;
  bool congested = false, input_paused = false, over = false;

  LoopContext& loop_context() override { return *ctx; }
  const RequestContext& fresh_request_context() override { return rc; }
  int send_bytes(const Slice* s, size_t n) override {
    for (size_t i = 0; i < n; ++i) out.append(s[i].data, s[i].len);
    return 0;
  }
  bool send_congested() const override { return congested; }
  void pause_input() override { input_paused = true; }
  void resume_input() override { input_paused = false; }
  void session_over() override { over = true; }
  bool drain_asked() const override { return false; }
  std::set<Http2Stream*> grpc_calls;  // the worker's list of long-lived gRPC calls
  void add_grpc_call(Http2Stream* s) override { grpc_calls.insert(s); }
  void remove_grpc_call(Http2Stream* s) override { grpc_calls.erase(s); }
};

// The test's HTTP/2 client: an nghttp2 client session that records what comes back per stream.
struct Client {
  struct Response {
    std::map<std::string, std::string> headers;
    std::map<std::string, std::string> trailers;  // a HEADERS frame after the response head
    bool ended_by_trailers = false;               // END_STREAM came on that frame
    bool ended_by_head = false;  // END_STREAM came on the response's HEADERS (Trailers-Only)
    int data_frames = 0;
    std::string body;
    bool closed = false;
    uint32_t error = 0;
  };
  nghttp2_session* session = nullptr;
  std::map<int32_t, Response> responses;
  std::string upload;  // the body a request's data provider sends
  size_t upload_off = 0;
  std::vector<std::pair<std::string, std::string>> upload_trailers;  // sent after the body

  Client() {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
               const uint8_t* v, size_t vl, uint8_t, void* u) {
          Response& r = static_cast<Client*>(u)->responses[f->hd.stream_id];
          auto& fields = f->headers.cat == NGHTTP2_HCAT_HEADERS ? r.trailers : r.headers;
          fields[std::string(reinterpret_cast<const char*>(n), nl)] =
              std::string(reinterpret_cast<const char*>(v), vl);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_HEADERS &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            static_cast<Client*>(u)->responses[f->hd.stream_id].ended_by_trailers = true;
          if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            static_cast<Client*>(u)->responses[f->hd.stream_id].ended_by_head = true;
          if (f->hd.type == NGHTTP2_DATA)
            ++static_cast<Client*>(u)->responses[f->hd.stream_id].data_frames;
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
          static_cast<Client*>(u)->responses[id].body.append(reinterpret_cast<const char*>(d), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t error, void* u) {
          auto& r = static_cast<Client*>(u)->responses[id];
          r.closed = true;
          r.error = error;
          return 0;
        });
    nghttp2_session_client_new(&session, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session); }

  int32_t request(std::vector<std::pair<std::string, std::string>> fields, bool body = false) {
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : fields)
      nv.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                    n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider prd;
    prd.source.ptr = this;
    prd.read_callback = [](nghttp2_session* s, int32_t id, uint8_t* buf, size_t len,
                           uint32_t* flags, nghttp2_data_source* src, void*) -> ssize_t {
      auto* c = static_cast<Client*>(src->ptr);
      size_t n = std::min(len, c->upload.size() - c->upload_off);
      std::memcpy(buf, c->upload.data() + c->upload_off, n);
      c->upload_off += n;
      if (c->upload_off == c->upload.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (c->upload_off == c->upload.size() && !c->upload_trailers.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> tv;
        for (auto& [tn, tval] : c->upload_trailers)
          tv.push_back({reinterpret_cast<uint8_t*>(tn.data()),
                        reinterpret_cast<uint8_t*>(tval.data()), tn.size(), tval.size(),
                        NGHTTP2_NV_FLAG_NONE});
        if (nghttp2_submit_trailer(s, id, tv.data(), tv.size()) != 0)
          return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      return static_cast<ssize_t>(n);
    };
    return nghttp2_submit_request(session, nullptr, nv.data(), nv.size(), body ? &prd : nullptr,
                                  nullptr);
  }
};

using Fields = std::vector<std::pair<std::string, std::string>>;

class Http2ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_ = std::make_unique<LoopContext>(&loop_, 7);
    ctx_->start_deferred();
    directory_.set = &set_;
    transport_.ctx = ctx_.get();
    RequestContext& rc = transport_.rc;
    rc.loop = ctx_.get();
    rc.config = std::make_shared<Config>(default_config());
    rc.listener_stats = &listener_stats_;
    rc.client_ip = "192.0.2.7";
    rc.clusters = &directory_;
    conn_ = std::make_unique<Http2Connection>(transport_);
    ASSERT_TRUE(conn_->start(rc.config->limits.max_header_bytes));
  }
  void TearDown() override {
    conn_.reset();
    ctx_->stop_deferred();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    ctx_.reset();
  }

  // Moves frames both ways until neither side has anything more to say.
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool progress = false;
      std::string to_server;
      const uint8_t* p;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(client_.session, &p)) > 0)
        to_server.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      ASSERT_GE(n, 0);
      if (!to_server.empty()) {
        progress = true;
        conn_->on_input(slice_of(pool_, to_server));
      }
      uv_run(&loop_, UV_RUN_NOWAIT);  // deferred sends and sweeps
      if (!transport_.out.empty()) {
        progress = true;
        std::string in;
        in.swap(transport_.out);
        ASSERT_EQ(nghttp2_session_mem_recv(client_.session,
                                           reinterpret_cast<const uint8_t*>(in.data()), in.size()),
                  static_cast<ssize_t>(in.size()));
      }
      if (!progress) return;
    }
    FAIL() << "the sessions kept talking";
  }
  FakeSide* side(size_t i = 0) {
    return i < set_.source.sides.size() ? set_.source.sides[i].get() : nullptr;
  }
  void respond(FakeSide* s, const std::string& head) {
    ASSERT_NE(s->handler, nullptr);
    s->handler->on_upstream_head(parse_response(head));
  }
  Fields get(const std::string& path, const std::string& authority = "app.example") {
    return {{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", path}};
  }

  uv_loop_t loop_;
  std::unique_ptr<LoopContext> ctx_;
  BlockPool pool_;
  FakeSet set_;
  FakeDirectory directory_;
  ListenerStats listener_stats_;
  FakeTransport transport_;
  std::unique_ptr<Http2Connection> conn_;
  Client client_;
};

TEST_F(Http2ConnectionTest, AGetBecomesAnHttp11RequestAndItsResponseComesBackAsFrames) {
  Fields f = get("/a?b=1", "App.Example:8080");
  f.push_back({"cookie", "a=1"});
  f.push_back({"accept", "*/*"});
  f.push_back({"cookie", "b=2"});
  int32_t id = client_.request(f);
  pump();
  ASSERT_NE(side(), nullptr);
  const std::string& head = side()->head;
  EXPECT_EQ(head.rfind("GET /a?b=1 HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("host: App.Example:8080\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("cookie: a=1; b=2\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("accept: */*\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Forwarded-For: 192.0.2.7\r\n"), std::string::npos) << head;
  EXPECT_EQ(side()->framing, Framing::kNone);
  EXPECT_TRUE(side()->ended);

  respond(side(),
          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: yes\r\nKeep-Alive: timeout=5\r\n"
          "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n");
  side()->handler->on_upstream_body(slice_of(pool_, "hello"));
  side()->handler->on_upstream_complete();
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "200");
  EXPECT_EQ(r.headers.at("x-app"), "yes");
  EXPECT_EQ(r.headers.at("content-length"), "5");
  EXPECT_EQ(r.headers.count("keep-alive"), 0u);
  EXPECT_EQ(r.headers.count("connection"), 0u);
  EXPECT_EQ(r.headers.count("x-hop"), 0u);
  EXPECT_EQ(r.body, "hello");
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(side()->released);
  EXPECT_EQ(conn_->open_streams(), 0u);
  EXPECT_EQ(listener_stats_.requests[status_class(200)].get(), 1u);
}

// Trailers both ways (issue #15, the ground gRPC needs): an HTTP/1.1 upstream's chunked trailer
// section becomes a trailing HEADERS frame with END_STREAM (names lower-cased, the last DATA
// frame without END_STREAM); a client's trailing HEADERS reach the upstream as the chunked
// body's trailer section.
TEST_F(Http2ConnectionTest, TrailersBothWays) {
  client_.upload = "abc";
  client_.upload_trailers = {{"x-checksum", "c0ffee"}, {"grpc-timeout", "1S"}};
  Fields f = {
      {":method", "POST"}, {":scheme", "http"}, {":authority", "app.example"}, {":path", "/up"}};
  int32_t id = client_.request(f, /*body=*/true);
  pump();
  ASSERT_NE(side(), nullptr);
  EXPECT_EQ(side()->framing, Framing::kChunked);
  EXPECT_EQ(side()->body, "abc");
  EXPECT_TRUE(side()->ended);
  EXPECT_EQ(side()->trailers, "0\r\nx-checksum: c0ffee\r\ngrpc-timeout: 1S\r\n\r\n");

  respond(side(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n");
  side()->handler->on_upstream_body(slice_of(pool_, "hello"));
  pump();
  EXPECT_FALSE(client_.responses[id].closed);
  MessageHead t;
  t.add_header("Grpc-Status", "0");
  t.add_header("Content-Length", "5");  // framing: stays behind
  t.add_header("X-Server-Timing", "db;dur=53");
  side()->handler->on_upstream_trailers(t);
  side()->handler->on_upstream_complete();
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.trailers, (std::map<std::string, std::string>{{"grpc-status", "0"},
                                                            {"x-server-timing", "db;dur=53"}}));
  EXPECT_TRUE(r.ended_by_trailers);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(side()->released);
  EXPECT_EQ(conn_->open_streams(), 0u);

  // A HEAD response has no body and so no trailers: the head ends the stream.
  int32_t head_id = client_.request(
      {{":method", "HEAD"}, {":scheme", "http"}, {":authority", "app.example"}, {":path", "/h"}});
  pump();
  ASSERT_NE(side(1), nullptr);
  respond(side(1), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  side(1)->handler->on_upstream_trailers(t);
  side(1)->handler->on_upstream_complete();
  pump();
  EXPECT_TRUE(client_.responses[head_id].closed);
  EXPECT_EQ(client_.responses[head_id].error, 0u);
  EXPECT_TRUE(client_.responses[head_id].trailers.empty());
}

TEST_F(Http2ConnectionTest, ConnectionSpecificFieldsAndBadTeResetTheStream) {
  Fields a = get("/a");
  a.push_back({"connection", "close"});
  Fields b = get("/b");
  b.push_back({"te", "gzip"});
  Fields c = get("/c");
  c.push_back({"te", "trailers"});
  int32_t ia = client_.request(a), ib = client_.request(b), ic = client_.request(c);
  pump();
  EXPECT_TRUE(client_.responses[ia].closed);
  EXPECT_EQ(client_.responses[ia].error, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_TRUE(client_.responses[ib].closed);
  EXPECT_EQ(client_.responses[ib].error, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  // Only the valid one reached an upstream.
  ASSERT_EQ(set_.source.sides.size(), 1u);
  EXPECT_EQ(side()->head.rfind("GET /c HTTP/1.1\r\n", 0), 0u);
  respond(side(), "HTTP/1.1 204 No Content\r\n\r\n");
  side()->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[ic].headers.at(":status"), "204");
  EXPECT_TRUE(client_.responses[ic].closed);
}

TEST_F(Http2ConnectionTest, AnUnroutedRequestGetsSluicesOwn404AsText) {
  int32_t id = client_.request(get("/x", "unrouted.example"));
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "404");
  EXPECT_EQ(r.headers.at("content-type"), "text/plain");
  EXPECT_EQ(r.body.rfind("404 Not Found: no route for host 'unrouted.example'", 0), 0u) << r.body;
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
}

// The head is built from the decoded fields straight into a MessageHead (no HTTP/1.1 text is
// parsed again): the method by llhttp's number, Content-Length as framing, a Host field when there
// is no :authority, and each stream's head starts clean in the connection's reused block.
TEST_F(Http2ConnectionTest, EachStreamsHeadIsBuiltCleanFromItsOwnFields) {
  client_.upload = "abcd";
  Fields put = {{":method", "PUT"},      {":scheme", "http"},     {":path", "/doc"},
                {"host", "app.example"}, {"content-length", "4"}, {"cookie", "k=v"},
                {"x-one", "1"}};
  int32_t first = client_.request(put, true);
  pump();
  ASSERT_NE(side(), nullptr);
  std::string head = side()->head;
  EXPECT_EQ(head.rfind("PUT /doc HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("host: app.example\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: 4\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("transfer-encoding"), std::string::npos) << head;
  EXPECT_EQ(side()->framing, Framing::kContentLength);
  respond(side(), "HTTP/1.1 204 No Content\r\n\r\n");
  side()->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[first].headers.at(":status"), "204");

  int32_t second = client_.request(get("/next"));
  pump();
  ASSERT_NE(side(1), nullptr);
  head = side(1)->head;
  EXPECT_EQ(head.rfind("GET /next HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_EQ(head.find("x-one"), std::string::npos) << head;
  EXPECT_EQ(head.find("cookie"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_EQ(side(1)->framing, Framing::kNone);
  respond(side(1), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  side(1)->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[second].headers.at(":status"), "200");
}

// A method llhttp does not know would have failed the HTTP/1.1 request line: the stream gets a
// 400 of its own, counted as a stream error; the connection goes on.
TEST_F(Http2ConnectionTest, AnUnknownMethodGets400AndTheConnectionGoesOn) {
  Fields f = get("/x");
  f[0].second = "FROBNICATE";
  int32_t id = client_.request(f);
  pump();
  EXPECT_EQ(side(), nullptr);
  EXPECT_EQ(client_.responses[id].headers.at(":status"), "400");
  EXPECT_EQ(listener_stats_.requests[status_class(400)].get(), 1u);
  int32_t next = client_.request(get("/y"));
  pump();
  ASSERT_NE(side(), nullptr);
  respond(side(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  side()->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[next].headers.at(":status"), "200");
}

// A gRPC call sluice answers itself gets a Trailers-Only response: one HEADERS frame with
// END_STREAM, status 200, grpc-status and a percent-encoded grpc-message; no DATA.
TEST_F(Http2ConnectionTest, AnUnroutedGrpcCallGetsATrailersOnlyUnimplemented) {
  Fields f = {{":method", "POST"},
              {":scheme", "http"},
              {":authority", "unrouted.example"},
              {":path", "/pkg.Svc/M\xc3\xa9"},
              {"content-type", "application/grpc"},
              {"te", "trailers"}};
  int32_t id = client_.request(f);
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "200");
  EXPECT_EQ(r.headers.at("content-type"), "application/grpc");
  EXPECT_EQ(r.headers.at("grpc-status"), "12");
  EXPECT_EQ(r.headers.at("grpc-message"),
            "no route for host 'unrouted.example' and path '/pkg.Svc/M%C3%A9'");
  EXPECT_TRUE(r.ended_by_head);
  EXPECT_EQ(r.data_frames, 0);
  EXPECT_TRUE(r.body.empty());
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
  EXPECT_EQ(listener_stats_.grpc_responses[12].get(), 1u);
}

// Refused before an exchange begins (431 here): a gRPC call still gets a gRPC status.
TEST_F(Http2ConnectionTest, AGrpcCallOverTheHeaderLimitsGetsResourceExhausted) {
  Fields f = {{":method", "POST"},
              {":scheme", "http"},
              {":authority", "app.example"},
              {":path", "/pkg.Svc/M"},
              {"content-type", "application/grpc"}};
  for (int i = 0; i < 120; ++i) f.push_back({"x-f" + std::to_string(i), "v"});
  int32_t id = client_.request(f);
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "200");
  EXPECT_EQ(r.headers.at("grpc-status"), "8");
  EXPECT_EQ(r.headers.at("grpc-message"), "too many request header fields");
  EXPECT_TRUE(r.ended_by_head);
  EXPECT_TRUE(set_.source.sides.empty());
  EXPECT_EQ(listener_stats_.grpc_responses[8].get(), 1u);
}

// A streaming gRPC call joins the worker's list once its response head is sent; the drain's
// end at its slot comes at a message boundary as trailers (grpc-status 14) on the client
// stream, and the upstream side is reset.
TEST_F(Http2ConnectionTest, AStreamingGrpcCallIsEndedByTheDrainWithTrailers) {
  Fields f = {{":method", "POST"},
              {":scheme", "http"},
              {":authority", "app.example"},
              {":path", "/pkg.Svc/Watch"},
              {"content-type", "application/grpc+proto"},
              {"te", "trailers"}};
  client_.upload = std::string("\0\0\0\0\2hi", 7);
  int32_t id = client_.request(f, /*body=*/true);
  pump();
  ASSERT_NE(side(), nullptr);
  EXPECT_TRUE(transport_.grpc_calls.empty());
  respond(side(), "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\n\r\n");
  ASSERT_EQ(transport_.grpc_calls.size(), 1u);
  const std::string m1("\0\0\0\0\3one", 8), m2("\0\0\0\0\3two", 8);
  side()->handler->on_upstream_body(slice_of(pool_, m1 + m2.substr(0, 2)));
  pump();
  EXPECT_TRUE((*transport_.grpc_calls.begin())->drain_grpc_call(60000));
  pump();
  EXPECT_FALSE(client_.responses[id].closed);  // mid-message
  side()->handler->on_upstream_body(slice_of(pool_, m2.substr(2) + m1));
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.body, m1 + m2);
  EXPECT_EQ(r.trailers, (std::map<std::string, std::string>{
                            {"grpc-status", "14"}, {"grpc-message", "server is draining"}}));
  EXPECT_TRUE(r.ended_by_trailers);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(side()->was_reset);
  EXPECT_TRUE(transport_.grpc_calls.empty());
  EXPECT_EQ(listener_stats_.grpc_drain_ended.get(), 1u);
}

// A response whose body is known to be empty goes out as one HEADERS frame with END_STREAM (no
// empty DATA frame after it): an upstream's gRPC Trailers-Only response (grpc-status in the head
// that ended its stream, which the HTTP/2 upstream frames as Content-Length 0) stays one, as gRPC
// clients require.
TEST_F(Http2ConnectionTest, AnEmptyBodiedResponseEndsOnItsHeaders) {
  int32_t id = client_.request(get("/svc/Method"));
  pump();
  ASSERT_NE(side(), nullptr);
  MessageHead h;
  h.status = 200;
  h.has_content_length = true;
  h.content_length = 0;
  h.add_header("content-type", "application/grpc");
  h.add_header("grpc-status", "3");
  h.add_header("grpc-message", "bad size");
  side()->handler->on_upstream_head(h);
  side()->handler->on_upstream_complete();
  pump();
  const Client::Response& r = client_.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "200");
  EXPECT_EQ(r.headers.at("grpc-status"), "3");
  EXPECT_TRUE(r.ended_by_head);
  EXPECT_EQ(r.data_frames, 0);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error, 0u);
}

TEST_F(Http2ConnectionTest, ABodyWithoutLengthGoesChunkedAndThePausedStreamHoldsItsWindow) {
  client_.upload.assign(200 * 1024, 'x');
  Fields f = {
      {":method", "POST"}, {":scheme", "http"}, {":authority", "app.example"}, {":path", "/up"}};
  int32_t id = client_.request(f, /*body=*/true);
  pump();
  ASSERT_NE(side(), nullptr);
  EXPECT_EQ(side()->framing, Framing::kChunked);
  EXPECT_EQ(side()->body.size(), client_.upload.size());
  EXPECT_TRUE(side()->ended);

  // A second upload to a slow upstream (its socket holds more than the high watermark): the
  // exchange pauses the body, the stream's window is not credited, and the client stops once it
  // has sent one window.
  client_.upload.assign(1024 * 1024, 'y');
  client_.upload_off = 0;
  set_.source.next_queued = 512 * 1024;
  int32_t id2 = client_.request(f, /*body=*/true);
  pump();
  ASSERT_NE(side(1), nullptr);
  EXPECT_EQ(side(1)->body.size(), 64u * 1024);
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(client_.session, id2), 0);
  // The upstream drains: the held credit goes back to the client and the upload completes.
  while (!side(1)->ended) {
    side(1)->queued_bytes = 0;
    side(1)->handler->on_upstream_drained();
    pump();
    ASSERT_FALSE(client_.responses[id2].closed);
  }
  EXPECT_EQ(side(1)->body.size(), client_.upload.size());
  (void)id;
}

TEST_F(Http2ConnectionTest, AClientResetMidResponseResetsTheUpstreamConnection) {
  int32_t id = client_.request(get("/big"));
  pump();
  ASSERT_NE(side(), nullptr);
  respond(side(), "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
  side()->handler->on_upstream_body(slice_of(pool_, std::string(1000, 'z')));
  pump();
  EXPECT_EQ(client_.responses[id].body.size(), 1000u);
  nghttp2_submit_rst_stream(client_.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump();
  EXPECT_TRUE(side()->was_reset);
  EXPECT_FALSE(side()->released);
  EXPECT_EQ(conn_->open_streams(), 0u);
}

// ---- attack guards (Http2Guard through the connection) ----------------------------------

// A connection with other settings than the fixture's (before the client said anything).
void restart(std::unique_ptr<Http2Connection>& conn, FakeTransport& t, Http2Settings settings) {
  conn = std::make_unique<Http2Connection>(t, settings);
  ASSERT_TRUE(conn->start(t.rc.config->limits.max_header_bytes));
}

TEST_F(Http2ConnectionTest, RapidResetStreamsOverTheUpstreamWorkCapAreRefused) {
  Http2Settings settings;
  settings.max_concurrent_streams = 4;
  restart(conn_, transport_, settings);
  std::vector<int32_t> first;
  for (int i = 0; i < 4; ++i) first.push_back(client_.request(get("/slow")));
  pump();
  ASSERT_EQ(set_.source.sides.size(), 4u);
  // Reset all four and open four more in the same bytes: the reset streams still count (their
  // upstream goes on a later turn), so the new ones are refused before any exchange begins.
  for (int32_t id : first)
    nghttp2_submit_rst_stream(client_.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  std::vector<int32_t> second;
  for (int i = 0; i < 4; ++i) second.push_back(client_.request(get("/again")));
  pump();
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(side(static_cast<size_t>(i))->was_reset) << i;
    EXPECT_TRUE(client_.responses[second[static_cast<size_t>(i)]].closed);
    EXPECT_EQ(client_.responses[second[static_cast<size_t>(i)]].error,
              static_cast<uint32_t>(NGHTTP2_REFUSED_STREAM));
  }
  EXPECT_EQ(set_.source.sides.size(), 4u);               // the upstream saw no fifth request
  EXPECT_EQ(listener_stats_.http2_resets[0].get(), 4u);  // received
  EXPECT_EQ(listener_stats_.http2_resets[1].get(), 4u);  // sent: the refusals
  // A turn later the reset streams are freed: a new stream is served.
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(conn_->guard().upstream_work(), 0u);
  int32_t ok = client_.request(get("/after"));
  pump();
  ASSERT_EQ(set_.source.sides.size(), 5u);
  respond(side(4), "HTTP/1.1 204 No Content\r\n\r\n");
  side(4)->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[ok].headers.at(":status"), "204");
  EXPECT_EQ(conn_->guard().upstream_work(), 0u);
}

TEST_F(Http2ConnectionTest, StreamErrorsBeyondTheBudgetEndTheConnectionWithEnhanceYourCalm) {
  Http2Settings settings;
  settings.max_stream_errors = 5;
  restart(conn_, transport_, settings);
  for (int i = 0; i < 8 && !transport_.over; ++i) {
    Fields f = get("/bad");
    f.push_back({"connection", "close"});  // each one a PROTOCOL_ERROR reset
    client_.request(f);
    pump();
  }
  EXPECT_TRUE(transport_.over);
  EXPECT_EQ(listener_stats_.http2_goaway[static_cast<size_t>(Http2Goaway::kEnhanceYourCalm)].get(),
            1u);
  EXPECT_EQ(
      listener_stats_.http2_flood_closes[static_cast<size_t>(Http2Flood::kStreamErrors)].get(), 1u);
  EXPECT_TRUE(set_.source.sides.empty());
}

TEST_F(Http2ConnectionTest, TooManyHeaderFieldsGet431CountedAndTheConnectionGoesOn) {
  Fields f = get("/many");
  for (int i = 0; i < 120; ++i) f.push_back({"x-f" + std::to_string(i), "v"});  // over 100
  int32_t id = client_.request(f);
  Fields c = get("/crumbs");
  for (int i = 0; i < 120; ++i) c.push_back({"cookie", "c" + std::to_string(i) + "=1"});
  int32_t crumbs = client_.request(c);  // each cookie crumb is a field
  pump();
  EXPECT_EQ(client_.responses[id].headers.at(":status"), "431");
  EXPECT_EQ(client_.responses[crumbs].headers.at(":status"), "431");
  EXPECT_TRUE(set_.source.sides.empty());
  EXPECT_EQ(listener_stats_.requests[status_class(431)].get(), 2u);
  int32_t ok = client_.request(get("/fine"));
  pump();
  ASSERT_EQ(set_.source.sides.size(), 1u);
  respond(side(), "HTTP/1.1 204 No Content\r\n\r\n");
  side()->handler->on_upstream_complete();
  pump();
  EXPECT_EQ(client_.responses[ok].headers.at(":status"), "204");
}

TEST_F(Http2ConnectionTest, EmptyDataFramesBeyondTheBudgetEndTheConnection) {
  Fields f = {
      {":method", "POST"}, {":scheme", "http"}, {":authority", "app.example"}, {":path", "/up"}};
  std::vector<nghttp2_nv> nv;
  for (auto& [n, v] : f)
    nv.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                  n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  int32_t id = nghttp2_submit_headers(client_.session, NGHTTP2_FLAG_NONE, -1, nullptr, nv.data(),
                                      nv.size(), nullptr);
  ASSERT_GT(id, 0);
  pump();
  // 150 DATA frame headers with no payload and no END_STREAM, written by hand.
  std::string frames;
  for (int i = 0; i < 150; ++i) {
    const char hd[9] = {0, 0, 0, 0 /*DATA*/, 0, 0, 0, 0, static_cast<char>(id)};
    frames.append(hd, 9);
  }
  conn_->on_input(slice_of(pool_, frames));
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(transport_.over);
  EXPECT_EQ(listener_stats_.http2_flood_closes[static_cast<size_t>(Http2Flood::kEmptyFrames)].get(),
            1u);
  EXPECT_TRUE(side()->was_reset);  // the exchange in flight was let go
}

TEST_F(Http2ConnectionTest, AHeaderBlockNotCompleteWithinTheHeaderTimeoutEndsTheConnection) {
  Http2Settings settings;
  settings.header_timeout_ms = 30;
  restart(conn_, transport_, settings);
  pump();  // the prefaces and SETTINGS
  // HEADERS with END_STREAM but without END_HEADERS (:method GET, :scheme http, :path /,
  // :authority app), and no CONTINUATION after it.
  const char headers[] =
      "\x00\x00\x08\x01\x01\x00\x00\x00\x01\x82\x86\x84\x41\x03"
      "app";
  conn_->on_input(slice_of(pool_, std::string_view(headers, sizeof headers - 1)));
  EXPECT_EQ(conn_->open_streams(), 1u);
  EXPECT_FALSE(transport_.over);
  const uint64_t start = uv_now(&loop_);
  while (!transport_.over && uv_now(&loop_) - start < 5000) uv_run(&loop_, UV_RUN_ONCE);
  EXPECT_TRUE(transport_.over);
  EXPECT_GE(uv_now(&loop_) - start, 25u);
  EXPECT_EQ(listener_stats_.http2_goaway[static_cast<size_t>(Http2Goaway::kHeaderTimeout)].get(),
            1u);
  EXPECT_TRUE(set_.source.sides.empty());
}

TEST_F(Http2ConnectionTest, APingFloodIsClosedAndCountedAsOne) {
  pump();                       // the prefaces and SETTINGS
  transport_.congested = true;  // the client reads nothing: the ACKs pile up
  std::string frames;
  for (int i = 0; i < 1200; ++i) {
    const char hd[9] = {0, 0, 8, 6 /*PING*/, 0, 0, 0, 0, 0};
    frames.append(hd, 9);
    frames.append(8, static_cast<char>(i));
  }
  conn_->on_input(slice_of(pool_, frames));
  EXPECT_TRUE(transport_.over);
  EXPECT_EQ(listener_stats_.http2_flood_closes[static_cast<size_t>(Http2Flood::kPing)].get(), 1u);
  transport_.congested = false;
}

TEST_F(Http2ConnectionTest, ACongestedSocketStopsFramesAndReading) {
  client_.request(get("/a"));
  pump();
  ASSERT_NE(side(), nullptr);
  transport_.congested = true;
  respond(side(), "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
  side()->handler->on_upstream_body(slice_of(pool_, "abc"));
  side()->handler->on_upstream_complete();
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(transport_.out.empty());
  EXPECT_TRUE(transport_.input_paused);
  transport_.congested = false;
  conn_->on_transport_drained();
  EXPECT_FALSE(transport_.input_paused);
  EXPECT_FALSE(transport_.out.empty());
  pump();
}

TEST_F(Http2ConnectionTest, ABadPrefaceEndsTheSession) {
  conn_->on_input(slice_of(pool_, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(transport_.over);
}

}  // namespace
}  // namespace sluice
