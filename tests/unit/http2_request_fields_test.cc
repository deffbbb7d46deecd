// Http2RequestFields: sluice's serialized HTTP/1.1 request head → HTTP/2 request fields.
#include "upstream/http2_request_fields.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields all(const Http2RequestFields& f) {
  Fields out;
  for (size_t i = 0; i < f.size(); ++i) out.emplace_back(f.name(i), f.value(i));
  return out;
}

TEST(Http2RequestFields, PseudoFieldsFirstNamesLowerCasedHopByHopDropped) {
  Http2RequestFields f;
  const std::string head =
      "POST /api/v1/items?x=1 HTTP/1.1\r\n"
      "Content-Type: application/json\r\n"
      "Connection: keep-alive\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "X-Custom-Header:   padded value  \r\n"
      "Host: api.example.com\r\n"
      "X-Forwarded-For: 10.0.0.1\r\n"
      "Content-Length: 12\r\n"
      "\r\n";
  ASSERT_EQ(f.build(head, true, "fallback:443"), Http2RequestFields::Result::kOk);
  EXPECT_EQ(all(f), (Fields{{":method", "POST"},
                            {":scheme", "https"},
                            {":authority", "api.example.com"},
                            {":path", "/api/v1/items?x=1"},
                            {"content-type", "application/json"},
                            {"x-custom-header", "padded value"},
                            {"x-forwarded-for", "10.0.0.1"},
                            {"content-length", "12"}}));
  EXPECT_FALSE(f.grpc());
}

TEST(Http2RequestFields, ChunkedFramingAndMissingHost) {
  Http2RequestFields f;
  const std::string head =
      "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\nUser-Agent: t\r\n\r\n";
  ASSERT_EQ(f.build(head, false, "app:8080"), Http2RequestFields::Result::kOk);
  EXPECT_EQ(all(f), (Fields{{":method", "PUT"},
                            {":scheme", "http"},
                            {":authority", "app:8080"},
                            {":path", "/up"},
                            {"user-agent", "t"}}));
}

TEST(Http2RequestFields, TeOnlyTrailersAndGrpcGetsIt) {
  Http2RequestFields f;
  ASSERT_EQ(f.build("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip, trailers\r\n\r\n", false, ""),
            Http2RequestFields::Result::kOk);
  EXPECT_EQ(all(f).back(), (std::pair<std::string, std::string>{"te", "trailers"}));
  ASSERT_EQ(f.build("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n", false, ""),
            Http2RequestFields::Result::kOk);
  for (auto& [n, v] : all(f)) EXPECT_NE(n, "te");
  // sluice's HTTP/1.1 head drops TE as hop-by-hop: a gRPC request gets it back.
  ASSERT_EQ(f.build("POST /pkg.Svc/Method HTTP/1.1\r\nHost: h\r\n"
                    "Content-Type: application/grpc+proto\r\n\r\n",
                    false, ""),
            Http2RequestFields::Result::kOk);
  EXPECT_TRUE(f.grpc());
  EXPECT_EQ(all(f).back(), (std::pair<std::string, std::string>{"te", "trailers"}));
}

TEST(Http2RequestFields, UpgradeRequestsAreRefused) {
  Http2RequestFields f;
  EXPECT_EQ(f.build("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n\r\n",
                    false, ""),
            Http2RequestFields::Result::kUpgrade);
  EXPECT_EQ(
      f.build("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\r\n", false, ""),
      Http2RequestFields::Result::kUpgrade);
  EXPECT_EQ(f.build("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", false, ""),
            Http2RequestFields::Result::kUpgrade);
}

TEST(Http2RequestFields, MalformedHeadsAreRefused) {
  Http2RequestFields f;
  EXPECT_EQ(f.build("GET\r\n\r\n", false, "h"), Http2RequestFields::Result::kMalformed);
  EXPECT_EQ(f.build("GET / HTTP/1.1\r\nNoColon\r\n\r\n", false, "h"),
            Http2RequestFields::Result::kMalformed);
  EXPECT_EQ(f.build("GET / HTTP/1.1\r\nHost: h\r\n", false, "h"),  // no blank line
            Http2RequestFields::Result::kMalformed);
  EXPECT_EQ(f.build("GET / HTTP/1.1\r\n\r\n", false, ""),  // no authority at all
            Http2RequestFields::Result::kMalformed);
}

TEST(Http2RequestFields, TrailerSectionOfALastChunk) {
  Http2RequestFields f;
  ASSERT_TRUE(f.build_trailers("0\r\nGrpc-Status: 0\r\nContent-Length: 5\r\nX-Sum: abc\r\n\r\n"));
  EXPECT_EQ(all(f), (Fields{{"grpc-status", "0"}, {"x-sum", "abc"}}));
  EXPECT_TRUE(f.build_trailers("0\r\n\r\n"));
  EXPECT_EQ(f.size(), 0u);
  EXPECT_FALSE(f.build_trailers("5\r\nhello"));
}

// The buffers are reused: a second, shorter head leaves nothing of the first.
TEST(Http2RequestFields, ReuseLeavesNothingBehind) {
  Http2RequestFields f;
  ASSERT_EQ(f.build("GET /a HTTP/1.1\r\nHost: one\r\nX-A: 1\r\nX-B: 2\r\n\r\n", false, ""),
            Http2RequestFields::Result::kOk);
  ASSERT_EQ(f.build("GET /b HTTP/1.1\r\nHost: two\r\n\r\n", false, ""),
            Http2RequestFields::Result::kOk);
  EXPECT_EQ(
      all(f),
      (Fields{{":method", "GET"}, {":scheme", "http"}, {":authority", "two"}, {":path", "/b"}}));
}

// X-Request-Id is new with every request: sent without indexing, so that it does not push the
// fields that repeat out of the connection's HPACK table. Everything else may be indexed.
TEST(Http2RequestFields, RequestIdIsNotIndexed) {
  Http2RequestFields f;
  const std::string head =
      "GET / HTTP/1.1\r\n"
      "Host: a\r\n"
      "X-Forwarded-For: 10.0.0.1\r\n"
      "X-Request-Id: 0123456789abcdef0123456789abcdef\r\n"
      "User-Agent: t\r\n"
      "\r\n";
  ASSERT_EQ(f.build(head, false, "a"), Http2RequestFields::Result::kOk);
  ASSERT_EQ(f.size(), 7u);
  for (size_t i = 0; i < f.size(); ++i)
    EXPECT_EQ(f.data()[i].flags,
              f.name(i) == "x-request-id" ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE)
        << f.name(i);
}

}  // namespace
}  // namespace sluice
