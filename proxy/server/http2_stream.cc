#include "server/http2_stream.h"

#include <llhttp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/log.h"
#include "http/grpc.h"
#include "http/method.h"
#include "http/rewrite.h"
#include "net/tcp_stream.h"
#include "server/http2_connection.h"

namespace sluice {

namespace {

// Connection-specific fields (RFC 9113 §8.2.2): a request that carries one is malformed.
bool is_connection_specific(std::string_view n) {
  return n == "connection" || n == "keep-alive" || n == "proxy-connection" ||
         n == "transfer-encoding" || n == "upgrade";
}

// Bytes that must never reach the HTTP/1.1 head sluice writes for the upstream. nghttp2
// validates fields already; this keeps the request path safe on its own.
bool has_unsafe_bytes(std::string_view v) {
  for (unsigned char c : v)
    if (c == '\r' || c == '\n' || c == 0) return true;
  return false;
}

// Request-line tokens: no whitespace or control bytes.
bool has_space_or_ctl(std::string_view v) {
  for (unsigned char c : v)
    if (c <= 0x20 || c == 0x7f) return true;
  return false;
}

// A response head as HTTP/2 fields: ":status", then the upstream's fields lower-cased, minus
// the hop-by-hop ones (RFC 9113 §8.2.2). The storage is reused across calls on the loop's thread
// and must outlive only the submit call (nghttp2 copies names and values). Every response passes
// here: one pass picks the fields and sizes their names, a second lower-cases them into storage
// sized once.
class ResponseFields {
 public:
  explicit ResponseFields(const MessageHead& head) {
    const int st = head.status;  // 100-999: llhttp reads three digits
    status_[0] = static_cast<char>('0' + st / 100 % 10);
    status_[1] = static_cast<char>('0' + st / 10 % 10);
    status_[2] = static_cast<char>('0' + st % 10);
    bool connection_tokens = false;
    for (size_t i = 0; i < head.header_count() && !connection_tokens; ++i)
      connection_tokens = iequals(head.name(i), "connection");
    keep_.clear();
    size_t name_bytes = 0;
    for (size_t i = 0; i < head.header_count(); ++i) {
      std::string_view n = head.name(i);
      if (is_hop_by_hop(n) || (connection_tokens && head.has_token("connection", n))) continue;
      if (head.chunked && iequals(n, "content-length")) continue;
      keep_.push_back(static_cast<uint32_t>(i));
      name_bytes += n.size();
    }
    names_.resize(name_bytes);
    nv_.resize(keep_.size() + 1);
    nv_[0] = make(":status", std::string_view(status_, 3));
    char* out = names_.data();
    for (size_t k = 0; k < keep_.size(); ++k) {
      std::string_view n = head.name(keep_[k]);
      for (size_t j = 0; j < n.size(); ++j) {
        char c = n[j];
        out[j] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      }
      nv_[k + 1] = make(std::string_view(out, n.size()), head.value(keep_[k]));
      out += n.size();
    }
  }
  const nghttp2_nv* data() const { return nv_.data(); }
  size_t size() const { return nv_.size(); }
  size_t bytes() const {
    size_t n = 0;
    for (const auto& f : nv_) n += f.namelen + f.valuelen + 4;
    return n;
  }

 private:
  // connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te: told apart by
  // length first.
  static bool is_hop_by_hop(std::string_view n) {
    switch (n.size()) {
      case 2:
        return iequals(n, "te");
      case 7:
        return iequals(n, "upgrade");
      case 10:
        return iequals(n, "connection") || iequals(n, "keep-alive");
      case 16:
        return iequals(n, "proxy-connection");
      case 17:
        return iequals(n, "transfer-encoding");
      default:
        return false;
    }
  }
  static nghttp2_nv make(std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  }
  char status_[3];
  static thread_local std::string names_;
  static thread_local std::vector<uint32_t> keep_;
  static thread_local std::vector<nghttp2_nv> nv_;
};
thread_local std::string ResponseFields::names_;
thread_local std::vector<uint32_t> ResponseFields::keep_;
thread_local std::vector<nghttp2_nv> ResponseFields::nv_;

h2::ssize read_callback(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                        nghttp2_data_source* source, void*) {
  return static_cast<Http2Stream*>(source->ptr)->read_body(buf, length, flags);
}

}  // namespace

Http2Stream::Http2Stream(Http2Connection& conn, int32_t id, const RequestContext& rc)
    : conn_(conn), id_(id), rc_(rc), exchange_(*this) {
  conn_.request_block().reset();               // this stream's header block begins
  rc_.loop->stats.http2_streams_active.add();  // the drain's and /stats' figure
  rc_.protocol = "HTTP/2";
  opened_ms_ = conn_.ctx().now_ms();
  if (rc_.listener_stats) rc_.listener_stats->http2_streams_active.add();
}

Http2Stream::~Http2Stream() {
  rc_.loop->stats.http2_streams_active.sub();
  exchange_.abort();
  end_upstream_work();  // a reset stream's upstream is closed by now (the abort, a turn ago)
  if (rc_.listener_stats) rc_.listener_stats->http2_streams_active.sub();
}

void Http2Stream::end_upstream_work() {
  conn_.transport().remove_grpc_call(this);  // idempotent
  if (!upstream_work_) return;
  upstream_work_ = false;
  conn_.guard().upstream_work_ended();
}

bool Http2Stream::on_header(std::string_view name, std::string_view value, bool trailer) {
  if (!gathering_ && !trailer) return true;
  if (has_unsafe_bytes(name) || has_unsafe_bytes(value)) {
    reset(NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  if (trailer) {
    if (!name.empty() && name[0] != ':' && trailers_.byte_size() < rc_.limits().max_header_bytes)
      trailers_.add_header(name, value);
    return true;
  }
  Http2RequestBlock& b = conn_.request_block();
  // Known even when the block is over a limit: the refusal is then a gRPC status too.
  if (name.size() == 12 && name == "content-type" && is_grpc_content_type(value)) b.grpc = true;
  // Counted as HPACK counts a header list (RFC 9113 §6.5.2), each cookie crumb on its own:
  // nghttp2 advertises the limit but does not enforce it on what it decodes. An HPACK bomb (a
  // large dynamic-table entry referenced again and again, or many tiny fields) stops being
  // stored at either limit, and the stream gets 431 at the end of its block.
  b.bytes += name.size() + value.size() + 32;
  ++b.field_count;
  if (b.too_large || b.too_many) return true;
  if (b.bytes > rc_.limits().max_header_bytes || b.field_count > rc_.limits().max_header_fields) {
    if (b.bytes > rc_.limits().max_header_bytes)
      b.too_large = true;
    else
      b.too_many = true;
    b.cookies.clear();
    return true;
  }
  if (name.empty()) return true;
  if (name[0] == ':') {  // nghttp2 let each through once, before the regular fields
    if (name == ":method") {
      b.method.assign(value);
    } else if (name == ":path") {
      b.head.append_url(value);
    } else if (name == ":authority") {
      b.head.add_header("host", value);
      b.has_host = true;
    } else if (name != ":scheme") {  // :protocol (RFC 8441 is not offered) or unknown
      reset(NGHTTP2_PROTOCOL_ERROR);
      return false;
    }
    return true;
  }
  if (is_connection_specific(name) || (name == "te" && value != "trailers")) {
    reset(NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  if (name == "cookie") {
    if (!b.cookies.empty()) b.cookies.append("; ");
    b.cookies.append(value);
    return true;
  }
  if (name == "host") {
    if (b.has_host) return true;  // :authority wins (RFC 9113 §8.3.1)
    b.has_host = true;
  } else if (name == "content-length") {
    // nghttp2 took it only as digits, once (and checks the DATA against it).
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size()) {
      reset(NGHTTP2_PROTOCOL_ERROR);
      return false;
    }
    b.head.has_content_length = true;
    b.head.content_length = n;
  }
  b.head.add_header(name, value);
  return true;
}

// The request head is handed to the exchange as the MessageHead an HTTP/1.1 request line and
// fields would have given: the method by llhttp's number, HTTP/1.1, the target and Host from
// the pseudo-headers, the fields as they came (cookies joined), and Transfer-Encoding: chunked
// when a body follows without a Content-Length (how an HTTP/1.1 upstream gets it). Every check
// of the request path then applies unchanged.
void Http2Stream::on_request_headers(bool end_stream) {
  if (!gathering_ || started_) return;
  gathering_ = false;
  request_ended_ = end_stream;
  Http2RequestBlock& b = conn_.request_block();
  MessageHead& head = b.head;
  head_request_ = b.method == "HEAD";
  if (b.too_large || b.too_many) {
    refuse(431,
           b.too_large ? "request header fields over the limit" : "too many request header fields",
           b.too_large ? "header_bytes" : "header_fields", b);
    conn_.stream_error();  // an HPACK bomb repeated spends the stream-error budget
    return;
  }
  if (b.method == "CONNECT") {
    refuse(501, "CONNECT is not supported over HTTP/2", "connect", b);
    return;
  }
  const size_t host = b.has_host ? head.find("host") : std::string_view::npos;
  if (b.method.empty() || head.url().empty() || has_space_or_ctl(b.method) ||
      has_space_or_ctl(head.url()) ||
      (host != std::string_view::npos && has_space_or_ctl(head.value(host)))) {
    reset(NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  const int method = method_from_name(b.method);
  if (method < 0) {
    refuse(400, "unknown method", "bad_request", b);
    conn_.stream_error();
    return;
  }
  if (!b.cookies.empty()) head.add_header("cookie", b.cookies);
  head.method = static_cast<uint8_t>(method);
  head.http_major = 1;
  head.http_minor = 1;
  head.keep_alive = true;
  head.upgrade = false;
  head.chunked = !end_stream && !head.has_content_length;
  if (head.chunked) head.add_header("transfer-encoding", "chunked");
  if (!head.has_content_length) head.content_length = 0;
  started_ = true;
  upstream_work_ = true;  // from now until the exchange ends, or the stream is freed
  conn_.guard().upstream_work_started();
  body_at_ms_ = conn_.ctx().now_ms();
  exchange_.begin(head);
  if (head.byte_size() > MessageHead::kKeptBytes) head.release_memory();
  if (end_stream) exchange_.on_request_complete(trailers_);
}

size_t Http2Stream::on_data(const Slice& data) {
  if (!started_ || !exchange_.active()) return data.len;  // nobody takes it: discarded
  body_at_ms_ = conn_.ctx().now_ms();
  exchange_.on_request_body(data);
  if (body_paused_ && exchange_.active()) {
    held_credit_ += data.len;
    return 0;
  }
  return data.len;
}

void Http2Stream::on_request_end() {
  if (request_ended_) return;
  request_ended_ = true;
  if (started_) exchange_.on_request_complete(trailers_);
}

void Http2Stream::on_response_ended() {
  response_ended_ = true;
  // The response is whole while the client still sends: it may stop (RFC 9113 §8.1).
  if (!request_ended_ && !closed_)
    nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
}

void Http2Stream::on_closed(uint32_t error_code) {
  closed_ = true;
  conn_.transport().remove_grpc_call(this);
  if (exchange_.active()) {
    // The client reset the stream (or the connection ended) before the response did: the
    // exchange resets its upstream connection, which is never reused mid-response.
    LOG_DEBUG("http2 stream %d closed before its response ended (%s)", id_,
              nghttp2_http2_strerror(error_code));
    exchange_.abort();
  }
  out_.clear();
  out_bytes_ = 0;
}

h2::ssize Http2Stream::read_body(uint8_t* buf, size_t length, uint32_t* flags) {
  const size_t n = out_.take(buf, length);
  out_bytes_ -= n;
  if (n > 0) out_at_ms_ = conn_.ctx().now_ms();
  if (above_high_ && out_bytes_ <= TcpStream::kLowWatermark) {
    above_high_ = false;
    conn_.stream_drained(this);
  }
  if (out_.empty() && body_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    // With trailers the last DATA frame leaves the stream open for their HEADERS frame.
    if (trailers_out_ && submit_trailers()) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return static_cast<h2::ssize>(n);
  }
  if (n == 0) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<h2::ssize>(n);
}

bool Http2Stream::reset_if_stalled(uint64_t now_ms, uint64_t timeout_ms) {
  if (closed_ || refused_) return false;
  const char* what = nullptr;
  if (out_bytes_ > 0 && now_ms - out_at_ms_ >= timeout_ms) {
    what = "the client took no response bytes";
  } else if (exchange_.long_lived_grpc()) {
    // A gRPC stream is idle when no bytes move either way (between messages): a bidirectional
    // call whose client only listens is not stalled while responses flow.
    if (body_paused_) body_at_ms_ = now_ms;
    if (now_ms - std::max(body_at_ms_, response_at_ms_) >= timeout_ms)
      what = "the gRPC call moved no message either way";
  } else if (started_ && !request_ended_ && exchange_.active()) {
    if (body_paused_) {
      body_at_ms_ = now_ms;  // sluice holds it back: the client is not to blame
    } else if (now_ms - body_at_ms_ >= timeout_ms) {
      what = "the request body stalled";
    }
  }
  if (!what) return false;
  if (out_bytes_ == 0 && exchange_.end_idle_grpc_call()) {
    // Between two messages: trailers (UNAVAILABLE) end the call cleanly instead of a reset.
    LOG_INFO("client %s: http2 stream %d: %s for %llu ms; ending the call with UNAVAILABLE",
             std::string(rc_.client_ip).c_str(), id_, what,
             static_cast<unsigned long long>(timeout_ms));
    return true;
  }
  LOG_INFO("client %s: http2 stream %d: %s for %llu ms; resetting it",
           std::string(rc_.client_ip).c_str(), id_, what,
           static_cast<unsigned long long>(timeout_ms));
  exchange_.abort();
  reset(NGHTTP2_CANCEL);
  return true;
}

void Http2Stream::notify_drained() {
  if (exchange_.active()) exchange_.on_client_drained();
}

void Http2Stream::resume_data() {
  if (deferred_ && !closed_) {
    deferred_ = false;
    nghttp2_session_resume_data(conn_.session(), id_);
  }
  conn_.schedule_send();
}

bool Http2Stream::submit_head(int status, const nghttp2_nv* fields, size_t count, bool has_body) {
  if (closed_ || response_submitted_) return false;
  h2::DataProvider prd;
  prd.source.ptr = this;
  prd.read_callback = &read_callback;
  response_has_body_ = has_body;
  int rv = h2::submit_response(conn_.session(), id_, fields, count, has_body ? &prd : nullptr);
  if (rv != 0) {
    LOG_DEBUG("http2 stream %d: response not submitted: %s", id_, nghttp2_strerror(rv));
    return false;
  }
  response_submitted_ = true;
  conn_.schedule_send();
  return true;
}

void Http2Stream::send_continue() {
  if (closed_) return;
  nghttp2_nv nv = {reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                   reinterpret_cast<uint8_t*>(const_cast<char*>("100")), 7, 3,
                   NGHTTP2_NV_FLAG_NONE};
  if (nghttp2_submit_headers(conn_.session(), NGHTTP2_FLAG_NONE, id_, nullptr, &nv, 1, nullptr) <
      0) {
    cut_response();
    return;
  }
  conn_.schedule_send();
}

void Http2Stream::send_interim(const MessageHead& head) {
  if (closed_) return;
  ResponseFields f(head);
  if (nghttp2_submit_headers(conn_.session(), NGHTTP2_FLAG_NONE, id_, nullptr, f.data(), f.size(),
                             nullptr) < 0) {
    cut_response();
    return;
  }
  conn_.schedule_send();
}

size_t Http2Stream::send_head(const MessageHead& head) {
  ResponseFields f(head);
  // A body known to be empty (Content-Length: 0, or an HTTP/2 upstream's head that ended its
  // stream) ends the stream on the HEADERS frame: a gRPC Trailers-Only response stays one.
  const bool has_body = !head_request_ && head.status != 204 && head.status != 304 &&
                        !(head.has_content_length && head.content_length == 0);
  if (!submit_head(head.status, f.data(), f.size(), has_body)) {
    cut_response();
    return 0;
  }
  if (exchange_.long_lived_grpc()) {
    response_at_ms_ = conn_.ctx().now_ms();
    conn_.transport().add_grpc_call(this);
  }
  return f.bytes();
}

size_t Http2Stream::send_head_only(const MessageHead& head) {
  ResponseFields f(head);
  body_end_ = true;
  if (!submit_head(head.status, f.data(), f.size(), /*has_body=*/false)) {
    cut_response();
    return 0;
  }
  return f.bytes();
}

void Http2Stream::send_body(const Slice& data) {
  if (!response_has_body_ || data.len == 0 || closed_) return;
  if (out_bytes_ == 0) out_at_ms_ = conn_.ctx().now_ms();  // the client's time starts
  response_at_ms_ = conn_.ctx().now_ms();
  out_.push_back(data);
  out_bytes_ += data.len;
  resume_data();
}

void Http2Stream::send_trailers(const MessageHead& trailers) {
  if (!response_has_body_ || closed_) return;  // HEAD, 204, 304: the head ended the stream
  if (!trailers_out_) trailers_out_ = std::make_unique<MessageHead>();
  trailers_out_->clear();
  for (size_t i = 0; i < trailers.header_count(); ++i)
    trailers_out_->add_header(trailers.name(i), trailers.value(i));
}

// Called from the data provider as it reports the end of the body, which nghttp2 allows: the
// HEADERS frame is queued behind the last DATA frame. nghttp2 copies the fields and lower-cases
// the names (an HTTP/1.1 upstream's "X-Checksum" goes out as "x-checksum").
bool Http2Stream::submit_trailers() {
  std::unique_ptr<MessageHead> t = std::move(trailers_out_);
  std::vector<nghttp2_nv> nv;
  nv.reserve(t->header_count());
  for (size_t i = 0; i < t->header_count(); ++i) {
    std::string_view n = t->name(i), v = t->value(i);
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  int rv = nghttp2_submit_trailer(conn_.session(), id_, nv.data(), nv.size());
  if (rv != 0) {
    LOG_DEBUG("http2 stream %d: trailers not submitted: %s", id_, nghttp2_strerror(rv));
    return false;
  }
  return true;
}

void Http2Stream::send_end() {
  body_end_ = true;
  if (response_has_body_) resume_data();
}

bool Http2Stream::above_high_watermark() const {
  if (out_bytes_ <= TcpStream::kHighWatermark) return false;
  above_high_ = true;
  return true;
}

size_t Http2Stream::send_error(int status, std::string_view why, bool,
                               std::span<const ExtraHeader> extra) {
  // `malformed` closes an HTTP/1.1 connection; a stream's error ends only the stream.
  return respond_text(status, why, extra);
}

void Http2Stream::refuse(int status, std::string_view why, std::string_view reason,
                         const Http2RequestBlock& b) {
  size_t bytes = 0;
  int grpc_status = -1;
  if (b.grpc) {
    // A gRPC call: a Trailers-Only response (RESOURCE_EXHAUSTED for 431, INTERNAL for 400).
    grpc_status = static_cast<int>(grpc_status_for_http(status));
    MessageHead t;
    t.status = 200;
    t.add_header("content-type", "application/grpc");
    t.add_header("grpc-status", std::to_string(grpc_status));
    t.add_header("grpc-message", grpc_percent_encode(why));
    bytes = send_head_only(t);
    status = 200;
  } else {
    bytes = respond_text(status, why);
  }
  LoopContext& ctx = conn_.ctx();
  ctx.stats.sluice_errors.add();
  if (rc_.listener_stats) {
    rc_.listener_stats->requests[status_class(status)].add();
    if (grpc_status >= 0)
      rc_.listener_stats->grpc_responses[static_cast<size_t>(grpc_status)].add();
  }
  if (AccessLog* log = rc_.access_log) {
    const Config& cfg = *rc_.config;
    AccessLogEntry e;
    e.listener = cfg.listeners[rc_.listener].name;
    e.client = rc_.client_ip;
    e.method = b.method;
    e.target = b.head.url();
    const size_t host = b.has_host ? b.head.find("host") : std::string_view::npos;
    if (host != std::string_view::npos) e.host = b.head.value(host);
    e.status = status;
    e.bytes_out = bytes;
    e.protocol = rc_.protocol;
    e.reason = reason;
    e.grpc_status = grpc_status;
    log->append(e, cfg.log.format, rc_.colour_log);
  }
}

size_t Http2Stream::respond_text(int status, std::string_view why,
                                 std::span<const ExtraHeader> extra) {
  std::string body = error_body(status, why);
  const std::string code = std::to_string(status);
  const std::string length = std::to_string(body.size());
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  // Header names are lower case in HTTP/2 (RFC 9113 §8.2.1).
  std::vector<std::string> extra_names;
  std::vector<nghttp2_nv> fields{nv(":status", code), nv("content-type", "text/plain"),
                                 nv("content-length", length)};
  for (const ExtraHeader& h : extra) {
    std::string n(h.name);
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    extra_names.push_back(std::move(n));
  }
  for (size_t i = 0; i < extra.size(); ++i) fields.push_back(nv(extra_names[i], extra[i].value));
  const bool has_body = !head_request_;
  if (has_body) {
    BlockWriter w(conn_.ctx().blocks, body.size());
    w.append(body);
    out_.push_back(w.finish());
    out_bytes_ += body.size();
  }
  body_end_ = true;
  if (!submit_head(status, fields.data(), fields.size(), has_body)) {
    out_.clear();
    out_bytes_ = 0;
    reset(NGHTTP2_INTERNAL_ERROR);
    return 0;
  }
  return 40 + (has_body ? body.size() : 0);
}

void Http2Stream::cut_response() {
  exchange_.abort();
  reset(NGHTTP2_INTERNAL_ERROR);
}

void Http2Stream::reset(uint32_t error_code) {
  refused_ = true;
  gathering_ = false;
  if (closed_) return;
  nghttp2_submit_rst_stream(conn_.session(), NGHTTP2_FLAG_NONE, id_, error_code);
  conn_.schedule_send();
}

void Http2Stream::resume_request_body() {
  if (body_paused_) body_at_ms_ = conn_.ctx().now_ms();  // the client's time starts again
  body_paused_ = false;
  if (held_credit_ == 0 || closed_) return;
  size_t credit = held_credit_;
  held_credit_ = 0;
  nghttp2_session_consume_stream(conn_.session(), id_, credit);
  conn_.schedule_send();
}

void Http2Stream::start_tunnel(std::unique_ptr<TcpStream>, const Slice&, bool) {
  // An HTTP/2 request cannot ask to upgrade: Upgrade and Connection are refused above, and
  // extended CONNECT is not offered. An impossible state.
  LOG_ERROR("http2 stream %d: an upgrade reached an HTTP/2 stream", id_);
  std::abort();
}

bool Http2Stream::draining() const {
  return conn_.draining();
}

}  // namespace sluice
