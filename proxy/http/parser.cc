#include "http/parser.h"

#include <array>
#include <cstring>
#include <string_view>

namespace sluice {

const llhttp_settings_t HttpParser::kSettings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &HttpParser::on_message_begin;
  s.on_url = &HttpParser::on_url;
  s.on_status = &HttpParser::on_status;
  s.on_header_field = &HttpParser::on_header_field;
  s.on_header_value = &HttpParser::on_header_value;
  s.on_header_field_complete = &HttpParser::on_header_field_complete;
  s.on_header_value_complete = &HttpParser::on_header_value_complete;
  s.on_headers_complete = &HttpParser::on_headers_complete;
  s.on_chunk_header = &HttpParser::on_chunk_header;
  s.on_body = &HttpParser::on_body;
  s.on_message_complete = &HttpParser::on_message_complete;
  return s;
}();

namespace {

// RFC 9110 §5.6.2: tchar, the bytes of a token (a field name).
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

}  // namespace

HttpParser::HttpParser(llhttp_type_t type, BodySink* sink) : sink_(sink) {
  llhttp_init(&parser_, type, &kSettings);
  parser_.data = this;
}

bool HttpParser::scan_section(const char* p, size_t len) {
  // RFC 9112 §2.2: a bare CR must be rejected (llhttp 8.1 takes CR and any byte after an empty
  // value for a line end, CVE-2023-30589). §5.2: a line starting with SP or HTAB is obs-fold,
  // which a proxy may reject, and sluice does (llhttp 8.1 folds it into an empty value). A
  // head has a few line ends: memchr finds them, and only the byte after each is looked at.
  if (len == 0) return true;
  const char* end = p + len;
  auto fold = [](char c) { return c == ' ' || c == '\t'; };
  // The last byte of the previous read, for a line end cut between two reads.
  if ((section_prev_ == '\r' && p[0] != '\n') || (section_prev_ == '\n' && fold(p[0])))
    return scan_failed(section_prev_);
  for (const char* c = p; (c = static_cast<const char*>(memchr(c, '\r', end - c))); ++c)
    if (c + 1 < end && c[1] != '\n') return scan_failed('\r');
  for (const char* c = p; (c = static_cast<const char*>(memchr(c, '\n', end - c))); ++c)
    if (c + 1 < end && fold(c[1])) return scan_failed('\n');
  section_prev_ = static_cast<unsigned char>(end[-1]);
  return true;
}

bool HttpParser::scan_failed(char at) {
  fail(400, at == '\r' ? "bare CR in the head" : "obs-fold in the head");
  return false;
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
  h->in_trailers_ = false;
  h->transfer_encoding_ = false;
  h->faulty_framing_ = false;
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
  // llhttp 8.1 lets spaces through inside a name ("Transfer Encoding").
  for (size_t i = 0; i < len; ++i)
    if (!kTokenChar[static_cast<unsigned char>(at[i])]) return h->fail(400, "invalid header name");
  m.append_header_name({at, len}, h->new_field_);
  h->new_field_ = false;
  return 0;
}

int HttpParser::on_header_value(llhttp_t* p, const char* at, size_t len) {
  HttpParser* h = self(p);
  if (int r = h->count_head_bytes(len)) return r;
  // Obs-fold is refused by scan_section; a second value span only continues a value across
  // a read boundary.
  h->target().append_header_value({at, len});
  return 0;
}

int HttpParser::on_header_field_complete(llhttp_t* p) {
  HttpParser* h = self(p);
  const MessageHead& m = h->target();
  // llhttp 8.1 takes ": x" for a header with an empty name.
  if (h->new_field_ || m.name(m.header_count() - 1).empty())
    return h->fail(400, "empty header name");
  if (!h->head_complete_ && iequals(m.name(m.header_count() - 1), "transfer-encoding"))
    h->transfer_encoding_ = true;
  return 0;
}

int HttpParser::on_header_value_complete(llhttp_t* p) {
  self(p)->new_field_ = true;
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
  const bool request = p->type == HTTP_REQUEST;
  // sluice speaks HTTP/1.0 and 1.1 (llhttp also takes a 0.9 request line and 2.0 heads).
  if (m.http_major != 1 || m.http_minor > 1) {
    if (!request) return h->fail(400, "not an HTTP/1.0 or 1.1 response");
    return m.http_major > 1 ? h->fail(505, "HTTP version not supported")
                            : h->fail(400, "not an HTTP/1.0 or 1.1 request");
  }
  if (h->transfer_encoding_) {
    // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked has no
    // determinable length (llhttp skips this check for upgrades, and ignores an empty value).
    if (request && !m.chunked) return h->fail(400, "Transfer-Encoding without final chunked");
    if (!request && !m.chunked && (p->flags & F_TRANSFER_ENCODING) == 0)
      return h->fail(400, "empty Transfer-Encoding");
    // §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing: close after it.
    if (m.http_minor == 0) h->faulty_framing_ = true;
  }
  if (h->faulty_framing_) m.keep_alive = false;
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

int HttpParser::on_chunk_header(llhttp_t* p) {
  // The last chunk: what follows is the trailer section, checked like the head. Paused so
  // that execute() knows where it starts.
  if (p->content_length != 0) return 0;
  self(p)->trailer_pause_ = true;
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
  size_t start = 0;  // where this round of llhttp_execute began
  llhttp_errno_t err;
  for (;;) {
    // A head or trailer section ends at a pause (head, message complete): every byte this
    // round consumes is in the section if it began in one.
    const bool section = !in_message_ || !head_complete_ || in_trailers_;
    err = llhttp_execute(&parser_, input.data + start, input.len - start);
    const size_t end = err == HPE_OK
                           ? input.len
                           : static_cast<size_t>(llhttp_get_error_pos(&parser_) - input.data);
    if (section && (err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) &&
        !scan_section(input.data + start, end - start)) {
      input_ = nullptr;
      return {ParseEvent::kError, end};
    }
    // Every pause ends a section (head, message) or starts one (trailers): the next one starts
    // afresh. Otherwise the section goes on in the next call.
    if (err != HPE_OK) section_prev_ = 0;
    if (err == HPE_PAUSED && trailer_pause_) {
      trailer_pause_ = false;
      in_trailers_ = true;
      llhttp_resume(&parser_);
      start = end;
      continue;
    }
    start = end;
    break;
  }
  input_ = nullptr;
  size_t consumed = start;
  if (err == HPE_PAUSED) {
    llhttp_resume(&parser_);
  } else if (err == HPE_PAUSED_UPGRADE) {
    // Not resumed: what follows is tunnel data, never parsed as HTTP.
    if (!head_event_pending_ && !message_complete_) return {ParseEvent::kUpgrade, consumed};
  } else if (err != HPE_OK) {
    if (error_status_ == 0) {
      error_status_ = 400;
      error_reason_ = llhttp_get_error_reason(&parser_);
      if (!error_reason_) error_reason_ = llhttp_errno_name(err);
    }
    return {ParseEvent::kError, consumed};
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
