#pragma once
// Worker: one thread with its own uv_loop_t, its own SO_REUSEPORT listening socket per
// listener, its own upstream pools and its client connections. Nothing on the request path is
// shared with other workers but the rate-limit buckets and the bans (guard/, thread-safe). The
// main thread talks to it only through a mailbox (mutex + uv_async_t) and reads its counters.
#include <uv.h>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/access_log.h"
#include "core/config.h"
#include "core/drain_state.h"
#include "core/intrusive_list.h"
#include "core/loop_context.h"
#include "core/maintenance_switch.h"
#include "exchange/request_context.h"
#include "http/router.h"
#include "net/listener.h"
#include "tls/tls_context.h"
#include "tunnel/tunnel_sides.h"
#include "upstream/upstream_cluster.h"

namespace sluice {

class DownstreamConnection;
class Http2Stream;

struct WorkerSetup {
  ConfigPtr config;
  std::vector<AddressList> addresses;          // by index of config->clusters
  std::vector<ClusterStats*> cluster_stats;    // this worker's shards, by cluster index
  std::vector<ListenerStats*> listener_stats;  // this worker's shards, by listener index
  std::vector<std::shared_ptr<const ClientTls>> cluster_tls;   // by cluster index; null: plain
  std::vector<std::shared_ptr<const ServerTls>> listener_tls;  // by listener index; null: plain
  // Open connections per listener, all workers together (owned by the main thread).
  std::vector<std::atomic<uint32_t>*> listener_open;
  // Client connections this worker may hold within the process's descriptor limit (each may
  // need an upstream connection too); beyond it they are refused rather than left to fail.
  uint32_t fd_connection_cap = 0;        // 0: no cap
  AccessLogSink* access_sink = nullptr;  // shared by all workers; outlives them
  bool colour_log = false;               // stdout is a terminal: colour the text access log
  std::vector<int> listen_fds;           // one per config->listeners entry, owned by the worker
  std::shared_ptr<DrainState> drain;
  // Issue 17: each cluster's guard (breaker, caps, retry budget; null: none), by cluster index,
  // and each listener's maintenance switch (owned by the server), by listener index.
  std::vector<std::shared_ptr<ClusterGuard>> cluster_guards;
  std::vector<const MaintenanceSwitch*> maintenance;
  // Bans, IP rules, trusted proxies and rate limits of `config` (issue #17; the Guard's).
  std::shared_ptr<const GuardPolicy> guard;
};

class Worker final : public ClusterDirectory, public TunnelRegistry {
 public:
  Worker(unsigned index, WorkerSetup setup);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread; the future resolves once it listens (empty string) or failed (why).
  std::future<std::string> start();
  // Asks the worker to stop (thread-safe), then join() waits for its loop to finish.
  void request_stop();
  // The drain phase changed (thread-safe): the worker acts on it on its own loop.
  void notify_drain();
  void join();
  // Runs `task` on the worker's loop (thread-safe), in the order posted. Dropped if the worker
  // has stopped.
  void post(std::function<void(Worker&)> task);

  // Tasks the main thread posts.
  // A reloaded configuration (same listeners, in the same order): routes and clusters change
  // for new requests; clusters whose settings did not change keep their pools.
  void apply_config(ConfigPtr config, const std::vector<AddressList>& addresses,
                    const std::vector<ClusterStats*>& stats,
                    const std::vector<std::shared_ptr<const ClientTls>>& tls,
                    const std::vector<std::shared_ptr<ClusterGuard>>& guards = {});
  // The guard policy of a reloaded configuration (posted right after apply_config).
  void set_guard_policy(std::shared_ptr<const GuardPolicy> policy) {
    setup_.guard = std::move(policy);
  }
  // New certificates for a listener (rotation): new handshakes use them.
  void set_listener_tls(size_t listener, std::shared_ptr<const ServerTls> tls);
  // The resolver's new addresses for a cluster of the current configuration.
  void set_addresses(const std::string& cluster, const AddressList& addresses);
  // A finished drain was undone (POST /resume): new listening sockets for the listeners the
  // drain closed (by listener index, -1 for the others; the worker owns them), and the drain
  // phases apply afresh to the next drain. Posted after the shared phase is back to serving.
  void resume_listeners(const std::vector<int>& fds);

  // Worker-thread API.
  LoopContext& ctx() { return *ctx_; }
  const Config& config() const { return *config_; }
  const ConfigPtr& config_ptr() const { return config_; }
  // The cluster for a request on `listener`, or nullptr (404). `host` is lower-case, no port.
  UpstreamCluster* route(size_t listener, std::string_view host, std::string_view path) override;
  void remove_connection(DownstreamConnection* c);
  void add_tunnel(Tunnel* t, bool drain_exempt) override;
  void remove_tunnel(Tunnel* t, TunnelEnd why) override;
  // gRPC calls whose response head was sent (long-lived, as WebSocket sessions are): the drain
  // spreads their ends over drain.close_spread. Idempotent.
  void add_grpc_call(Http2Stream* s);
  void remove_grpc_call(Http2Stream* s);
  const WorkerStats& stats() const { return ctx_->stats; }
  ListenerStats& listener_stats(size_t listener) { return *setup_.listener_stats[listener]; }
  const MaintenanceSwitch* maintenance(size_t listener) const {
    return listener < setup_.maintenance.size() ? setup_.maintenance[listener] : nullptr;
  }
  // The listener's TLS context for a new connection (null: plain TCP).
  const std::shared_ptr<const ServerTls>& listener_tls(size_t listener) const {
    return setup_.listener_tls[listener];
  }
  // The worker's access log while `log.access` is on, else null.
  AccessLog* access_log() { return config_->log.access ? access_log_.get() : nullptr; }
  bool colour_log() const { return setup_.colour_log; }
  const std::shared_ptr<const GuardPolicy>& guard_policy() const { return setup_.guard; }
  unsigned index() const { return index_; }
  const DrainState& drain() const { return *setup_.drain; }

 private:
  void run(std::promise<std::string> ready);
  void on_accept(uv_stream_t* server, size_t listener);
  void on_accept_error(int status, size_t listener);
  // A new client connection of `listener`, opened by `open` (accept or adopt a descriptor).
  void add_connection(size_t listener, const std::function<int(DownstreamConnection*)>& open);
  void stop_now();
  void apply_drain_phase(DrainPhase p);
  // The drain's close spread: WebSocket sessions (1001) and gRPC calls (grpc-status 14), each
  // kind evenly over drain.close_spread.
  void start_close_spread();
  // How long a gRPC call the drain tells to end at elapsed ms into the spread may still take.
  uint64_t grpc_end_by_ms(uint64_t elapsed) const;
  static constexpr uint64_t kDrainEndMarginMs = 1000;
  void close_listeners();
  static void on_spread_tick(uv_timer_t* t);
  static void on_mailbox(uv_async_t* a);
  void wake();  // the mailbox's async, if it is open (thread-safe)
  // Deletes retired clusters and pools nobody uses any more (every second while any exist).
  void sweep();
  void arm_sweep();

  unsigned index_;
  WorkerSetup setup_;
  uv_loop_t loop_;
  std::unique_ptr<LoopContext> ctx_;
  std::unique_ptr<AccessLog> access_log_;  // destroyed after the loop has closed
  uv_async_t mailbox_;
  std::atomic<bool> stop_requested_{false};
  std::vector<std::unique_ptr<Listener>> listeners_;
  // Listeners replaced by resume_listeners(): closed, freed with the worker (after the loop).
  std::vector<std::unique_ptr<Listener>> retired_listeners_;
  ConfigPtr config_;             // the current snapshot (replaced by a reload)
  std::vector<Router> routers_;  // one per listener, for config_
  std::vector<std::unique_ptr<UpstreamCluster>> clusters_;  // by index of config_->clusters
  std::vector<std::unique_ptr<UpstreamCluster>> retired_clusters_;
  uv_timer_t* sweep_timer_ = nullptr;  // freed in its close callback
  uv_timer_t heartbeat_;               // stores the loop's time for /healthz; closed by stop_now
  std::mutex tasks_mutex_;
  std::vector<std::function<void(Worker&)>> tasks_;  // guarded by tasks_mutex_
  bool mailbox_open_ = false;                        // guarded by tasks_mutex_
  IntrusiveList<DownstreamConnection> connections_;
  IntrusiveList<Tunnel> tunnels_;           // sessions not yet told to go away
  IntrusiveList<Tunnel> draining_tunnels_;  // told (1001 sent or pending), handshake under way
  IntrusiveList<Tunnel> exempt_tunnels_;    // on drain: false listeners, closed at the stop
  IntrusiveList<Http2Stream> grpc_calls_;   // gRPC calls not yet told to end (Http2Stream)
  DrainPhase seen_phase_ = DrainPhase::kServing;
  uv_timer_t* spread_timer_ = nullptr;    // freed in its close callback
  uv_timer_t* listener_timer_ = nullptr;  // closes the listeners after the handshake grace
  uint64_t spread_start_ms_ = 0;
  uint64_t accept_error_logged_ms_ = 0;  // accept failures are logged once per interval
  size_t spread_total_ = 0;              // sessions and calls when the spread began
  size_t spread_done_ = 0;
  size_t spread_ws_total_ = 0, spread_ws_done_ = 0;  // the WebSocket part of each
  std::thread thread_;
  bool stopping_ = false;
};

}  // namespace sluice
