#pragma once
// Shared by the fuzz targets: how an input is cut into reads, a failure that libFuzzer records
// with a message, and a plain llhttp parse of a head that sluice wrote.
#include <llhttp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::fuzz {

using Headers = std::vector<std::pair<std::string, std::string>>;

// An invariant broke: say which, then abort so libFuzzer saves the input as a crash.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\nFUZZ INVARIANT BROKEN: %s\n", what.c_str());
  std::abort();
}

inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

// Printable form of bytes for messages.
inline std::string printable(std::string_view s, size_t max = 200) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out + "\"";
}

// How the fuzz input is cut into reads. The first byte of every input is the control byte:
//   0        the whole input in one read
//   1..127   reads of 1..c bytes (1 is byte by byte), lengths from a generator seeded by c
//   128..255 reads of 1..n bytes (a few large cuts)
// The cuts are a function of the input alone, so a saved crash replays exactly.
class Splitter {
 public:
  Splitter(uint8_t control, size_t total)
      : control_(control), state_(0x9e3779b97f4a7c15ull ^ (uint64_t(control) << 32) ^ total) {}

  size_t next(size_t left) {
    if (left == 0) return 0;
    if (control_ == 0) return left;
    size_t max = control_ < 128 ? control_ : left;
    size_t n = 1 + static_cast<size_t>(random() % max);
    return n < left ? n : left;
  }

 private:
  uint64_t random() {  // splitmix64
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint8_t control_;
  uint64_t state_;
};

// A head as a plain strict llhttp parser sees it, independently of sluice's glue: the bytes must
// be exactly one head (llhttp paused at headers-complete on the last byte).
struct PlainHead {
  bool ok = false;
  std::string error;  // why not, when !ok
  int method = -1;
  int status = 0;
  int http_major = 0, http_minor = 0;
  std::string url_or_reason;
  Headers headers;
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool upgrade = false;
};

inline PlainHead parse_plain_head(llhttp_type_t type, std::string_view bytes) {
  struct State {
    PlainHead head;
    bool in_value = false;
  };
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_url = [](llhttp_t* p, const char* at, size_t len) {
      static_cast<State*>(p->data)->head.url_or_reason.append(at, len);
      return 0;
    };
    s.on_status = s.on_url;
    s.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      State* s = static_cast<State*>(p->data);
      if (s->in_value || s->head.headers.empty()) s->head.headers.emplace_back();
      s->in_value = false;
      s->head.headers.back().first.append(at, len);
      return 0;
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      State* s = static_cast<State*>(p->data);
      s->in_value = true;
      s->head.headers.back().second.append(at, len);
      return 0;
    };
    s.on_header_value_complete = [](llhttp_t* p) {
      static_cast<State*>(p->data)->in_value = true;
      return 0;
    };
    s.on_headers_complete = [](llhttp_t*) -> int { return HPE_PAUSED; };
    return s;
  }();
  State state;
  llhttp_t p;
  llhttp_init(&p, type, &settings);
  p.data = &state;
  llhttp_errno_t err = llhttp_execute(&p, bytes.data(), bytes.size());
  PlainHead& h = state.head;
  if (err != HPE_PAUSED) {
    h.error = std::string("llhttp: ") + llhttp_errno_name(err) + " (" +
              (llhttp_get_error_reason(&p) ? llhttp_get_error_reason(&p) : "no reason") + ")";
    return h;
  }
  size_t used = static_cast<size_t>(llhttp_get_error_pos(&p) - bytes.data());
  if (used != bytes.size()) {
    h.error = "the head ends after " + std::to_string(used) + " of " +
              std::to_string(bytes.size()) + " bytes";
    return h;
  }
  h.ok = true;
  h.method = p.method;
  h.status = p.status_code;
  h.http_major = p.http_major;
  h.http_minor = p.http_minor;
  h.chunked = (p.flags & F_CHUNKED) != 0;
  h.has_content_length = (p.flags & F_CONTENT_LENGTH) != 0;
  h.content_length = h.has_content_length ? p.content_length : 0;
  h.upgrade = p.upgrade != 0;
  return h;
}

inline bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

inline size_t count_named(const Headers& headers, std::string_view name) {
  size_t n = 0;
  for (const auto& [k, v] : headers) n += iequal(k, name);
  return n;
}

inline std::string describe(const Headers& headers) {
  std::string out;
  for (const auto& [k, v] : headers) out += "\n    " + printable(k) + ": " + printable(v);
  return out;
}

}  // namespace sluice::fuzz
