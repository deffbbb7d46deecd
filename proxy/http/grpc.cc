#include "http/grpc.h"

namespace sluice {

namespace {
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
}  // namespace

bool is_grpc_content_type(std::string_view v) {
  constexpr std::string_view kType = "application/grpc";
  if (v.size() < kType.size()) return false;
  for (size_t i = 0; i < kType.size(); ++i)
    if (lower(v[i]) != kType[i]) return false;
  if (v.size() == kType.size()) return true;
  const char next = v[kType.size()];
  return next == '+' || next == ';';
}

std::optional<uint64_t> parse_grpc_timeout(std::string_view v) {
  // TimeoutValue: 1 to 8 digits; TimeoutUnit: one letter (PROTOCOL-HTTP2.md).
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(v[i] - '0');
  }
  switch (v.back()) {
    case 'H':
      return n * 3600 * 1000;
    case 'M':
      return n * 60 * 1000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return (n + 999) / 1000;
    case 'n':
      return (n + 999999) / 1000000;
    default:
      return std::nullopt;
  }
}

std::string grpc_percent_encode(std::string_view m) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(m.size());
  for (unsigned char c : m) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

GrpcStatus grpc_status_for_http(int s) {
  switch (s) {
    case 400:
      return GrpcStatus::kInternal;
    case 401:
      return GrpcStatus::kUnauthenticated;
    case 403:
      return GrpcStatus::kPermissionDenied;
    case 404:
    case 501:
      return GrpcStatus::kUnimplemented;
    case 413:
    case 429:
    case 431:
      return GrpcStatus::kResourceExhausted;
    case 502:
    case 503:
      return GrpcStatus::kUnavailable;
    case 504:
      return GrpcStatus::kDeadlineExceeded;
    default:
      return GrpcStatus::kUnknown;
  }
}

size_t grpc_status_index(std::string_view v) {
  if (v.empty() || v.size() > 2) return kGrpcStatusCount;
  size_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return kGrpcStatusCount;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  if (v.size() == 2 && v[0] == '0') return kGrpcStatusCount;  // "07" is not a code
  return n < kGrpcStatusCount ? n : kGrpcStatusCount;
}

size_t GrpcMessageTracker::feed(const uint8_t* data, size_t len, bool stop_at_boundary) {
  size_t i = 0;
  while (i < len) {
    if (stop_at_boundary && at_boundary()) return i;
    if (left_ > 0) {
      const uint64_t k = left_ < len - i ? left_ : len - i;
      i += static_cast<size_t>(k);
      left_ -= k;
      if (left_ == 0) ++messages_;
      continue;
    }
    // The prefix: the flag byte (its value is the payload's business), then the length.
    if (prefix_len_ > 0) length_ = (length_ << 8) | data[i];
    ++i;
    if (++prefix_len_ == 5) {
      prefix_len_ = 0;
      left_ = length_;
      length_ = 0;
      if (left_ == 0) ++messages_;  // an empty message ends with its prefix
    }
  }
  return i;
}

}  // namespace sluice
