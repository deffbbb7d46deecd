// The pure pieces of issue #17: IP addresses and networks, X-Forwarded-For with trusted
// proxies, token-bucket maths (on an injected clock), the shared bucket table (its key bound,
// least-recently-used eviction and threads), the ban list, and a compiled policy.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "config/config_file.h"
#include "core/ip_network.h"
#include "fake_upstream.h"
#include "guard/ban_list.h"
#include "guard/bucket_table.h"
#include "guard/client_ip.h"
#include "guard/guard.h"
#include "guard/token_bucket.h"
#include "http/parser.h"

namespace sluice {
namespace {

IpAddress ip(const char* s) {
  auto a = parse_ip(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(IpAddress{});
}

IpNetwork net(const char* s) {
  std::string why;
  auto n = parse_network(s, &why);
  EXPECT_TRUE(n) << s << ": " << why;
  return n.value_or(IpNetwork{});
}

TEST(IpNetwork, ParsesAddressesOfBothFamilies) {
  EXPECT_EQ(ip("192.0.2.7").str(), "192.0.2.7");
  EXPECT_TRUE(ip("192.0.2.7").is_v4());
  EXPECT_EQ(ip("2001:db8::1").str(), "2001:db8::1");
  EXPECT_FALSE(ip("2001:db8::1").is_v4());
  // A dual-stack socket's view of an IPv4 client is the same address.
  EXPECT_EQ(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4:80", "[::1]", "::g",
                          "01.2.3.4", " 1.2.3.4", "fe80::1%eth0", "example.com"})
    EXPECT_FALSE(parse_ip(bad)) << bad;
}

TEST(IpNetwork, CidrMatching) {
  IpNetwork ten = net("10.0.0.0/8");
  EXPECT_TRUE(ten.contains(ip("10.255.1.2")));
  EXPECT_FALSE(ten.contains(ip("11.0.0.1")));
  EXPECT_FALSE(ten.contains(ip("::1")));
  EXPECT_EQ(ten.str(), "10.0.0.0/8");
  IpNetwork odd = net("192.168.4.0/22");
  EXPECT_TRUE(odd.contains(ip("192.168.7.255")));
  EXPECT_FALSE(odd.contains(ip("192.168.8.0")));
  EXPECT_TRUE(net("0.0.0.0/0").contains(ip("203.0.113.9")));
  EXPECT_FALSE(net("0.0.0.0/0").contains(ip("2001:db8::1")));
  EXPECT_TRUE(net("::/0").contains(ip("2001:db8::1")));
  IpNetwork v6 = net("fd00::/8");
  EXPECT_TRUE(v6.contains(ip("fd12:3456::1")));
  EXPECT_FALSE(v6.contains(ip("fe80::1")));
  IpNetwork one = net("192.0.2.7");
  EXPECT_EQ(one.str(), "192.0.2.7");
  EXPECT_TRUE(one.contains(ip("192.0.2.7")));
  EXPECT_FALSE(one.contains(ip("192.0.2.8")));
  EXPECT_EQ(net("2001:db8::/32").str(), "2001:db8::/32");
}

TEST(IpNetwork, RejectsBadNetworksWithAReason) {
  std::string why;
  EXPECT_FALSE(parse_network("10.0.0.1/8", &why));
  EXPECT_EQ(why, "host bits are set: did you mean 10.0.0.0/8?");
  EXPECT_FALSE(parse_network("10.0.0.0/33", &why));
  EXPECT_NE(why.find("0 to 32"), std::string::npos) << why;
  EXPECT_FALSE(parse_network("fd00::/129", &why));
  EXPECT_NE(why.find("0 to 128"), std::string::npos) << why;
  for (const char* bad :
       {"10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1", "10.0.0.0/8x", "/8", "nonsense", "10.0.0.0 /8"})
    EXPECT_FALSE(parse_network(bad)) << bad;
}

TEST(ForwardedFor, ParsesEntriesWithPortsAndBrackets) {
  EXPECT_EQ(parse_forwarded_entry(" 192.0.2.7 "), ip("192.0.2.7"));
  EXPECT_EQ(parse_forwarded_entry("192.0.2.7:4711"), ip("192.0.2.7"));
  EXPECT_EQ(parse_forwarded_entry("2001:db8::1"), ip("2001:db8::1"));
  EXPECT_EQ(parse_forwarded_entry("[2001:db8::1]"), ip("2001:db8::1"));
  EXPECT_EQ(parse_forwarded_entry("[2001:db8::1]:443"), ip("2001:db8::1"));
  for (const char* bad : {"", "unknown", "_hidden", "192.0.2.7:", "192.0.2.7:http",
                          "192.0.2.7:123456", "[2001:db8::1", "[2001:db8::1]x", "[192.0.2.7]",
                          "2001:db8::1:80:", "1.2.3.4, 5.6.7.8", "\"192.0.2.7\""})
    EXPECT_FALSE(parse_forwarded_entry(bad)) << bad;
}

class ClientIp : public ::testing::Test {
 protected:
  IpAddress resolve(const char* peer, std::vector<std::string_view> xff) {
    return resolve_client_ip(ip(peer), trusted_, std::span(xff.data(), xff.size()));
  }
  std::vector<IpNetwork> trusted_{net("10.0.0.0/8"), net("fd00::/8")};
};

TEST_F(ClientIp, AnUntrustedPeerIsTheClientWhateverItForwards) {
  EXPECT_EQ(resolve("203.0.113.5", {"198.51.100.1"}), ip("203.0.113.5"));
  EXPECT_EQ(resolve_client_ip(ip("10.0.0.1"), {}, {}), ip("10.0.0.1"));  // nothing trusted
}

TEST_F(ClientIp, TheRightmostUntrustedHopFromATrustedPeer) {
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1"}), ip("198.51.100.1"));
  // The client forged the first entry; the ingress (10.1.1.1) appended the real one.
  EXPECT_EQ(resolve("10.0.0.1", {"1.1.1.1, 198.51.100.1, 10.1.1.1"}), ip("198.51.100.1"));
  // Several lines are one list, in order.
  EXPECT_EQ(resolve("10.0.0.1", {"1.1.1.1", "198.51.100.1,10.2.2.2"}), ip("198.51.100.1"));
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1", "10.2.2.2", ""}), ip("198.51.100.1"));
  EXPECT_EQ(resolve("fd00::5", {"[2001:db8::7]:1234"}), ip("2001:db8::7"));
  EXPECT_EQ(resolve("::ffff:10.0.0.1", {"198.51.100.1:555"}), ip("198.51.100.1"));
}

TEST_F(ClientIp, AllTrustedMeansTheLeftmost) {
  EXPECT_EQ(resolve("10.0.0.1", {"10.9.9.9, 10.8.8.8"}), ip("10.9.9.9"));
  EXPECT_EQ(resolve("10.0.0.1", {}), ip("10.0.0.1"));  // no header: the peer
}

TEST_F(ClientIp, GarbageStopsAtTheLastTrustedHop) {
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1, unknown"}), ip("10.0.0.1"));
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1, garbage, 10.3.3.3"}), ip("10.3.3.3"));
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1,,10.3.3.3"}), ip("10.3.3.3"));
  EXPECT_EQ(resolve("10.0.0.1", {"198.51.100.1, 10.3.3.3,"}), ip("10.0.0.1"));
}

// Token buckets on an injected clock (nanoseconds).
constexpr uint64_t kSecond = 1'000'000'000;

TEST(TokenBucket, BurstThenSteadyRate) {
  BucketParams p{kSecond / 10, 5 * (kSecond / 10)};  // 10/s, burst 5
  uint64_t tat = 0, now = 1000 * kSecond;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(bucket_take(tat, now, p), 0u) << i;
  // Empty: the next token comes in exactly one interval.
  EXPECT_EQ(bucket_take(tat, now, p), kSecond / 10);
  EXPECT_EQ(bucket_take(tat, now + kSecond / 20, p), kSecond / 20);
  EXPECT_EQ(bucket_take(tat, now + kSecond / 10, p), 0u);
  // Steady: one per interval is admitted, no more.
  now += kSecond / 10;
  for (int i = 0; i < 100; ++i) {
    now += kSecond / 10;
    EXPECT_EQ(bucket_take(tat, now, p), 0u) << i;
    EXPECT_NE(bucket_take(tat, now, p), 0u) << i;
  }
  // Idle refills the burst, never more.
  now += 60 * kSecond;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(bucket_take(tat, now, p), 0u) << i;
  EXPECT_NE(bucket_take(tat, now, p), 0u);
}

TEST(TokenBucket, RetryAfterIsTheCeilingOfTheWaitAndAtLeastOne) {
  EXPECT_EQ(retry_after_seconds(1), 1u);
  EXPECT_EQ(retry_after_seconds(kSecond), 1u);
  EXPECT_EQ(retry_after_seconds(kSecond + 1), 2u);
  EXPECT_EQ(retry_after_seconds(59 * kSecond + 5), 60u);
  // 2 per minute, burst 1: after one request the next is 30 s away.
  BucketParams p{30 * kSecond, 30 * kSecond};
  uint64_t tat = 0, now = 5 * kSecond;
  EXPECT_EQ(bucket_take(tat, now, p), 0u);
  EXPECT_EQ(retry_after_seconds(bucket_take(tat, now, p)), 30u);
  EXPECT_EQ(retry_after_seconds(bucket_take(tat, now + 29 * kSecond + 1, p)), 1u);
}

TEST(TokenBucket, AdmittedCountOverAnIntervalMatchesTheRate) {
  // 1000 requests per second offered at 10x the rate of 100/s with burst 10, over 10 s:
  // admitted = burst + rate x time.
  BucketParams p{kSecond / 100, 10 * (kSecond / 100)};
  uint64_t tat = 0, admitted = 0;
  const uint64_t start = 7 * kSecond;
  for (uint64_t t = start; t < start + 10 * kSecond; t += kSecond / 1000)
    if (bucket_take(tat, t, p) == 0) ++admitted;
  EXPECT_EQ(admitted, 10u + 1000u - 1u);
}

TEST(BucketTable, KeysAreBoundedAndTheLeastRecentlyUsedIsEvicted) {
  auto evictions = std::make_shared<std::atomic<uint64_t>>(0);
  BucketTable t(3, evictions);  // burst 1 at 1/s: a second request of a key is refused
  t.set_params({kSecond, kSecond}, 0);
  const uint64_t now = 100 * kSecond;
  EXPECT_EQ(t.take("a", now), 0u);
  EXPECT_EQ(t.take("b", now), 0u);
  EXPECT_EQ(t.take("c", now), 0u);
  EXPECT_EQ(t.keys(), 3u);
  EXPECT_NE(t.take("a", now), 0u);  // a is now the most recently used
  EXPECT_EQ(t.take("d", now), 0u);  // evicts b
  EXPECT_EQ(t.keys(), 3u);
  EXPECT_EQ(evictions->load(), 1u);
  EXPECT_NE(t.take("a", now), 0u);  // kept its empty bucket
  EXPECT_NE(t.take("c", now), 0u);
  EXPECT_EQ(t.take("b", now), 0u);  // evicted: starts full again (and evicts d)
  EXPECT_EQ(evictions->load(), 2u);
  EXPECT_EQ(t.take("d", now), 0u);
}

TEST(BucketTable, StripesSplitTheBoundExactly) {
  BucketTable small(100, nullptr);
  EXPECT_EQ(small.stripes(), 1u);
  BucketTable big(100000, nullptr);
  EXPECT_EQ(big.stripes(), 64u);
  big.set_params({kSecond, kSecond}, 0);
  for (int i = 0; i < 200000; ++i) big.take(std::to_string(i), kSecond);
  EXPECT_LE(big.keys(), 100000u);
  EXPECT_GT(big.keys(), 99000u);
}

TEST(BucketTable, ThreadsShareOneBucketWithoutLosingTokens) {
  // 4 threads take from one key with burst 1000 at a negligible refill: exactly 1000 admitted.
  BucketTable t(10, nullptr);
  t.set_params({1000 * kSecond, 1000 * 1000 * kSecond}, 0);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < 500; ++j)
        if (t.take("k", 10 * kSecond) == 0) admitted.fetch_add(1);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 1000);
}

TEST(BanList, BansExpireAndCanBeLifted) {
  BanList bans;
  EXPECT_FALSE(bans.banned(ip("192.0.2.7"), 0));
  EXPECT_FALSE(bans.add(net("192.0.2.0/24"), 1000, 5000));
  EXPECT_TRUE(bans.banned(ip("192.0.2.7"), 1000));
  EXPECT_TRUE(bans.banned(ip("192.0.2.7"), 5999));
  EXPECT_FALSE(bans.banned(ip("192.0.3.1"), 2000));
  EXPECT_FALSE(bans.banned(ip("192.0.2.7"), 6000));  // expired
  EXPECT_EQ(bans.active(6000), 0u);
  EXPECT_TRUE(bans.list(6000).empty());
  EXPECT_FALSE(bans.add(net("2001:db8::/64"), 7000, 60000));
  EXPECT_TRUE(bans.add(net("2001:db8::/64"), 8000, 1000));  // replaced: now shorter
  EXPECT_EQ(bans.list(8500).size(), 1u);
  EXPECT_EQ(bans.list(8500)[0].expires_ms, 9000u);
  EXPECT_TRUE(bans.banned(ip("2001:db8::99"), 8500));
  EXPECT_FALSE(bans.remove(net("2001:db8::/48"), 8500));  // only the exact network
  EXPECT_TRUE(bans.remove(net("2001:db8::/64"), 8500));
  EXPECT_FALSE(bans.banned(ip("2001:db8::99"), 8500));
}

// A compiled policy from a configuration file.
class Policy : public ::testing::Test {
 protected:
  std::shared_ptr<const GuardPolicy> configure(const std::string& yaml) {
    ConfigLoad r = load_config_text(yaml, "t.yaml", {});
    EXPECT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0]);
    if (!r.config) return nullptr;
    config_ = r.config;
    return guard_.configure(*r.config, kSecond);  // the clock the tests pass to rate_check
  }
  MessageHead head(const std::string& text) { return test::parse_head(HTTP_REQUEST, text); }
  Guard guard_;
  std::shared_ptr<Config> config_;
};

const char kTwoRules[] = R"(
listeners:
  - {name: ingress, address: 127.0.0.1:0, cluster: app}
  - {name: egress, address: 127.0.0.1:0, cluster: app}
clusters: [{name: app, endpoints: ["127.0.0.1:1"]}]
rate_limits:
  - {name: login, listener: ingress, prefix: /login, methods: [POST], rate: 1/m}
  - {name: api, host: "*.example.com", key: header, header: X-Api-Key, rate: 2/s, burst: 2}
)";

TEST_F(Policy, RulesMatchByListenerPathMethodAndHost) {
  auto p = configure(kTwoRules);
  ASSERT_TRUE(p);
  const IpAddress a = ip("192.0.2.1");
  const uint64_t now = 50 * kSecond;
  MessageHead post = head("POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_FALSE(p->rate_check(0, "x", "/login", post, a, now).limited_by);
  auto v = p->rate_check(0, "x", "/login", post, a, now);
  ASSERT_TRUE(v.limited_by);
  EXPECT_EQ(v.limited_by->config.name, "login");
  EXPECT_EQ(v.retry_after_s, 60u);
  // Another client has its own bucket; a GET or another path or listener is not limited.
  EXPECT_FALSE(p->rate_check(0, "x", "/login", post, ip("192.0.2.2"), now).limited_by);
  MessageHead get = head("GET /login HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_FALSE(p->rate_check(0, "x", "/login", get, a, now).limited_by);
  EXPECT_FALSE(p->rate_check(0, "x", "/other", post, a, now).limited_by);
  EXPECT_FALSE(p->rate_check(1, "x", "/login", post, a, now).limited_by);
  // The header rule: by value, and requests without it share one bucket.
  MessageHead k1 = head("GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Api-Key: one\r\n\r\n");
  MessageHead k2 = head("GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Api-Key: two\r\n\r\n");
  MessageHead none = head("GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
  for (int i = 0; i < 2; ++i) {
    EXPECT_FALSE(p->rate_check(1, "a.example.com", "/", k1, a, now).limited_by);
    EXPECT_FALSE(p->rate_check(1, "a.example.com", "/", none, a, now).limited_by);
  }
  EXPECT_TRUE(p->rate_check(1, "a.example.com", "/", k1, ip("192.0.2.9"), now).limited_by);
  EXPECT_TRUE(p->rate_check(1, "a.example.com", "/", none, a, now).limited_by);
  EXPECT_FALSE(p->rate_check(1, "a.example.com", "/", k2, a, now).limited_by);
  EXPECT_FALSE(p->rate_check(1, "example.com", "/", k1, a, now).limited_by);  // not under it
  GuardFigures f = guard_.figures(*config_);
  ASSERT_EQ(f.rules.size(), 3u);  // login on ingress, api on both
  EXPECT_EQ(f.rules[0].rule, "login");
  EXPECT_EQ(f.rules[0].results[0], 2u);
  EXPECT_EQ(f.rules[0].results[1], 1u);
  EXPECT_EQ(f.keys, 2u + 3u);
}

TEST_F(Policy, AReloadKeepsTheBucketsOfRulesThatStayByName) {
  auto p1 = configure(kTwoRules);
  ASSERT_TRUE(p1);
  MessageHead post = head("POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  const IpAddress a = ip("192.0.2.1");
  EXPECT_FALSE(p1->rate_check(0, "x", "/login", post, a, kSecond).limited_by);
  std::string next = kTwoRules;
  next.replace(next.find("1/m"), 3, "2/m");  // a new rate applies to the kept bucket
  auto p2 = configure(next);
  ASSERT_TRUE(p2);
  auto v = p2->rate_check(0, "x", "/login", post, a, kSecond);
  ASSERT_TRUE(v.limited_by);
  EXPECT_EQ(v.retry_after_s, 30u);
  // Renamed: a new rule with fresh buckets.
  next.replace(next.find("name: login"), 11, "name: signin");
  auto p3 = configure(next);
  EXPECT_FALSE(p3->rate_check(0, "x", "/login", post, a, kSecond).limited_by);
}

TEST_F(Policy, DryRunCountsWithoutRefusing) {
  auto p = configure(R"(
rate_limits: [{name: all, key: none, rate: 1/h, dry_run: true}]
)");
  ASSERT_TRUE(p);
  MessageHead get = head("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(p->rate_check(0, "x", "/", get, ip("192.0.2.1"), kSecond).limited_by);
  GuardFigures f = guard_.figures(*config_);
  ASSERT_EQ(f.rules.size(), 1u);
  EXPECT_EQ(f.rules[0].results[static_cast<size_t>(RateResult::kAllowed)], 1u);
  EXPECT_EQ(f.rules[0].results[static_cast<size_t>(RateResult::kDryRunLimited)], 2u);
}

TEST_F(Policy, ExtremeRatesNeitherWrapNorRefuseWrongly) {
  // 1/h with a burst of 10^9: burst x interval would pass 2^64 ns; it is saturated instead.
  auto p = configure(R"(
rate_limits:
  - {name: huge, key: none, rate: 1/h, burst: 1000000000}
  - {name: fast, key: none, prefix: /fast, rate: 1000000000/s, burst: 1}
)");
  ASSERT_TRUE(p);
  MessageHead get = head("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 1000; ++i)
    ASSERT_FALSE(p->rate_check(0, "x", "/", get, ip("192.0.2.1"), kSecond).limited_by) << i;
  // 10^9/s is one request per nanosecond: a second request at the same instant waits 1 ns,
  // and Retry-After still says at least one second.
  MessageHead fast = head("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_FALSE(p->rate_check(0, "x", "/fast", fast, ip("192.0.2.1"), 2 * kSecond).limited_by);
  auto v = p->rate_check(0, "x", "/fast", fast, ip("192.0.2.1"), 2 * kSecond);
  ASSERT_TRUE(v.limited_by);
  EXPECT_EQ(v.retry_after_s, 1u);
  EXPECT_FALSE(p->rate_check(0, "x", "/fast", fast, ip("192.0.2.1"), 2 * kSecond + 1).limited_by);
}

TEST_F(Policy, IpRulesOnThePeerOrTheClientAndBans) {
  auto p = configure(R"(
listeners:
  - name: a
    address: 127.0.0.1:0
    cluster: app
    ip_rules: {allow: [10.0.0.0/8], deny: [10.6.6.0/24]}
  - name: b
    address: 127.0.0.1:0
    cluster: app
    trusted_proxies: [10.0.0.0/8]
    ip_rules: {deny: [198.51.100.0/24], action: close, match: client}
clusters: [{name: app, endpoints: ["127.0.0.1:1"]}]
)");
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->screen_connection(0, ip("10.1.1.1"), 0).denied);
  auto d = p->screen_connection(0, ip("10.6.6.6"), 0);
  EXPECT_TRUE(d.denied);
  EXPECT_EQ(d.list, DenyList::kDeny);
  EXPECT_FALSE(d.close);
  d = p->screen_connection(0, ip("192.0.2.1"), 0);
  EXPECT_TRUE(d.denied);
  EXPECT_EQ(d.list, DenyList::kAllow);
  // Listener b matches the client IP: nothing to decide at accept.
  EXPECT_FALSE(p->screen_connection(1, ip("198.51.100.1"), 0).denied);
  d = p->screen_request(1, ip("10.0.0.1"), ip("198.51.100.1"), 0);
  EXPECT_TRUE(d.denied);
  EXPECT_TRUE(d.close);
  EXPECT_FALSE(p->screen_request(1, ip("10.0.0.1"), ip("192.0.2.1"), 0).denied);
  // Bans: at accept on the peer; at a request on the peer or the client.
  guard_.bans().add(net("192.0.2.0/24"), 0, 1000);
  d = p->screen_connection(1, ip("192.0.2.1"), 10);
  EXPECT_TRUE(d.denied);
  EXPECT_EQ(d.list, DenyList::kBan);
  EXPECT_TRUE(p->screen_request(1, ip("10.0.0.1"), ip("192.0.2.1"), 10).denied);
  EXPECT_FALSE(p->screen_request(1, ip("10.0.0.1"), ip("192.0.2.1"), 1000).denied);
  GuardFigures f = guard_.figures(*config_);
  ASSERT_EQ(f.denied.size(), 2u);
  EXPECT_EQ(f.denied[0].lists[0], 1u);  // a: deny
  EXPECT_EQ(f.denied[0].lists[1], 1u);  // a: allow
  EXPECT_EQ(f.denied[1].lists[0], 1u);  // b: deny
  EXPECT_EQ(f.denied[1].lists[2], 2u);  // b: ban
}

}  // namespace
}  // namespace sluice
