#include "http/message.h"

#include <strings.h>

namespace sluice {

bool iequals_tail(std::string_view a, std::string_view b) {
  return strncasecmp(a.data(), b.data(), a.size()) == 0;
}

size_t MessageHead::find(std::string_view n) const {
  for (size_t i = 0; i < headers_.size(); ++i)
    if (iequals(name(i), n)) return i;
  return std::string_view::npos;
}

bool MessageHead::has_token(std::string_view n, std::string_view token) const {
  bool found = false;
  for (size_t i = 0; i < headers_.size() && !found; ++i) {
    if (!iequals(name(i), n)) continue;
    for_each_token(value(i), [&](std::string_view t) { found = found || iequals(t, token); });
  }
  return found;
}

void MessageHead::clear() {
  method = 0;
  status = 0;
  http_major = http_minor = 1;
  keep_alive = chunked = has_content_length = upgrade = false;
  content_length = 0;
  buf_.clear();
  url_off_ = url_len_ = 0;
  headers_.clear();
}

void MessageHead::release_memory() {
  clear();
  // Small storage is kept: allocating it again for every request costs more than it saves.
  if (buf_.capacity() > kKeptBytes) std::string().swap(buf_);
  if (headers_.capacity() * sizeof(HeaderRef) > kKeptBytes) std::vector<HeaderRef>().swap(headers_);
}

void MessageHead::append_url(std::string_view s) {
  if (url_len_ == 0) url_off_ = static_cast<uint32_t>(buf_.size());
  buf_.append(s);
  url_len_ += static_cast<uint32_t>(s.size());
}

void MessageHead::append_header_name(std::string_view s, bool start_new) {
  if (start_new || headers_.empty()) {
    uint32_t off = static_cast<uint32_t>(buf_.size());
    headers_.push_back(HeaderRef{off, 0, off, 0});
  }
  buf_.append(s);
  headers_.back().name_len += static_cast<uint32_t>(s.size());
  headers_.back().value_off = static_cast<uint32_t>(buf_.size());
}

void MessageHead::append_header_value(std::string_view s) {
  if (headers_.empty()) return;
  if (headers_.back().value_len == 0)
    headers_.back().value_off = static_cast<uint32_t>(buf_.size());
  buf_.append(s);
  headers_.back().value_len += static_cast<uint32_t>(s.size());
}

void MessageHead::add_header(std::string_view n, std::string_view v) {
  append_header_name(n, true);
  append_header_value(v);
}

}  // namespace sluice
