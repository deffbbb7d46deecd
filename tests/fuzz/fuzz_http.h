#pragma once
// Drives HttpParser the way DownstreamConnection and UpstreamConnection do (execute, act on the
// event, resume with the rest; finish() at EOF) and records what it saw, so that a parse in one
// read and a parse in many reads can be compared event by event.
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "http/message.h"
#include "http/parser.h"

namespace sluice::fuzz {

// The hop-by-hop headers every message loses at a proxy (RFC 9110 §7.6.1), besides those its
// Connection header names.
inline bool fixed_hop_by_hop(std::string_view n) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-connection", "te",
                             "transfer-encoding", "upgrade", "http2-settings"})
    if (iequal(n, h)) return true;
  return false;
}

// The comma-separated elements of a header value, trimmed of spaces and tabs, empty ones left
// out (RFC 9110 §5.6.1).
inline std::vector<std::string> split_tokens(std::string_view v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == std::string_view::npos) end = v.size();
    std::string_view t = v.substr(start, end - start);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    start = end + 1;
    if (!t.empty()) out.emplace_back(t);
  }
  return out;
}

// Every option of every Connection header: the names of the headers a proxy must remove
// (RFC 9110 §7.6.1).
inline std::vector<std::string> connection_options(const MessageHead& h) {
  std::vector<std::string> out;
  for (size_t i = 0; i < h.header_count(); ++i) {
    if (!iequal(h.name(i), "connection")) continue;
    for (std::string& t : split_tokens(h.value(i))) out.push_back(std::move(t));
  }
  return out;
}

inline bool listed(const std::vector<std::string>& options, std::string_view name) {
  for (const auto& o : options)
    if (iequal(o, name)) return true;
  return false;
}

inline void drop_named(Headers& headers, std::string_view name) {
  std::erase_if(headers, [&](const auto& h) { return iequal(h.first, name); });
}

// RFC 9110 §5.1: a field name is a token (one or more tchar).
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == 0) return false;
  }
  return true;
}

inline Headers head_headers(const MessageHead& h) {
  Headers out;
  for (size_t i = 0; i < h.header_count(); ++i) out.emplace_back(h.name(i), h.value(i));
  return out;
}

struct ParseLog {
  std::vector<std::string>
      events;  // "head ...", "complete <body>", "upgrade@N", "error", "eof ..."
  bool error = false;
  bool upgraded = false;
};

class ParseDriver : public BodySink {
 public:
  // Called for each head sluice accepts.
  using OnHead = std::function<void(const MessageHead&)>;

  ParseDriver(llhttp_type_t type, bool skip_body, uint64_t max_head_bytes, OnHead on_head)
      : parser_(type, this), on_head_(std::move(on_head)) {
    parser_.set_skip_body(skip_body);
    parser_.set_limits(max_head_bytes);
  }

  void on_body(const Slice& data) override {
    // A body slice is part of the read being parsed and keeps its block alive.
    check(data.block.get() == read_.block.get() && data.data >= read_.data &&
              data.data + data.len <= read_.data + read_.len,
          "body slice outside the read buffer");
    body_.append(data.data, data.len);
  }

  // Feeds `input` in reads cut by `split`; stops at an error or an upgrade, like the server.
  const ParseLog& run(std::string_view input, Splitter split) {
    input_ = input;
    size_t offset = 0;
    while (offset < input.size() && !log_.error && !log_.upgraded) {
      size_t n = split.next(input.size() - offset);
      // A fresh block per read, as a read callback gets: slices must not outlive their block.
      BlockRef b = pool_.get(n);
      std::memcpy(b->data(), input.data() + offset, n);
      read_ = Slice{b, b->data(), n};
      feed(read_, offset);
      read_ = Slice();
      offset += n;
    }
    if (!log_.error && !log_.upgraded) {
      ParseEvent e = parser_.finish();
      if (e == ParseEvent::kMessageComplete) {
        log_.events.push_back("eof-complete " + printable(body_));
      } else if (e == ParseEvent::kError) {
        log_.events.push_back("eof-error " + std::to_string(parser_.error_status()));
      }
    }
    parser_.release_memory();
    return log_;
  }

  const ParseLog& log() const { return log_; }
  size_t blocks_outstanding() const { return pool_.outstanding(); }

 private:
  void feed(Slice rest, size_t base) {
    // Each event consumes input or is one of the two that may not (the completion that follows
    // a head, an upgrade already reported); more steps than that is a loop.
    size_t budget = 2 * rest.len + 8;
    for (;;) {
      check(budget-- > 0, "HttpParser::execute loops without consuming input");
      ParseResult r = parser_.execute(rest);
      check(r.consumed <= rest.len, "consumed more than the input");
      size_t at = base + r.consumed;
      base += r.consumed;
      rest = rest.sub(r.consumed, rest.len - r.consumed);
      // llhttp checks some framing (an invalid Transfer-Encoding) only after the head callback,
      // so sluice sees kHead and then, in the same turn, kError; the server answers 400 and
      // nothing reaches the upstream (writes are corked until the end of the turn). A head
      // counts as accepted once the next event is not an error.
      if (head_pending_ && r.event != ParseEvent::kError) deliver_head();
      head_pending_ = false;
      switch (r.event) {
        case ParseEvent::kNeedMore:
          check(rest.len == 0, "kNeedMore with input left over");
          return;
        case ParseEvent::kHead:
          check(parser_.head_complete(), "kHead but head_complete() is false");
          log_.events.push_back(describe_head(parser_.head()));
          body_.clear();
          head_pending_ = true;
          head_end_ = at;
          break;
        case ParseEvent::kMessageComplete:
          log_.events.push_back("complete " + printable(body_, 100000));
          body_.clear();
          message_start_ = at;
          break;
        case ParseEvent::kError:
          check(parser_.error_status() == 400 || parser_.error_status() == 431 ||
                    parser_.error_status() == 505,
                "error status " + std::to_string(parser_.error_status()));
          check(parser_.error_reason() != nullptr, "error without a reason");
          log_.events.push_back("error");
          log_.error = true;
          return;
        case ParseEvent::kUpgrade:
          log_.events.push_back("upgrade@" + std::to_string(at));
          log_.upgraded = true;
          return;
      }
    }
  }

  void deliver_head() {
    check_head(parser_.head(), head_end_);
    on_head_(parser_.head());
  }

  // What holds for every head sluice accepts, from the raw bytes [message_start_, end): no bare
  // CR (RFC 9112 §2.2: a recipient must reject it or replace it with SP), names are tokens,
  // values hold no CR, LF or NUL.
  void check_head(const MessageHead& h, size_t end) {
    bool bare_cr = false;
    for (size_t i = message_start_; i < end && i < input_.size(); ++i)
      bare_cr = bare_cr || (input_[i] == '\r' && (i + 1 >= end || input_[i + 1] != '\n'));
    check(!bare_cr, "a head with a bare CR was accepted: " +
                        printable(input_.substr(message_start_, end - message_start_), 2000));
    // sluice speaks HTTP/1.0 and 1.1 and forwards everything as 1.1.
    const bool http1 = h.http_major == 1 && (h.http_minor == 0 || h.http_minor == 1);
    check(http1, "an HTTP/" + std::to_string(h.http_major) + "." + std::to_string(h.http_minor) +
                     " head was accepted");
    for (size_t i = 0; i < h.header_count(); ++i)
      check(is_token(h.name(i)), "header name " + printable(h.name(i)) + " is not a token");
    // RFC 9112 §5.2: sluice rejects obs-fold (a line of the head starting with SP or HTAB).
    bool fold = false;
    for (size_t i = message_start_; i + 1 < end && i + 1 < input_.size(); ++i)
      fold = fold || (input_[i] == '\n' && (input_[i + 1] == ' ' || input_[i + 1] == '\t'));
    check(!fold, "a head with obs-fold was accepted: " +
                     printable(input_.substr(message_start_, end - message_start_), 2000));
    // RFC 9110 §5.5: a field value is visible characters, obs-text, SP and HTAB.
    for (size_t i = 0; i < h.header_count(); ++i) {
      for (unsigned char c : h.value(i))
        check(c == '\t' || (c >= 0x20 && c != 0x7f),
              "header value " + printable(h.value(i)) + " holds a control character");
    }
  }

  static std::string describe_head(const MessageHead& h) {
    std::string s = "head m=" + std::to_string(h.method) + " s=" + std::to_string(h.status) +
                    " v=" + std::to_string(h.http_major) + "." + std::to_string(h.http_minor) +
                    " ka=" + std::to_string(h.keep_alive) + " ch=" + std::to_string(h.chunked) +
                    " cl=" + (h.has_content_length ? std::to_string(h.content_length) : "-") +
                    " up=" + std::to_string(h.upgrade) + " url=" + printable(h.url(), 100000);
    for (size_t i = 0; i < h.header_count(); ++i)
      s += " | " + printable(h.name(i), 100000) + "=" + printable(h.value(i), 100000);
    return s;
  }

  BlockPool pool_;
  HttpParser parser_;
  OnHead on_head_;
  std::string body_;
  std::string_view input_;     // all of it, for checks on the raw bytes
  size_t message_start_ = 0;   // where the current message began in input_
  bool head_pending_ = false;  // a kHead not yet followed by another event
  size_t head_end_ = 0;
  Slice read_;  // the read being parsed
  ParseLog log_;
};

// The same input in one read and in the reads the control byte chooses must give the same
// heads, bodies and completions, and must fail (or switch protocols, at the same byte) alike:
// otherwise what sluice forwards depends on how TCP cut the stream.
inline void compare_logs(const ParseLog& whole, const ParseLog& split) {
  check(whole.error == split.error, std::string("one read ") + (whole.error ? "fails" : "passes") +
                                        " but split reads " + (split.error ? "fail" : "pass"));
  size_t n = whole.events.size();
  if (whole.error) {
    // The failure itself can come at a different byte (a size limit is checked per span, a span
    // ends at a read boundary), so only the events before it must agree, and a body in progress
    // may have been cut at a different place.
    n = std::min(whole.events.size(), split.events.size()) - 1;
  } else {
    check(whole.events.size() == split.events.size(),
          "one read gives " + std::to_string(whole.events.size()) + " events, split reads " +
              std::to_string(split.events.size()));
  }
  for (size_t i = 0; i < n; ++i)
    check(whole.events[i] == split.events[i], "event " + std::to_string(i) +
                                                  " differs:\n  one read:    " + whole.events[i] +
                                                  "\n  split reads: " + split.events[i]);
}

}  // namespace sluice::fuzz
