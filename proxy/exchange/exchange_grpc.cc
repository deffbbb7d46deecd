// Exchange: gRPC calls (issue 16) — sluice's own answers as Trailers-Only responses, the
// grpc-timeout deadline, the response's message boundaries (GrpcMessageTracker), and the ends
// at a boundary: the drain's UNAVAILABLE, a deadline passed mid-call, an upstream lost between
// two messages.
#include <llhttp.h>

#include <string>

#include "core/log.h"
#include "exchange/exchange.h"

namespace sluice {

// grpc_status_ indexes the listener's counters: the codes, then "other".
static_assert(kGrpcStatusLabelCount == kGrpcStatusCount + 1);

void Exchange::respond_grpc(int http_status, std::string_view why,
                            std::span<const ExtraHeader> extra, bool warn) {
  if (!active_) return;
  if (response_head_sent_) {
    // Mid-call: trailers at a message boundary, else the stream is reset.
    if (grpc_out_.at_boundary()) {
      end_grpc_call(grpc_status_for_http(http_status), why);
    } else {
      client_.cut_response();
    }
    return;
  }
  drop_upstream();
  leave_queue();
  const GrpcStatus g = grpc_status_for_http(http_status);
  LoopContext& ctx = *rc_->loop;
  ctx.stats.sluice_errors.add();
  if (cluster_ && http_status >= 500) cluster_->stats().requests[4].add();
  const char* method = llhttp_method_name(static_cast<llhttp_method_t>(method_));
  const std::string client(rc_->client_ip);
  if (warn) {
    LOG_WARN("%s from %s: gRPC status %d for %d %.*s", method, client.c_str(), static_cast<int>(g),
             http_status, static_cast<int>(why.size()), why.data());
  } else {
    LOG_DEBUG("%s from %s: gRPC status %d for %d %.*s", method, client.c_str(), static_cast<int>(g),
              http_status, static_cast<int>(why.size()), why.data());
  }
  // Trailers-Only (PROTOCOL-HTTP2.md): HTTP status 200, the content type, the status fields.
  MessageHead h;
  h.status = 200;
  h.add_header("content-type", "application/grpc");
  h.add_header("grpc-status", std::to_string(static_cast<int>(g)));
  h.add_header("grpc-message", grpc_percent_encode(why));
  for (const ExtraHeader& x : extra) h.add_header(x.name, x.value);
  status_ = 200;
  grpc_status_ = static_cast<int8_t>(g);
  response_head_sent_ = true;
  response_bytes_ += client_.send_head_only(h);
  if (active_) finish();
}

void Exchange::note_grpc_status(const MessageHead& fields) {
  const size_t i = fields.find("grpc-status");
  if (i != std::string_view::npos)
    grpc_status_ = static_cast<int8_t>(grpc_status_index(fields.value(i)));
}

void Exchange::relay_grpc(const Slice& data) {
  if (!grpc_end_pending_) {
    grpc_out_.feed(data.data, data.len);
    write_response_body(data);
    if (up_ && client_.above_high_watermark()) up_->pause_response();
    return;
  }
  // An end is due at the next boundary: the bytes up to it go, the rest never does (the client
  // sees whole messages only). A unary-shaped call's one response message goes whole first.
  size_t n = 0;
  if (grpc_end_on_message_ && grpc_out_.messages() == 0) n = feed_first_grpc_message(data);
  n += grpc_out_.feed(data.data + n, data.len - n, /*stop_at_boundary=*/true);
  if (n > 0) {
    write_response_body(data.sub(0, n));
    if (!active_ || !up_) return;
  }
  if (grpc_out_.at_boundary()) {
    // Past a unary-shaped call's one message a further one begins: it was a stream after all.
    if (!grpc_end_on_message_ || n < data.len) {
      end_grpc_call(grpc_end_status_, grpc_end_why_);
      return;
    }
    // The unary-shaped call's message is whole: its trailers are due now.
    arm_grpc_quiet(kUnaryTrailersGraceMs);
  }
  if (up_ && client_.above_high_watermark()) up_->pause_response();
}

size_t Exchange::feed_first_grpc_message(const Slice& data) {
  // At a boundary feed() would stop before the first byte: that byte begins the message.
  size_t n = grpc_out_.at_boundary() && data.len > 0 ? grpc_out_.feed(data.data, 1) : 0;
  return n + grpc_out_.feed(data.data + n, data.len - n, /*stop_at_boundary=*/true);
}

void Exchange::arm_grpc_quiet(uint64_t ms) {
  const uint64_t now = rc_->loop->now_ms();
  const uint64_t left = grpc_end_by_ > now ? grpc_end_by_ - now : 0;
  quiet_timer_.start(rc_->loop->loop, this, &Exchange::on_grpc_quiet, ms < left ? ms : left);
}

void Exchange::on_grpc_quiet(uv_timer_t* t) {
  auto* self = static_cast<Exchange*>(t->data);
  if (!self->active_ || !self->grpc_end_pending_ || !self->grpc_end_on_message_) return;
  // In the middle of its first message: the end of that message arms the timer again.
  if (!self->grpc_out_.at_boundary()) return;
  LOG_DEBUG(
      "client %s: ending a unary-shaped gRPC call for the drain (%llu response messages, "
      "no trailers)",
      std::string(self->rc_->client_ip).c_str(),
      static_cast<unsigned long long>(self->grpc_out_.messages()));
  self->grpc_end_on_message_ = false;
  self->end_grpc_call(self->grpc_end_status_, self->grpc_end_why_);
}

void Exchange::end_grpc_call_at_boundary(GrpcStatus status, std::string_view why) {
  grpc_end_pending_ = true;
  grpc_end_status_ = status;
  grpc_end_why_ = why;
  if (grpc_out_.at_boundary() && !grpc_end_on_message_) end_grpc_call(status, why);
}

void Exchange::end_grpc_call(GrpcStatus status, std::string_view why) {
  if (!active_) return;
  drop_upstream();  // its response is unfinished: reset (RST_STREAM CANCEL on HTTP/2)
  grpc_end_pending_ = false;
  grpc_status_ = static_cast<int8_t>(status);
  if (status == GrpcStatus::kUnavailable && why == kGrpcDrainMessage) {
    rc_->loop->stats.grpc_drain_ended.add();
    rc_->listener_stats->grpc_drain_ended.add();
  }
  MessageHead t;
  t.add_header("grpc-status", std::to_string(static_cast<int>(status)));
  t.add_header("grpc-message", grpc_percent_encode(why));
  client_.send_trailers(t);
  if (!active_) return;
  client_.send_end();
  if (active_) finish();
}

bool Exchange::drain_grpc_call(uint64_t end_by_ms) {
  if (!long_lived_grpc() || !up_) return false;
  // A unary call's response message is followed by its trailers at once: ending it at that
  // boundary would fail a call the drain lets finish. A call shaped like one keeps its one
  // message and kUnaryTrailersGraceMs for the trailers after it; another message beginning, or
  // the grace passing, shows a stream, which then ends at that boundary. A call still waiting
  // for its first message may be a slow unary one whose head came early, or a stream that has
  // not sent anything yet: it ends at `end_by_ms`, before the budget would reset it.
  grpc_end_on_message_ =
      request_complete_ && grpc_in_.messages() <= 1 &&
      (grpc_out_.messages() == 0 || (grpc_out_.messages() == 1 && grpc_out_.at_boundary()));
  if (grpc_end_on_message_) {
    grpc_end_by_ = rc_->loop->now_ms() + end_by_ms;
    arm_grpc_quiet(grpc_out_.messages() == 1 ? kUnaryTrailersGraceMs : end_by_ms);
  }
  end_grpc_call_at_boundary(GrpcStatus::kUnavailable, kGrpcDrainMessage);
  return true;
}

bool Exchange::end_idle_grpc_call() {
  if (!long_lived_grpc() || !grpc_out_.at_boundary()) return false;
  set_reason("grpc_idle");
  end_grpc_call(GrpcStatus::kUnavailable, "stream idle timeout (limits.idle_timeout)");
  return true;
}

void Exchange::on_grpc_deadline(uv_timer_t* t) {
  auto* self = static_cast<Exchange*>(t->data);
  if (!self->active_ || !self->grpc_) return;
  if (self->cluster_) self->cluster_->stats().timeouts.add();
  if (!self->response_head_sent_) {
    self->set_reason("grpc_deadline");
    self->breaker_outcome(true);
    self->respond_error(504, "deadline exceeded (grpc-timeout)");
    return;
  }
  self->set_reason("grpc_deadline");
  // Mid-call: DEADLINE_EXCEEDED at the next message boundary (now, between two messages).
  self->grpc_end_on_message_ = false;
  self->end_grpc_call_at_boundary(GrpcStatus::kDeadlineExceeded,
                                  "deadline exceeded (grpc-timeout)");
}

}  // namespace sluice
