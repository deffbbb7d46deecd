// Upgrade allow-list (issue 15, "h2c smuggling"): only protocols on the listener's list reach
// the upstream; every other Upgrade is removed with its Connection token and HTTP2-Settings.
#include "http/upgrade.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "http/parser.h"
#include "http/rewrite.h"

namespace sluice {
namespace {

class NullSink : public BodySink {
 public:
  void on_body(const Slice&) override {}
};

// Parses a head fed in two reads split at every byte: the same head every time.
MessageHead parse_request(const std::string& text) {
  MessageHead first;
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    NullSink sink;
    HttpParser p(HTTP_REQUEST, &sink);
    BlockPool pool;
    BlockRef b = pool.get();
    std::memcpy(b->data(), text.data(), text.size());
    ParseResult r = p.execute(Slice{b, b->data(), cut});
    if (cut < text.size()) {
      EXPECT_EQ(r.event, ParseEvent::kNeedMore) << "cut at " << cut;
      r = p.execute(Slice{b, b->data() + cut, text.size() - cut});
    }
    EXPECT_EQ(r.event, ParseEvent::kHead) << "cut at " << cut;
    if (cut == 0) {
      first = p.head();
    } else {
      EXPECT_EQ(p.head().header_count(), first.header_count()) << "cut at " << cut;
      EXPECT_EQ(p.head().upgrade, first.upgrade) << "cut at " << cut;
    }
  }
  return first;
}

std::string forwarded(const MessageHead& h, UpgradeAllowList allowed) {
  RequestRewrite rw;
  rw.client_ip = "10.0.0.9";
  rw.upgrade = decide_upgrade(h, allowed).forward;
  rw.upgrades = allowed;
  BlockPool pool;
  BlockWriter w(pool);
  write_request_head(w, h, rw);
  return std::string(w.finish().view());
}

const std::string kH2cSettings = "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
const std::string kTail = "X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n";

TEST(Upgrade, H2cIsRemovedAndTheRequestForwardedPlain) {
  MessageHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\n" +
      kH2cSettings + "\r\n");
  EXPECT_TRUE(h.upgrade);  // llhttp sees an upgrade request
  UpgradeDecision d = decide_upgrade(h, default_upgrades());
  EXPECT_FALSE(d.forward);
  EXPECT_FALSE(d.websocket);
  EXPECT_EQ(forwarded(h, default_upgrades()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
}

TEST(Upgrade, HTTP2SettingsIsDroppedEvenWhenConnectionDoesNotNameIt) {
  MessageHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\n"
      "Upgrade: h2c\r\n" +
      kH2cSettings + "\r\n");
  EXPECT_EQ(forwarded(h, default_upgrades()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
  // Not an upgrade at all (no Connection: upgrade): nothing of it is forwarded either.
  MessageHead plain = parse_request("GET / HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\n" +
                                    kH2cSettings + "\r\n");
  EXPECT_FALSE(plain.upgrade);
  EXPECT_FALSE(decide_upgrade(plain, default_upgrades()).forward);
  EXPECT_EQ(forwarded(plain, default_upgrades()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
}

TEST(Upgrade, OnlyTheAllowedProtocolOfAListIsForwarded) {
  MessageHead h = parse_request(
      "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c, websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      kH2cSettings + "\r\n");
  UpgradeDecision d = decide_upgrade(h, default_upgrades());
  EXPECT_TRUE(d.forward);
  EXPECT_TRUE(d.websocket);
  EXPECT_FALSE(d.h2c);
  EXPECT_EQ(forwarded(h, default_upgrades()),
            "GET /ws HTTP/1.1\r\nHost: app\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Upgrade: websocket\r\nConnection: upgrade\r\n" +
                kTail);
}

TEST(Upgrade, ProtocolNamesCompareCaseInsensitively) {
  MessageHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nCONNECTION: UPGRADE\r\nUpgrade: H2C, WebSocket\r\n\r\n");
  UpgradeDecision d = decide_upgrade(h, default_upgrades());
  EXPECT_TRUE(d.forward);
  EXPECT_TRUE(d.websocket);
  EXPECT_EQ(forwarded(h, default_upgrades()),
            "GET / HTTP/1.1\r\nHost: app\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n" + kTail);
  MessageHead only =
      parse_request("GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: H2c\r\n\r\n");
  EXPECT_FALSE(decide_upgrade(only, default_upgrades()).forward);
  EXPECT_EQ(forwarded(only, default_upgrades()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
}

TEST(Upgrade, SeveralUpgradeHeadersAreFilteredIntoOne) {
  MessageHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
      "Upgrade: websocket\r\nUpgrade: h2c\r\n\r\n");
  EXPECT_TRUE(decide_upgrade(h, default_upgrades()).websocket);
  EXPECT_EQ(forwarded(h, default_upgrades()),
            "GET / HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" + kTail);
  // Only disallowed ones in several headers: nothing.
  MessageHead none = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: h2c\r\nUpgrade: foo\r\n\r\n");
  EXPECT_FALSE(decide_upgrade(none, default_upgrades()).forward);
  EXPECT_EQ(forwarded(none, default_upgrades()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
}

TEST(Upgrade, WebSocketIsAllowedByDefault) {
  MessageHead h = parse_request(
      "GET /chat HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n");
  UpgradeDecision d = decide_upgrade(h, default_upgrades());
  EXPECT_TRUE(d.forward);
  EXPECT_TRUE(d.websocket);
  EXPECT_EQ(forwarded(h, default_upgrades()),
            "GET /chat HTTP/1.1\r\nHost: app\r\nSec-WebSocket-Version: 13\r\n"
            "Upgrade: websocket\r\nConnection: upgrade\r\n" +
                kTail);
}

TEST(Upgrade, ListenerListsDecide) {
  const std::vector<std::string> foo{"websocket", "foo"};
  MessageHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: h2c, Foo/2\r\n\r\n");
  UpgradeDecision d = decide_upgrade(h, foo);
  EXPECT_TRUE(d.forward);
  EXPECT_FALSE(d.websocket);
  EXPECT_EQ(forwarded(h, foo),
            "GET / HTTP/1.1\r\nHost: app\r\nUpgrade: Foo/2\r\nConnection: upgrade\r\n" + kTail);
  EXPECT_FALSE(decide_upgrade(h, default_upgrades()).forward);

  // An empty list forwards no upgrade, not even WebSocket.
  MessageHead ws = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_FALSE(decide_upgrade(ws, {}).forward);
  EXPECT_EQ(forwarded(ws, {}), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);

  // A listener that allows h2c (check-config warns) forwards HTTP2-Settings with it.
  const std::vector<std::string> h2c{"h2c"};
  MessageHead up = parse_request(
      "GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\n" +
      kH2cSettings + "\r\n");
  EXPECT_TRUE(decide_upgrade(up, h2c).h2c);
  EXPECT_EQ(forwarded(up, h2c),
            "GET / HTTP/1.1\r\nHost: app\r\nUpgrade: h2c\r\nConnection: upgrade\r\n" +
                kH2cSettings + kTail);
}

TEST(Upgrade, WriterForwardsNothingWhenNoProtocolIsAllowed) {
  // Even if a caller sets upgrade without asking decide_upgrade, only allowed protocols go out.
  MessageHead h =
      parse_request("GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: h2c\r\n" +
                    kH2cSettings + "\r\n");
  RequestRewrite rw;
  rw.client_ip = "10.0.0.9";
  rw.upgrade = true;
  BlockPool pool;
  BlockWriter w(pool);
  write_request_head(w, h, rw);
  EXPECT_EQ(std::string(w.finish().view()), "GET / HTTP/1.1\r\nHost: app\r\n" + kTail);
}

TEST(Upgrade, ResponseMustSwitchToAnAllowedProtocol) {
  auto response = [](const std::string& upgrade) {
    MessageHead m;
    m.status = 101;
    if (!upgrade.empty()) m.add_header("Upgrade", upgrade);
    m.add_header("Connection", "Upgrade");
    return m;
  };
  EXPECT_TRUE(upgrade_response_allowed(response("websocket"), default_upgrades()));
  EXPECT_TRUE(upgrade_response_allowed(response("WebSocket"), default_upgrades()));
  EXPECT_FALSE(upgrade_response_allowed(response("h2c"), default_upgrades()));
  EXPECT_FALSE(upgrade_response_allowed(response("websocket, h2c"), default_upgrades()));
  EXPECT_TRUE(upgrade_response_allowed(response(""), default_upgrades()));
}

TEST(Upgrade, AllowListEntries) {
  EXPECT_TRUE(is_valid_upgrade_protocol("websocket"));
  EXPECT_TRUE(is_valid_upgrade_protocol("TLS"));
  EXPECT_TRUE(is_valid_upgrade_protocol("x-custom.proto"));
  EXPECT_FALSE(is_valid_upgrade_protocol(""));
  EXPECT_FALSE(is_valid_upgrade_protocol("websocket/13"));
  EXPECT_FALSE(is_valid_upgrade_protocol("web socket"));
  EXPECT_FALSE(is_valid_upgrade_protocol("a,b"));
  EXPECT_TRUE(upgrade_allowed("WebSocket/13", default_upgrades()));
  EXPECT_FALSE(upgrade_allowed("/13", default_upgrades()));
  EXPECT_FALSE(upgrade_allowed("websocketx", default_upgrades()));
}

}  // namespace
}  // namespace sluice
