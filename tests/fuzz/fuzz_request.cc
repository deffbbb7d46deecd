// The request path: bytes from a client → HttpParser(HTTP_REQUEST) in reads cut by the input →
// on each head, the plan Exchange::begin makes (plan_request) and write_request_head → the
// bytes sluice would send upstream, checked against what they must be.
//
// Input: [split control byte][flags byte][request bytes...]
//   split control: see Splitter; flags: bit 0 the client came over TLS (X-Forwarded-Proto
//   https), bit 1 a 1 KiB head limit instead of the default 64 KiB.
//
// Invariants:
//  - one read and the chosen reads give the same events (heads, bodies, completions, the
//    byte where a tunnel starts), and both fail or neither;
//  - the forwarded head is exactly one request head for a strict llhttp, with the same method,
//    the expected target and HTTP/1.1;
//  - exactly one Host; no hop-by-hop header (RFC 9110 §7.6.1: the fixed ones and every one the
//    client's Connection header names) except those sluice writes itself (Upgrade and
//    "Connection: upgrade" for an upgrade, "Transfer-Encoding: chunked" for a chunked body);
//  - one Content-Length (the client's length) for a sized body, none otherwise;
//  - every other header is the client's, in the client's order, byte for byte, followed by the
//    ones sluice adds (a reference filter written here from the RFC, not from rewrite.cc).
#include <string>
#include <vector>

#include "exchange/request_plan.h"
#include "fuzz_http.h"
#include "http/rewrite.h"
#include "http/router.h"

namespace sluice::fuzz {
namespace {

constexpr std::string_view kClientIp = "192.0.2.10";
constexpr std::string_view kDefaultHost = "127.0.0.1:4000";
constexpr std::string_view kRequestId = "0123456789abcdef0123456789abcdef";

// Exchange::begin's own decisions (exchange/request_plan.h): whether a head is forwarded at
// all, and the rewrite settings it passes. Returns false when sluice answers the request itself.
bool plan(const MessageHead& req, bool tls, RequestRewrite& rw, RequestTarget& target) {
  static std::string host_buf;
  const RequestPlan p = plan_request(req, 0, host_buf);
  if (p.refuse_status) return false;
  target = p.target;
  const bool has_id = req.find("x-request-id") != std::string_view::npos;
  rw = plan_request_rewrite(req, p, kClientIp, tls, has_id ? "" : kRequestId, kDefaultHost);
  return true;
}

// What the forwarded headers must be, from RFC 9110 §7.6.1 and sluice's documented additions.
Headers expected_headers(const MessageHead& req, const RequestRewrite& rw) {
  const std::vector<std::string> options = connection_options(req);
  auto hop = [&](std::string_view n) { return fixed_hop_by_hop(n) || listed(options, n); };
  Headers out;
  std::string xff;
  bool host_kept = false;
  for (size_t i = 0; i < req.header_count(); ++i) {
    std::string_view n = req.name(i), v = req.value(i);
    if (hop(n)) continue;
    if (iequal(n, "x-forwarded-for")) {
      xff.append(v).append(", ");
      continue;
    }
    if (iequal(n, "content-length") || iequal(n, "expect") || iequal(n, "x-forwarded-proto"))
      continue;
    if (iequal(n, "host")) {
      if (!rw.host.empty()) continue;
      host_kept = true;
    }
    out.emplace_back(n, v);
  }
  if (rw.upgrade) {
    for (size_t i = 0; i < req.header_count(); ++i)
      if (iequal(req.name(i), "upgrade")) out.emplace_back("Upgrade", req.value(i));
    out.emplace_back("Connection", "upgrade");
  }
  if (!rw.host.empty()) {
    out.emplace_back("Host", rw.host);
  } else if (!host_kept) {
    out.emplace_back("Host", rw.default_host);
  }
  out.emplace_back("X-Forwarded-For", xff + std::string(rw.client_ip));
  out.emplace_back("X-Forwarded-Proto", rw.proto);
  if (!rw.request_id.empty()) out.emplace_back("X-Request-Id", rw.request_id);
  if (rw.framing == Framing::kContentLength)
    out.emplace_back("Content-Length", std::to_string(rw.content_length));
  if (rw.framing == Framing::kChunked) out.emplace_back("Transfer-Encoding", "chunked");
  return out;
}

// Issue 9's smuggling shapes: a request sluice accepts has one unambiguous framing.
void check_framing(const MessageHead& req) {
  size_t te = 0, cl = 0;
  std::string_view length;
  for (size_t i = 0; i < req.header_count(); ++i) {
    te += iequal(req.name(i), "transfer-encoding");
    if (iequal(req.name(i), "content-length")) {
      ++cl;
      length = req.value(i);
    }
  }
  const std::string ctx = " in " + printable(req.url()) + describe(head_headers(req));
  check(!(te && !req.chunked), "Transfer-Encoding without final chunked accepted" + ctx);
  check(!(req.chunked && cl), "Transfer-Encoding with Content-Length accepted" + ctx);
  check(cl <= 1, "several Content-Length headers accepted" + ctx);
  if (cl) {
    while (!length.empty() && (length.back() == ' ' || length.back() == '\t'))
      length.remove_suffix(1);
    // 1*DIGIT (RFC 9110 §8.6), leading zeros allowed, within 64 bits.
    bool digits = !length.empty();
    uint64_t v = 0;
    for (char c : length) {
      digits = digits && c >= '0' && c <= '9';
      const auto d = static_cast<uint64_t>(c - '0');
      digits = digits && v <= (UINT64_MAX - d) / 10;
      if (digits) v = v * 10 + d;
    }
    check(digits && req.has_content_length && req.content_length == v,
          "Content-Length " + printable(length) + " accepted as " +
              std::to_string(req.content_length) + ctx);
  }
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing: the server
  // must close the connection after it.
  check(!(te && req.http_major == 1 && req.http_minor == 0 && req.keep_alive),
        "an HTTP/1.0 request with Transfer-Encoding keeps its connection" + ctx);
}

void check_forwarded(const MessageHead& req, bool tls) {
  check_framing(req);
  RequestRewrite rw;
  RequestTarget target;
  if (!plan(req, tls, rw, target)) return;
  BlockPool pool;
  std::string out;
  {
    BlockWriter w(pool.get_small(request_head_estimate(req)));
    write_request_head(w, req, rw);
    out.assign(w.finish().view());
  }
  check(pool.outstanding() == 0, "write_request_head kept a block");
  const std::string ctx = "\n  forwarded: " + printable(out, 2000);

  PlainHead p = parse_plain_head(HTTP_REQUEST, out);
  check(p.ok, "the forwarded head is not one valid request head: " + p.error + ctx);
  check(p.method == req.method, "method changed" + ctx);
  std::string want_url(req.url());
  if (!rw.target.empty())
    want_url = (rw.target.front() != '/' && rw.target != "*" ? "/" : "") + std::string(rw.target);
  check(p.url_or_reason == want_url,
        "target " + printable(p.url_or_reason) + ", expected " + printable(want_url) + ctx);
  check(p.http_major == 1 && p.http_minor == 1, "not HTTP/1.1" + ctx);

  const Headers& got = p.headers;
  check(count_named(got, "host") == 1,
        std::to_string(count_named(got, "host")) + " Host headers forwarded" + ctx);
  for (std::string_view h : {"keep-alive", "proxy-connection", "te"})
    check(count_named(got, h) == 0, "hop-by-hop header " + std::string(h) + " forwarded" + ctx);
  check(count_named(got, "connection") == (rw.upgrade ? 1u : 0u), "Connection forwarded" + ctx);
  size_t upgrades = 0;
  for (size_t i = 0; i < req.header_count(); ++i) upgrades += iequal(req.name(i), "upgrade");
  check(count_named(got, "upgrade") == (rw.upgrade ? upgrades : 0u), "Upgrade forwarded" + ctx);
  check(count_named(got, "transfer-encoding") == (rw.framing == Framing::kChunked ? 1u : 0u),
        "Transfer-Encoding forwarded" + ctx);
  check(p.chunked == (rw.framing == Framing::kChunked), "chunked framing differs" + ctx);
  check(count_named(got, "content-length") == (rw.framing == Framing::kContentLength ? 1u : 0u),
        "Content-Length count" + ctx);
  check(p.has_content_length == (rw.framing == Framing::kContentLength) &&
            p.content_length == (p.has_content_length ? req.content_length : 0),
        "Content-Length value" + ctx);
  if (req.method != HTTP_CONNECT)
    check(p.upgrade == rw.upgrade, "upstream would see an upgrade the client did not get" + ctx);
  // A header the client's Connection names is hop-by-hop; only sluice's own may carry its name.
  const std::vector<std::string> options = connection_options(req);
  for (const std::string& o : options) {
    if (fixed_hop_by_hop(o)) continue;
    bool own = false;
    for (std::string_view s :
         {"host", "x-forwarded-for", "x-forwarded-proto", "x-request-id", "content-length"})
      own = own || iequal(o, s);
    if (!own)
      check(count_named(got, o) == 0,
            "header " + printable(o) + " named by Connection was forwarded" + ctx);
  }
  Headers want = expected_headers(req, rw);
  check(got == want, "forwarded headers:" + describe(got) + "\n  expected:" + describe(want) + ctx);
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  if (size < 2) return 0;
  const uint8_t control = data[0];
  const bool tls = data[1] & 1;
  const uint64_t max_head = (data[1] & 2) ? 1024 : 64 * 1024;
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  ParseDriver whole(HTTP_REQUEST, false, max_head, [](const sluice::MessageHead&) {});
  whole.run(input, Splitter(0, input.size()));
  ParseDriver split(HTTP_REQUEST, false, max_head,
                    [tls](const sluice::MessageHead& h) { check_forwarded(h, tls); });
  split.run(input, Splitter(control, input.size()));
  compare_logs(whole.log(), split.log());
  check(whole.blocks_outstanding() == 0 && split.blocks_outstanding() == 0,
        "the parser kept a read block after the input was parsed");
  return 0;
}
