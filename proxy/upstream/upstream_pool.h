#pragma once
// UpstreamPool: keep-alive connections to one upstream address, per worker. An explicit state
// machine: every open connection is on exactly one list — connecting, idle (LIFO, so a few
// connections stay hot) or busy. Requests that find no idle connection wait in a bounded FIFO
// queue with a deadline. The pool knows nothing of HTTP beyond "reusable or not".
//
// Connection herds (issue 17): at most `pool.max_connecting` connects are in progress at once,
// so a burst of new requests is paced through the app's accept queue rather than overflowing
// it (a dropped SYN costs a 1 s retransmit, then 3 s); the other requests wait in the queue.
// A connect that times out or is refused has sent nothing: on a cluster's only address it is
// started again after a backoff while requests wait (within their queue timeout), and failures
// of connects started together count once, so a burst of timeouts is one failure, not many.
#include <netinet/in.h>
#include <uv.h>

#include <memory>
#include <string>

#include "core/config.h"
#include "core/gauge_share.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/on_demand_timer.h"
#include "tls/tls_context.h"
#include "tls/tls_layer.h"
#include "upstream/http2_upstream_pool.h"
#include "upstream/upstream_connection.h"
#include "upstream/wait_queue.h"

namespace sluice {

class UpstreamPool;

// What a pool needs of its cluster (UpstreamCluster implements it): whether it is the only
// address (then a failed connect is retried here rather than on another address), and whether
// ejecting it would take out more of the cluster than outlier detection may.
class PoolSiblings {
 public:
  virtual size_t address_count() const = 0;
  virtual bool may_eject(const UpstreamPool* pool, uint64_t now_ms) const = 0;

 protected:
  ~PoolSiblings() = default;
};

class UpstreamPool final : public UpstreamSource {
 public:
  // `host` is the endpoint as configured ("api.example.com:443"), `name` adds the address
  // for logs when they differ. For a Unix socket (`address` AF_UNIX) host() is "localhost"
  // and name() the endpoint ("unix:/run/app/app.sock").
  UpstreamPool(LoopContext& ctx, const sockaddr_storage& address, std::string host,
               std::string name, const ClusterConfig& config, ClusterStats& stats,
               const ClientTls* tls = nullptr);
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // kReady: *conn is an idle connection, checked clean, now the caller's to bind. kQueued: the
  // client gets on_pool_ready/on_pool_failure later. kFailed: *failure says why. `fresh` asks
  // for a new connection (a retry after a stale one failed).
  Acquire acquire(PoolClient* client, bool fresh, UpstreamConnection** conn, PoolFailure* failure);
  // UpstreamSource
  // An HTTP/2 cluster's requests get a stream on a multiplexed connection (Http2UpstreamPool;
  // `fresh` needs nothing there: a connection that failed is closed, one going away takes no
  // new streams).
  Acquire acquire_side(PoolClient* client, bool fresh, UpstreamSide** side,
                       PoolFailure* failure) override {
    if (h2_) return h2_->acquire(client, side, failure);
    UpstreamConnection* conn = nullptr;
    Acquire a = acquire(client, fresh, &conn, failure);
    *side = conn;
    return a;
  }
  void cancel(PoolClient* client) override;
  // The exchange is done with a busy connection: kept idle if reusable, else closed.
  void release(UpstreamConnection* conn);
  // A busy connection that switched protocols leaves the pool for good (a tunnel owns its
  // socket).
  void take_for_tunnel(UpstreamConnection* conn);
  // Closes every connection and the queue timer (worker stop). Waiters are failed.
  void shutdown();
  // The address left the cluster (DNS change, reload): idle connections close now, busy ones
  // after their exchange (serving the waiters first); no new connections for new clients.
  void retire();
  bool retired() const { return retired_; }
  // The cluster this pool belongs to (set by it; null: a pool alone, its cluster's only address).
  void set_siblings(const PoolSiblings* siblings) { siblings_ = siblings; }
  // Nothing left: no connection, no waiter and no exchange holding it; may be deleted.
  bool empty() const {
    return open_count() == 0 && waiters_.empty() && users_ == 0 && (!h2_ || h2_->empty());
  }

  // Passive outlier detection: skipped by load balancing while ejected.
  bool ejected(uint64_t now_ms) const { return now_ms < ejected_until_ms_; }
  uint64_t ejected_until_ms() const { return ejected_until_ms_; }
  // Requests on it now: busy, connecting and waiting (least-request balancing).
  size_t load() const {
    return busy_.size() + connecting_.size() + waiters_.size() + (h2_ ? h2_->load() : 0);
  }
  const sockaddr_storage& address() const { return address_; }
  const std::string& host() const override { return host_; }
  const TlsSessionSlot& tls_session() const { return tls_session_; }

  const std::string& name() const override { return name_; }
  size_t idle_count() const { return idle_.size(); }
  // Busy HTTP/1.1 connections, or streams in flight on HTTP/2 ones.
  size_t busy_count() const { return busy_.size() + (h2_ ? h2_->active_streams() : 0); }
  size_t connecting_count() const { return connecting_.size(); }
  size_t waiting_count() const { return waiters_.size() + (h2_ ? h2_->waiting_count() : 0); }
  Http2UpstreamPool* http2() const { return h2_.get(); }
  uint64_t connections_created() const { return created_; }

 private:
  friend class UpstreamConnection;
  friend class Http2UpstreamPool;  // the address's TLS settings, session cache, outlier state
  size_t open_count() const { return idle_.size() + busy_.size() + connecting_.size(); }
  bool start_connection();
  // Starts connects for the waiters that have none, within max_connecting and max_connections,
  // unless a backoff is running (then the retry timer does it). False when one could not be
  // started at all (a local error, e.g. no descriptor left).
  bool connect_for_waiters();
  void on_connected(UpstreamConnection* conn);
  // `round`: the failure round the connect started in (UpstreamConnection::connect_round_);
  // `status`: the connect's uv error, for the log line (0 when there is none, e.g. a timeout).
  void on_connect_failed(UpstreamError e, uint32_t round, int status = 0);
  void note_connect_failure();
  bool sole_address() const { return !siblings_ || siblings_->address_count() <= 1; }
  void arm_retry_timer();
  static void on_retry_timer(uv_timer_t* t);
  void detach(UpstreamConnection* conn);
  void give(UpstreamConnection* conn, PoolClient* client);
  PoolClient* first_waiter(bool fresh_connection);
  // Brings the cluster's idle/active gauges up to date with this pool's lists (by delta).
  void sync_gauges();
  struct GaugeSync {
    UpstreamPool& pool;
    ~GaugeSync() { pool.sync_gauges(); }
  };

  LoopContext& ctx_;
  sockaddr_storage address_;
  std::string host_;
  std::string name_;
  const ClusterConfig& config_;
  ClusterStats& stats_;
  const ClientTls* tls_;  // owned by the cluster, which outlives its pools; null: plain TCP
  std::string tls_name_;  // SNI and the name verified: `sni`, or the endpoint's host (not Unix)
  TlsSessionSlot tls_session_;          // resumed by the next connection to this address
  GaugeShare idle_share_, busy_share_;  // this address's part of the cluster's gauges
  IntrusiveList<UpstreamConnection> connecting_, idle_, busy_;
  WaitQueue waiters_;          // with the queue timeout's timer
  OnDemandTimer retry_timer_;  // connects again when a backoff ends
  const PoolSiblings* siblings_ = nullptr;
  // A connect failure is counted once per round: connects started before the last counted
  // failure (the rest of a burst that timed out together) do not count again.
  uint32_t failure_round_ = 0;
  uint32_t failed_rounds_ = 0;             // counted failures since the last successful connect
  uint64_t connect_backoff_until_ms_ = 0;  // no connect starts before this (0: none)
  static constexpr uint32_t kConnectRetries = 3;   // rounds retried before waiters fail
  static constexpr uint64_t kRetryBackoffMs = 50;  // doubled each round, with jitter
  uint64_t created_ = 0;
  uint64_t ejected_until_ms_ = 0;
  uint32_t consecutive_failures_ = 0;
  uint32_t ejections_ = 0;          // in a row; reset by a successful connect
  uint64_t failure_log_ms_ = 0;     // when a connect failure was last logged (0: none yet)
  uint32_t failures_unlogged_ = 0;  // since then, counted but not logged one by one
  static constexpr uint64_t kFailureLogIntervalMs = 1000;
  bool shut_down_ = false;
  bool retired_ = false;
  std::unique_ptr<Http2UpstreamPool> h2_;  // protocol h2/h2c: the multiplexed connections
};

}  // namespace sluice
