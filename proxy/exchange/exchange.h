#pragma once
// Exchange: glues one client request to one upstream response. It is the only object that knows
// both sides, and it knows each only through its interface: the client through ClientSide (an
// HTTP/1.1 connection today, an HTTP/2 stream next) and the upstream through UpstreamSide (a
// pooled HTTP/1.1 connection today, an HTTP/2 stream next). It routes the request, rewrites its
// head, asks the cluster's pool for a place to send it, relays body bytes both ways with the
// watermarks wired across, decides retries, and ends event streams at a boundary on a drain.
// Owned by its client side and reused for each request there.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/block.h"
#include "core/on_demand_timer.h"
#include "exchange/client_side.h"
#include "http/grpc.h"
#include "http/message.h"
#include "http/rewrite.h"
#include "http/upgrade.h"
#include "upstream/circuit_breaker.h"
#include "upstream/upstream_side.h"

namespace sluice {

struct RequestPlan;

// The grpc-message of the calls a drain ends (grpc-status 14).
inline constexpr std::string_view kGrpcDrainMessage = "server is draining";

class Exchange : private UpstreamHandler, private PoolClient {
 public:
  explicit Exchange(ClientSide& client) : client_(client) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Client side → exchange.
  // Routes the request (404 when no route matches) and starts it, under the client side's
  // request_context() as it is now.
  void begin(const MessageHead& req);
  void on_request_body(const Slice& data);
  void on_request_complete(const MessageHead& trailers);
  // Bytes queued to the client fell to the low watermark.
  void on_client_drained();
  // The client is going away: let go of the upstream side. Idempotent.
  void abort();
  // Sends an error response for a request sluice refuses itself (e.g. 413 after the head).
  // `malformed`: the client's connection cannot serve another request after it.
  void respond_error(int status, const char* why, bool malformed = false);
  // Why sluice refused this request itself, for the access log's `reason` field
  // ("rate_limited:api", "maintenance", ...). Cleared at each begin().
  void set_reason(std::string_view reason) {
    if (log_) log_->reason.assign(reason);
  }

  // Drain: a text/event-stream response ends at its next event boundary (a blank line) with
  // the end of its body, so EventSource clients reconnect elsewhere.
  void drain_event_stream();

  // Drain, at a gRPC call's slot in the spread window: a call whose response head was sent is
  // ended at its next response message boundary with trailers grpc-status 14 (UNAVAILABLE,
  // "server is draining"), and its upstream stream is reset (CANCEL). A call shaped like a unary
  // one (the request ended with at most one message; no response message yet, or one) keeps
  // its one message and its trailers, which normally follow at once: it ends at the boundary
  // after that message if another begins or no trailers came within kUnaryTrailersGraceMs, and
  // at the latest `end_by_ms` from now (the drain's budget less a margin), a call still waiting
  // for its first message included. False when this is no such call.
  bool drain_grpc_call(uint64_t end_by_ms);
  // The stream's idle timeout passed with no bytes either way: a call between two response
  // messages ends with UNAVAILABLE trailers (true); else false, and the stream is reset.
  bool end_idle_grpc_call();
  // How long a unary-shaped call told to end by the drain waits for the trailers that follow
  // its one response message (at once, normally).
  static constexpr uint64_t kUnaryTrailersGraceMs = 1000;
  // A gRPC call from an HTTP/2 client whose response head was sent (the drain spreads these).
  bool long_lived_grpc() const { return active_ && grpc_ && response_head_sent_; }
  // Whether the request is a gRPC call (decided at begin()).
  bool grpc() const { return grpc_; }

  bool active() const { return active_; }
  bool response_started() const { return response_head_sent_; }
  uint64_t request_body_bytes() const { return request_body_bytes_; }

 private:
  // UpstreamHandler
  void on_upstream_head(const MessageHead& head) override;
  void on_upstream_body(const Slice& data) override;
  void on_upstream_trailers(const MessageHead& trailers) override;
  void on_upstream_complete() override;
  void on_upstream_error(UpstreamError e, bool response_started) override;
  void on_upstream_drained() override;
  void on_upstream_upgraded(const Slice& rest) override;
  // PoolClient
  void on_pool_ready(UpstreamSide* side) override;
  void on_pool_failure(PoolFailure f) override;

  void acquire(bool fresh);
  UpgradeAllowList upgrades() const;  // the protocols this request's listener upgrades to
  // The cluster and pool this exchange uses, held (add_user) until it is done.
  void use_cluster(UpstreamSet* c);
  void use_pool(UpstreamSource* p);
  void send_to(UpstreamSide* side);
  void flush_pending();
  void update_request_backpressure();
  bool can_retry(UpstreamError e) const;  // after a stale connection failed the request
  bool can_resend_unprocessed() const;    // after the upstream refused it unprocessed
  static constexpr uint8_t kMaxUnprocessedRetries = 3;
  // Protection (issue 17, exchange_guard.cc): the cluster's caps and circuit breaker at the
  // start, the retry budget before a retry, the breaker's outcome once per request.
  bool admit_to_cluster();  // false: refused (answered)
  bool take_retry();        // false: the retry budget is spent (counted)
  bool count_pending();     // false: max_pending wait already (answered)
  void stop_pending();      // the wait in a pool's queue ended
  void breaker_outcome(bool failure);
  bool failure_status(int status) const;
  void release_guard();  // everything the request holds on the guard, once
  // A response sluice makes itself with a Retry-After (seconds; 0: none), an optional extra
  // header and an optional custom body (else error_body()). `reason`: the access log's.
  void respond_refusal(int status, const char* reason, std::string_view why, uint32_t retry_after_s,
                       std::string_view header = {}, std::string_view value = {},
                       std::string_view content_type = {}, std::string_view body = {});
  void finish();
  void reset();
  void deactivate();
  void drop_upstream();  // resets the bound upstream side, if any (never reused)
  void leave_queue();    // stops waiting for a pooled connection, if waiting
  void end_event_stream();
  // gRPC (exchange_grpc.cc). A call sluice answers itself: a Trailers-Only response whose
  // grpc-status stands for `http_status` (grpc_status_for_http).
  void respond_grpc(int http_status, std::string_view why, std::span<const ExtraHeader> extra,
                    bool warn);
  void relay_grpc(const Slice& data);
  // Ends a call whose response head was sent with trailers `status` and `why` (at a message
  // boundary: the caller checked), resetting the upstream side.
  void end_grpc_call(GrpcStatus status, std::string_view why);
  // At the next response message boundary (now if there is one): end_grpc_call.
  void end_grpc_call_at_boundary(GrpcStatus status, std::string_view why);
  static void on_grpc_deadline(uv_timer_t* t);
  // A unary-shaped call told to end: its trailers did not come kUnaryTrailersGraceMs after its
  // one message (a stream gone quiet), or its end-by time came; it ends at its boundary.
  static void on_grpc_quiet(uv_timer_t* t);
  // Arms quiet_timer_ for `ms`, but never past grpc_end_by_.
  void arm_grpc_quiet(uint64_t ms);
  // The response bytes of `data` up to the end of the first response message.
  size_t feed_first_grpc_message(const Slice& data);
  void note_grpc_status(const MessageHead& fields);
  void relay_event_stream(const Slice& data);
  void write_response_body(const Slice& data);
  void write_access_log(uint64_t duration_us);
  // Issue #17 (exchange_guard.cc): the client's address, bans and IP rules (before routing),
  // then the rate limits (after routing). False when the request was refused.
  bool screen_client(const MessageHead& req);
  bool check_rate_limits(const MessageHead& req, const RequestPlan& plan);
  // respond_error's work; `warn`: log it (refusals of a rate limit or an IP rule are routine,
  // logged at debug level only, so that a flood does not flood the log too).
  void answer_error(int status, const char* why, bool malformed, std::span<const ExtraHeader> extra,
                    bool warn);

  ClientSide& client_;
  const RequestContext* rc_ = nullptr;  // the client side's, for the current request
  // The client's address (from X-Forwarded-For when the peer is a trusted proxy, or the peer).
  IpAddress client_addr_;
  UpstreamSet* cluster_ = nullptr;
  UpstreamSource* pool_ = nullptr;
  UpstreamSide* up_ = nullptr;
  bool queued_ = false;

  // The request.
  Slice request_head_;  // serialized for the upstream; kept for a retry
  Framing request_framing_ = Framing::kNone;
  uint8_t method_ = 0;
  bool head_request_ = false;
  bool upgrade_ = false;    // the client asked to switch protocols
  bool websocket_ = false;  // ...to WebSocket
  bool idempotent_ = false;
  bool request_complete_ = false;
  bool request_end_written_ = false;
  uint64_t request_body_bytes_ = 0;
  std::vector<Slice> pending_;  // body bytes not yet handed to the upstream side
  size_t pending_bytes_ = 0;
  std::vector<Slice> retained_;  // body bytes written, kept for a retry while small
  size_t retained_bytes_ = 0;
  bool retain_ok_ = true;
  bool wrote_any_ = false;
  bool conn_reused_ = false;
  bool retried_ = false;             // retried once after a stale connection failed it
  uint8_t connect_retries_ = 0;      // other addresses tried after a failed connect
  uint8_t unprocessed_retries_ = 0;  // sent again after the upstream refused it unprocessed
  // The cluster's guard while this request is counted on it (admit_to_cluster).
  ClusterGuard* guard_ = nullptr;
  unsigned guard_slot_ = 0;
  bool pending_counted_ = false;   // waiting in a queue, counted for max_pending
  bool retry_counted_ = false;     // a retry drew on the budget
  CircuitBreaker::Ticket ticket_;  // valid until its outcome is recorded
  Slice request_trailers_;

  // The response.
  bool response_head_sent_ = false;
  bool event_stream_ = false;  // the response is text/event-stream
  bool end_at_event_ = false;  // drain: end it at the next event boundary
  bool mid_event_ = false;     // bytes of an event were relayed since the last blank line
  uint8_t newlines_ = 0;       // consecutive line ends seen (CR ignored)
  bool active_ = false;
  int status_ = 0;            // of the response sent to the client (0: none yet)
  uint64_t started_ns_ = 0;   // head received (uv_hrtime)
  uint64_t upstream_ns_ = 0;  // request handed to the upstream side
  uint64_t upstream_us_ = 0;  // upstream request to response complete
  uint64_t response_bytes_ = 0;
  // What the access log line needs beyond the above, copied at begin (only while it is on).
  struct LogFields {
    std::string target, host, request_id, reason;
    std::string client;  // when it is not the peer (X-Forwarded-For from a trusted proxy)
  };
  std::unique_ptr<LogFields> log_;

  // gRPC (only for a call from an HTTP/2 client).
  bool grpc_ = false;
  bool grpc_end_pending_ = false;     // end at the next response message boundary
  bool grpc_end_on_message_ = false;  // ...only once a new message begins (unary-shaped calls)
  GrpcStatus grpc_end_status_ = GrpcStatus::kOk;
  std::string_view grpc_end_why_;
  int8_t grpc_status_ = -1;       // the call's final grpc-status as a label index; -1: none seen
  GrpcMessageTracker grpc_in_;    // request messages (client to upstream)
  GrpcMessageTracker grpc_out_;   // response messages (upstream to client)
  uint64_t grpc_timeout_ms_ = 0;  // its grpc-timeout; 0 with !grpc_deadline_: none
  bool grpc_deadline_ = false;
  bool grpc_long_ = false;        // counted in grpc_calls_active (its response head was relayed)
  OnDemandTimer deadline_timer_;  // the grpc-timeout deadline, while the call runs
  OnDemandTimer quiet_timer_;     // a drained unary-shaped call's wait for its trailers
  uint64_t grpc_end_by_ = 0;      // loop time by which that call ends (drain_grpc_call)
};

}  // namespace sluice
