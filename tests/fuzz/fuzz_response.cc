// The response path: bytes from an upstream → HttpParser(HTTP_RESPONSE) in reads cut by the
// input → on each head, the choices Exchange::on_upstream_head makes and write_response_head as
// it calls it → the head the client would get, checked against what it must be.
//
// Input: [split control byte][flags byte][response bytes...]
//   split control: see Splitter. flags, the request this answers and the client:
//   bit 0 HEAD request (no body whatever the response says), bit 1 HTTP/1.0 client,
//   bit 2 the client asked for keep-alive, bit 3 the request body is complete,
//   bit 4 the request asked for an upgrade, bit 5 sluice is draining, bit 6 a 1 KiB head limit.
//
// Invariants:
//  - one read and the chosen reads give the same events, and both fail or neither;
//  - the head sent to the client is exactly one response head for a strict llhttp, with the
//    upstream's status, HTTP/1.1, the upstream's reason (or sluice's for an empty one);
//  - framing is sluice's: one Content-Length equal to the upstream's for a sized body, one
//    "Transfer-Encoding: chunked" for a re-chunked one, the upstream's Content-Length kept only
//    where there is no body (HEAD, 204, 304, interim);
//  - no hop-by-hop header (fixed ones and those named by the upstream's Connection) except a
//    101's Upgrade/Connection pair and sluice's own Connection: close / keep-alive;
//  - every other header is the upstream's, in order, byte for byte.
#include <string>
#include <vector>

#include "fuzz_http.h"
#include "http/rewrite.h"

namespace sluice::fuzz {
namespace {

struct Exchange {
  bool head_request, client_http10, client_keep_alive, body_done, upgrade, draining;
};

// Which heads reach the client (Exchange::on_upstream_head and the HTTP/1.1 client side's
// send_interim), and the framing the client side gives the others (plan_response_rewrite, the
// proxy's own code). Returns false when no head goes to the client for this one (a 100 answered
// by sluice already, a 101 nobody asked for, interim heads for an HTTP/1.0 client).
bool plan(const MessageHead& head, const Exchange& x, ResponseRewrite& rw) {
  if (head.status == 100) return false;
  if (head.status == 101) return x.upgrade;
  if (head.status < 200) return !x.client_http10;
  rw = plan_response_rewrite(head, ResponseClient{.head_request = x.head_request,
                                                  .http10 = x.client_http10,
                                                  .keep_alive = x.client_keep_alive,
                                                  .body_done = x.body_done,
                                                  .draining = x.draining});
  return true;
}

Headers expected_headers(const MessageHead& resp, const ResponseRewrite& rw) {
  const std::vector<std::string> options = connection_options(resp);
  const bool upgrade = resp.status == 101;
  Headers out;
  for (size_t i = 0; i < resp.header_count(); ++i) {
    std::string_view n = resp.name(i), v = resp.value(i);
    bool pair = upgrade && (iequal(n, "upgrade") || iequal(n, "connection"));
    if (!pair && (fixed_hop_by_hop(n) || listed(options, n))) continue;
    if (rw.framing != Framing::kNone && iequal(n, "content-length")) continue;
    out.emplace_back(n, v);
  }
  if (rw.framing == Framing::kContentLength)
    out.emplace_back("Content-Length", std::to_string(rw.content_length));
  if (rw.framing == Framing::kChunked) out.emplace_back("Transfer-Encoding", "chunked");
  if (!upgrade && rw.close) out.emplace_back("Connection", "close");
  if (!upgrade && !rw.close && rw.keep_alive_header) out.emplace_back("Connection", "keep-alive");
  return out;
}

void check_sent(const MessageHead& resp, const Exchange& x) {
  ResponseRewrite rw;
  if (!plan(resp, x, rw)) return;
  BlockPool pool;
  std::string out;
  {
    BlockWriter w(pool);
    write_response_head(w, resp, rw);
    out.assign(w.finish().view());
  }
  check(pool.outstanding() == 0, "write_response_head kept a block");
  const std::string ctx = "\n  sent: " + printable(out, 2000);

  PlainHead p = parse_plain_head(HTTP_RESPONSE, out);
  check(p.ok, "the head sent to the client is not one valid response head: " + p.error + ctx);
  check(p.status == resp.status, "status changed" + ctx);
  check(p.http_major == 1 && p.http_minor == 1, "not HTTP/1.1" + ctx);
  std::string reason(resp.reason().empty() ? status_reason(resp.status) : resp.reason());
  check(p.url_or_reason == reason, "reason phrase " + printable(p.url_or_reason) + ctx);

  const Headers& got = p.headers;
  const bool upgrade = resp.status == 101;
  size_t in_connection = 0, in_upgrade = 0, in_length = 0;
  for (size_t i = 0; i < resp.header_count(); ++i) {
    in_connection += iequal(resp.name(i), "connection");
    in_upgrade += iequal(resp.name(i), "upgrade");
    in_length += iequal(resp.name(i), "content-length");
  }
  for (std::string_view h : {"keep-alive", "proxy-connection", "te"})
    check(count_named(got, h) == 0, "hop-by-hop header " + std::string(h) + " sent" + ctx);
  check(count_named(got, "transfer-encoding") == (rw.framing == Framing::kChunked ? 1u : 0u),
        "Transfer-Encoding count" + ctx);
  check(p.chunked == (rw.framing == Framing::kChunked), "chunked framing differs" + ctx);
  size_t want_length = rw.framing == Framing::kContentLength ? 1 : 0;
  if (rw.framing == Framing::kNone && !listed(connection_options(resp), "content-length"))
    want_length = in_length;
  check(count_named(got, "content-length") == want_length, "Content-Length count" + ctx);
  if (rw.framing == Framing::kContentLength)
    check(p.has_content_length && p.content_length == resp.content_length,
          "Content-Length value" + ctx);
  if (upgrade) {
    check(count_named(got, "upgrade") == in_upgrade &&
              count_named(got, "connection") == in_connection,
          "a 101 lost its Upgrade/Connection headers" + ctx);
  } else {
    check(count_named(got, "upgrade") == 0, "Upgrade sent" + ctx);
    check(count_named(got, "connection") == (rw.close || rw.keep_alive_header ? 1u : 0u),
          "Connection count" + ctx);
  }
  const std::vector<std::string> options = connection_options(resp);
  for (const std::string& o : options) {
    if (fixed_hop_by_hop(o) || iequal(o, "content-length")) continue;
    check(count_named(got, o) == 0,
          "header " + printable(o) + " named by Connection was sent" + ctx);
  }
  Headers want = expected_headers(resp, rw);
  check(got == want, "headers sent:" + describe(got) + "\n  expected:" + describe(want) + ctx);
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  if (size < 2) return 0;
  const uint8_t control = data[0], flags = data[1];
  Exchange x{bool(flags & 1), bool(flags & 2),  bool(flags & 4),
             bool(flags & 8), bool(flags & 16), bool(flags & 32)};
  const uint64_t max_head = (flags & 64) ? 1024 : 64 * 1024;
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  ParseDriver whole(HTTP_RESPONSE, x.head_request, max_head, [](const sluice::MessageHead&) {});
  whole.run(input, Splitter(0, input.size()));
  ParseDriver split(HTTP_RESPONSE, x.head_request, max_head,
                    [&x](const sluice::MessageHead& h) { check_sent(h, x); });
  split.run(input, Splitter(control, input.size()));
  compare_logs(whole.log(), split.log());
  check(whole.blocks_outstanding() == 0 && split.blocks_outstanding() == 0,
        "the parser kept a read block after the input was parsed");
  return 0;
}
