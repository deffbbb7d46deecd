// WsFrameTracker over arbitrary bytes in reads cut by the input, against a reference parser
// written here from RFC 6455 §5.2 that reads the whole stream at once.
//
// Input: [control byte][stream bytes...]
//   control: bit 7 the direction (0 client to server: frames must be masked; 1 server to
//   client: they must not be), bits 0-6 the split control (see Splitter; 0 is one read).
//
// Invariants, after every read and after every stop at a Close frame:
//  - at_boundary() is true exactly at the offsets where a frame ends (and at 0);
//  - close_completed() is true exactly where a Close frame ends, and the tracker stops there;
//  - a protocol error is reported at the end of the first invalid frame header, with the
//    reference's reason, and never for a valid stream.
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "tunnel/ws_frame_tracker.h"

namespace sluice::fuzz {
namespace {

struct Reference {
  std::vector<size_t> ends;        // offsets where a frame ends, in order
  std::vector<bool> end_is_close;  // for each end: the frame was a Close
  size_t error_at = SIZE_MAX;      // where the first invalid header ends
  std::string error;               // its reason, in WsFrameTracker::error()'s words
};

Reference reference(const uint8_t* d, size_t n, bool from_client) {
  Reference r;
  size_t pos = 0;
  bool fragmented = false;  // inside a data message sent in fragments
  while (pos + 2 <= n) {
    const bool fin = d[pos] & 0x80;
    const int opcode = d[pos] & 0x0f;
    const bool masked = d[pos + 1] & 0x80;
    const int len7 = d[pos + 1] & 0x7f;
    size_t header = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (pos + header > n) break;  // a partial header: nothing to say yet
    uint64_t len = static_cast<uint64_t>(len7);
    if (len7 == 126) len = (uint64_t(d[pos + 2]) << 8) | d[pos + 3];
    if (len7 == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | d[pos + 2 + i];
    }
    // The checks in the order WsFrameTracker makes them (one reason per header).
    const bool control = opcode >= 8;
    std::string why;
    if ((opcode >= 3 && opcode <= 7) || opcode >= 11) {
      why = "reserved opcode";
    } else if (masked != from_client) {
      why = masked ? "masked frame from the server" : "unmasked frame from the client";
    } else if (len7 == 127 && (len >> 63)) {
      why = "frame length with the high bit set";
    } else if (control && !fin) {
      why = "fragmented control frame";
    } else if (control && len > 125) {
      why = "control frame longer than 125 bytes";
    } else if (opcode == 0 && !fragmented) {
      why = "continuation frame outside a message";
    } else if (opcode != 0 && !control && fragmented) {
      why = "new data message inside a fragmented one";
    }
    if (!why.empty()) {
      r.error_at = pos + header;
      r.error = why;
      return r;
    }
    if (opcode == 0 && fin) fragmented = false;
    if (opcode != 0 && !control && !fin) fragmented = true;
    pos += header;
    if (len > n - pos) break;  // the payload runs past the input
    pos += static_cast<size_t>(len);
    r.ends.push_back(pos);
    r.end_is_close.push_back(opcode == 8);
  }
  return r;
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  using sluice::WsFrameTracker;
  if (size < 1) return 0;
  const bool from_client = !(data[0] & 0x80);
  const uint8_t* d = data + 1;
  const size_t n = size - 1;
  const Reference ref = reference(d, n, from_client);

  WsFrameTracker t(from_client ? WsFrameTracker::Direction::kClientToServer
                               : WsFrameTracker::Direction::kServerToClient);
  Splitter split(data[0] & 0x7f, n);
  size_t pos = 0;
  size_t next_end = 0;  // index in ref.ends of the first end at or after pos
  check(t.at_boundary(), "a new tracker is not at a boundary");
  // Checks the tracker's state at `pos` against the reference.
  auto check_state = [&](const char* when) {
    while (next_end < ref.ends.size() && ref.ends[next_end] < pos) ++next_end;
    const bool is_end = next_end < ref.ends.size() && ref.ends[next_end] == pos;
    const bool is_close = is_end && ref.end_is_close[next_end];
    const std::string where = std::string(when) + " at offset " + std::to_string(pos);
    check(t.at_boundary() == (pos == 0 || is_end),
          std::string("at_boundary() is ") + (t.at_boundary() ? "true" : "false") + " " + where);
    check(t.close_completed() == is_close, std::string("close_completed() is ") +
                                               (t.close_completed() ? "true" : "false") + " " +
                                               where);
  };
  while (pos < n) {
    size_t len = split.next(n - pos);
    size_t done = 0;
    while (done < len) {
      size_t consumed = SIZE_MAX;
      WsFrameTracker::Result r = t.feed(d + pos, len - done, &consumed);
      check(consumed <= len - done, "consumed more than it was given");
      pos += consumed;
      done += consumed;
      if (r == WsFrameTracker::Result::kProtocolError) {
        check(ref.error_at == pos,
              "protocol error (" + std::string(t.error()) + ") at offset " + std::to_string(pos) +
                  ", reference: " +
                  (ref.error.empty() ? std::string("none")
                                     : ref.error + " at " + std::to_string(ref.error_at)));
        check(ref.error == t.error(),
              "reason " + printable(t.error()) + ", reference " + printable(ref.error));
        return 0;
      }
      check(pos < ref.error_at,
            "no error reported at offset " + std::to_string(ref.error_at) + " (" + ref.error + ")");
      if (done < len) {
        // The tracker stops only at the end of a Close frame.
        check(t.close_completed(), "stopped early at offset " + std::to_string(pos) +
                                       " without completing a Close frame");
        check(consumed > 0, "stopped without consuming anything");
      }
      check_state(done < len ? "after stopping" : "after a read");
    }
  }
  check(ref.error_at == SIZE_MAX || ref.error_at > n, "a protocol error went unreported");
  return 0;
}
