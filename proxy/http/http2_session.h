#pragma once
// Http2Session: what an nghttp2 session needs whichever side of the proxy it is on. Owns the
// nghttp2_session; creates it with windows credited by hand (flow control is backpressure) and
// queues the first SETTINGS; feeds it the bytes read (mem_recv); and writes the frames it
// produces (mem_send) to an Http2Sink, a batch at a time, only while the sink's queue is under
// its high watermark. Above it the sink's input is paused, and resumes when the queue drains: a
// peer that does not read what it is sent is not read either.
//
// Owned by a connection (Http2Connection for a client, Http2UpstreamConnection towards an
// upstream), which keeps its callbacks, streams and policy: which frames mean what, what a
// failure closes, when to pause. The sink is that connection's socket, seen through it.
#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/block.h"
#include "core/loop_context.h"
#include "http/http2_shim.h"

namespace sluice {

// Where a session's frames go: the owning connection's socket.
class Http2Sink {
 public:
  // Writes (or queues) bytes; non-zero: the socket is gone.
  virtual int send_bytes(const Slice* slices, size_t count) = 0;
  virtual bool send_congested() const = 0;  // queued bytes over the high watermark
  virtual void pause_input() = 0;
  virtual void resume_input() = 0;

 protected:
  ~Http2Sink() = default;
};

class Http2Session {
 public:
  enum class Role : uint8_t { kServer, kClient };
  // Sets the owner's callbacks and any options beyond the manual window updates.
  using Configure = void (*)(nghttp2_session_callbacks* callbacks, nghttp2_option* option);
  enum class Sent : uint8_t {
    kSkipped,       // not now: inside mem_recv or another send pass (frames go after it)
    kDone,          // nothing more to produce, or the sink is congested
    kWriteFailed,   // the sink is gone
    kSessionError,  // nghttp2 failed (error())
  };

  Http2Session(LoopContext& ctx, Http2Sink& sink) : ctx_(ctx), sink_(sink) {}
  ~Http2Session() { destroy(); }
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Creates the session (`user` is the callbacks' user data) and queues SETTINGS `iv` and a
  // WINDOW_UPDATE raising the connection window to `connection_window`. False when nghttp2
  // could not.
  bool start(Role role, void* user, Configure configure, const nghttp2_settings_entry* iv,
             size_t niv, int32_t connection_window);
  // Deletes the session; its callbacks no longer run. Idempotent.
  void destroy();
  nghttp2_session* get() const { return session_; }

  // Feeds `data` to nghttp2 (mem_recv). The result is nghttp2's: the bytes read, or an error.
  h2::ssize receive(const Slice& data);
  bool in_recv() const { return in_recv_; }
  // A DATA payload nghttp2 hands a callback: a view of the slice being received when it lies in
  // it (no copy), else a copy in a pool block.
  Slice data_slice(const uint8_t* data, size_t len);

  // Produces frames into the sink until nghttp2 has none left or the sink is congested.
  Sent send();
  int error() const { return error_; }  // nghttp2's error after kSessionError
  // Stops reading the sink while its queue is above the high watermark.
  void pause_input_if_congested();
  // The sink's queue fell to its low watermark: reading resumes if it was paused.
  void resume_input();
  bool input_paused() const { return input_paused_; }
  // Neither reading nor writing is wanted: the session is over.
  bool over() const;

 private:
  LoopContext& ctx_;
  Http2Sink& sink_;
  nghttp2_session* session_ = nullptr;
  const Slice* input_ = nullptr;  // the slice mem_recv is reading, for zero-copy DATA
  std::vector<Slice> batch_;      // send(): the frames of one write, reused pass after pass
  int error_ = 0;
  bool in_recv_ = false;
  bool in_send_ = false;
  bool input_paused_ = false;
};

}  // namespace sluice
