#include "exchange/request_plan.h"

namespace sluice {

namespace {
RequestPlan refuse(RequestPlan p, int status, const char* why, bool malformed = false) {
  p.refuse_status = status;
  p.refuse_why = why;
  p.malformed = malformed;
  return p;
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
  const UpgradeDecision upgrade = decide_upgrade(req, upgrades);
  p.upgrade = upgrade.forward;
  p.websocket = upgrade.websocket;
  p.upgrades = upgrades;
  if (req.chunked) {
    p.framing = Framing::kChunked;
  } else if (req.has_content_length) {
    p.framing = Framing::kContentLength;
  }
  // RFC 9112 §3.2: a request with more than one Host header is refused, and so is an HTTP/1.1
  // request without one; malformed, so the connection closes after the 400.
  const size_t host_at = req.find("host");
  if (host_at == std::string_view::npos && !http10)
    return refuse(p, 400, "HTTP/1.1 request without Host", true);
  if (host_at != std::string_view::npos) {
    for (size_t i = host_at + 1; i < req.header_count(); ++i)
      if (iequals(req.name(i), "host")) return refuse(p, 400, "more than one Host header", true);
  }
  if (max_body_bytes && req.has_content_length && req.content_length > max_body_bytes)
    return refuse(p, 413, "request body over the limit");
  // Routed by the target's host (absolute-form, what HTTP_PROXY clients send) or the Host
  // header, and the path.
  if (!split_request_target(req.url(), p.target))
    return refuse(p, 400,
                  "request target not supported (only origin-form and http:// absolute-form)");
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

RequestRewrite plan_request_rewrite(const MessageHead& req, const RequestPlan& plan,
                                    std::string_view client_ip, bool secure,
                                    std::string_view request_id, std::string_view default_host) {
  RequestRewrite rw;
  rw.client_ip = client_ip;
  rw.proto = secure ? "https" : "http";
  rw.request_id = request_id;
  rw.default_host = default_host;
  if (plan.target.absolute) {
    // Forwarded in origin-form with the target's authority as Host (RFC 9112 §3.2.2).
    rw.target = plan.target.path;
    rw.host = plan.target.authority;
  }
  rw.framing = plan.framing;
  rw.content_length = req.content_length;
  rw.upgrade = plan.upgrade;
  rw.upgrades = plan.upgrades;
  return rw;
}

}  // namespace sluice
