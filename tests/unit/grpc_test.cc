// gRPC helpers: content-type detection, grpc-timeout, grpc-message encoding, the status table,
// and the message tracker over every byte split.
#include "http/grpc.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

TEST(Grpc, ContentType) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+proto"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+json"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc;charset=utf-8"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web+proto"));
  EXPECT_FALSE(is_grpc_content_type("application/grpcx"));
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type("application/grp"));
  EXPECT_FALSE(is_grpc_content_type(""));
}

TEST(Grpc, TimeoutEveryUnit) {
  EXPECT_EQ(parse_grpc_timeout("2H"), 2ull * 3600 * 1000);
  EXPECT_EQ(parse_grpc_timeout("3M"), 3ull * 60 * 1000);
  EXPECT_EQ(parse_grpc_timeout("5S"), 5000u);
  EXPECT_EQ(parse_grpc_timeout("250m"), 250u);
  EXPECT_EQ(parse_grpc_timeout("1500u"), 2u);  // rounded up
  EXPECT_EQ(parse_grpc_timeout("1000u"), 1u);
  EXPECT_EQ(parse_grpc_timeout("1n"), 1u);
  EXPECT_EQ(parse_grpc_timeout("2000000n"), 2u);
  EXPECT_EQ(parse_grpc_timeout("0m"), 0u);
  EXPECT_EQ(parse_grpc_timeout("99999999H"), 99999999ull * 3600 * 1000);  // 8 digits
  EXPECT_EQ(parse_grpc_timeout("00000001S"), 1000u);
}

TEST(Grpc, TimeoutMalformed) {
  for (const char* bad : {"", "m", "S", "10", "123456789S", "1s", "1h", "1x", "-1S", "+1S",
                          " 1S", "1S ", "1 S", "1.5S", "1mS", "0x10m", "1SS"})
    EXPECT_FALSE(parse_grpc_timeout(bad).has_value()) << '"' << bad << '"';
}

TEST(Grpc, PercentEncoding) {
  EXPECT_EQ(grpc_percent_encode("server is draining"), "server is draining");
  EXPECT_EQ(grpc_percent_encode("100% done"), "100%25 done");
  EXPECT_EQ(grpc_percent_encode("a\nb\tc"), "a%0Ab%09c");
  EXPECT_EQ(grpc_percent_encode("caf\xc3\xa9"), "caf%C3%A9");
  EXPECT_EQ(grpc_percent_encode(std::string("\x00\x7f~ ", 4)), "%00%7F~ ");
  EXPECT_EQ(grpc_percent_encode(""), "");
}

TEST(Grpc, StatusMapping) {
  EXPECT_EQ(grpc_status_for_http(404), GrpcStatus::kUnimplemented);
  EXPECT_EQ(grpc_status_for_http(502), GrpcStatus::kUnavailable);
  EXPECT_EQ(grpc_status_for_http(503), GrpcStatus::kUnavailable);
  EXPECT_EQ(grpc_status_for_http(504), GrpcStatus::kDeadlineExceeded);
  EXPECT_EQ(grpc_status_for_http(429), GrpcStatus::kResourceExhausted);
  EXPECT_EQ(grpc_status_for_http(413), GrpcStatus::kResourceExhausted);
  EXPECT_EQ(grpc_status_for_http(431), GrpcStatus::kResourceExhausted);
  EXPECT_EQ(grpc_status_for_http(403), GrpcStatus::kPermissionDenied);
  EXPECT_EQ(grpc_status_for_http(401), GrpcStatus::kUnauthenticated);
  EXPECT_EQ(grpc_status_for_http(400), GrpcStatus::kInternal);
  EXPECT_EQ(grpc_status_for_http(501), GrpcStatus::kUnimplemented);
  EXPECT_EQ(grpc_status_for_http(500), GrpcStatus::kUnknown);
  EXPECT_EQ(grpc_status_for_http(418), GrpcStatus::kUnknown);
}

TEST(Grpc, StatusIndex) {
  EXPECT_EQ(grpc_status_index("0"), 0u);
  EXPECT_EQ(grpc_status_index("14"), 14u);
  EXPECT_EQ(grpc_status_index("16"), 16u);
  EXPECT_EQ(grpc_status_index("17"), kGrpcStatusCount);
  EXPECT_EQ(grpc_status_index("07"), kGrpcStatusCount);
  EXPECT_EQ(grpc_status_index(""), kGrpcStatusCount);
  EXPECT_EQ(grpc_status_index("x"), kGrpcStatusCount);
  EXPECT_EQ(grpc_status_index("123"), kGrpcStatusCount);
}

// A stream of messages and the offsets of their ends.
struct Messages {
  std::string bytes;
  std::vector<size_t> ends;
  void add(size_t len, bool compressed = false) {
    bytes.push_back(compressed ? 1 : 0);
    for (int i = 3; i >= 0; --i) bytes.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
    for (size_t i = 0; i < len; ++i) bytes.push_back(static_cast<char>('a' + i % 26));
    ends.push_back(bytes.size());
  }
};

Messages sample() {
  Messages m;
  m.add(0);
  m.add(1);
  m.add(300, true);   // a length with two non-zero bytes
  m.add(70000);       // three
  m.add(5);
  m.add(0);
  return m;
}

TEST(GrpcMessageTracker, EveryTwoWaySplit) {
  const Messages m = sample();
  for (size_t split = 0; split <= m.bytes.size(); ++split) {
    GrpcMessageTracker t;
    EXPECT_EQ(t.feed(m.bytes.data(), split), split);
    bool at_end = false;
    size_t ended = 0;
    for (size_t e : m.ends) {
      if (e == split) at_end = true;
      if (e <= split) ++ended;
    }
    EXPECT_EQ(t.at_boundary(), split == 0 || at_end) << split;
    EXPECT_EQ(t.messages(), ended) << split;
    EXPECT_EQ(t.feed(m.bytes.data() + split, m.bytes.size() - split), m.bytes.size() - split);
    EXPECT_TRUE(t.at_boundary());
    EXPECT_EQ(t.messages(), m.ends.size());
  }
}

TEST(GrpcMessageTracker, ByteAtATime) {
  const Messages m = sample();
  GrpcMessageTracker t;
  size_t next = 0;
  for (size_t i = 0; i < m.bytes.size(); ++i) {
    t.feed(m.bytes.data() + i, 1);
    while (next < m.ends.size() && m.ends[next] <= i + 1) ++next;
    EXPECT_EQ(t.messages(), next) << i;
    EXPECT_EQ(t.at_boundary(), next > 0 && m.ends[next - 1] == i + 1) << i;
  }
}

// Stopping at a boundary: from every split point, the tracker takes exactly the bytes up to
// the next message end (or nothing at a boundary).
TEST(GrpcMessageTracker, StopsAtTheNextBoundaryFromEverySplit) {
  const Messages m = sample();
  for (size_t split = 0; split < m.bytes.size(); ++split) {
    GrpcMessageTracker t;
    t.feed(m.bytes.data(), split);
    size_t expect = 0;
    if (!t.at_boundary()) {
      for (size_t e : m.ends)
        if (e > split) {
          expect = e - split;
          break;
        }
    }
    const size_t took = t.feed(m.bytes.data() + split, m.bytes.size() - split, true);
    EXPECT_EQ(took, expect) << split;
    EXPECT_TRUE(t.at_boundary()) << split;
    // Nothing more is taken while stopping at a boundary.
    EXPECT_EQ(t.feed(m.bytes.data() + split + took, m.bytes.size() - split - took, true), 0u);
  }
}

TEST(GrpcMessageTracker, HugeLengthIsFollowedNotBuffered) {
  GrpcMessageTracker t;
  const uint8_t prefix[] = {0, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(t.feed(prefix, 5), 5u);
  EXPECT_FALSE(t.at_boundary());
  std::string chunk(65536, 'x');
  uint64_t left = 0xffffffffull;
  while (left > chunk.size()) {
    t.feed(chunk.data(), chunk.size());
    left -= chunk.size();
    if (left < 3u * chunk.size()) {
      EXPECT_FALSE(t.at_boundary());
      EXPECT_EQ(t.messages(), 0u);
    }
  }
  t.feed(chunk.data(), static_cast<size_t>(left));
  EXPECT_TRUE(t.at_boundary());
  EXPECT_EQ(t.messages(), 1u);
}

}  // namespace
}  // namespace sluice
