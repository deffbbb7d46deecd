#include "http/parser.h"

#include <cstring>

namespace sluice {

const llhttp_settings_t HttpParser::kSettings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &HttpParser::on_message_begin;
  s.on_url = &HttpParser::on_url;
  s.on_status = &HttpParser::on_status;
  s.on_header_field = &HttpParser::on_header_field;
  s.on_header_value = &HttpParser::on_header_value;
  s.on_header_value_complete = &HttpParser::on_header_value_complete;
  s.on_headers_complete = &HttpParser::on_headers_complete;
  s.on_body = &HttpParser::on_body;
  s.on_message_complete = &HttpParser::on_message_complete;
  return s;
}();

HttpParser::HttpParser(llhttp_type_t type, BodySink* sink) : sink_(sink) {
  llhttp_init(&parser_, type, &kSettings);
  parser_.data = this;
}

int HttpParser::fail(int status, const char* reason) {
  error_status_ = status;
  error_reason_ = reason;
  return HPE_USER;
}

int HttpParser::count_head_bytes(size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > max_head_bytes_) return fail(431, "head too large");
  return 0;
}

int HttpParser::on_message_begin(llhttp_t* p) {
  HttpParser* h = self(p);
  h->head_.clear();
  h->trailers_.clear();
  h->head_bytes_ = 0;
  h->body_bytes_ = 0;
  h->new_field_ = true;
  h->in_message_ = true;
  h->head_complete_ = false;
  return 0;
}

int HttpParser::on_url(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  if (int r = h->count_head_bytes(len)) return r;
  h->head_.append_url({at, len});
  return 0;
}

int HttpParser::on_status(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  if (int r = h->count_head_bytes(len)) return r;
  h->head_.append_url({at, len});  // the reason phrase shares the request-target slot
  return 0;
}

int HttpParser::on_header_field(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  if (int r = h->count_head_bytes(len + (h->new_field_ ? 4 : 0))) return r;
  MessageHead& m = h->target();
  if (h->new_field_ && m.header_count() >= h->max_headers_) return h->fail(431, "too many headers");
  m.append_header_name({at, len}, h->new_field_);
  h->new_field_ = false;
  return 0;
}

int HttpParser::on_header_value(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  if (int r = h->count_head_bytes(len)) return r;
  // llhttp 8 accepts obs-fold (a value continued on the next line) and reports the
  // continuation as a second value span. A second span is legitimate only across a read
  // boundary: the previous span ended at the end of its buffer and this one starts at the
  // start of the next. Anything else is a fold, which RFC 9112 §5.2 lets a proxy reject.
  if (h->value_open_ && !(h->value_hit_end_ && at == h->input_->data))
    return h->fail(400, "obs-fold in header value");
  h->value_open_ = true;
  h->value_hit_end_ = at + len == h->input_->data + h->input_->len;
  h->target().append_header_value({at, len});
  return 0;
}

int HttpParser::on_header_value_complete(llhttp_t* p) {
  self(p)->new_field_ = true;
  self(p)->value_open_ = false;
  return 0;
}

int HttpParser::on_headers_complete(llhttp_t* p) {
  HttpParser* h = self(p);
  MessageHead& m = h->head_;
  m.method = p->method;
  m.status = p->status_code;
  m.http_major = p->http_major;
  m.http_minor = p->http_minor;
  m.keep_alive = llhttp_should_keep_alive(p) != 0;
  m.chunked = (p->flags & F_CHUNKED) != 0;
  m.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  m.content_length = m.has_content_length ? p->content_length : 0;
  m.upgrade = p->upgrade != 0;
  h->head_complete_ = true;
  h->head_event_pending_ = true;
  h->new_field_ = true;
  // Responses to HEAD, and 1xx/204/304 responses, have no body whatever their headers say;
  // llhttp must be told (it would read a 304's Content-Length). It then completes the message
  // at once, so there is no pause here (no body bytes can precede the head event).
  if (p->type == HTTP_RESPONSE && p->status_code != 101 &&
      (h->skip_body_ || p->status_code < 200 || p->status_code == 204 || p->status_code == 304))
    return 1;
  return HPE_PAUSED;
}

int HttpParser::on_body(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  h->body_bytes_ += len;
  const Slice& in = *h->input_;
  h->sink_->on_body(in.sub(static_cast<size_t>(at - in.data), len));
  return 0;
}

int HttpParser::on_message_complete(llhttp_t* p) {
  HttpParser* h = self(p);
  h->in_message_ = false;
  h->message_complete_ = true;
  return HPE_PAUSED;
}

ParseResult HttpParser::execute(const Slice& input) {
  if (pending_complete_after_head_) {
    pending_complete_after_head_ = false;
    return {ParseEvent::kMessageComplete, 0};
  }
  if (llhttp_get_errno(&parser_) == HPE_PAUSED_UPGRADE) return {ParseEvent::kUpgrade, 0};
  input_ = &input;
  head_event_pending_ = false;
  message_complete_ = false;
  llhttp_errno_t err = llhttp_execute(&parser_, input.data, input.len);
  input_ = nullptr;
  size_t consumed = input.len;
  if (err == HPE_PAUSED) {
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - input.data);
    llhttp_resume(&parser_);
  } else if (err == HPE_PAUSED_UPGRADE) {
    // Not resumed: what follows is tunnel data, never parsed as HTTP.
    consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - input.data);
    if (!head_event_pending_ && !message_complete_) return {ParseEvent::kUpgrade, consumed};
  } else if (err != HPE_OK) {
    if (error_status_ == 0) {
      error_status_ = 400;
      error_reason_ = llhttp_get_error_reason(&parser_);
      if (!error_reason_) error_reason_ = llhttp_errno_name(err);
    }
    return {ParseEvent::kError, static_cast<size_t>(llhttp_get_error_pos(&parser_) - input.data)};
  }
  // A head and its (empty-bodied) message can complete in one call: report the head first;
  // the owner sees the completion on the next call, which then consumes nothing.
  if (head_event_pending_) {
    if (message_complete_) pending_complete_after_head_ = true;
    return {ParseEvent::kHead, consumed};
  }
  if (message_complete_) return {ParseEvent::kMessageComplete, consumed};
  return {ParseEvent::kNeedMore, consumed};
}

ParseEvent HttpParser::finish() {
  llhttp_errno_t err = llhttp_finish(&parser_);
  if (err == HPE_PAUSED) {  // on_message_complete paused it: the close-delimited body ended
    llhttp_resume(&parser_);
    err = HPE_OK;
  }
  if (err != HPE_OK) {
    error_status_ = 502;
    error_reason_ = "message cut short";
    return ParseEvent::kError;
  }
  if (message_complete_) {
    message_complete_ = false;
    return ParseEvent::kMessageComplete;
  }
  return ParseEvent::kNeedMore;
}

void HttpParser::release_memory() {
  if (in_message_) return;
  head_.release_memory();
  trailers_.release_memory();
}

}  // namespace sluice
