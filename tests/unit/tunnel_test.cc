// Tunnel through fake sides (no socket): bytes pass both ways untouched with backpressure wired
// across, and a drain closes a WebSocket session with 1001 at a frame boundary on each side,
// answers nothing twice and swallows the replies, whatever the byte split.
#include "tunnel/tunnel.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace sluice {
namespace {

Slice slice_of(BlockPool& pool, std::string_view s) {
  BlockRef b = pool.get(s.size());
  std::memcpy(b->data(), s.data(), s.size());
  return Slice{b, b->data(), s.size()};
}

// A WebSocket frame, masked (client to server) or not, with a payload under 126 bytes.
std::string frame(uint8_t opcode, std::string_view payload, bool masked, bool fin = true) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
  f.push_back(static_cast<char>((masked ? 0x80 : 0) | payload.size()));
  const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<char>(payload[i] ^ (masked ? key[i % 4] : 0)));
  return f;
}

std::string close_frame(uint16_t code, bool masked) {
  std::string p = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  return frame(0x8, p, masked);
}

// The frames of a byte string (payloads unmasked), to read what each side was sent.
struct Frame {
  uint8_t opcode;
  std::string payload;
  uint16_t close_code() const {
    return payload.size() >= 2
               ? static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1]))
               : 0;
  }
};
std::vector<Frame> frames(const std::string& bytes) {
  std::vector<Frame> out;
  size_t i = 0;
  while (i + 2 <= bytes.size()) {
    const uint8_t b0 = bytes[i], b1 = bytes[i + 1];
    const bool masked = b1 & 0x80;
    const size_t len = b1 & 0x7f;  // the tests' frames are short
    const size_t head = 2 + (masked ? 4 : 0);
    if (i + head + len > bytes.size()) break;
    Frame f{static_cast<uint8_t>(b0 & 0x0f), bytes.substr(i + head, len)};
    for (size_t k = 0; masked && k < len; ++k) f.payload[k] ^= bytes[i + 2 + k % 4];
    out.push_back(f);
    i += head + len;
  }
  EXPECT_EQ(i, bytes.size()) << "a partial frame";
  return out;
}

struct FakeClient final : TunnelClient {
  LoopContext* loop = nullptr;
  std::string written;
  int write_error = 0;
  bool above = false, paused = false, finished = false, timeout_armed = false;
  LoopContext& ctx() override { return *loop; }
  int write(const Slice& s) override {
    if (write_error) return write_error;
    written.append(s.data, s.len);
    return 0;
  }
  bool above_high_watermark() const override { return above; }
  void pause_client() override { paused = true; }
  void resume_client() override { paused = false; }
  void finish_tunnel() override { finished = true; }
  void arm_tunnel_timeout() override { timeout_armed = true; }
  std::string peer_ip() const override { return "192.0.2.7"; }
  TunnelRegistry& tunnel_registry() override { return *registry; }
  TunnelRegistry* registry = nullptr;
};

struct FakeServer final : TunnelServer {
  Tunnel* attached = nullptr;
  std::string written;
  int write_error = 0;
  bool above = false, paused = false;
  int ends = 0;
  void attach(Tunnel* t) override { attached = t; }
  int write(const Slice& s) override {
    if (write_error) return write_error;
    written.append(s.data, s.len);
    return 0;
  }
  bool above_high_watermark() const override { return above; }
  void pause_reading() override { paused = true; }
  void resume_reading() override { paused = false; }
  void end() override { ++ends; }
};

struct FakeRegistry final : TunnelRegistry {
  std::vector<Tunnel*> open;
  std::vector<TunnelEnd> ended;
  void add_tunnel(Tunnel* t, bool) override { open.push_back(t); }
  void remove_tunnel(Tunnel* t, TunnelEnd why) override {
    std::erase(open, t);
    ended.push_back(why);
  }
};

class TunnelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_ = std::make_unique<LoopContext>(&loop_, 7);
    client_.loop = ctx_.get();
  }
  void TearDown() override {
    tunnel_.reset();
    ctx_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  Tunnel& open(bool websocket) {
    client_.registry = &registry_;
    tunnel_ = std::make_unique<Tunnel>(client_, server_, websocket, 0, false);
    return *tunnel_;
  }
  void from_client(std::string_view s) { tunnel_->from_client(slice_of(ctx_->blocks, s)); }
  void from_server(std::string_view s) { tunnel_->from_server(slice_of(ctx_->blocks, s)); }
  bool ended() const { return !registry_.ended.empty(); }

  uv_loop_t loop_;
  std::unique_ptr<LoopContext> ctx_;
  FakeClient client_;
  FakeServer server_;
  FakeRegistry registry_;
  std::unique_ptr<Tunnel> tunnel_;
};

TEST_F(TunnelTest, OpaqueBytesPassBothWaysUntouched) {
  Tunnel& t = open(false);
  EXPECT_EQ(server_.attached, &t);
  ASSERT_EQ(registry_.open.size(), 1u);
  const std::string junk("\x00\xff\x88\x02 not websocket at all", 26);
  from_client(junk);
  from_server("reply");
  EXPECT_EQ(server_.written, junk);
  EXPECT_EQ(client_.written, "reply");
  EXPECT_FALSE(ended());
}

TEST_F(TunnelTest, BackpressureIsWiredAcross) {
  open(true);
  server_.above = true;  // the upstream's write queue is full: stop reading the client
  from_client(frame(0x1, "hello", true));
  EXPECT_TRUE(client_.paused);
  server_.above = false;
  tunnel_->server_drained();
  EXPECT_FALSE(client_.paused);
  client_.above = true;  // and the other way
  from_server(frame(0x1, "world", false));
  EXPECT_TRUE(server_.paused);
  client_.above = false;
  tunnel_->client_drained();
  EXPECT_FALSE(server_.paused);
}

TEST_F(TunnelTest, OpaqueTunnelIsShutAtADrain) {
  open(false);
  tunnel_->drain_close();
  ASSERT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kDrainClose});
  EXPECT_TRUE(client_.finished);
  EXPECT_EQ(server_.ends, 1);
  EXPECT_TRUE(registry_.open.empty());
}

// Both directions at a boundary: 1001 goes both ways at once; the replies are swallowed (the
// server never sees the client's Close, the client never sees the server's), and the session
// ends once both replied.
TEST_F(TunnelTest, DrainClosesBothSidesAndSwallowsTheReplies) {
  open(true);
  tunnel_->drain_close();
  EXPECT_TRUE(client_.timeout_armed);
  auto to_client = frames(client_.written), to_server = frames(server_.written);
  ASSERT_EQ(to_client.size(), 1u);
  ASSERT_EQ(to_server.size(), 1u);
  EXPECT_EQ(to_client[0].opcode, 0x8);
  EXPECT_EQ(to_client[0].close_code(), 1001);
  EXPECT_EQ(to_server[0].close_code(), 1001);
  EXPECT_EQ(uint8_t(server_.written[1]) & 0x80, 0x80) << "a frame to the server is masked";
  from_client(close_frame(1001, true));
  from_server(close_frame(1001, false));
  EXPECT_EQ(frames(client_.written).size(), 1u);
  EXPECT_EQ(frames(server_.written).size(), 1u);
  ASSERT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kDrainClose});
  EXPECT_TRUE(client_.finished);
  EXPECT_EQ(server_.ends, 1);
  tunnel_->drain_close();  // idempotent after the end
  tunnel_->force_close(TunnelEnd::kDrainForced);
  EXPECT_EQ(registry_.ended.size(), 1u);
}

// A drain in the middle of a frame in each direction: each side's Close comes right after the
// frame in flight, never inside it, for every split of the two frames.
TEST_F(TunnelTest, DrainWaitsForTheFrameInFlightAtEverySplit) {
  const std::string up = frame(0x2, "client-to-server payload", true);
  const std::string down = frame(0x1, "server-to-client text", false);
  for (size_t cut = 1; cut < up.size(); ++cut) {
    SCOPED_TRACE("cut " + std::to_string(cut));
    client_ = FakeClient{};
    client_.loop = ctx_.get();
    server_ = FakeServer{};
    registry_ = FakeRegistry{};
    open(true);
    const size_t dcut = cut % down.size();
    from_client(up.substr(0, cut));
    if (dcut) from_server(down.substr(0, dcut));
    tunnel_->drain_close();
    // Nothing injected inside a frame.
    EXPECT_EQ(server_.written, up.substr(0, cut));
    if (dcut) {
      EXPECT_EQ(client_.written, down.substr(0, dcut));
    }
    from_client(up.substr(cut));
    if (dcut) from_server(down.substr(dcut));
    auto to_server = frames(server_.written);
    ASSERT_EQ(to_server.size(), 2u);
    EXPECT_EQ(to_server[0].payload, "client-to-server payload");
    EXPECT_EQ(to_server[1].close_code(), 1001);
    auto to_client = frames(client_.written);
    ASSERT_EQ(to_client.size(), dcut ? 2u : 1u);
    EXPECT_EQ(to_client.back().close_code(), 1001);
    // Bytes after sluice's Close (a frame the client sent before it saw it) are not forwarded.
    from_client(frame(0x1, "late", true));
    EXPECT_EQ(frames(server_.written).size(), 2u);
    from_client(close_frame(1001, true));
    from_server(close_frame(1001, false));
    EXPECT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kDrainClose});
    tunnel_.reset();
  }
}

// Outside a drain the close handshake is the peers' own: both Close frames pass, and the side
// that sent the first one is the one that ended the session, even when the other closes its
// TCP connection first.
TEST_F(TunnelTest, ThePeersOwnCloseHandshakePassesAndNamesWhoEnded) {
  open(true);
  from_client(close_frame(1000, true));
  from_server(close_frame(1000, false));
  EXPECT_EQ(frames(server_.written).size(), 1u);
  EXPECT_EQ(frames(client_.written).size(), 1u);
  EXPECT_FALSE(ended());
  tunnel_->server_eof();
  ASSERT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kClient});
  EXPECT_TRUE(client_.finished);
  EXPECT_EQ(server_.ends, 1);
}

TEST_F(TunnelTest, ClientGoneDuringADrainStillClosesTheServerSide) {
  open(true);
  from_server(frame(0x1, "x", false).substr(0, 2));  // the server is mid-frame
  tunnel_->drain_close();
  EXPECT_EQ(frames(server_.written).size(), 1u);  // its Close went at once
  tunnel_->client_eof();
  EXPECT_FALSE(ended()) << "the server still owes its reply";
  from_server(std::string("x"));  // the frame ends; nothing more goes to a client that is gone
  from_server(close_frame(1001, false));
  ASSERT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kClient});
}

TEST_F(TunnelTest, ProtocolErrorsAndWriteErrorsEndTheSession) {
  open(true);
  from_client(frame(0x1, "unmasked from a client", false));
  EXPECT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kError});
  EXPECT_TRUE(server_.written.empty());

  client_ = FakeClient{};
  client_.loop = ctx_.get();
  server_ = FakeServer{};
  registry_ = FakeRegistry{};
  open(true);
  server_.write_error = UV_EPIPE;
  from_client(frame(0x1, "hi", true));
  EXPECT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kError});
  EXPECT_EQ(server_.ends, 1);
  from_server(frame(0x1, "after the end", false));  // ignored
  EXPECT_TRUE(client_.written.empty());
}

TEST_F(TunnelTest, AnUnfinishedHandshakeIsForcedClosed) {
  open(true);
  tunnel_->drain_close();
  tunnel_->force_close(TunnelEnd::kDrainForced);
  EXPECT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kDrainForced});
  EXPECT_TRUE(client_.finished);
}

TEST_F(TunnelTest, DestroyingAnOpenTunnelEndsItsUpstream) {
  open(true);
  tunnel_.reset();
  EXPECT_EQ(registry_.ended, std::vector<TunnelEnd>{TunnelEnd::kError});
  EXPECT_EQ(server_.ends, 1);
  EXPECT_FALSE(client_.finished) << "its owner, the client connection, closes itself";
}

}  // namespace
}  // namespace sluice
