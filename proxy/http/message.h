#pragma once
// MessageHead: one parsed request or response head. Names and values are copied out of the
// read buffers into one string (the buffers are reused), and fields refer to it by offset.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

struct HeaderRef {
  uint32_t name_off, name_len, value_off, value_len;
};

class MessageHead {
 public:
  // Request line / status line.
  uint8_t method = 0;  // llhttp_method_t, requests only
  int status = 0;      // responses only
  uint8_t http_major = 1, http_minor = 1;
  bool keep_alive = false;  // llhttp_should_keep_alive at head time
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool upgrade = false;

  std::string_view url() const { return view(url_off_, url_len_); }
  std::string_view reason() const { return view(url_off_, url_len_); }  // responses
  size_t header_count() const { return headers_.size(); }
  std::string_view name(size_t i) const { return view(headers_[i].name_off, headers_[i].name_len); }
  std::string_view value(size_t i) const {
    return view(headers_[i].value_off, headers_[i].value_len);
  }
  // First header with this name (case-insensitive), or npos.
  size_t find(std::string_view name) const;
  // True when a comma-separated header (all occurrences) lists `token` (case-insensitive).
  bool has_token(std::string_view name, std::string_view token) const;
  size_t byte_size() const { return buf_.size(); }

  void clear();
  // Clears, and gives back storage beyond kKeptBytes (a large head's memory is not kept by an
  // idle connection).
  void release_memory();
  static constexpr size_t kKeptBytes = 1024;

  // Builders used by the parser glue.
  void append_url(std::string_view s);
  void append_header_name(std::string_view s, bool start_new);
  void append_header_value(std::string_view s);
  void add_header(std::string_view name, std::string_view value);

 private:
  std::string_view view(uint32_t off, uint32_t len) const { return {buf_.data() + off, len}; }
  std::string buf_;
  uint32_t url_off_ = 0, url_len_ = 0;
  std::vector<HeaderRef> headers_;
};

// ASCII case-insensitive equality (header names and tokens). Most calls compare a header name
// with a literal of the same length that differs in its first byte: that is decided inline, and
// only the rest goes to strncasecmp. (x | 0x20) folds ASCII letters; two bytes that differ after
// it differ in any case.
bool iequals_tail(std::string_view a, std::string_view b);
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  if ((a[0] | 0x20) != (b[0] | 0x20)) return false;
  return iequals_tail(a, b);
}
// Calls f(token) for each comma-separated, whitespace-trimmed token of a header value.
template <typename F>
void for_each_token(std::string_view v, F&& f) {
  size_t i = 0;
  while (i <= v.size()) {
    size_t comma = v.find(',', i);
    if (comma == std::string_view::npos) comma = v.size();
    std::string_view t = v.substr(i, comma - i);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (!t.empty()) f(t);
    i = comma + 1;
  }
}

}  // namespace sluice
