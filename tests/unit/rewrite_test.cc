// Head rewriting: hop-by-hop headers dropped, forwarding headers added, framing set by sluice.
#include "http/rewrite.h"

#include <gtest/gtest.h>

#include "http/parser.h"

namespace sluice {
namespace {

class NullSink : public BodySink {
 public:
  void on_body(const Slice&) override {}
};

MessageHead parse_head(llhttp_type_t type, const std::string& text) {
  NullSink sink;
  HttpParser p(type, &sink);
  BlockPool pool;
  BlockRef b = pool.get();
  std::memcpy(b->data(), text.data(), text.size());
  ParseResult r = p.execute(Slice{b, b->data(), text.size()});
  EXPECT_EQ(r.event, ParseEvent::kHead);
  return p.head();
}

std::string render_request(const MessageHead& h, RequestRewrite rw) {
  BlockPool pool;
  BlockWriter w(pool);
  write_request_head(w, h, rw);
  return std::string(w.finish().view());
}

TEST(Rewrite, RequestDropsHopByHopAndAddsForwarding) {
  MessageHead h =
      parse_head(HTTP_REQUEST,
                 "POST /x HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, X-Secret\r\n"
                 "X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\n"
                 "TE: trailers\r\nUpgrade: h2c\r\nX-Forwarded-For: 1.1.1.1\r\n"
                 "X-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n"
                 "Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\n\r\n");
  RequestRewrite rw;
  rw.client_ip = "10.0.0.9";
  rw.request_id = "abc";
  rw.framing = Framing::kChunked;
  std::string out = render_request(h, rw);
  EXPECT_EQ(out,
            "POST /x HTTP/1.1\r\nHost: app\r\nAccept: */*\r\n"
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\nX-Forwarded-Proto: http\r\n"
            "X-Request-Id: abc\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(Rewrite, RequestKeepsClientRequestIdAndAddsHostForHttp10) {
  MessageHead h = parse_head(HTTP_REQUEST, "GET / HTTP/1.0\r\nX-Request-Id: mine\r\n\r\n");
  RequestRewrite rw;
  rw.client_ip = "127.0.0.1";
  rw.default_host = "127.0.0.1:4000";
  std::string out = render_request(h, rw);
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nX-Request-Id: mine\r\nHost: 127.0.0.1:4000\r\n"
            "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n");
}

TEST(Rewrite, RequestContentLengthIsSetOnce) {
  MessageHead h =
      parse_head(HTTP_REQUEST, "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
  RequestRewrite rw;
  rw.client_ip = "::1";
  rw.framing = Framing::kContentLength;
  rw.content_length = 5;
  std::string out = render_request(h, rw);
  EXPECT_NE(out.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Content-Length"), out.rfind("Content-Length"));
}

TEST(Rewrite, ResponseFramingAndConnection) {
  MessageHead h = parse_head(HTTP_RESPONSE,
                             "HTTP/1.1 200 OK\r\nServer: app\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
                             "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n");
  BlockPool pool;
  BlockWriter w(pool);
  ResponseRewrite rw;
  rw.framing = Framing::kChunked;
  rw.close = true;
  write_response_head(w, h, rw);
  EXPECT_EQ(
      w.finish().view(),
      "HTTP/1.1 200 OK\r\nServer: app\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
}

// RFC 9110 §7.6.1: "close" in Connection names a header too (fuzz finding F2).
TEST(Rewrite, AHeaderNamedCloseIsDroppedWithConnectionClose) {
  MessageHead req = parse_head(
      HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nClose: x\r\n\r\n");
  RequestRewrite rw;
  rw.client_ip = "10.0.0.9";
  EXPECT_EQ(render_request(req, rw),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.9\r\n"
            "X-Forwarded-Proto: http\r\n\r\n");
  MessageHead resp = parse_head(HTTP_RESPONSE,
                                "HTTP/1.1 200 OK\r\nConnection: close\r\nClose: x\r\n"
                                "Content-Length: 0\r\n\r\n");
  BlockPool pool;
  BlockWriter w(pool);
  ResponseRewrite out;
  out.framing = Framing::kContentLength;
  write_response_head(w, resp, out);
  EXPECT_EQ(w.finish().view(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

TEST(Rewrite, ResponseToHttp10KeepAlive) {
  MessageHead h = parse_head(HTTP_RESPONSE, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n");
  BlockPool pool;
  BlockWriter w(pool);
  ResponseRewrite rw;
  rw.framing = Framing::kContentLength;
  rw.content_length = 2;
  rw.keep_alive_header = true;
  write_response_head(w, h, rw);
  EXPECT_EQ(w.finish().view(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
}

TEST(Rewrite, SimpleResponse) {
  BlockPool pool;
  BlockWriter w(pool);
  write_simple_response(w, 502, "text/plain", "502 Bad Gateway\n", true);
  EXPECT_EQ(w.finish().view(),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
            "Connection: close\r\n\r\n502 Bad Gateway\n");
}

}  // namespace
}  // namespace sluice
