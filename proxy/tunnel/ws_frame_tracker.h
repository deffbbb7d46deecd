#pragma once
// WsFrameTracker: follows WebSocket frame boundaries (RFC 6455 §5.2) in one direction of a
// tunnel without copying payloads. It keeps at most a partial frame header (≤ 14 bytes) and
// the count of payload bytes to the next boundary — the whole per-direction cost of an idle
// session. It tells the tunnel where a frame boundary is (a control frame may be injected
// there, even between the fragments of a message) and when a Close frame has passed.
#include <cstddef>
#include <cstdint>

namespace sluice {

class WsFrameTracker {
 public:
  enum class Direction : uint8_t {
    kClientToServer,  // frames must be masked
    kServerToClient,  // frames must not be masked
  };
  enum class Result : uint8_t { kOk, kProtocolError };

  explicit WsFrameTracker(Direction d) : direction_(d) {}

  // Follows `len` bytes. Stops at the end of the first Close frame it completes (so the tunnel
  // can act on it) and reports how many bytes it consumed in *consumed.
  Result feed(const uint8_t* data, size_t len, size_t* consumed);
  Result feed(const char* data, size_t len, size_t* consumed) {
    return feed(reinterpret_cast<const uint8_t*>(data), len, consumed);
  }

  // Between two frames: nothing of a frame header or payload is pending.
  bool at_boundary() const { return header_len_ == 0 && payload_left_ == 0; }
  // The last frame that ended was a Close frame (cleared by the next frame's header).
  bool close_completed() const { return close_completed_; }
  const char* error() const;

 private:
  Result parse_header();
  enum Error : uint8_t {
    kNoError,
    kReservedOpcode,
    kMaskedFromServer,
    kUnmaskedFromClient,
    kHugeLength,
    kFragmentedControl,
    kLongControl,
    kStrayContinuation,
    kInterleavedMessage,
  };
  Result fail(Error e) {
    error_ = e;
    return Result::kProtocolError;
  }

  Direction direction_;
  uint8_t header_[14];
  uint8_t header_len_ = 0;
  uint64_t payload_left_ = 0;
  uint8_t opcode_ = 0;
  bool close_completed_ = false;
  bool in_message_ = false;
  bool closing_frame_ = false;  // the frame whose payload is being followed is a Close
  Error error_ = kNoError;      // a code, not a pointer: the tracker is part of every session
};

// Writes a Close frame with `code` and `reason` into out (≤ 2 + 4 + 2 + 123 bytes); masked
// with `mask_key` when the frame goes to a server. Returns its size.
size_t write_ws_close_frame(uint8_t* out, uint16_t code, const char* reason, bool masked,
                            uint32_t mask_key);

}  // namespace sluice
