#pragma once
// The decisions Exchange::begin makes from a request head alone: whether sluice answers the
// request itself, how its body is framed, which host and path it is routed by, and how its head
// is rewritten for the upstream. Pure functions (no I/O, no state), so the request fuzz target
// checks exactly the code the proxy runs.
#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.h"
#include "http/rewrite.h"
#include "http/router.h"
#include "http/upgrade.h"

namespace sluice {

struct RequestPlan {
  int refuse_status = 0;  // 0: forward it; otherwise sluice answers with this status
  const char* refuse_why = nullptr;
  bool malformed = false;  // the client's connection cannot carry another request after it
  Framing framing = Framing::kNone;
  bool upgrade = false;       // the client asked to switch to an allowed protocol (forwarded)
  bool websocket = false;     // ...to WebSocket
  UpgradeAllowList upgrades;  // the listener's allow-list (other protocols are removed)
  bool expect_continue = false;
  // A gRPC call (content-type application/grpc, +suffix or ;parameters): sluice's own answers
  // to it are Trailers-Only responses (http/grpc.h).
  bool grpc = false;
  uint64_t grpc_timeout_ms = 0;  // its grpc-timeout (0: none)
  bool has_grpc_timeout = false;
  RequestTarget target;
  std::string_view host;  // routing host: lower-case, without port (may view host_buf)
};

// `max_body_bytes`: 0 for no limit; `upgrades`: the protocols the listener forwards upgrades to
// (http/upgrade.h). `host_buf` holds the lower-cased host when it had to be changed.
RequestPlan plan_request(const MessageHead& req, uint64_t max_body_bytes, UpgradeAllowList upgrades,
                         std::string& host_buf);

// How the head of a request planned for forwarding is rewritten (inline: it only copies fields,
// and a call per request cost more than the copying). `request_id`: the id sluice
// adds, empty when the request has one; `default_host`: the Host of an HTTP/1.0 request that
// has none.
inline RequestRewrite plan_request_rewrite(const MessageHead& req, const RequestPlan& plan,
                                           std::string_view client_ip, bool secure,
                                           std::string_view request_id,
                                           std::string_view default_host) {
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
