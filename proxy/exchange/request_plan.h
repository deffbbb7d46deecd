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

namespace sluice {

struct RequestPlan {
  int refuse_status = 0;  // 0: forward it; otherwise sluice answers with this status
  const char* refuse_why = nullptr;
  bool malformed = false;  // the client's connection cannot carry another request after it
  Framing framing = Framing::kNone;
  bool upgrade = false;    // the client asked to switch protocols (Upgrade forwarded)
  bool websocket = false;  // ...to WebSocket
  bool expect_continue = false;
  RequestTarget target;
  std::string_view host;  // routing host: lower-case, without port (may view host_buf)
};

// `max_body_bytes`: 0 for no limit. `host_buf` holds the lower-cased host when it had to be
// changed.
RequestPlan plan_request(const MessageHead& req, uint64_t max_body_bytes, std::string& host_buf);

// How the head of a request planned for forwarding is rewritten. `request_id`: the id sluice
// adds, empty when the request has one; `default_host`: the Host of an HTTP/1.0 request that
// has none.
RequestRewrite plan_request_rewrite(const MessageHead& req, const RequestPlan& plan,
                                    std::string_view client_ip, bool secure,
                                    std::string_view request_id, std::string_view default_host);

}  // namespace sluice
