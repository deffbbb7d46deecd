// Exchange: the protection of issue 17 — a cluster's concurrency caps, circuit breaker and
// retry budget as one request meets them, and the refusals sluice answers with Retry-After.
#include <algorithm>
#include <string>

#include <llhttp.h>

#include "core/log.h"
#include "exchange/exchange.h"
#include "upstream/cluster_guard.h"

namespace sluice {

bool Exchange::admit_to_cluster() {
  ClusterGuard* g = cluster_->guard();
  if (!g) return true;
  const std::string& name = cluster_->config().name;
  if (!g->start_request(cluster_->guard_slot())) {
    cluster_->stats().overflow[0].add();
    respond_refusal(
        503, "overflow",
        "cluster '" + name + "' has its limit of requests in flight (limits.max_requests)", 0);
    return false;
  }
  guard_ = g;
  guard_slot_ = cluster_->guard_slot();
  if (CircuitBreaker* b = g->breaker()) {
    const CircuitBreaker::Admission a = b->admit(rc_->loop->now_ms());
    if (a.transition)
      cluster_->stats().circuit_transitions[static_cast<size_t>(*a.transition)].add();
    if (!a.allowed) {
      const bool open = a.state == CircuitState::kOpen;
      respond_refusal(503, "circuit_open",
                      "circuit breaker " +
                          std::string(open ? "open" : "half-open, trials under way") +
                          " for cluster '" + name + "'",
                      a.retry_after_s, "X-Sluice-Circuit", open ? "open" : "half-open");
      return false;
    }
    ticket_ = a.ticket;
  }
  return true;
}

bool Exchange::take_retry() {
  if (!guard_ || retry_counted_) return true;  // a request draws on the budget once
  if (guard_->start_retry()) {
    retry_counted_ = true;
    return true;
  }
  cluster_->stats().retry_budget_exhausted.add();
  LOG_DEBUG("cluster %s: retry budget spent (%u retries, %llu requests in flight); not retrying",
            cluster_->config().name.c_str(), guard_->retries_in_flight(),
            static_cast<unsigned long long>(guard_->requests_in_flight()));
  return false;
}

bool Exchange::count_pending() {
  if (!guard_ || pending_counted_) return true;
  if (guard_->start_pending()) {
    pending_counted_ = true;
    return true;
  }
  cluster_->stats().overflow[1].add();
  respond_refusal(503, "overflow",
                  "cluster '" + cluster_->config().name +
                      "' has its limit of requests waiting for a connection (limits.max_pending)",
                  0);
  return false;
}

void Exchange::stop_pending() {
  if (!pending_counted_) return;
  pending_counted_ = false;
  guard_->end_pending();
}

bool Exchange::failure_status(int status) const {
  if (!guard_ || !guard_->breaker()) return false;
  const auto& s = guard_->breaker()->settings().failure_statuses;
  return std::find(s.begin(), s.end(), status) != s.end();
}

void Exchange::breaker_outcome(bool failure) {
  if (!ticket_.valid) return;
  const CircuitBreaker::Ticket t = ticket_;
  ticket_ = CircuitBreaker::Ticket{};
  if (auto moved = guard_->breaker()->record(t, failure, rc_->loop->now_ms()))
    cluster_->stats().circuit_transitions[static_cast<size_t>(*moved)].add();
}

void Exchange::release_guard() {
  if (!guard_) return;
  if (ticket_.valid) guard_->breaker()->cancel(ticket_);  // no outcome: the client went away
  ticket_ = CircuitBreaker::Ticket{};
  stop_pending();
  if (retry_counted_) guard_->end_retry();
  retry_counted_ = false;
  guard_->end_request(guard_slot_);
  guard_ = nullptr;
}

void Exchange::respond_refusal(int status, const char* reason, std::string_view why,
                               uint32_t retry_after_s, std::string_view header,
                               std::string_view value, std::string_view content_type,
                               std::string_view body) {
  if (!active_) return;
  if (response_head_sent_) {
    client_.cut_response();
    return;
  }
  set_reason(reason);
  if (grpc_) {
    // The same refusal as a gRPC status (UNAVAILABLE for every 503 here), with its Retry-After
    // and extra header as fields of the Trailers-Only response.
    char retry[24];
    snprintf(retry, sizeof retry, "%u", retry_after_s);
    ExtraHeader extra[2];
    size_t n = 0;
    if (retry_after_s) extra[n++] = {"Retry-After", retry};
    if (!header.empty()) extra[n++] = {header, value};
    respond_grpc(status, why, std::span<const ExtraHeader>(extra, n), false);
    return;
  }
  drop_upstream();
  leave_queue();
  status_ = status;
  LoopContext& ctx = *rc_->loop;
  ctx.stats.sluice_errors.add();
  if (cluster_ && status >= 500) cluster_->stats().requests[4].add();
  LOG_DEBUG("%s from %s: %d %.*s", llhttp_method_name(static_cast<llhttp_method_t>(method_)),
            std::string(rc_->client_ip).c_str(), status, static_cast<int>(why.size()), why.data());
  const std::string text = body.empty() ? error_body(status, why) : std::string();
  const std::string_view out = body.empty() ? std::string_view(text) : body;
  MessageHead h;
  h.status = status;
  h.has_content_length = true;
  h.content_length = out.size();
  h.add_header("Content-Type",
               content_type.empty() ? std::string_view("text/plain") : content_type);
  h.add_header("Content-Length", std::to_string(out.size()));
  if (retry_after_s) h.add_header("Retry-After", std::to_string(retry_after_s));
  if (!header.empty()) h.add_header(header, value);
  h.add_header("Cache-Control", "no-store");
  response_head_sent_ = true;
  response_bytes_ += client_.send_head(h);
  if (!active_) return;
  if (!head_request_ && !out.empty()) {
    BlockWriter w(ctx.blocks, out.size());
    w.append(out);
    write_response_body(w.finish());
    if (!active_) return;
  }
  client_.send_end();
  if (active_) finish();
}

}  // namespace sluice
