#pragma once
// HttpParser: llhttp glue for one connection side (HTTP_REQUEST downstream, HTTP_RESPONSE
// upstream). llhttp_t is embedded; one static settings table whose callbacks trampoline here.
// Callbacks only collect: the head into a MessageHead, body bytes to the BodySink as slices of
// the read buffer (no copy). The parser pauses after a head and after a message so the owner
// acts outside llhttp's callbacks, then resumes from the returned position.
#include <llhttp.h>

#include <cstdint>

#include "core/block.h"
#include "http/message.h"

namespace sluice {

class BodySink {
 public:
  virtual void on_body(const Slice& data) = 0;

 protected:
  ~BodySink() = default;
};

enum class ParseEvent {
  kNeedMore,         // all input consumed, message not finished
  kHead,             // a head is complete (head()); resume to read its body
  kMessageComplete,  // the message (body, trailers) is complete; resume for the next one
  kError,            // malformed or over a limit: see error_status()/error_reason()
  kUpgrade,          // after an upgrade: the bytes from here on are another protocol
};

struct ParseResult {
  ParseEvent event;
  size_t consumed;  // bytes of the input used, including the ones of the event
};

class HttpParser {
 public:
  HttpParser(llhttp_type_t type, BodySink* sink);
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  void set_limits(uint64_t max_head_bytes, uint32_t max_headers = 256) {
    max_head_bytes_ = max_head_bytes;
    max_headers_ = max_headers;
  }
  // Responses only: the request was HEAD, so the response has no body whatever it says.
  void set_skip_body(bool skip) { skip_body_ = skip; }

  ParseResult execute(const Slice& input);
  // Signals EOF. Returns kMessageComplete if that ends a close-delimited body, kError if a
  // message was cut short, kNeedMore if nothing was in progress.
  ParseEvent finish();

  const MessageHead& head() const { return head_; }
  MessageHead& head() { return head_; }
  const MessageHead& trailers() const { return trailers_; }
  bool in_message() const { return in_message_; }
  bool head_complete() const { return head_complete_; }
  // After kMessageComplete: whether the connection may carry another message.
  bool should_keep_alive() const {
    return !faulty_framing_ && llhttp_should_keep_alive(&parser_) != 0;
  }
  bool message_needs_eof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  bool upgrade() const { return parser_.upgrade != 0; }
  int error_status() const { return error_status_; }
  const char* error_reason() const { return error_reason_; }
  uint64_t body_bytes() const { return body_bytes_; }
  // Between messages: drop buffers so an idle connection holds nothing.
  void release_memory();

 private:
  static const llhttp_settings_t kSettings;
  static HttpParser* self(llhttp_t* p) { return static_cast<HttpParser*>(p->data); }
  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_status(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_header_field_complete(llhttp_t* p);
  static int on_header_value_complete(llhttp_t* p);
  static int on_chunk_header(llhttp_t* p);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  int fail(int status, const char* reason);
  int count_head_bytes(size_t len);
  // Checks the raw bytes of a head or trailer section (bare CR, obs-fold); false after fail().
  bool scan_section(const char* p, size_t len);
  bool scan_failed(char at);
  MessageHead& target() { return head_complete_ ? trailers_ : head_; }

  llhttp_t parser_;
  BodySink* sink_;
  const Slice* input_ = nullptr;  // the slice being parsed, for on_body sub-slices
  MessageHead head_;
  MessageHead trailers_;
  uint64_t max_head_bytes_ = 64 * 1024;
  uint32_t max_headers_ = 256;
  uint64_t head_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  bool skip_body_ = false;
  bool new_field_ = true;
  bool transfer_encoding_ = false;  // the head has a Transfer-Encoding header
  bool faulty_framing_ = false;     // Transfer-Encoding in HTTP/1.0: no reuse after it
  bool in_trailers_ = false;        // after the last chunk
  bool trailer_pause_ = false;      // on_chunk_header paused at the last chunk
  unsigned char section_prev_ = 0;  // the last byte scan_section saw
  bool in_message_ = false;
  bool head_complete_ = false;
  bool head_event_pending_ = false;
  bool message_complete_ = false;
  bool pending_complete_after_head_ = false;
  int error_status_ = 0;
  const char* error_reason_ = nullptr;
};

}  // namespace sluice
