#pragma once
// TunnelUpstream: the upstream socket of a tunnel, handed over by the upstream connection after
// a 101 (its pool has forgotten it). Owns the TcpStream and, only while it ends, a timer that
// bounds the flush of the last bytes. Its tunnel uses it until end(); it frees itself once its
// stream has closed, which may be after the tunnel and its client connection are gone.
#include <memory>

#include "core/on_demand_timer.h"
#include "net/tcp_stream.h"

namespace sluice {

class Tunnel;

class TunnelUpstream final : private StreamHandler {
 public:
  TunnelUpstream(std::unique_ptr<TcpStream> stream, Tunnel* tunnel);
  TunnelUpstream(const TunnelUpstream&) = delete;
  TunnelUpstream& operator=(const TunnelUpstream&) = delete;

  int write(const Slice& s) { return stream_->write(s); }
  bool above_high_watermark() const { return stream_->above_high_watermark(); }
  void pause_reading() { stream_->read_stop(); }
  void resume_reading() {
    if (!ending_) stream_->read_start();
  }
  // The tunnel is over: no event reaches it any more; what is queued is flushed (within the
  // linger time), then the socket closes. Idempotent.
  void end();

 private:
  ~TunnelUpstream() = default;  // only from on_stream_closed
  void on_stream_read(const Slice& data) override;
  void on_stream_eof() override;
  void on_stream_error(int status) override;
  void on_stream_drained() override;
  void on_stream_closed() override;
  static void on_timer(uv_timer_t* t);
  void close();

  std::unique_ptr<TcpStream> stream_;
  Tunnel* tunnel_;  // null once ended
  OnDemandTimer timer_;
  bool ending_ = false;
};

}  // namespace sluice
