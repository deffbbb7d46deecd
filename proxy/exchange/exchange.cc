#include "exchange/exchange.h"

#include <llhttp.h>

#include "core/log.h"
#include "exchange/maintenance_check.h"
#include "exchange/request_plan.h"
#include "http/trailers.h"
#include "net/tcp_stream.h"
#include "upstream/cluster_guard.h"

namespace sluice {

namespace {

// Body bytes kept after they were written upstream so an idempotent request can be retried
// on a fresh connection if a reused one turns out stale.
constexpr size_t kRetainLimit = 64 * 1024;

bool is_idempotent(uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_PUT:
    case HTTP_DELETE:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
      return true;
    default:
      return false;
  }
}

void make_request_id(LoopContext& ctx, char out[32]) {
  static const char kHex[] = "0123456789abcdef";
  uint64_t a = ctx.random(), b = ctx.random();
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[(a >> (i * 4)) & 15];
    out[16 + i] = kHex[(b >> (i * 4)) & 15];
  }
}

}  // namespace

UpgradeAllowList Exchange::upgrades() const {
  return rc_->config->listeners[rc_->listener].upgrades;
}

void Exchange::use_cluster(UpstreamSet* c) {
  if (cluster_) cluster_->remove_user();
  cluster_ = c;
  if (c) c->add_user();
}

void Exchange::use_pool(UpstreamSource* p) {
  if (pool_) pool_->remove_user();
  pool_ = p;
  if (p) p->add_user();
}

void Exchange::reset() {
  release_guard();
  use_cluster(nullptr);
  use_pool(nullptr);
  up_ = nullptr;
  queued_ = false;
  request_head_ = Slice();
  request_framing_ = Framing::kNone;
  method_ = 0;
  head_request_ = idempotent_ = false;
  upgrade_ = websocket_ = false;
  request_complete_ = request_end_written_ = false;
  request_body_bytes_ = 0;
  pending_.clear();
  pending_bytes_ = 0;
  retained_.clear();
  retained_bytes_ = 0;
  retain_ok_ = true;
  wrote_any_ = conn_reused_ = retried_ = false;
  connect_retries_ = unprocessed_retries_ = 0;
  request_trailers_ = Slice();
  response_head_sent_ = active_ = false;
  event_stream_ = end_at_event_ = mid_event_ = false;
  newlines_ = 0;
  status_ = 0;
  response_bytes_ = 0;
  upstream_us_ = 0;
  started_ns_ = upstream_ns_ = 0;
  grpc_ = grpc_end_pending_ = grpc_end_on_message_ = grpc_deadline_ = false;
  grpc_status_ = -1;
  grpc_in_ = GrpcMessageTracker();
  grpc_out_ = GrpcMessageTracker();
  grpc_timeout_ms_ = 0;
}

void Exchange::begin(const MessageHead& req) {
  reset();
  rc_ = &client_.request_context();
  LoopContext& ctx = *rc_->loop;
  if (rc_->access_log) {
    if (!log_) log_ = std::make_unique<LogFields>();
    log_->target.clear();
    log_->host.clear();
    log_->request_id.clear();
    log_->reason.clear();
    log_->client.clear();
  } else {
    log_.reset();
  }
  active_ = true;
  ctx.stats.exchanges_active.add();
  started_ns_ = uv_hrtime();
  method_ = req.method;
  head_request_ = req.method == HTTP_HEAD;
  idempotent_ = is_idempotent(req.method);
  retain_ok_ = idempotent_;
  static thread_local std::string host_buf;
  const RequestPlan plan = plan_request(req, rc_->limits().max_body_bytes, upgrades(), host_buf);
  upgrade_ = plan.upgrade;
  websocket_ = plan.websocket;
  request_framing_ = plan.framing;
  if (log_) {
    log_->target.assign(plan.target.absolute ? plan.target.path : req.url());
    log_->host.assign(plan.host);
  }
  // A gRPC call gets gRPC's answers (Trailers-Only) only from an HTTP/2 client: gRPC has no
  // HTTP/1.1 mapping, and one that comes over HTTP/1.1 is refused with a text saying so.
  grpc_ = plan.grpc && rc_->protocol == "HTTP/2";
  if (plan.refuse_status) {
    respond_error(plan.refuse_status, plan.refuse_why, plan.malformed);
    return;
  }
  if (plan.grpc && !grpc_) {
    set_reason("grpc_over_http1");
    respond_error(505,
                  "gRPC requires HTTP/2: this call came over HTTP/1.1 (connect with HTTP/2: h2 "
                  "over TLS, or h2c with prior knowledge)");
    return;
  }
  if (grpc_ && plan.has_grpc_timeout) {
    // The call's deadline counts from its arrival, whatever it waits for.
    grpc_deadline_ = true;
    grpc_timeout_ms_ = plan.grpc_timeout_ms;
    deadline_timer_.start(ctx.loop, this, &Exchange::on_grpc_deadline, plan.grpc_timeout_ms);
  }
  if (!screen_client(req)) return;
  if (rc_->maintenance && rc_->maintenance->mode() != MaintenanceMode::kOff) {
    const auto view = rc_->maintenance->view();
    const MaintenanceDecision d =
        check_maintenance(*view, llhttp_method_name(static_cast<llhttp_method_t>(req.method)),
                          plan.target.path, plan.upgrade);
    if (d.refuse) {
      rc_->listener_stats->maintenance_rejected.add();
      const MaintenanceSettings& ms = view->settings;
      respond_refusal(503, "maintenance", d.why, view->retry_after_s(), {}, {},
                      ms.body.empty() ? std::string_view() : maintenance_content_type(ms), ms.body);
      return;
    }
  }
  UpstreamSet* cluster = rc_->clusters->route(rc_->listener, plan.host, plan.target.path);
  if (!cluster) {
    std::string why = "no route for host '" + std::string(plan.host) + "' and path '" +
                      std::string(plan.target.path.substr(0, 256)) + "'";
    respond_error(404, why.c_str());
    return;
  }
  use_cluster(cluster);
  if (upgrade_ && cluster->config().protocol != UpstreamProtocol::kHttp1) {
    // HTTP/2 has no Upgrade (RFC 9113 §8.6): the route sends WebSockets to an h2/h2c cluster. A
    // mismatch of the configuration, not the upstream failing: no connection, no breaker outcome.
    respond_refusal(502, "upgrade_to_http2_cluster",
                    upstream_error_name(UpstreamError::kUpgradeOverHttp2), 0, {}, {});
    return;
  }
  // An HTTP/2 upstream may refuse a request unprocessed (GOAWAY): any method is then retried,
  // with its body when it is small enough to keep.
  if (cluster->config().protocol != UpstreamProtocol::kHttp1) retain_ok_ = true;
  if (!check_rate_limits(req, plan)) return;
  if (!admit_to_cluster()) return;
  use_pool(cluster->pick_source());
  if (!pool_) {
    respond_error(503, "cluster has no address yet (its endpoints did not resolve)");
    return;
  }
  if (plan.expect_continue) {
    client_.send_continue();
    if (!active_) return;
  }

  char id[32];
  size_t rid = req.find("x-request-id");
  bool need_id = rid == std::string_view::npos;
  if (need_id) make_request_id(ctx, id);
  if (log_) log_->request_id.assign(need_id ? std::string_view(id, sizeof id) : req.value(rid));
  const RequestRewrite rw = plan_request_rewrite(
      req, plan, rc_->client_ip, rc_->secure,
      need_id ? std::string_view(id, sizeof id) : std::string_view(), pool_->host());
  // Sized to the head rather than a pool block: the serialized head stays with the exchange
  // until the response starts (for a retry), which for a long poll can be a long time.
  BlockWriter w(ctx.blocks.get_small(request_head_estimate(req)));
  write_request_head(w, req, rw);
  request_head_ = w.finish();
  acquire(false);
}

void Exchange::acquire(bool fresh) {
  UpstreamSide* side = nullptr;
  PoolFailure failure;
  switch (pool_->acquire_side(this, fresh, &side, &failure)) {
    case UpstreamSource::Acquire::kReady:
      send_to(side);
      break;
    case UpstreamSource::Acquire::kQueued:
      queued_ = true;
      if (!count_pending()) return;
      break;
    case UpstreamSource::Acquire::kFailed:
      on_pool_failure(failure);
      break;
  }
}

void Exchange::on_pool_ready(UpstreamSide* side) {
  queued_ = false;
  stop_pending();
  send_to(side);
}

void Exchange::on_pool_failure(PoolFailure f) {
  queued_ = false;
  stop_pending();
  // A failed connect sent nothing: try another address of the cluster (at most two more).
  bool connect_failed = f == PoolFailure::kConnectRefused || f == PoolFailure::kConnectTimeout ||
                        f == PoolFailure::kTlsHandshake;
  // The budget first: picking another address moves the round robin on.
  if (connect_failed && connect_retries_ < 2 && cluster_->address_count() > 1 && take_retry()) {
    UpstreamSource* next = cluster_->pick_source(pool_);
    if (next && next != pool_) {
      ++connect_retries_;
      cluster_->stats().retries[static_cast<size_t>(RetryReason::kConnectFailed)].add();
      LOG_DEBUG("upstream %s: %s, trying %s", pool_->name().c_str(), pool_failure_name(f),
                next->name().c_str());
      use_pool(next);
      acquire(retried_);
      return;
    }
  }
  // The queue being full is sluice's own limit, not the upstream failing.
  if (f != PoolFailure::kQueueFull) breaker_outcome(true);
  respond_error(f == PoolFailure::kConnectRefused || f == PoolFailure::kTlsHandshake ? 502 : 503,
                pool_failure_name(f));
}

void Exchange::send_to(UpstreamSide* side) {
  up_ = side;
  upstream_ns_ = uv_hrtime();
  conn_reused_ = side->reused();
  wrote_any_ = false;
  request_end_written_ = false;
  side->bind(this, head_request_);
  bool ok = side->send_head(request_head_, request_framing_) == 0;
  for (size_t i = 0; ok && i < retained_.size(); ++i) ok = side->send_body(retained_[i]) == 0;
  if (!ok) {
    // Nothing (or nothing complete) reached a connection that is already gone.
    drop_upstream();
    on_upstream_error(UpstreamError::kReset, false);
    return;
  }
  wrote_any_ = true;
  flush_pending();
}

void Exchange::flush_pending() {
  if (!up_) return;
  bool ok = true;
  for (size_t i = 0; ok && i < pending_.size(); ++i) {
    ok = up_->send_body(pending_[i]) == 0;
    if (retain_ok_) {
      retained_.push_back(pending_[i]);
      retained_bytes_ += pending_[i].len;
    }
  }
  pending_.clear();
  pending_bytes_ = 0;
  if (ok && request_complete_ && !request_end_written_) {
    request_end_written_ = true;
    uint64_t timeout = static_cast<uint64_t>(cluster_->config().response_timeout.count());
    // A gRPC call's deadline bounds the wait for its response head too (its own timer ends
    // the call whatever it waits for; this makes the upstream side's timeout agree).
    if (grpc_deadline_ && (timeout == 0 || grpc_timeout_ms_ < timeout))
      timeout = grpc_timeout_ms_ ? grpc_timeout_ms_ : 1;
    up_->expect_response(timeout);
    ok = up_->send_end(request_trailers_) == 0;
  }
  if (!ok) {
    drop_upstream();
    on_upstream_error(UpstreamError::kReset, false);
    return;
  }
  update_request_backpressure();
}

void Exchange::on_request_body(const Slice& data) {
  if (!active_) return;
  request_body_bytes_ += data.len;
  if (grpc_) grpc_in_.feed(data.data, data.len);
  uint64_t max = rc_->limits().max_body_bytes;
  if (max && request_body_bytes_ > max) {
    respond_error(413, "request body over the limit");
    return;
  }
  if (retain_ok_ && retained_bytes_ + pending_bytes_ + data.len > kRetainLimit) {
    retain_ok_ = false;
    retained_.clear();
    retained_bytes_ = 0;
  }
  pending_.push_back(data);
  pending_bytes_ += data.len;
  if (up_) {
    flush_pending();
  } else {
    update_request_backpressure();
  }
}

void Exchange::on_request_complete(const MessageHead& trailers) {
  if (!active_) return;
  request_complete_ = true;
  // Trailers reach an HTTP/1.1 upstream only in a chunked body (an HTTP/2 request with a
  // content-length has no place for them there).
  if (request_framing_ == Framing::kChunked && forwardable_trailer_count(trailers)) {
    BlockWriter w(rc_->loop->blocks);
    write_last_chunk(w, trailers);
    request_trailers_ = w.finish();
  }
  if (up_) flush_pending();
}

void Exchange::update_request_backpressure() {
  size_t upstream_queued = up_ ? up_->queued() : 0;
  if (pending_bytes_ + upstream_queued > TcpStream::kHighWatermark) {
    client_.pause_request_body();
  } else if (pending_bytes_ + upstream_queued <= TcpStream::kLowWatermark) {
    client_.resume_request_body();
  }
}

void Exchange::on_upstream_drained() {
  if (up_) update_request_backpressure();
}

void Exchange::on_upstream_head(const MessageHead& head) {
  if (head.status == 100) return;  // sluice answered the client's Expect itself
  if (head.status == 101 || head.status >= 200) breaker_outcome(failure_status(head.status));
  if (head.status == 101 && upgrade_ && !upgrade_response_allowed(head, upgrades())) {
    drop_upstream();
    respond_error(502, "upstream switched to a protocol not on the listener's upgrades list");
    return;
  }
  if (head.status == 101 && upgrade_) {
    status_ = 101;
    cluster_->stats().requests[0].add();
    response_head_sent_ = true;
    response_bytes_ += client_.send_head(head);
    return;  // on_upstream_upgraded follows once the head is complete
  }
  if (head.status == 101) {
    // No upgrade was asked for: a protocol error from the upstream.
    drop_upstream();
    respond_error(502, "unexpected 101 from upstream");
    return;
  }
  if (head.status < 200) {  // other interim responses go to the client as they are
    client_.send_interim(head);
    return;
  }
  status_ = head.status;
  cluster_->stats().requests[status_class(head.status)].add();
  if (grpc_) note_grpc_status(head);  // a Trailers-Only response carries it in its head
  size_t ct = head.find("content-type");
  event_stream_ = ct != std::string_view::npos && head.value(ct).size() >= 17 &&
                  iequals(head.value(ct).substr(0, 17), "text/event-stream");
  response_head_sent_ = true;
  if (grpc_) {
    grpc_long_ = true;  // the drain spreads the ends of these
    rc_->loop->stats.grpc_calls_active.add();
  }
  response_bytes_ += client_.send_head(head);
}

void Exchange::write_response_body(const Slice& data) {
  if (data.len == 0) return;
  response_bytes_ += data.len;
  client_.send_body(data);
}

void Exchange::on_upstream_body(const Slice& data) {
  if (!up_) return;
  if (grpc_) return relay_grpc(data);
  if (event_stream_) return relay_event_stream(data);
  write_response_body(data);
  if (up_ && client_.above_high_watermark()) up_->pause_response();
}

// Follows event boundaries (a blank line: two line ends, CR ignored) so that a drain can end
// the stream between two events.
void Exchange::relay_event_stream(const Slice& data) {
  for (size_t i = 0; i < data.len; ++i) {
    char c = data.data[i];
    if (c == '\n') {
      if (++newlines_ >= 2) mid_event_ = false;
    } else if (c != '\r') {
      newlines_ = 0;
      mid_event_ = true;
    }
    if (end_at_event_ && !mid_event_ && newlines_ >= 2) {
      write_response_body(data.sub(0, i + 1));
      if (active_) end_event_stream();
      return;
    }
  }
  write_response_body(data);
  if (up_ && client_.above_high_watermark()) up_->pause_response();
}

void Exchange::drain_event_stream() {
  if (!active_ || !event_stream_ || !response_head_sent_) return;
  if (!client_.can_end_response_early()) return;
  end_at_event_ = true;
  if (!mid_event_) end_event_stream();
}

void Exchange::end_event_stream() {
  drop_upstream();  // its response is unfinished: never reused
  client_.send_end();
  if (active_) finish();
}

void Exchange::on_upstream_trailers(const MessageHead& trailers) {
  // Without a side the exchange has let go of the response (a drained event stream ended).
  if (!up_ || !response_head_sent_) return;
  if (grpc_) note_grpc_status(trailers);
  static thread_local MessageHead forwardable;  // scratch: trailers are rare and small
  copy_forwardable_trailers(trailers, forwardable);
  if (forwardable.header_count()) client_.send_trailers(forwardable);
  forwardable.release_memory();
}

void Exchange::on_upstream_upgraded(const Slice& rest) {
  UpstreamSide* side = up_;
  up_ = nullptr;
  std::unique_ptr<TcpStream> socket = side->take_socket();  // the pool forgets it
  upstream_us_ = (uv_hrtime() - upstream_ns_) / 1000;
  cluster_->stats().duration.observe_us(upstream_us_);
  deactivate();
  pending_.clear();
  retained_.clear();
  request_head_ = Slice();
  client_.start_tunnel(std::move(socket), rest, websocket_);
}

void Exchange::on_client_drained() {
  if (up_) up_->resume_response();
}

void Exchange::on_upstream_complete() {
  UpstreamSide* side = up_;
  up_ = nullptr;
  upstream_us_ = (uv_hrtime() - upstream_ns_) / 1000;
  cluster_->stats().duration.observe_us(upstream_us_);
  side->release(request_complete_ && request_end_written_ && pending_.empty());
  client_.send_end();
  if (active_) finish();
}

bool Exchange::can_retry(UpstreamError e) const {
  if (retried_) return false;
  if (!conn_reused_) return false;
  if (e != UpstreamError::kClosed && e != UpstreamError::kReset) return false;
  return !wrote_any_ || (idempotent_ && retain_ok_);
}

// The upstream says it never processed the request (an HTTP/2 stream above a GOAWAY's last
// stream id, or refused with REFUSED_STREAM): safe to send again whatever the method, and not
// drawn on the retry budget, which bounds the extra work retries put on the app: this one put
// none. A graceful restart of the app refuses every stream in flight above the GOAWAY at once,
// more than the budget's minimum; a request that meets a second connection going away (the old
// process had several) is sent again too, up to kMaxUnprocessedRetries times.
bool Exchange::can_resend_unprocessed() const {
  return unprocessed_retries_ < kMaxUnprocessedRetries && (!wrote_any_ || retain_ok_);
}

void Exchange::on_upstream_error(UpstreamError e, bool response_started) {
  up_ = nullptr;
  if (e == UpstreamError::kResponseTimeout) cluster_->stats().timeouts.add();
  if (response_head_sent_ && grpc_ && grpc_out_.at_boundary()) {
    // A gRPC call ends cleanly between two messages: UNAVAILABLE, which clients retry.
    LOG_WARN("upstream %s: %s mid-call; ending the gRPC call of client %s with UNAVAILABLE",
             pool_->name().c_str(), upstream_error_name(e), std::string(rc_->client_ip).c_str());
    end_grpc_call(GrpcStatus::kUnavailable,
                  std::string("upstream failed: ") + upstream_error_name(e));
    return;
  }
  if (response_head_sent_) {
    // The body is cut: the client must never take a truncated body for a complete one.
    LOG_WARN("upstream %s: %s mid-response; cutting the response to client %s",
             pool_->name().c_str(), upstream_error_name(e), std::string(rc_->client_ip).c_str());
    client_.cut_response();
    return;
  }
  if (!response_started && e == UpstreamError::kUnprocessed) {
    if (can_resend_unprocessed()) {
      ++unprocessed_retries_;
      cluster_->stats().retries[static_cast<size_t>(RetryReason::kGoawayUnprocessed)].add();
      LOG_DEBUG("upstream %s: request not processed, sending it again (attempt %u)",
                pool_->name().c_str(), unprocessed_retries_ + 1u);
      acquire(true);
      return;
    }
  } else if (!response_started && can_retry(e) && take_retry()) {
    retried_ = true;
    cluster_->stats().retries[static_cast<size_t>(RetryReason::kStaleConnection)].add();
    LOG_DEBUG("upstream %s: stale connection (%s), retrying on a fresh connection",
              pool_->name().c_str(), upstream_error_name(e));
    acquire(true);
    return;
  }
  if (e != UpstreamError::kUpgradeOverHttp2) breaker_outcome(true);  // else sluice's refusal
  respond_error(e == UpstreamError::kResponseTimeout ? 504 : 502, upstream_error_name(e));
}

void Exchange::respond_error(int status, const char* why, bool malformed) {
  answer_error(status, why, malformed, {}, true);
}

void Exchange::answer_error(int status, const char* why, bool malformed,
                            std::span<const ExtraHeader> extra, bool warn) {
  if (!active_) return;
  if (grpc_) return respond_grpc(status, why, extra, warn);
  if (response_head_sent_) {
    client_.cut_response();
    return;
  }
  drop_upstream();
  leave_queue();
  status_ = status;
  LoopContext& ctx = *rc_->loop;
  ctx.stats.sluice_errors.add();
  // The cluster failed this request (no address, connect, timeout, bad response): its count too.
  if (cluster_ && status >= 500) cluster_->stats().requests[4].add();
  if (warn) {
    LOG_WARN("%s from %s: %d %s", llhttp_method_name(static_cast<llhttp_method_t>(method_)),
             std::string(rc_->client_ip).c_str(), status, why);
  } else {
    LOG_DEBUG("%s from %s: %d %s", llhttp_method_name(static_cast<llhttp_method_t>(method_)),
              std::string(rc_->client_ip).c_str(), status, why);
  }
  response_bytes_ += client_.send_error(status, why, malformed, extra);
  if (active_) finish();
}

// A request without a response (status 0) is one whose client went away first.
void Exchange::write_access_log(uint64_t duration_us) {
  AccessLog* log = rc_->access_log;
  if (!log) return;
  const Config& cfg = *rc_->config;
  AccessLogEntry e;
  e.listener = cfg.listeners[rc_->listener].name;
  e.client = log_->client.empty() ? rc_->client_ip : std::string_view(log_->client);
  e.method = llhttp_method_name(static_cast<llhttp_method_t>(method_));
  e.target = log_->target;
  e.host = log_->host;
  e.status = status_;
  e.bytes_in = request_body_bytes_;
  e.bytes_out = response_bytes_;
  e.duration_us = duration_us;
  e.upstream_us = upstream_us_;
  if (cluster_) e.cluster = cluster_->config().name;
  if (pool_ && upstream_ns_) e.upstream = pool_->name();
  e.reused = conn_reused_;
  e.request_id = log_->request_id;
  e.protocol = rc_->protocol;
  e.reason = log_->reason;
  e.grpc_status = grpc_ ? grpc_status_ : -1;
  log->append(e, cfg.log.format, rc_->colour_log);
}

void Exchange::drop_upstream() {
  if (!up_) return;
  UpstreamSide* side = up_;
  up_ = nullptr;
  side->reset();
}

void Exchange::leave_queue() {
  if (!queued_) return;
  pool_->cancel(this);
  queued_ = false;
  stop_pending();
}

void Exchange::deactivate() {
  if (!active_) return;
  active_ = false;
  rc_->loop->stats.exchanges_active.sub();
  uint64_t duration_us = (uv_hrtime() - started_ns_) / 1000;
  if (status_) {  // requests that got a response (not those whose client went away first)
    ListenerStats& ls = *rc_->listener_stats;
    ls.requests[status_class(status_)].add();
    ls.duration.observe_us(duration_us);
    if (grpc_) {
      // A response without grpc-status: what the client makes of its HTTP status.
      if (grpc_status_ < 0 && status_ != 200)
        grpc_status_ = static_cast<int8_t>(grpc_status_for_http(status_));
      if (grpc_status_ >= 0) ls.grpc_responses[static_cast<size_t>(grpc_status_)].add();
    }
  }
  if (grpc_) {
    deadline_timer_.stop();
    quiet_timer_.stop();
  }
  if (grpc_long_) {
    grpc_long_ = false;
    rc_->loop->stats.grpc_calls_active.sub();
  }
  if (log_) write_access_log(duration_us);
  release_guard();
  use_pool(nullptr);
  use_cluster(nullptr);
}

void Exchange::finish() {
  deactivate();
  pending_.clear();
  retained_.clear();
  request_head_ = Slice();
  request_trailers_ = Slice();
  client_.exchange_done();
}

void Exchange::abort() {
  if (!active_) return;
  // Off the pool's queue before deactivate() lets go of the pool: a client that went away
  // while its request waited for a connection left a dangling waiter (and a null pool) here.
  drop_upstream();
  leave_queue();
  deactivate();
  pending_.clear();
  retained_.clear();
}

}  // namespace sluice
