#include "exchange/request_plan.h"

#include "http/grpc.h"

namespace sluice {

namespace {
// Marks the plan refused. (Every return of plan_request names the same object, so it is built
// in place, not copied.)
void refuse(RequestPlan& p, int status, const char* why, bool malformed = false) {
  p.refuse_status = status;
  p.refuse_why = why;
  p.malformed = malformed;
}
}  // namespace

RequestPlan plan_request(const MessageHead& req, uint64_t max_body_bytes, UpgradeAllowList upgrades,
                         std::string& host_buf) {
  RequestPlan p;
  const bool http10 = req.http_major == 1 && req.http_minor == 0;
  // An upgrade to a protocol on the listener's list is forwarded; a 101 turns both connections
  // into a tunnel. Any other Upgrade is dropped and the request goes on as a plain one. Either
  // way, an answer other than 101 closes the client connection after it (the client may already
  // have sent bytes of the new protocol).
  const UpgradeDecision upgrade = req.upgrade ? decide_upgrade(req, upgrades) : UpgradeDecision{};
  p.upgrade = upgrade.forward;
  p.websocket = upgrade.websocket;
  p.upgrades = upgrades;
  if (req.chunked) {
    p.framing = Framing::kChunked;
  } else if (req.has_content_length) {
    p.framing = Framing::kContentLength;
  }
  // One look for the content type: the only cost a request that is not a gRPC call pays.
  const size_t ct = req.find("content-type");
  p.grpc = ct != std::string_view::npos && is_grpc_content_type(req.value(ct));
  if (p.grpc) {
    if (const size_t t = req.find("grpc-timeout"); t != std::string_view::npos) {
      const std::optional<uint64_t> ms = parse_grpc_timeout(req.value(t));
      if (!ms) {
        // PROTOCOL-HTTP2.md: a malformed grpc-timeout is a malformed call (INTERNAL).
        refuse(p, 400, "malformed grpc-timeout (1 to 8 digits and a unit: H M S m u n)");
        return p;
      }
      p.grpc_timeout_ms = *ms;
      p.has_grpc_timeout = true;
    }
  }
  // RFC 9112 §3.2: a request with more than one Host header is refused, and so is an HTTP/1.1
  // request without one; malformed, so the connection closes after the 400.
  const size_t host_at = req.find("host");
  if (host_at == std::string_view::npos && !http10) {
    refuse(p, 400, "HTTP/1.1 request without Host", true);
    return p;
  }
  if (host_at != std::string_view::npos) {
    for (size_t i = host_at + 1; i < req.header_count(); ++i) {
      if (iequals(req.name(i), "host")) {
        refuse(p, 400, "more than one Host header", true);
        return p;
      }
    }
  }
  if (max_body_bytes && req.has_content_length && req.content_length > max_body_bytes) {
    refuse(p, 413, "request body over the limit");
    return p;
  }
  // Routed by the target's host (absolute-form, what HTTP_PROXY clients send) or the Host
  // header, and the path.
  if (!split_request_target(req.url(), p.target)) {
    refuse(p, 400, "request target not supported (only origin-form and http:// absolute-form)");
    return p;
  }
  std::string_view host;
  if (p.target.absolute) {
    host = p.target.authority;
  } else if (host_at != std::string_view::npos) {
    host = req.value(host_at);
  }
  p.host = host_without_port(host, host_buf);
  p.expect_continue = p.framing != Framing::kNone && req.has_token("expect", "100-continue");
  return p;
}

}  // namespace sluice
