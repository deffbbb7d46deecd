#include "server/worker.h"

#include <unistd.h>

#include <optional>

#include "core/log.h"
#include "server/downstream_connection.h"
#include "server/http2_stream.h"
#include "tunnel/tunnel.h"

namespace sluice {

namespace {
// Handshakes already under way when the listeners stop taking new ones complete within a
// few round trips; then the queue is taken and the sockets close.
constexpr uint64_t kHandshakeGraceMs = 100;

constexpr uint64_t kSweepIntervalMs = 1000;
constexpr uint64_t kHeartbeatMs = 250;
constexpr uint64_t kAcceptErrorLogIntervalMs = 10000;

// An aliasing pointer: the cluster's settings, keeping their whole snapshot alive.
std::shared_ptr<const ClusterConfig> cluster_config(const ConfigPtr& config, size_t i) {
  return std::shared_ptr<const ClusterConfig>(config, &config->clusters[i]);
}
}  // namespace

Worker::Worker(unsigned index, WorkerSetup setup)
    : index_(index), setup_(std::move(setup)), config_(setup_.config) {}

Worker::~Worker() {
  join();
  for (int fd : setup_.listen_fds)
    if (fd >= 0 && listeners_.empty()) ::close(fd);  // never handed to a loop
}

std::future<std::string> Worker::start() {
  std::promise<std::string> ready;
  auto fut = ready.get_future();
  thread_ = std::thread(&Worker::run, this, std::move(ready));
  return fut;
}

void Worker::request_stop() {
  stop_requested_.store(true);
  wake();  // a worker still starting sees the flag once it listens
}

void Worker::notify_drain() {
  wake();
}

void Worker::post(std::function<void(Worker&)> task) {
  std::lock_guard<std::mutex> lock(tasks_mutex_);
  if (!mailbox_open_) return;  // stopped: dropped, as documented
  tasks_.push_back(std::move(task));
  uv_async_send(&mailbox_);
}

void Worker::wake() {
  // Under the lock that stop_now() takes to close the mailbox: the handle and its loop exist
  // while it is open. After a failed start (or once stopped) there is nothing to wake, and
  // libuv would abort on a write to the closed loop's wake-up descriptor.
  std::lock_guard<std::mutex> lock(tasks_mutex_);
  if (mailbox_open_) uv_async_send(&mailbox_);
}

UpstreamCluster* Worker::route(size_t listener, std::string_view host, std::string_view path) {
  int i = routers_[listener].match(host, path);
  return i < 0 ? nullptr : clusters_[static_cast<size_t>(i)].get();
}

void Worker::set_listener_tls(size_t listener, std::shared_ptr<const ServerTls> tls) {
  setup_.listener_tls[listener] = std::move(tls);  // connections keep the SSL they started with
}

void Worker::apply_config(ConfigPtr config, const std::vector<AddressList>& addresses,
                          const std::vector<ClusterStats*>& stats,
                          const std::vector<std::shared_ptr<const ClientTls>>& tls,
                          const std::vector<std::shared_ptr<ClusterGuard>>& guards) {
  if (stopping_) return;
  auto guard = [&](size_t i) { return i < guards.size() ? guards[i] : nullptr; };
  std::vector<std::unique_ptr<UpstreamCluster>> next;
  for (size_t i = 0; i < config->clusters.size(); ++i) {
    const ClusterConfig& want = config->clusters[i];
    std::unique_ptr<UpstreamCluster> kept;
    for (auto& c : clusters_) {
      if (c && c->config() == want && c->tls() == tls[i].get() && c->guard() == guard(i).get()) {
        kept = std::move(c);  // same settings: its pools and connections carry on
        break;
      }
    }
    if (!kept) {
      kept = std::make_unique<UpstreamCluster>(*ctx_, cluster_config(config, i), *stats[i], tls[i],
                                               guard(i), index_);
      kept->set_addresses(addresses[i]);
    }
    next.push_back(std::move(kept));
  }
  for (auto& c : clusters_) {
    if (!c) continue;
    c->retire();  // requests under way finish on it; then the sweep deletes it
    retired_clusters_.push_back(std::move(c));
  }
  clusters_ = std::move(next);
  config_ = std::move(config);
  routers_.clear();
  for (const ListenerConfig& l : config_->listeners) routers_.emplace_back(l.routes, *config_);
  sweep();
}

void Worker::set_addresses(const std::string& cluster, const AddressList& addresses) {
  if (stopping_) return;
  int i = config_->cluster_index(cluster);
  if (i < 0) return;
  clusters_[static_cast<size_t>(i)]->set_addresses(addresses);
  sweep();
}

void Worker::resume_listeners(const std::vector<int>& fds) {
  if (stopping_) {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
    return;
  }
  if (listener_timer_) {  // the drain ended before its handshake grace: close them now
    close_listeners();
    uv_close(reinterpret_cast<uv_handle_t*>(listener_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    listener_timer_ = nullptr;
  }
  if (spread_timer_) uv_timer_stop(spread_timer_);
  seen_phase_ = DrainPhase::kServing;
  for (size_t i = 0; i < fds.size() && i < listeners_.size(); ++i) {
    if (fds[i] < 0) continue;
    listeners_[i]->close(nullptr);  // idempotent; freed after the loop, with the worker
    retired_listeners_.push_back(std::move(listeners_[i]));
    listeners_[i] = std::make_unique<Listener>(
        &loop_, [this, i](uv_stream_t* s) { on_accept(s, i); },
        [this, i](int status) { on_accept_error(status, i); });
    if (int r = listeners_[i]->open(fds[i]); r != 0)
      LOG_ERROR("worker %u: listener %s cannot listen again: %s", index_,
                config().listeners[i].name.c_str(), uv_strerror(r));
  }
}

void Worker::sweep() {
  std::erase_if(retired_clusters_, [](const std::unique_ptr<UpstreamCluster>& c) {
    if (!c->sweep()) return false;
    LOG_DEBUG("cluster %s: retired and unused, freed", c->config().name.c_str());
    return true;
  });
  bool pending = !retired_clusters_.empty();
  for (auto& c : clusters_) {
    c->sweep();
    if (c->has_retired_pools()) pending = true;
  }
  if (pending) arm_sweep();
}

void Worker::arm_sweep() {
  if (stopping_) return;
  if (!sweep_timer_) {
    sweep_timer_ = new uv_timer_t;
    uv_timer_init(&loop_, sweep_timer_);
    sweep_timer_->data = this;
  }
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(sweep_timer_))) return;
  uv_timer_start(
      sweep_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->sweep(); }, kSweepIntervalMs,
      0);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run(std::promise<std::string> ready) {
  uv_loop_init(&loop_);
  ctx_ = std::make_unique<LoopContext>(
      &loop_, 0x9E3779B97F4A7C15ull * (index_ + 1) ^ static_cast<uint64_t>(uv_hrtime()));
  ctx_->start_deferred();
  access_log_ = std::make_unique<AccessLog>(setup_.access_sink, ctx_->stats.access_log_dropped);
  uv_async_init(&loop_, &mailbox_, &Worker::on_mailbox);
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    mailbox_open_ = true;
  }
  uv_timer_init(&loop_, &heartbeat_);
  heartbeat_.data = this;
  ctx_->stats.heartbeat_ms.store(uv_hrtime() / 1000000);
  uv_timer_start(
      &heartbeat_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Worker*>(t->data);
        self->ctx_->stats.heartbeat_ms.store(uv_hrtime() / 1000000);
        self->access_log_->flush();  // what a quiet worker holds is written within a beat
      },
      kHeartbeatMs, kHeartbeatMs);
  mailbox_.data = this;

  const Config& cfg = *config_;
  for (size_t i = 0; i < cfg.clusters.size(); ++i) {
    clusters_.push_back(std::make_unique<UpstreamCluster>(
        *ctx_, cluster_config(config_, i), *setup_.cluster_stats[i], setup_.cluster_tls[i],
        i < setup_.cluster_guards.size() ? setup_.cluster_guards[i] : nullptr, index_));
    clusters_.back()->set_addresses(setup_.addresses[i]);
  }
  setup_.addresses.clear();
  for (const ListenerConfig& l : cfg.listeners) routers_.emplace_back(l.routes, cfg);
  std::string error;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    auto l = std::make_unique<Listener>(
        &loop_, [this, i](uv_stream_t* s) { on_accept(s, i); },
        [this, i](int status) { on_accept_error(status, i); });
    int r = l->open(setup_.listen_fds[i]);
    setup_.listen_fds[i] = -1;  // the listener owns it now
    listeners_.push_back(std::move(l));
    if (r != 0 && error.empty())
      error = "listen " + cfg.listeners[i].address.str() + ": " + uv_strerror(r);
  }
  if (!error.empty()) stop_now();
  ready.set_value(error);
  if (stop_requested_.load()) stop_now();

  uv_run(&loop_, UV_RUN_DEFAULT);
  // Every connection and pool is closed and deleted; close the deferred-task handles too.
  clusters_.clear();
  retired_clusters_.clear();
  ctx_->stop_deferred();
  uv_run(&loop_, UV_RUN_DEFAULT);
  access_log_->flush();
  int r = uv_loop_close(&loop_);
  if (r != 0) LOG_ERROR("worker %u: loop closed with handles still open", index_);
}

void Worker::on_mailbox(uv_async_t* a) {
  auto* self = static_cast<Worker*>(a->data);
  if (self->stop_requested_.load()) {
    self->stop_now();
    return;
  }
  std::vector<std::function<void(Worker&)>> tasks;
  {
    std::lock_guard<std::mutex> lock(self->tasks_mutex_);
    tasks.swap(self->tasks_);
  }
  for (auto& task : tasks) task(*self);
  const DrainState& drain = *self->setup_.drain;
  const DrainPhase p = drain.phase.load(std::memory_order_acquire);
  while (!self->stopping_ && self->seen_phase_ < p && self->seen_phase_ < DrainPhase::kDone) {
    self->seen_phase_ = static_cast<DrainPhase>(static_cast<uint8_t>(self->seen_phase_) + 1);
    // Phases missed while busy are applied in order, but kForced only if the budget ran out:
    // a drain that ended by itself has none (the phase went from kDraining to kDone).
    if (self->seen_phase_ == DrainPhase::kForced && !drain.forced.load(std::memory_order_relaxed))
      continue;
    self->apply_drain_phase(self->seen_phase_);
  }
}

void Worker::apply_drain_phase(DrainPhase p) {
  if (p == DrainPhase::kDelay) {
    // HTTP/2 has no `Connection: close`: its connections get the shutdown notice at once, at
    // the start of the delay, and the final GOAWAY a PING round trip later (Http2Connection::
    // shutdown). Clients open their new streams elsewhere while the pod still accepts; streams
    // in flight finish.
    connections_.for_each([](DownstreamConnection* c) {
      if (c->drain_exempt()) return;
      if (Http2Connection* h2 = c->http2()) h2->shutdown();
    });
  } else if (p == DrainPhase::kDraining) {
    // New handshakes are refused from now on; those under way get a short grace to complete
    // and be accepted, and what is queued then is served before the sockets close.
    for (size_t i = 0; i < listeners_.size(); ++i)
      if (config().listeners[i].drain) listeners_[i]->refuse_new_connections();
    listener_timer_ = new uv_timer_t;
    uv_timer_init(&loop_, listener_timer_);
    listener_timer_->data = this;
    uv_timer_start(
        listener_timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->close_listeners(); },
        kHandshakeGraceMs, 0);
    connections_.for_each([](DownstreamConnection* c) {
      if (c->drain_exempt()) return;
      if (c->idle_keep_alive()) {
        c->close();
      } else if (Http2Connection* h2 = c->http2()) {
        h2->shutdown();  // sent at the delay's start already (idempotent); streams finish
      } else if (Exchange* e = c->exchange(); e && e->active()) {
        e->drain_event_stream();
      }
    });
    start_close_spread();
  } else if (p == DrainPhase::kForced) {
    if (spread_timer_) uv_timer_stop(spread_timer_);
    // `drain: false` listeners' connections and sessions stay through all of it.
    for (auto* list : {&tunnels_, &draining_tunnels_}) {
      while (Tunnel* t = list->front()) {
        ctx_->stats.drain_forced_closes.add();
        t->force_close(TunnelEnd::kDrainForced);
      }
    }
    connections_.for_each([this](DownstreamConnection* c) {
      if (c->drain_exempt()) return;
      ctx_->stats.drain_forced_closes.add();
      if (Http2Connection* h2 = c->http2())
        ctx_->stats.drain_forced_http2_streams.add(h2->open_streams());
      c->close();
    });
  }
}

void Worker::close_listeners() {
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (!config().listeners[i].drain) continue;  // open until the final stop
    listeners_[i]->accept_queued([this, i](int fd) {
      add_connection(i, [fd](DownstreamConnection* c) { return c->adopt(fd); });
    });
    listeners_[i]->close(nullptr);
  }
}

void Worker::start_close_spread() {
  spread_ws_total_ = tunnels_.size();
  spread_ws_done_ = 0;
  spread_total_ = tunnels_.size() + grpc_calls_.size();
  spread_done_ = 0;
  spread_start_ms_ = ctx_->now_ms();
  if (!spread_timer_) {
    spread_timer_ = new uv_timer_t;
    uv_timer_init(&loop_, spread_timer_);
    spread_timer_->data = this;
  }
  uint64_t window = static_cast<uint64_t>(config().drain.close_spread.count());
  uint64_t tick = spread_total_ ? window / spread_total_ : 50;
  tick = tick < 1 ? 1 : (tick > 50 ? 50 : tick);
  uv_timer_start(spread_timer_, &Worker::on_spread_tick, 0, tick);
}

// Session or call i of n gets its end (a 1001 Close; grpc-status 14 at the next message
// boundary) at i * window / n: evenly spread, so clients do not all reconnect at once. The two
// kinds are interleaved in proportion, each evenly over the window. Sessions and calls that end
// on their own simply leave their list.
void Worker::on_spread_tick(uv_timer_t* t) {
  auto* self = static_cast<Worker*>(t->data);
  uint64_t window = static_cast<uint64_t>(self->config().drain.close_spread.count());
  uint64_t elapsed = self->ctx_->now_ms() - self->spread_start_ms_;
  // Everything, once the window is over.
  size_t due = self->tunnels_.size() + self->grpc_calls_.size() + self->spread_done_;
  if (elapsed < window && self->spread_total_)
    due = static_cast<size_t>(elapsed * self->spread_total_ / window) + 1;
  const size_t ws_total = self->spread_ws_total_;
  const size_t grpc_total = self->spread_total_ - ws_total;
  while (self->spread_done_ < due) {
    // The kind that is further behind its share goes next.
    const size_t grpc_done = self->spread_done_ - self->spread_ws_done_;
    const bool ws_next =
        !self->tunnels_.empty() &&
        (self->grpc_calls_.empty() || self->spread_ws_done_ * grpc_total <= grpc_done * ws_total);
    if (ws_next) {
      Tunnel* tunnel = self->tunnels_.pop_front();
      self->draining_tunnels_.push_back(tunnel);
      ++self->spread_done_;
      ++self->spread_ws_done_;
      tunnel->drain_close();
    } else if (Http2Stream* s = self->grpc_calls_.pop_front()) {
      ++self->spread_done_;
      s->drain_grpc_call(self->grpc_end_by_ms(elapsed));  // now, or at a message boundary
    } else {
      break;
    }
  }
  if (self->tunnels_.empty() && self->grpc_calls_.empty() && elapsed >= window) uv_timer_stop(t);
}

// The spread starts at the end of the delay: the budget, counted from the drain's start, has
// budget - delay - elapsed left. A call the drain cannot end at once must have ended
// kDrainEndMarginMs before that, so that its trailers are out when the budget closes what is left.
uint64_t Worker::grpc_end_by_ms(uint64_t elapsed) const {
  const DrainSettings& d = config().drain;
  const int64_t left = d.budget.count() - d.delay.count() - static_cast<int64_t>(elapsed) -
                       static_cast<int64_t>(kDrainEndMarginMs);
  return left > 0 ? static_cast<uint64_t>(left) : 0;
}

void Worker::add_grpc_call(Http2Stream* s) {
  if (stopping_ || s->linked()) return;
  grpc_calls_.push_back(s);
  // A call whose head came after the spread began is ended with the rest at the window's end.
  if (spread_timer_ && seen_phase_ >= DrainPhase::kDraining && seen_phase_ < DrainPhase::kForced &&
      !uv_is_active(reinterpret_cast<uv_handle_t*>(spread_timer_)))
    uv_timer_start(spread_timer_, &Worker::on_spread_tick, 50, 50);
}

void Worker::remove_grpc_call(Http2Stream* s) {
  grpc_calls_.remove(s);
}

void Worker::on_accept(uv_stream_t* server, size_t listener) {
  add_connection(listener, [server](DownstreamConnection* c) { return c->accept(server); });
}

void Worker::on_accept_error(int status, size_t listener) {
  ListenerStats& ls = listener_stats(listener);
  if (status == UV_EMFILE || status == UV_ENFILE) {
    ls.refused[static_cast<size_t>(ConnectionRefusal::kFdLimit)].add();
  }
  uint64_t now = ctx_->now_ms();
  if (accept_error_logged_ms_ && now - accept_error_logged_ms_ < kAcceptErrorLogIntervalMs) return;
  accept_error_logged_ms_ = now;
  LOG_WARN(
      "listener %s: accept failed: %s (connections are being shed; see "
      "sluice_downstream_connections_refused_total)",
      config().listeners[listener].name.c_str(), uv_strerror(status));
}

void Worker::add_connection(size_t listener,
                            const std::function<int(DownstreamConnection*)>& open) {
  auto* c = new DownstreamConnection(*this, static_cast<uint16_t>(listener));
  // Limits: counted before this connection joins.
  std::optional<ConnectionRefusal> refuse;
  const uint32_t listener_limit = config().listeners[listener].max_connections;
  const uint32_t open_here =
      setup_.listener_open[listener]->fetch_add(1, std::memory_order_relaxed);
  const uint32_t worker_limit = config().limits.max_connections_per_worker;
  if (listener_limit && open_here >= listener_limit) {
    refuse = ConnectionRefusal::kListenerLimit;
  } else if (worker_limit && connections_.size() >= worker_limit) {
    refuse = ConnectionRefusal::kWorkerLimit;
  } else if (setup_.fd_connection_cap && connections_.size() >= setup_.fd_connection_cap) {
    refuse = ConnectionRefusal::kFdLimit;
  }
  connections_.push_back(c);
  ctx_->stats.downstream_connections_active.add();
  ListenerStats& ls = listener_stats(listener);
  ls.connections_active.add();  // connections_total: once its protocol is known
  if (c->drain_exempt()) ctx_->stats.drain_exempt_connections.add();
  if (int r = open(c); r != 0) {
    LOG_WARN("accept: %s", uv_strerror(r));
    c->close();
    return;
  }
  if (refuse) {
    ls.refused[static_cast<size_t>(*refuse)].add();
    if (*refuse == ConnectionRefusal::kFdLimit) {
      uint64_t now = ctx_->now_ms();
      if (!accept_error_logged_ms_ || now - accept_error_logged_ms_ >= kAcceptErrorLogIntervalMs) {
        accept_error_logged_ms_ = now;
        LOG_WARN(
            "listener %s: %zu connections use this worker's share of the descriptor limit "
            "(RLIMIT_NOFILE); refusing new ones (sluice_downstream_connections_refused_total)",
            config().listeners[listener].name.c_str(), connections_.size() - 1);
      }
    }
    c->refuse(kRefusalReasons[static_cast<size_t>(*refuse)],
              /*linger=*/*refuse != ConnectionRefusal::kFdLimit);
    return;
  }
  // Bans and IP rules on the socket's address (issue #17): the only address known at accept.
  if (setup_.guard) {
    const GuardPolicy::Denial d =
        setup_.guard->screen_connection(listener, c->peer_address(), /*now_ms: when needed*/ 0);
    if (d.denied) c->deny(kDenyListNames[static_cast<size_t>(d.list)], !d.close);
  }
}

void Worker::remove_connection(DownstreamConnection* c) {
  if (!c->linked()) return;
  connections_.remove(c);
  ctx_->stats.downstream_connections_active.sub();
  listener_stats(c->listener()).connections_active.sub();
  if (c->http2()) {
    ctx_->stats.http2_connections_active.sub();
    listener_stats(c->listener()).http2_connections_active.sub();
  }
  setup_.listener_open[c->listener()]->fetch_sub(1, std::memory_order_relaxed);
  if (c->drain_exempt()) ctx_->stats.drain_exempt_connections.sub();
}

void Worker::add_tunnel(Tunnel* t, bool drain_exempt) {
  (drain_exempt ? exempt_tunnels_ : tunnels_).push_back(t);
  ctx_->stats.websocket_sessions_active.add();
  listener_stats(t->listener()).websocket_sessions_active.add();
}

void Worker::remove_tunnel(Tunnel* t, TunnelEnd why) {
  if (!t->linked()) return;
  if (t->closing_handshake()) {
    draining_tunnels_.remove(t);
  } else if (t->drain_exempt()) {
    exempt_tunnels_.remove(t);
  } else {
    tunnels_.remove(t);
  }
  ctx_->stats.websocket_sessions_active.sub();
  ListenerStats& ls = listener_stats(t->listener());
  ls.websocket_sessions_active.sub();
  ls.websocket_closed[static_cast<size_t>(why)].add();
}

void Worker::stop_now() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) l->close(nullptr);
  // Clients first, pools second, and the order matters: closing a client aborts its exchange,
  // which resets the upstream side it holds (and leaves the pool's queue). Only then may the
  // pools close what is left (idle and connecting connections): a busy connection closed by its
  // pool would leave its exchange holding a connection that is about to be freed.
  connections_.for_each([](DownstreamConnection* c) { c->close(); });
  for (auto* list : {&clusters_, &retired_clusters_}) {
    for (auto& c : *list) {
      for (const auto& p : c->pools())
        if (p->busy_count() || p->waiting_count())
          LOG_ERROR(
              "worker %u: pool %s still has %zu busy connections and %zu waiters after "
              "every client closed",
              index_, p->name().c_str(), p->busy_count(), p->waiting_count());
      c->shutdown();
    }
  }
  for (uv_timer_t** t : {&spread_timer_, &listener_timer_, &sweep_timer_}) {
    if (!*t) continue;
    uv_close(reinterpret_cast<uv_handle_t*>(*t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    *t = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    mailbox_open_ = false;
    tasks_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&mailbox_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&heartbeat_), nullptr);
}

}  // namespace sluice
