#pragma once
// Http2UpstreamPool: the multiplexed HTTP/2 connections of one worker to one upstream address
// (a cluster with `protocol: h2` or `h2c`), owned by that address's UpstreamPool, which keeps
// what is the address's rather than the protocol's (load, outlier detection, the TLS session
// cache). Every open connection is on exactly one list: connecting, ready (accepting streams,
// with or without room) or going away (a GOAWAY arrived: its streams finish, no new ones).
//
// A request gets a stream on the ready connection with the most streams that still has room
// under the server's SETTINGS_MAX_CONCURRENT_STREAMS (nghttp2 assumes 100 until SETTINGS arrive),
// so load packs onto few connections; a new connection opens only when every one is full (at
// most pool.max_connections, pool.max_connecting at once); the others wait in a FIFO queue of
// pool.queue_size with pool.queue_timeout. A connection without streams closes after
// pool.idle_timeout.
#include <netinet/in.h>
#include <uv.h>

#include <string>

#include "core/config.h"
#include "core/gauge_share.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "upstream/http2_upstream_connection.h"
#include "upstream/wait_queue.h"

namespace sluice {

class UpstreamPool;
class ClientTls;

class Http2UpstreamPool {
 public:
  Http2UpstreamPool(LoopContext& ctx, UpstreamPool& owner, const ClusterConfig& config,
                    ClusterStats& stats);
  ~Http2UpstreamPool();
  Http2UpstreamPool(const Http2UpstreamPool&) = delete;
  Http2UpstreamPool& operator=(const Http2UpstreamPool&) = delete;

  UpstreamSource::Acquire acquire(PoolClient* client, UpstreamSide** side, PoolFailure* failure);
  void cancel(PoolClient* client);
  void retire();
  void shutdown();
  bool empty() const { return open_count() == 0 && waiters_.empty(); }
  size_t load() const { return streams_ + waiters_.size(); }
  size_t active_streams() const { return streams_; }
  size_t waiting_count() const { return waiters_.size(); }
  size_t open_count() const { return connecting_.size() + ready_.size() + going_away_.size(); }
  const std::string& name() const;
  const std::string& authority() const;

  // Connection → pool.
  void on_connected(Http2UpstreamConnection* c);
  void on_connect_failed(Http2UpstreamConnection* c, UpstreamError e);
  void on_goaway(Http2UpstreamConnection* c);
  // A stream ended (a slot is free) or the server raised its limit: serve waiters.
  void on_room(Http2UpstreamConnection* c);
  void stream_opened() {
    ++streams_;
    stats_.upstream_streams_active.add();
  }
  void stream_closed() {
    --streams_;
    stats_.upstream_streams_active.sub();
  }
  void detach(Http2UpstreamConnection* c);
  ClusterStats& stats() { return stats_; }
  const ClusterConfig& config() const { return config_; }
  // Brings the cluster's idle/active gauges up to date (connections without / with streams).
  void sync_gauges();

 private:
  bool start_connection();
  void connect_for_waiters();
  void serve_waiters(Http2UpstreamConnection* c);
  void fail_waiters(PoolFailure f);
  static void on_retry_timer(uv_timer_t* t);
  Http2UpstreamConnection* pick();

  LoopContext& ctx_;
  UpstreamPool& owner_;
  const ClusterConfig& config_;
  ClusterStats& stats_;
  IntrusiveList<Http2UpstreamConnection> connecting_, ready_, going_away_;
  WaitQueue waiters_;          // with the queue timeout's timer
  OnDemandTimer retry_timer_;  // a connect again after a backoff (sole address)
  uint64_t retry_at_ms_ = 0;   // a backoff runs until then (0: none)
  uint32_t failed_rounds_ = 0;
  size_t expected_streams_ = 100;  // per new connection: the server's last SETTINGS limit
  static constexpr uint32_t kConnectRetries = 3;
  size_t streams_ = 0;
  GaugeShare idle_share_, busy_share_;  // this address's part of the cluster's gauges
  bool shut_down_ = false;
  bool retired_ = false;
};

}  // namespace sluice
