#pragma once
// gRPC over HTTP/2 as a proxy sees it (grpc/grpc doc/PROTOCOL-HTTP2.md): which requests are
// gRPC calls, their `grpc-timeout`, the status codes sluice answers with itself, the
// percent-encoding of `grpc-message`, and the 5-byte message framing (GrpcMessageTracker),
// followed by length alone. Pure functions and one small value class: no I/O, no allocation on
// the tracker's path.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

// gRPC status codes sluice produces or counts (the full range is 0..16).
enum class GrpcStatus : uint8_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};
inline constexpr size_t kGrpcStatusCount = 17;

// `content-type: application/grpc`, `application/grpc+proto`, `application/grpc;...` (case
// insensitive). Not `application/grpc-web*`, which HTTP/1.1 clients speak through a translator.
bool is_grpc_content_type(std::string_view value);

// `grpc-timeout` (1 to 8 ASCII digits and a unit: H, M, S, m, u, n) in milliseconds, rounded
// up (a deadline of 1 ns still gives the call a chance to fail by itself, not a 0 ms timer),
// capped at 2^53. nullopt: malformed.
std::optional<uint64_t> parse_grpc_timeout(std::string_view value);

// The percent-encoding of `grpc-message` (PROTOCOL-HTTP2.md): bytes outside 0x20..0x7E and '%'
// become %XX (upper-case hex); everything else passes as it is.
std::string grpc_percent_encode(std::string_view message);

// The gRPC status for an HTTP status sluice refuses a gRPC call with: 404 (no route) →
// UNIMPLEMENTED; 502, 503 (upstream unreachable, reset, closed, refused; queue, breaker, caps,
// maintenance, drain) → UNAVAILABLE; 504 (response timeout, grpc-timeout) → DEADLINE_EXCEEDED;
// 429 (rate limited), 413, 431 → RESOURCE_EXHAUSTED; 403 → PERMISSION_DENIED; 401 →
// UNAUTHENTICATED; 400 and other malformed requests → INTERNAL; 501 → UNIMPLEMENTED; anything
// else → UNKNOWN. The same table maps an upstream's non-200 response that carries no grpc-status
// (doc/http-grpc-status-mapping.md, where it differs only in 429 and 504: the spec's table is for
// responses from a server, sluice's own 429 and 504 say precisely what happened).
GrpcStatus grpc_status_for_http(int http_status);

// The value of a `grpc-status` field as a label index (0..16), or kGrpcStatusCount ("other").
size_t grpc_status_index(std::string_view value);

// Follows the gRPC message framing in one direction of a call (a 1-byte compressed flag and a
// 4-byte big-endian length, then the message): lengths only, the payload is never looked at or
// copied. Its whole state is a partial prefix (≤ 4 bytes) and the count of bytes to the next
// message boundary.
class GrpcMessageTracker {
 public:
  // Follows `len` bytes. When `stop_at_boundary` is set, it stops at the first message
  // boundary it reaches inside the bytes (the end of a message, or the very start when
  // at_boundary() already) and returns how many bytes it took; else all of them.
  size_t feed(const uint8_t* data, size_t len, bool stop_at_boundary = false);
  size_t feed(const char* data, size_t len, bool stop_at_boundary = false) {
    return feed(reinterpret_cast<const uint8_t*>(data), len, stop_at_boundary);
  }
  // Between two messages: nothing of a prefix or a payload is pending.
  bool at_boundary() const { return prefix_len_ == 0 && left_ == 0; }
  // Messages whose last byte has passed.
  uint64_t messages() const { return messages_; }

 private:
  uint64_t left_ = 0;      // payload bytes to the end of the current message
  uint64_t messages_ = 0;  // complete messages
  uint32_t length_ = 0;    // the length being assembled from the prefix
  uint8_t prefix_len_ = 0;  // prefix bytes seen of the current message (0..4; 5 completes it)
};

}  // namespace sluice
