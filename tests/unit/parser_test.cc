// HttpParser glue: every byte-split of sample messages gives the same events, heads and bodies.
#include "http/parser.h"
#include "http/method.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

struct Collected {
  std::vector<std::string> events;  // "head:<...>", "body:<bytes>", "done"
  std::string body;
};

class Collector : public BodySink {
 public:
  explicit Collector(llhttp_type_t type) : parser(type, this) {}
  void on_body(const Slice& data) override { out.body.append(data.data, data.len); }

  // Feeds `input` in pieces split at the given offsets; returns false on a parse error.
  bool feed(const std::string& input, const std::vector<size_t>& cuts) {
    size_t start = 0;
    std::vector<size_t> ends = cuts;
    ends.push_back(input.size());
    for (size_t end : ends) {
      BlockRef b = pool.get();
      std::memcpy(b->data(), input.data() + start, end - start);
      Slice rest{b, b->data(), end - start};
      for (;;) {
        ParseResult r = parser.execute(rest);
        rest = rest.sub(r.consumed, rest.len - r.consumed);
        if (r.event == ParseEvent::kNeedMore) break;
        if (r.event == ParseEvent::kError) return false;
        if (r.event == ParseEvent::kHead) {
          const MessageHead& h = parser.head();
          std::string e = "head:" + std::string(h.url());
          for (size_t i = 0; i < h.header_count(); ++i)
            e += "|" + std::string(h.name(i)) + "=" + std::string(h.value(i));
          out.events.push_back(e);
        } else {
          out.events.push_back("done:" + out.body);
          out.body.clear();
        }
      }
      start = end;
    }
    return true;
  }

  BlockPool pool;
  HttpParser parser;
  Collected out;
};

Collected parse_whole(llhttp_type_t type, const std::string& input, bool skip_body = false) {
  Collector c(type);
  c.parser.set_skip_body(skip_body);
  EXPECT_TRUE(c.feed(input, {}));
  return c.out;
}

// Every split into two pieces and every split into single bytes must match the whole parse.
void expect_all_splits(llhttp_type_t type, const std::string& input, bool skip_body = false) {
  Collected whole = parse_whole(type, input, skip_body);
  ASSERT_FALSE(whole.events.empty());
  for (size_t cut = 1; cut < input.size(); ++cut) {
    Collector c(type);
    c.parser.set_skip_body(skip_body);
    ASSERT_TRUE(c.feed(input, {cut})) << "cut at " << cut;
    EXPECT_EQ(c.out.events, whole.events) << "cut at " << cut;
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
  Collector c(type);
  c.parser.set_skip_body(skip_body);
  ASSERT_TRUE(c.feed(input, every));
  EXPECT_EQ(c.out.events, whole.events) << "byte by byte";
}

TEST(Parser, SimpleGet) {
  std::string req = "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
  Collected c = parse_whole(HTTP_REQUEST, req);
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0], "head:/a?b=c|Host=x|Accept=*/*");
  EXPECT_EQ(c.events[1], "done:");
  expect_all_splits(HTTP_REQUEST, req);
}

TEST(Parser, PipelinedRequestsWithBodies) {
  std::string req =
      "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer-A: 1\r\n\r\n"
      "GET /three HTTP/1.1\r\nHost: x\r\nEmpty:\r\nUser-Agent: a b  c\t d\r\n\r\n";
  Collected c = parse_whole(HTTP_REQUEST, req);
  std::vector<std::string> want = {"head:/one|Host=x|Content-Length=5",
                                   "done:hello",
                                   "head:/two|Host=x|Transfer-Encoding=chunked",
                                   "done:abcdefg",
                                   "head:/three|Host=x|Empty=|User-Agent=a b  c\t d",
                                   "done:"};
  EXPECT_EQ(c.events, want);
  expect_all_splits(HTTP_REQUEST, req);
}

TEST(Parser, ChunkedTrailersAreCollected) {
  Collector c(HTTP_REQUEST);
  ASSERT_TRUE(
      c.feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "1\r\na\r\n0\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n",
             {}));
  const MessageHead& t = c.parser.trailers();
  ASSERT_EQ(t.header_count(), 2u);
  EXPECT_EQ(t.name(0), "X-Sum");
  EXPECT_EQ(t.value(0), "42");
  EXPECT_EQ(c.parser.head().header_count(), 2u);
}

TEST(Parser, ResponsesWithAllFramings) {
  std::string resp =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n";
  Collected c = parse_whole(HTTP_RESPONSE, resp);
  std::vector<std::string> want = {"head:Continue",
                                   "done:",
                                   "head:OK|Content-Length=3",
                                   "done:abc",
                                   "head:No Content",
                                   "done:",
                                   "head:Not Modified|Content-Length=99",
                                   "done:",
                                   "head:OK|Transfer-Encoding=chunked",
                                   "done:xy"};
  EXPECT_EQ(c.events, want);
  expect_all_splits(HTTP_RESPONSE, resp);
}

TEST(Parser, ResponseToHeadHasNoBody) {
  std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  Collected c = parse_whole(HTTP_RESPONSE, resp, /*skip_body=*/true);
  std::vector<std::string> want = {"head:OK|Content-Length=1000", "done:"};
  EXPECT_EQ(c.events, want);
  expect_all_splits(HTTP_RESPONSE, resp, true);
}

TEST(Parser, CloseDelimitedResponseEndsAtEof) {
  Collector c(HTTP_RESPONSE);
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\n\r\nuntil the end", {7, 25}));
  EXPECT_EQ(c.out.body, "until the end");
  EXPECT_TRUE(c.parser.in_message());
  EXPECT_EQ(c.parser.finish(), ParseEvent::kMessageComplete);
  EXPECT_FALSE(c.parser.should_keep_alive());
}

TEST(Parser, TruncatedLengthBodyIsAnErrorAtEof) {
  Collector c(HTTP_RESPONSE);
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", {}));
  EXPECT_EQ(c.parser.finish(), ParseEvent::kError);
}

TEST(Parser, KeepAliveRules) {
  Collector a(HTTP_REQUEST);
  ASSERT_TRUE(a.feed("GET / HTTP/1.0\r\n\r\n", {}));
  EXPECT_FALSE(a.parser.head().keep_alive);
  Collector b(HTTP_REQUEST);
  ASSERT_TRUE(b.feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", {}));
  EXPECT_TRUE(b.parser.head().keep_alive);
  Collector c(HTTP_REQUEST);
  ASSERT_TRUE(c.feed("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {}));
  EXPECT_FALSE(c.parser.head().keep_alive);
}

// Request smuggling shapes and malformed input are errors (400), never forwarded.
TEST(Parser, RejectsSmugglingShapes) {
  using namespace std::string_literals;
  const std::string bad[] = {
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
      "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n"s,
      "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
      "NOT A REQUEST\r\n\r\n",
  };
  for (const std::string& s : bad) {
    Collector c(HTTP_REQUEST);
    bool ok = c.feed(s, {});
    bool completed = false;
    for (auto& e : c.out.events) completed = completed || e.rfind("done", 0) == 0;
    EXPECT_TRUE(!ok && !completed) << "accepted: " << s;
    if (!ok) {
      EXPECT_EQ(c.parser.error_status(), 400) << s;
    }
  }
}

// Shapes llhttp 8.1 accepts that sluice refuses itself, wherever the reads are cut (the fuzz
// findings F4-F9, F11, F13 in tests/fuzz/corpus/*/regress-*).
void expect_refused_at_every_split(llhttp_type_t type, const std::string& input, int status) {
  SCOPED_TRACE(input);
  for (size_t cut = 0; cut < input.size(); ++cut) {
    Collector c(type);
    bool ok = c.feed(input, cut ? std::vector<size_t>{cut} : std::vector<size_t>{});
    EXPECT_FALSE(ok) << "accepted with a cut at " << cut;
    EXPECT_EQ(c.parser.error_status(), status) << "cut at " << cut;
    EXPECT_TRUE(c.out.events.empty()) << "a head was delivered, cut at " << cut;
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
  Collector c(type);
  EXPECT_FALSE(c.feed(input, every)) << "accepted byte by byte";
  EXPECT_TRUE(c.out.events.empty());
}

TEST(Parser, RefusesWhatLlhttpLetsThrough) {
  // A bare CR after an empty value: llhttp reads "ontent-Length" (CVE-2023-30589).
  expect_refused_at_every_split(
      HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nA: \rContent-Length: 5\r\n\r\nhello", 400);
  expect_refused_at_every_split(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
  // Obs-fold after an empty value, and after a value.
  expect_refused_at_every_split(
      HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n Transfer-Encoding: chunked\r\n\r\n", 400);
  expect_refused_at_every_split(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n",
                                400);
  // Names that are not tokens, or empty.
  expect_refused_at_every_split(
      HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nTransfer Encoding: chunked\r\n\r\n", 400);
  expect_refused_at_every_split(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400);
  expect_refused_at_every_split(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n:\r\n\r\n", 400);
  // HTTP/0.9 request lines and versions sluice does not speak.
  expect_refused_at_every_split(HTTP_REQUEST, "CONNECT \r\nHost: a\r\n\r\n", 400);
  expect_refused_at_every_split(HTTP_REQUEST, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  expect_refused_at_every_split(HTTP_RESPONSE, "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 400);
  // Transfer-Encoding that is not final chunked: on an upgrade, and empty.
  expect_refused_at_every_split(HTTP_REQUEST,
                                "POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                "Upgrade: websocket\r\nTransfer-Encoding: gzip\r\n\r\n",
                                400);
  expect_refused_at_every_split(
      HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\nGET /s HTTP/1.1\r\n",
      400);
  expect_refused_at_every_split(
      HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok", 400);
}

// Between two messages too, however the reads fall (a bare CR split from the next byte).
TEST(Parser, BareCrBetweenMessagesAtEverySplit) {
  const std::string input =
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\rGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t cut = 0; cut < input.size(); ++cut) {
    Collector c(HTTP_REQUEST);
    EXPECT_FALSE(c.feed(input, cut ? std::vector<size_t>{cut} : std::vector<size_t>{}))
        << "cut at " << cut;
    for (const std::string& e : c.out.events) EXPECT_EQ(e.find("/b"), std::string::npos);
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
  Collector c(HTTP_REQUEST);
  EXPECT_FALSE(c.feed(input, every));
}

TEST(Parser, TrailersAreCheckedLikeTheHead) {
  const std::string good =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n";
  expect_all_splits(HTTP_REQUEST, good);
  for (const std::string trailer :
       {"X-Sum: 1\rY: 2\r\n", "X-Sum: 1\r\n folded\r\n", "X Y: 1\r\n"}) {
    const std::string bad =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n" +
        trailer + "\r\n";
    SCOPED_TRACE(bad);
    for (size_t cut = 0; cut < bad.size(); ++cut) {
      Collector c(HTTP_REQUEST);
      EXPECT_FALSE(c.feed(bad, cut ? std::vector<size_t>{cut} : std::vector<size_t>{}))
          << "cut at " << cut;
      EXPECT_EQ(c.parser.error_status(), 400);
      // The head was delivered; the message never completes.
      ASSERT_EQ(c.out.events.size(), 1u) << "cut at " << cut;
    }
  }
}

TEST(Parser, TransferEncodingInHttp10ClosesTheConnection) {
  // RFC 9112 §6.1: faulty framing, even with keep-alive asked for.
  Collector c(HTTP_REQUEST);
  ASSERT_TRUE(
      c.feed("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
             "Connection: keep-alive\r\n\r\n0\r\n\r\n",
             {}));
  EXPECT_FALSE(c.parser.head().keep_alive);
  EXPECT_FALSE(c.parser.should_keep_alive());
  Collector r(HTTP_RESPONSE);
  ASSERT_TRUE(
      r.feed("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n"
             "Connection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n",
             {}));
  EXPECT_FALSE(r.parser.should_keep_alive());
}

TEST(Parser, HeadLimitGives431) {
  Collector c(HTTP_REQUEST);
  c.parser.set_limits(1024);
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_FALSE(c.feed(req, {100, 700}));
  EXPECT_EQ(c.parser.error_status(), 431);
}

TEST(Parser, HeaderCountLimitGives431) {
  Collector c(HTTP_REQUEST);
  c.parser.set_limits(1 << 20, 10);
  std::string req = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 11; ++i) req += "H" + std::to_string(i) + ": v\r\n";
  EXPECT_FALSE(c.feed(req + "\r\n", {}));
  EXPECT_EQ(c.parser.error_status(), 431);
}

TEST(Parser, ReleaseMemoryBetweenMessages) {
  Collector c(HTTP_REQUEST);
  ASSERT_TRUE(c.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n", {}));
  c.parser.release_memory();
  EXPECT_EQ(c.parser.head().byte_size(), 0u);
  ASSERT_TRUE(c.feed("GET /next HTTP/1.1\r\nHost: y\r\n\r\n", {}));
  EXPECT_EQ(c.parser.head().url(), "/next");
}

}  // namespace
}  // namespace sluice

// The method table for heads that do not come through llhttp (HTTP/2's :method, configuration):
// every name llhttp prints maps back to its number; anything else, case included, is unknown.
TEST(MethodNames, EveryLlhttpMethodRoundTrips) {
#define SLUICE_METHOD(num, symbol, string) \
  EXPECT_EQ(sluice::method_from_name(#string), num) << #string;
  HTTP_METHOD_MAP(SLUICE_METHOD)
#undef SLUICE_METHOD
  EXPECT_EQ(sluice::method_from_name("get"), -1);
  EXPECT_EQ(sluice::method_from_name(""), -1);
  EXPECT_EQ(sluice::method_from_name("FROBNICATE"), -1);
  EXPECT_EQ(sluice::method_from_name("GETX"), -1);
}
