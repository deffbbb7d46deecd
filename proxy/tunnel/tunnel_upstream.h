#pragma once
// TunnelUpstream: the upstream socket of a tunnel (its TunnelServer), handed over by the upstream
// connection after a 101 (its pool has forgotten it). Owns the TcpStream and, only while it
// ends, a timer that bounds the flush of the last bytes. Made with adopt(); its tunnel uses it
// until end(); it frees itself once its stream has closed, which may be after the tunnel and
// its client connection are gone.
#include <memory>

#include "tunnel/tunnel_sides.h"

#include "core/on_demand_timer.h"
#include "net/tcp_stream.h"

namespace sluice {

class Tunnel;

class TunnelUpstream final : public TunnelServer, private StreamHandler {
 public:
  // The tunnel's upstream end for `stream`; it lives until its stream has closed after end().
  static TunnelServer& adopt(std::unique_ptr<TcpStream> stream) {
    return *new TunnelUpstream(std::move(stream));
  }
  TunnelUpstream(const TunnelUpstream&) = delete;
  TunnelUpstream& operator=(const TunnelUpstream&) = delete;

  void attach(Tunnel* t) override;
  int write(const Slice& s) override { return stream_->write(s); }
  bool above_high_watermark() const override { return stream_->above_high_watermark(); }
  void pause_reading() override { stream_->read_stop(); }
  void resume_reading() override {
    if (tunnel_) stream_->read_start();
  }
  // What is queued is flushed within the linger time, then the socket closes.
  void end() override;

 private:
  explicit TunnelUpstream(std::unique_ptr<TcpStream> stream);
  ~TunnelUpstream() = default;  // only from on_stream_closed
  void on_stream_read(const Slice& data) override;
  void on_stream_eof() override;
  void on_stream_error(int status) override;
  void on_stream_drained() override;
  void on_stream_closed() override;
  static void on_timer(uv_timer_t* t);
  void close();

  std::unique_ptr<TcpStream> stream_;
  // From attach() (right after it is made) to end(): null means ending (every session's
  // bytes count, so no separate flag).
  Tunnel* tunnel_ = nullptr;
  OnDemandTimer timer_;
};

}  // namespace sluice
