// The parts of Exchange::begin that look at who the client is (issue #17): its address (from
// X-Forwarded-For when the socket's peer is a trusted proxy), bans and the listener's IP rules
// before routing, and the rate-limit rules after routing, before an upstream is asked for.
#include <llhttp.h>

#include <array>
#include <string>

#include "core/log.h"
#include "exchange/exchange.h"
#include "exchange/request_plan.h"
#include "guard/client_ip.h"
#include "guard/token_bucket.h"

namespace sluice {

namespace {
// X-Forwarded-For lines read per request; a request with more is judged by its last ones (the
// rightmost entries, those the trusted proxies added, are what counts).
constexpr size_t kMaxForwardedLines = 16;
}  // namespace

bool Exchange::screen_client(const MessageHead& req) {
  client_addr_ = rc_->peer;
  const GuardPolicy* g = rc_->guard.get();
  if (!g) return true;
  const GuardPolicy::Listener& l = g->listener(rc_->listener);
  if (!l.trusted.empty() && in_networks(l.trusted, rc_->peer)) {
    std::array<std::string_view, kMaxForwardedLines> lines;
    size_t n = 0;
    for (size_t i = 0; i < req.header_count(); ++i) {
      if (!iequals(req.name(i), "x-forwarded-for")) continue;
      if (n == lines.size()) {  // keep the last ones
        std::move(lines.begin() + 1, lines.end(), lines.begin());
        --n;
      }
      lines[n++] = req.value(i);
    }
    client_addr_ = resolve_client_ip(rc_->peer, l.trusted, std::span(lines.data(), n));
    if (log_ && !(client_addr_ == rc_->peer)) log_->client = client_addr_.str();
  }
  if (!g->may_deny(rc_->listener)) return true;  // no ban and no IP rule: nothing to look at
  const GuardPolicy::Denial d =
      g->screen_request(rc_->listener, rc_->peer, client_addr_, /*now_ms: when needed*/ 0);
  if (!d.denied) return true;
  if (d.list == DenyList::kBan) {
    // A ban added while this connection was open: the request is refused and an HTTP/1.1
    // connection closes after the 403 (`malformed`); an HTTP/2 stream ends with its 403.
    set_reason("banned");
    answer_error(403, "banned", /*malformed=*/true, {}, false);
    return false;
  }
  set_reason("denied");
  if (d.close) {
    // No answer at all: the HTTP/1.1 connection is closed, an HTTP/2 stream reset.
    status_ = 0;
    client_.cut_response();
    return false;
  }
  answer_error(403, "denied by the listener's IP rules", false, {}, false);
  return false;
}

bool Exchange::check_rate_limits(const MessageHead& req, const RequestPlan& plan) {
  const GuardPolicy* g = rc_->guard.get();
  if (!g || g->listener(rc_->listener).rules.empty()) return true;
  const GuardPolicy::RateVerdict v =
      g->rate_check(rc_->listener, plan.host, plan.target.path, req, client_addr_, uv_hrtime());
  if (!v.limited_by) return true;
  if (log_) log_->reason = "rate_limited:" + v.limited_by->config.name;
  // A gRPC call gets HTTP 200 with grpc-status 8 (RESOURCE_EXHAUSTED) and the same Retry-After
  // (answer_error makes the Trailers-Only form).
  char retry[24];
  snprintf(retry, sizeof retry, "%llu", static_cast<unsigned long long>(v.retry_after_s));
  const ExtraHeader extra[] = {{"Retry-After", retry}};
  answer_error(429, "rate limited", false, extra, false);
  return false;
}

}  // namespace sluice
