#include "tunnel/ws_frame_tracker.h"

#include <cstring>

namespace sluice {

namespace {
// Bytes of header needed once the first two are known.
size_t header_size(const uint8_t* h) {
  size_t n = 2;
  uint8_t len7 = h[1] & 0x7f;
  if (len7 == 126) n += 2;
  if (len7 == 127) n += 8;
  if (h[1] & 0x80) n += 4;
  return n;
}
}  // namespace

const char* WsFrameTracker::error() const {
  static const char* const kMessages[] = {
      "no error",
      "reserved opcode",
      "masked frame from the server",
      "unmasked frame from the client",
      "frame length with the high bit set",
      "fragmented control frame",
      "control frame longer than 125 bytes",
      "continuation frame outside a message",
      "new data message inside a fragmented one",
  };
  return kMessages[error_];
}

WsFrameTracker::Result WsFrameTracker::parse_header() {
  const uint8_t b0 = header_[0], b1 = header_[1];
  const bool fin = b0 & 0x80;
  const uint8_t opcode = b0 & 0x0f;
  const bool masked = b1 & 0x80;
  // RSV bits belong to extensions negotiated end to end (permessage-deflate sets RSV1), so
  // they are not checked here.
  if ((opcode >= 3 && opcode <= 7) || opcode >= 11) return fail(kReservedOpcode);
  const bool control = opcode >= 8;
  if (masked != (direction_ == Direction::kClientToServer))
    return fail(masked ? kMaskedFromServer : kUnmaskedFromClient);
  uint64_t len = b1 & 0x7f;
  if (len == 126) {
    len = (uint64_t(header_[2]) << 8) | header_[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | header_[2 + i];
    if (len >> 63) return fail(kHugeLength);
  }
  if (control) {
    if (!fin) return fail(kFragmentedControl);
    if (len > 125) return fail(kLongControl);
  } else if (opcode == 0) {
    if (!in_message_) return fail(kStrayContinuation);
    if (fin) in_message_ = false;
  } else {
    if (in_message_) return fail(kInterleavedMessage);
    if (!fin) in_message_ = true;
  }
  opcode_ = opcode;
  closing_frame_ = opcode == 8;
  payload_left_ = len;
  return Result::kOk;
}

WsFrameTracker::Result WsFrameTracker::feed(const uint8_t* data, size_t len, size_t* consumed) {
  size_t i = 0;
  while (i < len) {
    if (payload_left_ > 0) {
      uint64_t take = payload_left_ < len - i ? payload_left_ : len - i;
      payload_left_ -= take;
      i += static_cast<size_t>(take);
      if (payload_left_ == 0 && closing_frame_) {
        close_completed_ = true;
        *consumed = i;
        return Result::kOk;
      }
      continue;
    }
    // Collecting a header: at most 14 bytes are ever kept.
    header_[header_len_++] = data[i++];
    close_completed_ = false;
    if (header_len_ < 2 || header_len_ < header_size(header_)) continue;
    header_len_ = 0;
    if (parse_header() != Result::kOk) {
      *consumed = i;
      return Result::kProtocolError;
    }
    if (payload_left_ == 0 && closing_frame_) {
      close_completed_ = true;
      *consumed = i;
      return Result::kOk;
    }
  }
  *consumed = i;
  return Result::kOk;
}

size_t write_ws_close_frame(uint8_t* out, uint16_t code, const char* reason, bool masked,
                            uint32_t mask_key) {
  size_t reason_len = reason ? std::strlen(reason) : 0;
  if (reason_len > 123) reason_len = 123;
  const size_t payload_len = 2 + reason_len;
  size_t n = 0;
  out[n++] = 0x88;  // FIN + Close
  out[n++] = static_cast<uint8_t>((masked ? 0x80 : 0) | payload_len);
  uint8_t key[4] = {static_cast<uint8_t>(mask_key >> 24), static_cast<uint8_t>(mask_key >> 16),
                    static_cast<uint8_t>(mask_key >> 8), static_cast<uint8_t>(mask_key)};
  if (masked) {
    std::memcpy(out + n, key, 4);
    n += 4;
  }
  uint8_t* payload = out + n;
  payload[0] = static_cast<uint8_t>(code >> 8);
  payload[1] = static_cast<uint8_t>(code);
  if (reason_len) std::memcpy(payload + 2, reason, reason_len);
  if (masked)
    for (size_t i = 0; i < payload_len; ++i) payload[i] ^= key[i % 4];
  return n + payload_len;
}

}  // namespace sluice
