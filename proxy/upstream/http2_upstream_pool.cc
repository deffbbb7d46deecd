#include "upstream/http2_upstream_pool.h"

#include <algorithm>

#include "core/log.h"
#include "upstream/upstream_pool.h"

namespace sluice {

Http2UpstreamPool::Http2UpstreamPool(LoopContext& ctx, UpstreamPool& owner,
                                     const ClusterConfig& config, ClusterStats& stats)
    : ctx_(ctx), owner_(owner), config_(config), stats_(stats), waiters_(ctx, config.pool) {}

Http2UpstreamPool::~Http2UpstreamPool() {
  waiters_.drop_all();
  shutdown();
}

const std::string& Http2UpstreamPool::name() const {
  return owner_.name();
}
const std::string& Http2UpstreamPool::authority() const {
  return owner_.host();
}

Http2UpstreamConnection* Http2UpstreamPool::pick() {
  // The fullest connection that still has room: load packs onto few connections, and the
  // others go idle and close.
  Http2UpstreamConnection* best = nullptr;
  ready_.for_each([&](Http2UpstreamConnection* c) {
    if (c->has_room() && (!best || c->active_streams() > best->active_streams())) best = c;
  });
  return best;
}

UpstreamSource::Acquire Http2UpstreamPool::acquire(PoolClient* client, UpstreamSide** side,
                                                   PoolFailure* failure) {
  if (shut_down_) {
    *failure = PoolFailure::kConnectRefused;
    return UpstreamSource::Acquire::kFailed;
  }
  if (waiters_.empty()) {
    if (Http2UpstreamConnection* c = pick()) {
      *side = c->open_stream();
      sync_gauges();
      return UpstreamSource::Acquire::kReady;
    }
  }
  if (waiters_.size() >= config_.pool.queue_size) {
    *failure = PoolFailure::kQueueFull;
    return UpstreamSource::Acquire::kFailed;
  }
  waiters_.push_back(client);
  connect_for_waiters();
  if (open_count() == 0 && retry_at_ms_ == 0) {
    // Not even one connect could start (a local error): the request fails now.
    waiters_.remove(client);
    *failure = PoolFailure::kConnectRefused;
    return UpstreamSource::Acquire::kFailed;
  }
  waiters_.arm_timer();
  return UpstreamSource::Acquire::kQueued;
}

void Http2UpstreamPool::cancel(PoolClient* client) {
  waiters_.remove(client);
}

// One new connection per server stream limit's worth of waiters beyond what is connecting (the
// limit the server's last SETTINGS gave, 100 until one came), within max_connecting and
// max_connections.
void Http2UpstreamPool::connect_for_waiters() {
  if (shut_down_ || retired_ || retry_at_ms_) return;
  const PoolSettings& pool = config_.pool;
  const size_t per_connection = std::max<size_t>(1, expected_streams_);
  while (waiters_.size() > connecting_.size() * per_connection &&
         connecting_.size() < pool.max_connecting && open_count() < pool.max_connections) {
    if (!start_connection()) return;
  }
}

bool Http2UpstreamPool::start_connection() {
  const ClientTls* tls = owner_.tls_;
  auto* c = new Http2UpstreamConnection(ctx_, this, tls != nullptr);
  connecting_.push_back(c);
  if (tls &&
      !c->start_tls(tls->ctx(), owner_.tls_name_, tls->settings().verify, &owner_.tls_session_)) {
    LOG_ERROR("upstream %s: cannot create a TLS session: %s", name().c_str(),
              openssl_errors().c_str());
    stats_.connect_failures.add();
    c->close();
    return false;
  }
  int r = c->connect(reinterpret_cast<const sockaddr*>(&owner_.address_),
                     static_cast<uint64_t>(config_.connect_timeout.count()));
  if (r != 0) {
    LOG_WARN("upstream %s: connect: %s", name().c_str(), uv_strerror(r));
    stats_.connect_failures.add();
    c->close();
    return false;
  }
  return true;
}

void Http2UpstreamPool::on_connected(Http2UpstreamConnection* c) {
  connecting_.remove(c);
  stats_.connections_created.add();
  ++owner_.created_;
  failed_rounds_ = 0;
  owner_.consecutive_failures_ = 0;
  ready_.push_back(c);
  expected_streams_ = c->server_max_streams();
  c->start_idle_timer(static_cast<uint64_t>(config_.pool.idle_timeout.count()));
  serve_waiters(c);
  connect_for_waiters();  // more than it takes: the next connections start now
  sync_gauges();
}

void Http2UpstreamPool::on_connect_failed(Http2UpstreamConnection*, UpstreamError e) {
  stats_.connect_failures.add();
  if (e == UpstreamError::kConnectTimeout) stats_.timeouts.add();
  if (e != UpstreamError::kTlsHandshake)
    LOG_WARN("upstream %s: %s", name().c_str(), upstream_error_name(e));
  owner_.note_connect_failure();
  if (waiters_.empty() || shut_down_) return;
  if (!connecting_.empty()) return;  // another connect may still serve them
  // Nothing was sent. On the cluster's only address the connect is started again after a
  // backoff (50, 100, 200 ms, with jitter) while requests wait within their queue timeout (an
  // app restarting); with other addresses the exchanges try another one at once.
  if (e != UpstreamError::kTlsHandshake && owner_.sole_address() &&
      failed_rounds_ < kConnectRetries) {
    uint64_t backoff = 50u << failed_rounds_;
    ++failed_rounds_;
    backoff += ctx_.random() % (backoff / 2 + 1);
    retry_at_ms_ = ctx_.now_ms() + backoff;
    retry_timer_.start(ctx_.loop, this, &Http2UpstreamPool::on_retry_timer, backoff);
    stats_.connect_retries.add();
    return;
  }
  fail_waiters(e == UpstreamError::kConnectTimeout ? PoolFailure::kConnectTimeout
               : e == UpstreamError::kTlsHandshake ? PoolFailure::kTlsHandshake
                                                   : PoolFailure::kConnectRefused);
}

void Http2UpstreamPool::on_retry_timer(uv_timer_t* t) {
  auto* self = static_cast<Http2UpstreamPool*>(t->data);
  self->retry_at_ms_ = 0;
  self->connect_for_waiters();
  if (!self->waiters_.empty() && self->open_count() == 0)
    self->fail_waiters(PoolFailure::kConnectRefused);
}

void Http2UpstreamPool::fail_waiters(PoolFailure f) {
  // Each failure may start a retry elsewhere (another address): taken off the list first.
  waiters_.fail_all(f);
}

void Http2UpstreamPool::serve_waiters(Http2UpstreamConnection* c) {
  while (!waiters_.empty() && c->state() == Http2UpstreamConnection::State::kReady &&
         c->has_room()) {
    PoolClient* w = waiters_.pop_front();
    w->on_pool_ready(c->open_stream());
  }
}

void Http2UpstreamPool::on_room(Http2UpstreamConnection* c) {
  if (retired_ && c->active_streams() == 0 && waiters_.empty()) {
    c->close();
    return;
  }
  serve_waiters(c);
  sync_gauges();
}

void Http2UpstreamPool::on_goaway(Http2UpstreamConnection* c) {
  stats_.upstream_goaways.add();
  ready_.remove(c);
  going_away_.push_back(c);
  if (c->active_streams() == 0) {
    c->close();
    return;
  }
  // The waiters need another connection now.
  connect_for_waiters();
  sync_gauges();
}

void Http2UpstreamPool::detach(Http2UpstreamConnection* c) {
  // The list of its state (IntrusiveList::remove must be given the list the node is on).
  switch (c->state()) {
    case Http2UpstreamConnection::State::kConnecting:
      connecting_.remove(c);
      break;
    case Http2UpstreamConnection::State::kReady:
      ready_.remove(c);
      break;
    case Http2UpstreamConnection::State::kGoingAway:
      going_away_.remove(c);
      break;
    case Http2UpstreamConnection::State::kClosed:
      break;
  }
  // Its streams leave the pool's count with it (their exchanges hear of it next).
  for (size_t i = 0; i < c->active_streams(); ++i) stream_closed();
  sync_gauges();
  // Waiters it would have served need another connection (a failed connect decides that in
  // on_connect_failed, with its backoff).
  if (c->state() != Http2UpstreamConnection::State::kConnecting && !waiters_.empty() && !shut_down_)
    connect_for_waiters();
}

void Http2UpstreamPool::retire() {
  if (retired_) return;
  retired_ = true;
  std::vector<Http2UpstreamConnection*> idle;
  ready_.for_each([&](Http2UpstreamConnection* c) {
    if (c->active_streams() == 0) idle.push_back(c);
  });
  for (Http2UpstreamConnection* c : idle) c->close();
}

void Http2UpstreamPool::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  waiters_.fail_all(PoolFailure::kConnectRefused);
  for (auto* list : {&connecting_, &ready_, &going_away_}) {
    while (Http2UpstreamConnection* c = list->front()) c->close();
  }
  waiters_.close();
  retry_timer_.release();
  sync_gauges();
}

void Http2UpstreamPool::sync_gauges() {
  size_t idle = 0, busy = 0;
  for (auto* list : {&ready_, &going_away_})
    list->for_each([&](Http2UpstreamConnection* c) { (c->active_streams() ? busy : idle)++; });
  idle_share_.set(stats_.idle_connections, idle);
  busy_share_.set(stats_.active_connections, busy);
}

}  // namespace sluice
