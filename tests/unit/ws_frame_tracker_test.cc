// WsFrameTracker over every byte-split, with fragmented messages and interleaved control frames.
#include "tunnel/ws_frame_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace sluice {
namespace {

using Dir = WsFrameTracker::Direction;

std::string frame(uint8_t opcode, bool fin, const std::string& payload, bool masked) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f += static_cast<char>(mask_bit | payload.size());
  } else if (payload.size() < 65536) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; --i)
      f += static_cast<char>((uint64_t(payload.size()) >> (8 * i)) & 0xff);
  }
  std::string key = "\x12\x34\x56\x78";
  if (masked) f += key;
  for (size_t i = 0; i < payload.size(); ++i)
    f += masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i];
  return f;
}

struct Stream {
  std::string bytes;
  std::vector<size_t> ends;  // offsets just after each frame
  void add(const std::string& f) {
    bytes += f;
    ends.push_back(bytes.size());
  }
};

Stream sample(bool masked, bool with_close) {
  Stream s;
  s.add(frame(1, true, "hello", masked));
  s.add(frame(1, false, "frag-one ", masked));  // a fragmented text message...
  s.add(frame(9, true, "ping", masked));        // ...with a ping between its fragments
  s.add(frame(0, false, "frag-two ", masked));
  s.add(frame(10, true, "", masked));  // and an empty pong
  s.add(frame(0, true, "frag-three", masked));
  s.add(frame(2, true, std::string(300, 'b'), masked));    // 16-bit length
  s.add(frame(2, true, std::string(70000, 'c'), masked));  // 64-bit length
  s.add(frame(1, true, "", masked));
  if (with_close) s.add(frame(8, true, "\x03\xe9going away", masked));
  return s;
}

// Feeds the stream in pieces; returns the boundary offsets seen after every piece and the
// offset at which a Close completed (or npos).
struct FeedRun {
  std::vector<size_t> boundaries;
  size_t close_at = std::string::npos;
  bool error = false;
};

FeedRun feed_pieces(Dir dir, const std::string& bytes, const std::vector<size_t>& cuts) {
  WsFrameTracker t(dir);
  FeedRun run;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    size_t off = start;
    while (off < end) {
      size_t consumed = 0;
      if (t.feed(bytes.data() + off, end - off, &consumed) != WsFrameTracker::Result::kOk) {
        run.error = true;
        return run;
      }
      off += consumed;
      if (t.close_completed() && run.close_at == std::string::npos) run.close_at = off;
      if (t.at_boundary()) run.boundaries.push_back(off);
    }
    start = end;
  }
  return run;
}

TEST(WsFrameTracker, EveryByteBoundaryIsFound) {
  for (bool client : {true, false}) {
    Stream s = sample(client, true);
    Dir dir = client ? Dir::kClientToServer : Dir::kServerToClient;
    // One byte at a time: the boundaries seen are exactly the frame ends.
    std::vector<size_t> every;
    for (size_t i = 1; i < s.bytes.size(); ++i) every.push_back(i);
    FeedRun r = feed_pieces(dir, s.bytes, every);
    ASSERT_FALSE(r.error);
    std::vector<size_t> distinct;
    for (size_t b : r.boundaries)
      if (distinct.empty() || distinct.back() != b) distinct.push_back(b);
    EXPECT_EQ(distinct, s.ends);
    EXPECT_EQ(r.close_at, s.bytes.size());
  }
}

TEST(WsFrameTracker, EveryTwoPieceSplit) {
  Stream s = sample(true, true);
  for (size_t cut = 1; cut < s.bytes.size(); ++cut) {
    FeedRun r = feed_pieces(Dir::kClientToServer, s.bytes, {cut});
    ASSERT_FALSE(r.error) << cut;
    EXPECT_EQ(r.close_at, s.bytes.size()) << cut;
    EXPECT_EQ(r.boundaries.back(), s.bytes.size()) << cut;
    // A boundary is reported only at a frame end.
    for (size_t b : r.boundaries)
      EXPECT_TRUE(std::find(s.ends.begin(), s.ends.end(), b) != s.ends.end()) << cut << " " << b;
  }
}

TEST(WsFrameTracker, StopsAtTheCloseFrame) {
  Stream s = sample(false, true);
  std::string after = frame(1, true, "late", false);
  std::string all = s.bytes + after;
  WsFrameTracker t(Dir::kServerToClient);
  size_t consumed = 0;
  ASSERT_EQ(t.feed(all.data(), all.size(), &consumed), WsFrameTracker::Result::kOk);
  EXPECT_EQ(consumed, s.bytes.size());
  EXPECT_TRUE(t.close_completed());
  ASSERT_EQ(t.feed(all.data() + consumed, all.size() - consumed, &consumed),
            WsFrameTracker::Result::kOk);
  EXPECT_FALSE(t.close_completed());
  EXPECT_TRUE(t.at_boundary());
}

TEST(WsFrameTracker, IdleStateIsSmall) {
  // The whole per-direction state of an idle session.
  EXPECT_LE(sizeof(WsFrameTracker), 48u);
}

TEST(WsFrameTracker, ProtocolViolations) {
  struct Case {
    Dir dir;
    std::string bytes;
  } cases[] = {
      {Dir::kClientToServer, frame(1, true, "x", false)},                    // unmasked from client
      {Dir::kServerToClient, frame(1, true, "x", true)},                     // masked from server
      {Dir::kServerToClient, frame(3, true, "x", false)},                    // reserved opcode
      {Dir::kServerToClient, frame(11, true, "x", false)},                   // reserved control
      {Dir::kServerToClient, frame(9, false, "x", false)},                   // fragmented ping
      {Dir::kServerToClient, frame(9, true, std::string(126, 'p'), false)},  // long ping
      {Dir::kServerToClient, frame(0, true, "x", false)},                    // stray continuation
      {Dir::kServerToClient, frame(1, false, "a", false) + frame(1, true, "b", false)},
  };
  for (auto& c : cases) {
    FeedRun r = feed_pieces(c.dir, c.bytes, {});
    EXPECT_TRUE(r.error) << testing::PrintToString(c.bytes);
  }
}

TEST(WsFrameTracker, CloseFrameWriter) {
  uint8_t buf[140];
  size_t n = write_ws_close_frame(buf, 1001, "going away", false, 0);
  std::string unmasked(reinterpret_cast<char*>(buf), n);
  EXPECT_EQ(unmasked, frame(8, true, "\x03\xe9going away", false));
  n = write_ws_close_frame(buf, 1001, "going away", true, 0x12345678);
  std::string masked(reinterpret_cast<char*>(buf), n);
  EXPECT_EQ(masked, frame(8, true, "\x03\xe9going away", true));
  WsFrameTracker t(Dir::kClientToServer);
  size_t consumed;
  ASSERT_EQ(t.feed(masked.data(), masked.size(), &consumed), WsFrameTracker::Result::kOk);
  EXPECT_TRUE(t.close_completed());
}

}  // namespace
}  // namespace sluice
