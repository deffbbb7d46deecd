#include "http/http2_session.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace sluice {

namespace {

// Frames are copied out of nghttp2's buffer into pool blocks, written a batch at a time so the
// sink's watermark sees them while the send pass is still producing.
constexpr size_t kWriteBatch = 64 * 1024;

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};
struct OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};

}  // namespace

bool Http2Session::start(Role role, void* user, Configure configure,
                         const nghttp2_settings_entry* iv, size_t niv, int32_t connection_window) {
  nghttp2_session_callbacks* raw_cb = nullptr;
  if (nghttp2_session_callbacks_new(&raw_cb) != 0) return false;
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cb(raw_cb);
  nghttp2_option* raw_opt = nullptr;
  if (nghttp2_option_new(&raw_opt) != 0) return false;
  std::unique_ptr<nghttp2_option, OptionDeleter> opt(raw_opt);
  // Windows are credited by hand (nghttp2_session_consume_*): flow control is backpressure.
  nghttp2_option_set_no_auto_window_update(opt.get(), 1);
  configure(cb.get(), opt.get());
  const int rv = role == Role::kServer
                     ? nghttp2_session_server_new2(&session_, cb.get(), user, opt.get())
                     : nghttp2_session_client_new2(&session_, cb.get(), user, opt.get());
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, niv) != 0) return false;
  // The connection window: a WINDOW_UPDATE on stream 0 up to this size.
  return nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, connection_window) ==
         0;
}

void Http2Session::destroy() {
  if (session_) nghttp2_session_del(session_);
  session_ = nullptr;
}

h2::ssize Http2Session::receive(const Slice& data) {
  in_recv_ = true;
  input_ = &data;
  h2::ssize n = h2::mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data), data.len);
  input_ = nullptr;
  in_recv_ = false;
  return n;
}

Slice Http2Session::data_slice(const uint8_t* data, size_t len) {
  const char* p = reinterpret_cast<const char*>(data);
  const Slice* in = input_;
  if (in && p >= in->data && p + len <= in->data + in->len)
    return in->sub(static_cast<size_t>(p - in->data), len);  // no copy: the read block
  BlockRef b = ctx_.blocks.get(len);
  std::memcpy(b->data(), data, len);
  b->used = static_cast<uint32_t>(len);
  return Slice{b, b->data(), len};
}

Http2Session::Sent Http2Session::send() {
  if (in_send_ || in_recv_ || !session_) return Sent::kSkipped;
  in_send_ = true;
  std::vector<Slice>& batch = batch_;  // empty between passes; its capacity stays
  size_t batch_bytes = 0;
  BlockRef block;
  size_t used = 0;
  Sent result = Sent::kDone;
  // The bytes copied into `block` since its last slice was cut.
  auto cut = [&]() {
    if (block && used > block->used) {
      batch.push_back(Slice{block, block->data() + block->used, used - block->used});
      block->used = static_cast<uint32_t>(used);
    }
  };
  auto write_batch = [&]() {
    cut();
    if (!batch.empty() && sink_.send_bytes(batch.data(), batch.size()) != 0)
      result = Sent::kWriteFailed;
    batch.clear();
    batch_bytes = 0;
  };
  while (result == Sent::kDone && !sink_.send_congested()) {
    const uint8_t* p = nullptr;
    h2::ssize n = h2::mem_send(session_, &p);
    if (n < 0) {
      error_ = static_cast<int>(n);
      result = Sent::kSessionError;
      break;
    }
    if (n == 0) break;
    size_t left = static_cast<size_t>(n);
    while (left > 0) {
      if (!block || used == block->capacity) {
        cut();
        block = ctx_.blocks.get();
        block->used = 0;
        used = 0;
      }
      size_t k = std::min<size_t>(left, block->capacity - used);
      std::memcpy(block->data() + used, p, k);
      used += k;
      p += k;
      left -= k;
      batch_bytes += k;
    }
    if (batch_bytes >= kWriteBatch) write_batch();
  }
  if (result == Sent::kDone) write_batch();
  batch.clear();  // after a failure, what was not written goes
  in_send_ = false;
  return result;
}

void Http2Session::pause_input_if_congested() {
  if (input_paused_ || !sink_.send_congested()) return;
  input_paused_ = true;
  sink_.pause_input();
}

void Http2Session::resume_input() {
  if (!input_paused_) return;
  input_paused_ = false;
  sink_.resume_input();
}

bool Http2Session::over() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

}  // namespace sluice
