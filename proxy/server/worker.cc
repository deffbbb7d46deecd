#include "server/worker.h"

#include <unistd.h>

#include "core/log.h"
#include "server/downstream_connection.h"
#include "tunnel/tunnel.h"

namespace sluice {

Worker::Worker(unsigned index, WorkerSetup setup) : index_(index), setup_(std::move(setup)) {}

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
  uv_async_send(&mailbox_);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run(std::promise<std::string> ready) {
  uv_loop_init(&loop_);
  ctx_ = std::make_unique<LoopContext>(
      &loop_, 0x9E3779B97F4A7C15ull * (index_ + 1) ^ static_cast<uint64_t>(uv_hrtime()));
  ctx_->start_deferred();
  uv_async_init(&loop_, &mailbox_, &Worker::on_mailbox);
  mailbox_.data = this;

  const Config& cfg = *setup_.config;
  for (size_t i = 0; i < setup_.clusters.size(); ++i)
    clusters_.push_back(std::make_unique<UpstreamCluster>(*ctx_, setup_.clusters[i]));
  std::string error;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    size_t cluster = 0;
    for (size_t c = 0; c < cfg.clusters.size(); ++c)
      if (cfg.clusters[c].name == cfg.listeners[i].cluster) cluster = c;
    listener_cluster_.push_back(cluster);
    auto l = std::make_unique<Listener>(&loop_, [this, i](uv_stream_t* s) { on_accept(s, i); });
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
  ctx_->stop_deferred();
  uv_run(&loop_, UV_RUN_DEFAULT);
  int r = uv_loop_close(&loop_);
  if (r != 0) LOG_ERROR("worker %u: loop closed with handles still open", index_);
}

void Worker::on_mailbox(uv_async_t* a) {
  auto* self = static_cast<Worker*>(a->data);
  if (self->stop_requested_.load()) self->stop_now();
}

void Worker::on_accept(uv_stream_t* server, size_t listener) {
  auto* c = new DownstreamConnection(*this, *clusters_[listener_cluster_[listener]]);
  connections_.push_back(c);
  ctx_->stats.downstream_connections_total.add();
  ctx_->stats.downstream_connections_active.add();
  if (int r = c->accept(server); r != 0) {
    LOG_WARN("accept: %s", uv_strerror(r));
    c->close();
  }
}

void Worker::remove_connection(DownstreamConnection* c) {
  if (!c->linked()) return;
  connections_.remove(c);
  ctx_->stats.downstream_connections_active.sub();
}

void Worker::add_tunnel(Tunnel* t) {
  tunnels_.push_back(t);
  ctx_->stats.websocket_sessions_active.add();
}

void Worker::remove_tunnel(Tunnel* t, TunnelEnd why) {
  if (!t->linked()) return;
  tunnels_.remove(t);
  ctx_->stats.websocket_sessions_active.sub();
  ctx_->stats.websocket_closed[static_cast<size_t>(why)].add();
}

void Worker::stop_now() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& l : listeners_) l->close(nullptr);
  connections_.for_each([](DownstreamConnection* c) { c->close(); });
  for (auto& c : clusters_) c->shutdown();
  uv_close(reinterpret_cast<uv_handle_t*>(&mailbox_), nullptr);
}

}  // namespace sluice
