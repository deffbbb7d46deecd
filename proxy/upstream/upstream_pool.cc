#include "upstream/upstream_pool.h"

#include <algorithm>

#include "core/log.h"

namespace sluice {

const char* pool_failure_name(PoolFailure f) {
  switch (f) {
    case PoolFailure::kConnectRefused:
      return "upstream connect failed";
    case PoolFailure::kConnectTimeout:
      return "upstream connect timeout";
    case PoolFailure::kQueueFull:
      return "upstream pool queue full";
    case PoolFailure::kQueueTimeout:
      return "upstream pool queue timeout";
    case PoolFailure::kTlsHandshake:
      return "upstream TLS handshake failed";
  }
  return "?";
}

UpstreamPool::UpstreamPool(LoopContext& ctx, const sockaddr_storage& address, std::string host,
                           std::string name, const ClusterConfig& config, ClusterStats& stats,
                           const ClientTls* tls)
    : ctx_(ctx),
      address_(address),
      host_(std::move(host)),
      name_(std::move(name)),
      config_(config),
      stats_(stats),
      tls_(tls),
      waiters_(ctx, config.pool) {
  // A Unix socket has no authority to put in a Host header: "localhost" says the app is on this
  // machine (what curl --unix-socket sends too, for http://localhost/). The endpoint text stays
  // in name_, for logs and the access log.
  const bool unix_socket = address_.ss_family == AF_UNIX;
  if (unix_socket) host_ = "localhost";
  if (tls_) {
    tls_session_.full_handshakes = &stats_.tls_handshakes_full;
    tls_session_.resumed_handshakes = &stats_.tls_handshakes_resumed;
    tls_name_ = tls_->settings().sni;
    // No name to derive from a Unix socket: without tls.sni (allowed only with verify: false)
    // no SNI is sent and no name verified.
    if (tls_name_.empty() && !unix_socket) {
      // The endpoint's host: "api.example.com:443" -> "api.example.com", "[::1]:443" -> "::1".
      std::string_view h = host_;
      if (!h.empty() && h.front() == '[') {
        h = h.substr(1, h.find(']') - 1);
      } else if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
        h = h.substr(0, colon);
      }
      tls_name_ = std::string(h);
    }
  }
  if (config_.protocol != UpstreamProtocol::kHttp1)
    h2_ = std::make_unique<Http2UpstreamPool>(ctx, *this, config_, stats_);
}

UpstreamPool::~UpstreamPool() {
  // Owners shut a pool down before deleting it (UpstreamCluster::shutdown), or delete it once
  // it is empty (the sweep), so no request waits here. Were one left, no callback may run from
  // a destructor: it is dropped, and said.
  if (!waiters_.empty()) {
    LOG_ERROR("upstream %s: deleted with %zu requests waiting", name_.c_str(), waiters_.size());
    waiters_.drop_all();
  }
  shutdown();
}

UpstreamPool::Acquire UpstreamPool::acquire(PoolClient* client, bool fresh,
                                            UpstreamConnection** conn, PoolFailure* failure) {
  GaugeSync sync{*this};
  if (shut_down_) {
    *failure = PoolFailure::kConnectRefused;
    return Acquire::kFailed;
  }
  if (!fresh) {
    while (UpstreamConnection* c = idle_.pop_front()) {
      if (c->still_clean()) {
        c->state_ = UpstreamConnection::State::kBusy;
        busy_.push_back(c);
        *conn = c;
        return Acquire::kReady;
      }
      // Closed by the upstream (or sent bytes) since it went idle, and the loop has not seen it
      // yet: retire it and look at the next one.
      c->close();
    }
  }
  if (waiters_.size() >= config_.pool.queue_size) {
    *failure = PoolFailure::kQueueFull;
    return Acquire::kFailed;
  }
  client->wants_fresh_ = fresh;
  waiters_.push_back(client);
  // One connection attempt per waiter, within max_connecting and max_connections.
  if (!connect_for_waiters() && waiters_.size() > connecting_.size()) {
    waiters_.remove(client);
    *failure = PoolFailure::kConnectRefused;
    return Acquire::kFailed;
  }
  waiters_.arm_timer();
  return Acquire::kQueued;
}

void UpstreamPool::cancel(PoolClient* client) {
  if (h2_) {
    h2_->cancel(client);
    return;
  }
  GaugeSync sync{*this};
  waiters_.remove(client);
}

bool UpstreamPool::connect_for_waiters() {
  if (shut_down_) return true;
  if (connect_backoff_until_ms_ > ctx_.now_ms()) {
    if (waiters_.size() > connecting_.size()) arm_retry_timer();
    return true;
  }
  const PoolSettings& pool = config_.pool;
  while (waiters_.size() > connecting_.size() && connecting_.size() < pool.max_connecting &&
         open_count() < pool.max_connections) {
    if (!start_connection()) return false;
  }
  return true;
}

void UpstreamPool::arm_retry_timer() {
  const uint64_t now = ctx_.now_ms();
  const uint64_t wait = connect_backoff_until_ms_ > now ? connect_backoff_until_ms_ - now : 0;
  retry_timer_.start(ctx_.loop, this, &UpstreamPool::on_retry_timer, wait);
}

void UpstreamPool::on_retry_timer(uv_timer_t* t) {
  auto* self = static_cast<UpstreamPool*>(t->data);
  GaugeSync sync{*self};
  self->connect_backoff_until_ms_ = 0;
  const size_t before = self->connecting_.size();
  if (self->connect_for_waiters()) {
    if (self->connecting_.size() > before)
      self->stats_.connect_retries.add(self->connecting_.size() - before);
    return;
  }
  // A connect could not even start: the oldest waiter without one learns it now (the others
  // get their own attempt as connects finish, or their queue timeout).
  if (self->waiters_.size() > self->connecting_.size()) {
    self->waiters_.pop_front()->on_pool_failure(PoolFailure::kConnectRefused);
  }
}

bool UpstreamPool::start_connection() {
  auto* c = new UpstreamConnection(ctx_, this);
  c->connect_round_ = failure_round_;
  connecting_.push_back(c);
  if (tls_ && !c->start_tls(tls_->ctx(), tls_name_, tls_->settings().verify, &tls_session_)) {
    LOG_ERROR("upstream %s: cannot create a TLS session: %s", name_.c_str(),
              openssl_errors().c_str());
    stats_.connect_failures.add();
    c->close();
    return false;
  }
  int r = c->connect(reinterpret_cast<const sockaddr*>(&address_),
                     static_cast<uint64_t>(config_.connect_timeout.count()));
  if (r != 0) {
    LOG_WARN("upstream %s: connect: %s", name_.c_str(), uv_strerror(r));
    stats_.connect_failures.add();
    c->close();
    note_connect_failure();
    return false;
  }
  ++created_;
  return true;
}

PoolClient* UpstreamPool::first_waiter(bool fresh_connection) {
  if (fresh_connection) return waiters_.front();
  PoolClient* found = nullptr;
  waiters_.for_each([&](PoolClient* w) {
    if (!found && !w->wants_fresh_) found = w;
  });
  return found;
}

void UpstreamPool::give(UpstreamConnection* conn, PoolClient* client) {
  waiters_.remove(client);
  conn->state_ = UpstreamConnection::State::kBusy;
  busy_.push_back(conn);
  client->on_pool_ready(conn);
}

void UpstreamPool::on_connected(UpstreamConnection* conn) {
  GaugeSync sync{*this};
  connecting_.remove(conn);
  stats_.connections_created.add();
  if (ejections_ || failures_unlogged_)
    LOG_INFO("upstream %s: connected again%s (%u connect failures not logged one by one)",
             name_.c_str(), ejections_ ? ", back in rotation" : "", failures_unlogged_);
  failures_unlogged_ = 0;
  failure_log_ms_ = 0;
  consecutive_failures_ = 0;
  ejections_ = 0;
  ejected_until_ms_ = 0;
  failed_rounds_ = 0;
  connect_backoff_until_ms_ = 0;  // the address accepts again
  retry_timer_.stop();
  if (PoolClient* w = first_waiter(true)) {
    give(conn, w);
    // A connect slot is free: the next waiter without a connection gets one.
    if (!connect_for_waiters() && waiters_.size() > connecting_.size()) {
      waiters_.pop_front()->on_pool_failure(PoolFailure::kConnectRefused);
    }
    return;
  }
  if (retired_) {
    conn->close();
    return;
  }
  idle_.push_front(conn);
  conn->make_idle(static_cast<uint64_t>(config_.pool.idle_timeout.count()));
}

void UpstreamPool::on_connect_failed(UpstreamError e, uint32_t round, int status) {
  GaugeSync sync{*this};
  stats_.connect_failures.add();
  if (e == UpstreamError::kConnectTimeout) stats_.timeouts.add();
  // A TLS failure was logged with its reason by the connection. Others once a second at most:
  // an app that is down refuses every connect, thousands a second under load.
  if (e != UpstreamError::kTlsHandshake) {
    const uint64_t now = ctx_.now_ms();
    // The system's reason: "connection refused", or for a Unix socket "no such file or
    // directory" (the app has not created it yet), "permission denied" (its mode).
    const char* why = status < 0 ? uv_strerror(status) : nullptr;
    if (now - failure_log_ms_ >= kFailureLogIntervalMs || failure_log_ms_ == 0) {
      if (failures_unlogged_)
        LOG_WARN("upstream %s: %s%s%s (and %u more connect failures in the last %llu ms)",
                 name_.c_str(), upstream_error_name(e), why ? ": " : "", why ? why : "",
                 failures_unlogged_, static_cast<unsigned long long>(now - failure_log_ms_));
      else
        LOG_WARN("upstream %s: %s%s%s", name_.c_str(), upstream_error_name(e), why ? ": " : "",
                 why ? why : "");
      failure_log_ms_ = now;
      failures_unlogged_ = 0;
    } else {
      ++failures_unlogged_;
    }
  }
  // Connects started before the last counted failure fail for the same reason (a burst that
  // timed out together): one round, one failure.
  const bool counted = round == failure_round_;
  if (counted) {
    ++failure_round_;
    ++failed_rounds_;
    note_connect_failure();
  }
  // Nothing was sent. On the cluster's only address the connect is started again after a
  // backoff (50, 100, 200 ms, with jitter) while the requests wait within their queue timeout;
  // with other addresses the exchange tries another one at once. A TLS handshake did send.
  if (e != UpstreamError::kTlsHandshake && sole_address() && failed_rounds_ <= kConnectRetries &&
      !shut_down_) {
    if (counted) {
      uint64_t backoff = kRetryBackoffMs << (failed_rounds_ - 1);
      backoff += ctx_.random() % (backoff / 2 + 1);  // jitter: workers do not retry in step
      connect_backoff_until_ms_ = ctx_.now_ms() + backoff;
    }
    const size_t before = connecting_.size();
    if (connect_for_waiters()) {
      if (connecting_.size() > before) stats_.connect_retries.add(connecting_.size() - before);
      return;
    }
  }
  // Each waiter beyond the remaining attempts has lost its connection: fail the oldest.
  if (waiters_.size() > connecting_.size()) {
    PoolClient* w = waiters_.pop_front();
    w->on_pool_failure(e == UpstreamError::kConnectTimeout ? PoolFailure::kConnectTimeout
                       : e == UpstreamError::kTlsHandshake ? PoolFailure::kTlsHandshake
                                                           : PoolFailure::kConnectRefused);
  }
  // The others without a connect get theirs as slots free up (max_connecting).
  if (!shut_down_) connect_for_waiters();
}

void UpstreamPool::note_connect_failure() {
  const OutlierSettings& o = config_.outlier;
  if (o.consecutive_failures == 0) return;
  // Still used while ejected when every address of the cluster is: its failures then are the
  // ones that ejected it, and must not double the backoff again each time.
  if (ejected(ctx_.now_ms())) return;
  if (++consecutive_failures_ < o.consecutive_failures) return;
  // Never the cluster's last address, nor beyond max_ejection_percent of its addresses: with
  // one address, ejecting it turns a slow accept into failed requests and helps nobody.
  if (siblings_ ? !siblings_->may_eject(this, ctx_.now_ms()) : true) {
    consecutive_failures_ = o.consecutive_failures - 1;  // the next failure asks again
    stats_.ejections_prevented.add();
    return;
  }
  // Ejected: skipped for a backoff that doubles with each ejection in a row. When it ends, one
  // more failure ejects it again (a single probe), one success brings it back for good.
  ++ejections_;
  consecutive_failures_ = o.consecutive_failures - 1;
  uint64_t backoff = static_cast<uint64_t>(o.base_ejection.count());
  for (uint32_t i = 1; i < ejections_ && backoff < static_cast<uint64_t>(o.max_ejection.count());
       ++i)
    backoff *= 2;
  backoff = std::min(backoff, static_cast<uint64_t>(o.max_ejection.count()));
  ejected_until_ms_ = ctx_.now_ms() + backoff;
  stats_.ejections.add();
  LOG_WARN("upstream %s: ejected for %s after %u connect failures in a row", name_.c_str(),
           format_duration(Millis(static_cast<int64_t>(backoff))).c_str(), o.consecutive_failures);
}

void UpstreamPool::retire() {
  GaugeSync sync{*this};
  if (retired_) return;
  retired_ = true;
  while (UpstreamConnection* c = idle_.front()) c->close();
  if (h2_) h2_->retire();
}

void UpstreamPool::release(UpstreamConnection* conn) {
  GaugeSync sync{*this};
  const auto& pool = config_.pool;
  if (retired_ && !first_waiter(false)) {
    conn->close();
    connect_for_waiters();  // waiters wanting a fresh one
    return;
  }
  bool keep = !shut_down_ && conn->reusable() &&
              (pool.max_requests_per_connection == 0 ||
               conn->requests() < pool.max_requests_per_connection);
  if (!keep) {
    conn->close();
    // A slot opened under max_connections: start a connection for a waiter that needs one.
    connect_for_waiters();
    return;
  }
  busy_.remove(conn);
  if (PoolClient* w = first_waiter(false)) {
    give(conn, w);
    return;
  }
  if (waiters_.size() > connecting_.size()) {
    // Only waiters that need a fresh connection are left and one has no connect attempt.
    if (open_count() + 1 >= pool.max_connections) {
      // At the limit (counting this one): it makes room rather than idling while they wait.
      conn->close();
      connect_for_waiters();
      return;
    }
    connect_for_waiters();
  }
  if (idle_.size() >= pool.max_idle) {
    conn->close();
    return;
  }
  idle_.push_front(conn);
  conn->make_idle(static_cast<uint64_t>(pool.idle_timeout.count()));
}

void UpstreamPool::take_for_tunnel(UpstreamConnection* conn) {
  GaugeSync sync{*this};
  busy_.remove(conn);
  conn->pool_ = nullptr;
}

void UpstreamPool::detach(UpstreamConnection* conn) {
  GaugeSync sync{*this};
  switch (conn->state()) {
    case UpstreamConnection::State::kConnecting:
      connecting_.remove(conn);
      break;
    case UpstreamConnection::State::kIdle:
      idle_.remove(conn);
      break;
    case UpstreamConnection::State::kBusy:
      busy_.remove(conn);
      break;
    case UpstreamConnection::State::kClosed:
      break;
  }
}

void UpstreamPool::sync_gauges() {
  idle_share_.set(stats_.idle_connections, idle_.size());
  busy_share_.set(stats_.active_connections, busy_.size());
}

void UpstreamPool::shutdown() {
  GaugeSync sync{*this};
  if (shut_down_) return;
  shut_down_ = true;
  if (h2_) h2_->shutdown();
  waiters_.fail_all(PoolFailure::kConnectRefused);
  for (auto* list : {&connecting_, &idle_, &busy_}) {
    while (UpstreamConnection* c = list->front()) c->close();
  }
  waiters_.close();
  retry_timer_.release();
}

}  // namespace sluice
