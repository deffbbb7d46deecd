#include "server/server.h"

#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include "admin/admin_routes.h"
#include "admin/admin_server.h"
#include "admin/status_page.h"
#include "config/config_file.h"
#include "core/log.h"
#include "http/message.h"
#include "metrics/metrics.h"
#include "net/listener.h"
#include "server/certificate_watch.h"
#include "server/config_reloader.h"
#include "server/drain_coordinator.h"
#include "server/file_watch.h"
#include "server/guard_admin.h"
#include "server/maintenance_board.h"
#include "server/startup.h"
#include "server/worker.h"
#include "upstream/cluster_guard.h"
#include "upstream/readiness_probe.h"

namespace sluice {

namespace {

// /healthz fails when a worker's loop has not run its 250 ms heartbeat for this long.
constexpr uint64_t kHealthStaleMs = 2000;
// The local app behind a `readiness: true` cluster is probed (TCP connect) this often.
constexpr uint64_t kReadinessIntervalMs = 1000;
// File events (certificates, reload.watch) are acted on once they have been quiet this long.
constexpr uint64_t kFileEventSettleMs = 200;

struct SignalWatch {
  uv_signal_t handle;
  std::function<void(int)> fn;
};

}  // namespace

struct Server::State {
  uv_loop_t loop;
  std::unique_ptr<LoopContext> ctx;
  std::unique_ptr<AdminServer> admin;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<SignalWatch>> signals;
  std::unique_ptr<DrainCoordinator> drain;
  std::unique_ptr<uv_timer_t> exit_timer;
  std::unique_ptr<ConfigReloader> reloader;  // resolvers and reloads
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<AccessLogSink> access_sink;  // outlives the workers
  TlsSet tls;                                  // of the running configuration
  std::unique_ptr<CertificateWatch> certificates;
  std::unique_ptr<FileWatch> config_watch;                        // reload.watch: the --config file
  std::map<std::string, std::unique_ptr<ReadinessProbe>> probes;  // readiness: true clusters
  uint64_t started_ms = 0;
  std::unique_ptr<ShardSet<ListenerStats>> listener_stats;
  std::vector<std::unique_ptr<std::atomic<uint32_t>>> listener_open;  // by listener index
  std::unique_ptr<ShardSet<ClusterStats>> cluster_stats;
  std::unique_ptr<MaintenanceBoard> maintenance;  // outlives the workers (they read its switches)
  std::map<std::string, std::shared_ptr<ClusterGuard>> guards;  // by cluster name
  Guard guard;  // bans and rate-limit buckets (issue #17); outlives the workers and reloads
  std::shared_ptr<const GuardPolicy> guard_policy;  // of config_
  int exit_code = 0;
  bool stopping = false;
  bool signalled = false;       // SIGTERM or SIGINT came: exit once the drain is done
  bool resume_pending = false;  // POST /resume during a drain: serve again when it ends
};

namespace {

// Listeners left open through a drain (egress): after a drain that the admin API started
// (the app's preStop hook), they keep serving the app's outbound calls until sluice gets its
// own signal, which in Kubernetes comes only after the app has exited.
bool has_undrained_listener(const Config& c) {
  for (const ListenerConfig& l : c.listeners)
    if (!l.drain) return true;
  return false;
}

// An admin API answer: invalid UTF-8 in a string (from a request or a file) is replaced rather
// than thrown from nlohmann::json::dump.
std::string json_body(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

Server::Server(ConfigPtr config, ServerOptions options)
    : config_(std::move(config)), options_(options), state_(std::make_unique<State>()) {}

Server::~Server() = default;

int Server::run() {
  State& st = *state_;
  auto config = std::make_shared<Config>(*config_);
  const unsigned workers = worker_count(*config);
  config->workers = workers;

  uv_loop_init(&st.loop);
  st.ctx = std::make_unique<LoopContext>(&st.loop, 7);
  st.ctx->start_deferred();
  st.reloader =
      std::make_unique<ConfigReloader>(&st.loop, options_.reload, *config, reloader_hooks());
  std::string error;
  std::vector<std::vector<int>> fds;
  int admin_fd = -1;
  if (!open_listeners(*config, workers, fds, error) ||
      (admin_fd = open_listen_socket(config->admin.address, false, error)) < 0) {
    fprintf(stderr, "sluice: %s%s\n", admin_fd < 0 && fds.size() ? "admin: " : "", error.c_str());
    for (auto& per_worker : fds)
      for (int fd : per_worker) ::close(fd);
    return abandon_start();
  }
  config->admin.address.port = static_cast<uint16_t>(bound_port(admin_fd));
  config_ = config;

  // Resolve every cluster before the workers start (DNS on libuv's thread pool).
  st.reloader->start(*config);
  {
    std::vector<std::string> errors;
    if (!build_tls(*config, st.tls, errors)) {
      for (const std::string& e : errors) fprintf(stderr, "sluice: %s\n", e.c_str());
      ::close(admin_fd);
      for (auto& per_worker : fds)
        for (int fd : per_worker) ::close(fd);
      return abandon_start();
    }
  }
  std::vector<AddressList> addresses;
  for (const auto& c : config->clusters) {
    const AddressList& a = st.reloader->addresses(c.name);
    if (a.empty()) LOG_WARN("cluster %s: no address yet; 503 until it resolves", c.name.c_str());
    addresses.push_back(a);
  }

  auto drain_state = std::make_shared<DrainState>();
  st.maintenance = std::make_unique<MaintenanceBoard>(*config_);
  log_set_level(config_->log.level);
  log_set_format(config_->log.format);
  bool ok = start_workers(workers, addresses, fds, drain_state);
  st.started_ms = uv_now(&st.loop);
  st.metrics =
      std::make_unique<Metrics>([this](StatsTotals& t, ServerFigures& f) { sum_figures(t, f); });
  st.metrics->add_families([this](std::vector<prometheus::MetricFamily>& out) {
    guard_families(state_->guard.figures(*config_), out);
  });
  refresh_probes();
  st.certificates = std::make_unique<CertificateWatch>(&st.loop, kFileEventSettleMs,
                                                       [this] { rotate_certificates(); });
  st.certificates->watch(*config_);
  watch_config_file();
  st.drain =
      std::make_unique<DrainCoordinator>(&st.loop, config_->drain, drain_state, drain_hooks());

  st.admin = std::make_unique<AdminServer>(
      *st.ctx, [this](const AdminRequest& req) { return route_admin_request(*this, req); });
  if (int r = st.admin->start(admin_fd); r != 0) {
    fprintf(stderr, "sluice: admin %s: %s\n", config_->admin.address.str().c_str(), uv_strerror(r));
    ok = false;
  }

  watch_signals();
  signal(SIGPIPE, SIG_IGN);

  if (!ok) {
    st.exit_code = 1;
    stop_now();
  } else {
    announce_listening(*config_, workers);
  }

  uv_run(&st.loop, UV_RUN_DEFAULT);
  for (auto& w : st.workers) w->join();
  st.workers.clear();
  st.access_sink.reset();  // writes what the workers left
  st.reloader.reset();
  st.probes.clear();
  st.admin.reset();
  st.drain.reset();
  uv_run(&st.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&st.loop) != 0) LOG_ERROR("main loop closed with handles still open");
  LOG_INFO("stopped");
  return st.exit_code;
}

bool Server::start_workers(unsigned workers, const std::vector<AddressList>& addresses,
                           std::vector<std::vector<int>>& fds,
                           const std::shared_ptr<DrainState>& drain_state) {
  State& st = *state_;
  st.listener_stats = std::make_unique<ShardSet<ListenerStats>>(workers);
  st.guard_policy = st.guard.configure(*config_);
  st.cluster_stats = std::make_unique<ShardSet<ClusterStats>>(workers);
  st.access_sink = std::make_unique<AccessLogSink>(STDOUT_FILENO);
  const bool colour = isatty(STDOUT_FILENO) == 1;
  const uint32_t fd_cap = client_connection_cap(workers, config_->listeners.size());
  std::vector<std::atomic<uint32_t>*> listener_open;
  for (size_t i = 0; i < config_->listeners.size(); ++i) {
    st.listener_open.push_back(std::make_unique<std::atomic<uint32_t>>(0));
    listener_open.push_back(st.listener_open.back().get());
  }
  std::vector<std::future<std::string>> ready;
  const auto guards = guards_for(*config_);
  for (unsigned w = 0; w < workers; ++w) {
    WorkerSetup setup{config_,
                      addresses,
                      cluster_stats_for(*config_, w),
                      listener_stats_for(*config_, w),
                      st.tls.clusters,
                      st.tls.listeners,
                      listener_open,
                      fd_cap,
                      st.access_sink.get(),
                      colour,
                      fds[w],
                      drain_state};
    setup.cluster_guards = guards;
    setup.maintenance = st.maintenance->switches();
    setup.guard = st.guard_policy;
    st.workers.push_back(std::make_unique<Worker>(w, std::move(setup)));
    ready.push_back(st.workers.back()->start());
  }
  bool ok = true;
  for (auto& f : ready) {
    std::string e = f.get();
    if (!e.empty()) {
      fprintf(stderr, "sluice: %s\n", e.c_str());
      ok = false;
    }
  }

  return ok;
}

void Server::sum_figures(StatsTotals& t, ServerFigures& f) {
  State& s = *state_;
  t = sum_stats(*s.listener_stats, *s.cluster_stats);
  // The running configuration's listeners and clusters first, in its order.
  auto order = [](auto& items, const auto& names) {
    std::stable_partition(items.begin(), items.end(), [&](const auto& it) {
      return std::any_of(names.begin(), names.end(),
                         [&](const auto& n) { return n.name == it.name; });
    });
  };
  order(t.listeners, config_->listeners);
  order(t.clusters, config_->clusters);
  for (auto& l : t.listeners) l.maintenance_mode = static_cast<int>(s.maintenance->mode(l.name));
  for (auto& c : t.clusters) {
    auto it = s.guards.find(c.name);
    if (it != s.guards.end() && it->second->breaker())
      c.circuit_state = static_cast<int>(it->second->breaker()->state());
  }
  f.workers = static_cast<unsigned>(s.workers.size());
  f.uptime_seconds = static_cast<double>(uv_now(&s.loop) - s.started_ms) / 1000.0;
  f.draining = s.drain->phase() != DrainPhase::kServing;
  f.drain_duration_seconds = s.drain->elapsed_seconds();
  for (auto& w : s.workers) {
    f.drain_forced_closes += w->stats().drain_forced_closes.get();
    f.access_log_dropped += w->stats().access_log_dropped.get();
    f.http2_connections_active += w->stats().http2_connections_active.get();
    f.http2_streams_active += w->stats().http2_streams_active.get();
  }
}

DrainCoordinator::Hooks Server::drain_hooks() {
  return DrainCoordinator::Hooks{[this] {
                                   DrainCounts c;
                                   for (auto& w : state_->workers) {
                                     const WorkerStats& ws = w->stats();
                                     // Connections of `drain: false` listeners stay until the end;
                                     // their requests in flight still count.
                                     c.connections += ws.downstream_connections_active.get() -
                                                      ws.drain_exempt_connections.get();
                                     c.in_flight += ws.exchanges_active.get();
                                     c.websockets += ws.websocket_sessions_active.get();
                                     c.forced += ws.drain_forced_closes.get();
                                     c.http2_connections += ws.http2_connections_active.get();
                                     c.http2_streams += ws.http2_streams_active.get();
                                     c.forced_http2_streams += ws.drain_forced_http2_streams.get();
                                     c.grpc_calls += ws.grpc_calls_active.get();
                                     c.grpc_drain_ended += ws.grpc_drain_ended.get();
                                   }
                                   return c;
                                 },
                                 [this] {
                                   for (auto& w : state_->workers) w->notify_drain();
                                 },
                                 [this](int status) { drain_done(status); }};
}

void Server::drain_done(int status) {
  State& s = *state_;
  s.exit_code = status;
  s.admin->complete_deferred(AdminResponse{200, "application/json", s.drain->status_json()});
  if (!s.signalled) {
    // The admin API started it (the app's preStop hook, also before a liveness kill): stay
    // until sluice's own signal, or until POST /resume undoes it.
    if (s.resume_pending) {
      s.resume_pending = false;
      resume_serving();
      return;
    }
    LOG_INFO(has_undrained_listener(*config_)
                 ? "drain done; the drain: false listeners serve until SIGTERM "
                   "(POST /resume serves again)"
                 : "drain done; waiting for SIGTERM (POST /resume serves again)");
    return;
  }
  stop_when_app_gone();
}

void Server::watch_signals() {
  State& st = *state_;
  auto watch = [&](int signum, std::function<void(int)> fn) {
    auto sw = std::make_unique<SignalWatch>();
    uv_signal_init(&st.loop, &sw->handle);
    sw->handle.data = sw.get();
    sw->fn = std::move(fn);
    uv_signal_start(
        &sw->handle,
        [](uv_signal_t* h, int signum) { static_cast<SignalWatch*>(h->data)->fn(signum); }, signum);
    st.signals.push_back(std::move(sw));
  };
  watch(SIGHUP, [this](int) { reload("SIGHUP"); });
  for (int signum : {SIGTERM, SIGINT}) watch(signum, [this](int n) { stop_signal(n); });
}

void Server::stop_signal(int signum) {
  State& s = *state_;
  const bool first = !s.signalled;
  s.signalled = true;
  if (s.drain->phase() == DrainPhase::kServing) {
    s.drain->start(strsignal(signum));
    return;
  }
  if (s.drain->finished()) {  // drained by the admin API, waiting for this signal
    if (!first || s.exit_timer) {
      LOG_WARN("%s: stopping now", strsignal(signum));
      stop_now();
      return;
    }
    LOG_INFO("%s after the drain: stopping", strsignal(signum));
    stop_when_app_gone();
    return;
  }
  if (first) {
    // The admin API started this drain (a preStop hook), and the kubelet's SIGTERM can come
    // while it runs (sluice as a plain container): finish it, then exit.
    LOG_INFO("%s during the drain: exiting when it is done", strsignal(signum));
    return;
  }
  // A second signal during a drain: stop at once.
  LOG_WARN("%s during the drain: stopping now", strsignal(signum));
  s.exit_code = 2;
  stop_now();
}

AdminResponse Server::healthz() {
  // Every worker loop must have run its heartbeat timer recently.
  uint64_t now = uv_hrtime() / 1000000;
  for (auto& w : state_->workers) {
    uint64_t beat = w->stats().heartbeat_ms.load(std::memory_order_relaxed);
    if (now > beat + kHealthStaleMs)
      return AdminResponse{503, "text/plain",
                           "worker " + std::to_string(w->index()) + " has not run for " +
                               std::to_string(now - beat) + " ms\n"};
  }
  return AdminResponse{200, "text/plain", "ok\n"};
}

AdminResponse Server::readyz() {
  State& s = *state_;
  if (s.drain->phase() != DrainPhase::kServing)
    return AdminResponse{503, "text/plain", "draining\n"};
  for (auto& [name, probe] : s.probes)
    if (!probe->ready()) return AdminResponse{503, "text/plain", probe->reason() + "\n"};
  return AdminResponse{200, "text/plain", "ready\n"};
}

AdminResponse Server::metrics() {
  return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                       state_->metrics->render_text()};
}

AdminResponse Server::stats() {
  State& s = *state_;
  nlohmann::json j = s.metrics->render_json(*config_);
  j["drain"] = nlohmann::json::parse(s.drain->status_json());
  nlohmann::json ready = nlohmann::json::object(), reasons = nlohmann::json::object();
  for (auto& [name, probe] : s.probes) {
    ready[name] = probe->ready();
    if (!probe->ready()) reasons[name] = probe->reason();
  }
  j["readiness"] = ready;
  j["readiness_reasons"] = reasons;
  j["maintenance"] = s.maintenance->status();
  nlohmann::json breakers = nlohmann::json::object();
  for (auto& [name, g] : s.guards) {
    const CircuitBreaker* b = g->breaker();
    nlohmann::json x;
    x["requests_in_flight"] = g->requests_in_flight();
    x["pending"] = g->pending();
    x["retries_in_flight"] = g->retries_in_flight();
    if (b) {
      uint32_t requests = 0, failures = 0;
      const uint64_t now = uv_now(&s.loop);
      b->window_counts(now, requests, failures);
      x["circuit"] = kCircuitStateNames[static_cast<size_t>(b->state())];
      x["window_requests"] = requests;
      x["window_failures"] = failures;
      if (b->state() == CircuitState::kOpen)
        x["open_for_s"] = b->open_until_ms() > now ? (b->open_until_ms() - now + 999) / 1000 : 0;
    }
    breakers[name] = std::move(x);
  }
  j["cluster_guards"] = std::move(breakers);
  j["client_guard"] = guard_json(s.guard.figures(*config_));
  return AdminResponse{200, "application/json", json_body(j)};
}

AdminResponse Server::config() {
  return AdminResponse{200, "application/json", json_body(config_to_json(*config_))};
}

AdminResponse Server::status_page() {
  return AdminResponse{200, "text/html; charset=utf-8", status_page_html()};
}

AdminResponse Server::drain_status() {
  return AdminResponse{200, "application/json", state_->drain->status_json()};
}

AdminResponse Server::start_drain(bool wait) {
  State& s = *state_;
  bool was_serving = s.drain->phase() == DrainPhase::kServing;
  s.drain->start(wait ? "admin GET /drain/wait" : "admin POST /drain");
  if (!wait)
    return AdminResponse{was_serving ? 202 : 200, "application/json", s.drain->status_json()};
  if (s.drain->finished()) return AdminResponse{200, "application/json", s.drain->status_json()};
  AdminResponse r;
  r.deferred = true;
  return r;
}

AdminResponse Server::reload() {
  ConfigReloader::Result r = reload("admin POST /reload");
  nlohmann::json j;
  j["result"] = r.result;
  j["errors"] = r.errors;
  j["warnings"] = r.warnings;
  int status = r.result == "applied"   ? 200
               : r.result == "pending" ? 202
               : r.result == "invalid" ? 400
                                       : 409;
  return AdminResponse{status, "application/json", json_body(j)};
}

std::vector<std::shared_ptr<ClusterGuard>> Server::guards_for(const Config& c) {
  State& s = *state_;
  const unsigned workers = std::max(1u, worker_count(*config_));
  std::map<std::string, std::shared_ptr<ClusterGuard>> next;
  std::vector<std::shared_ptr<ClusterGuard>> v;
  for (const ClusterConfig& cl : c.clusters) {
    auto it = s.guards.find(cl.name);
    std::shared_ptr<ClusterGuard> g = it != s.guards.end() && it->second->same_settings(cl)
                                          ? it->second
                                          : std::make_shared<ClusterGuard>(cl, workers);
    next[cl.name] = g;
    v.push_back(std::move(g));
  }
  s.guards = std::move(next);
  return v;
}

AdminResponse Server::maintenance_status() {
  return AdminResponse{200, "application/json", json_body(state_->maintenance->status())};
}

AdminResponse Server::set_maintenance(const AdminRequest& req) {
  std::string listener, error;
  MaintenanceBoard::Override o;
  if (!MaintenanceBoard::parse_request(req.body, listener, o, error) ||
      !state_->maintenance->set(listener, o, error))
    return AdminResponse{400, "application/json", json_body({{"error", error}})};
  return maintenance_status();
}

AdminResponse Server::clear_maintenance(const AdminRequest& req) {
  std::string listener, error;
  if (req.query.substr(0, 9) == "listener=") listener = std::string(req.query.substr(9));
  if (!state_->maintenance->clear(listener, error))
    return AdminResponse{400, "application/json", json_body({{"error", error}})};
  return maintenance_status();
}

std::vector<ClusterStats*> Server::cluster_stats_for(const Config& c, unsigned worker) {
  std::vector<ClusterStats*> v;
  for (const ClusterConfig& cl : c.clusters)
    v.push_back(state_->cluster_stats->get(cl.name, worker));
  return v;
}

std::vector<ListenerStats*> Server::listener_stats_for(const Config& c, unsigned worker) {
  std::vector<ListenerStats*> v;
  for (const ListenerConfig& l : c.listeners)
    v.push_back(state_->listener_stats->get(l.name, worker));
  return v;
}

void Server::refresh_probes() {
  State& s = *state_;
  std::map<std::string, std::unique_ptr<ReadinessProbe>> next;
  for (const ClusterConfig& c : config_->clusters) {
    if (!c.readiness) continue;
    auto it = s.probes.find(c.name);
    std::unique_ptr<ReadinessProbe> p;
    if (it != s.probes.end()) {
      p = std::move(it->second);
    } else {
      p = std::make_unique<ReadinessProbe>(&s.loop, c.name, kReadinessIntervalMs,
                                           static_cast<uint64_t>(c.connect_timeout.count()));
    }
    p->set_addresses(s.reloader->addresses(c.name));
    if (it == s.probes.end()) p->start();
    next[c.name] = std::move(p);
  }
  for (auto& [name, p] : s.probes)
    if (p) p->close();
  s.probes = std::move(next);
}

void Server::watch_config_file() {
  State& s = *state_;
  const bool want = config_->reload.watch && options_.reload && !options_.config_file.empty();
  if (!want) {
    if (s.config_watch) {
      s.config_watch->close();
      s.config_watch.reset();
      LOG_INFO("reload.watch: no longer watching the configuration file");
    }
    return;
  }
  if (s.config_watch) return;
  auto w = std::make_unique<FileWatch>(&s.loop, options_.config_file, kFileEventSettleMs,
                                       [this] { reload("the configuration file changed"); });
  std::string error;
  if (!w->start(error)) {
    LOG_WARN("reload.watch: %s; SIGHUP and POST /reload still reload", error.c_str());
    return;
  }
  LOG_INFO("reload.watch: reloading when %s changes", options_.config_file.c_str());
  s.config_watch = std::move(w);
}

void Server::rotate_certificates() {
  State& s = *state_;
  for (size_t i = 0; i < config_->listeners.size(); ++i) {
    const ListenerConfig& l = config_->listeners[i];
    if (!l.tls.enabled) continue;
    std::string error;
    auto tls = ServerTls::build(l.name, l.tls, l.http2, error);
    if (!tls) {
      LOG_ERROR("tls: %s; the running certificate stays", error.c_str());
      continue;
    }
    if (s.tls.listeners[i] && s.tls.listeners[i]->fingerprint() == tls->fingerprint()) continue;
    s.tls.listeners[i] = tls;
    for (auto& w : s.workers) w->post([i, tls](Worker& wk) { wk.set_listener_tls(i, tls); });
    LOG_INFO("tls: listener %s: new certificate files loaded; new handshakes use them",
             l.name.c_str());
  }
}

bool Server::build_tls(const Config& c, TlsSet& out, std::vector<std::string>& errors) {
  State& s = *state_;
  const Config* running = config_.get();
  out = TlsSet{};
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const ListenerConfig& l = c.listeners[i];
    if (!l.tls.enabled) {
      out.listeners.push_back(nullptr);
      continue;
    }
    std::string error;
    auto tls = ServerTls::build(l.name, l.tls, l.http2, error);
    if (!tls) {
      errors.push_back(error);
      continue;
    }
    // Unchanged settings and files: keep the running context (and its session tickets).
    if (i < s.tls.listeners.size() && s.tls.listeners[i] && running &&
        running->listeners[i].tls == l.tls &&
        s.tls.listeners[i]->fingerprint() == tls->fingerprint())
      tls = s.tls.listeners[i];
    out.listeners.push_back(std::move(tls));
  }
  for (size_t i = 0; i < c.clusters.size(); ++i) {
    const ClusterConfig& cl = c.clusters[i];
    if (!cl.tls.enabled) {
      out.clusters.push_back(nullptr);
      continue;
    }
    if (running) {  // unchanged settings: the same context, so the cluster keeps its pools
      int j = running->cluster_index(cl.name);
      if (j >= 0 && static_cast<size_t>(j) < s.tls.clusters.size() &&
          s.tls.clusters[static_cast<size_t>(j)] &&
          running->clusters[static_cast<size_t>(j)].tls == cl.tls) {
        out.clusters.push_back(s.tls.clusters[static_cast<size_t>(j)]);
        continue;
      }
    }
    std::string error;
    auto tls = ClientTls::build(cl.name, cl.tls, error);
    if (!tls) errors.push_back(error);
    out.clusters.push_back(std::move(tls));
  }
  return errors.empty();
}

AdminResponse Server::bans(const AdminRequest& req) {
  return answer_bans(state_->guard.bans(), req);
}

bool Server::allowed_to_change(const AdminRequest& req) const {
  const std::string& token = config_->admin_token;
  if (req.from_loopback || (!token.empty() && req.header("x-sluice-admin-token") == token))
    return true;
  LOG_WARN("admin: refused %.*s from %.*s (not loopback, no valid token)",
           static_cast<int>(req.path.size()), req.path.data(),
           static_cast<int>(req.client_ip.size()), req.client_ip.data());
  return false;
}

ConfigReloader::Hooks Server::reloader_hooks() {
  return ConfigReloader::Hooks{
      .running = [this]() -> const Config& { return *config_; },
      .build_tls = [this](const Config& c, TlsSet& out,
                          std::vector<std::string>& errors) { return build_tls(c, out, errors); },
      .apply = [this](ConfigPtr c, std::vector<AddressList> addresses,
                      TlsSet tls) { apply_config(std::move(c), addresses, std::move(tls)); },
      .addresses_changed =
          [this](const std::string& name, const AddressList& addresses) {
            for (auto& w : state_->workers)
              w->post([name, addresses](Worker& wk) { wk.set_addresses(name, addresses); });
            if (auto it = state_->probes.find(name); it != state_->probes.end())
              it->second->set_addresses(addresses);
          },
      .draining = [this] { return state_->drain->phase() != DrainPhase::kServing; },
      .counted = [this](bool applied) { state_->metrics->count_reload(applied); },
  };
}

int Server::abandon_start() {
  State& st = *state_;
  st.reloader->close();
  uv_run(&st.loop, UV_RUN_NOWAIT);
  st.ctx->stop_deferred();
  uv_run(&st.loop, UV_RUN_DEFAULT);
  uv_loop_close(&st.loop);
  return 1;
}

ConfigReloader::Result Server::reload(const char* why) {
  return state_->reloader->reload(why);
}

void Server::apply_config(ConfigPtr config, const std::vector<AddressList>& addresses, TlsSet tls) {
  State& s = *state_;
  config_ = std::move(config);
  log_set_level(config_->log.level);
  log_set_format(config_->log.format);
  s.drain->update_settings(config_->drain);
  s.tls = std::move(tls);
  s.maintenance->apply_config(*config_);
  const auto guards = guards_for(*config_);
  s.guard_policy = s.guard.configure(*config_);
  for (auto& w : s.workers) {
    w->post([cfg = config_, addresses, stats = cluster_stats_for(*config_, w->index()), tls = s.tls,
             guards, guard = s.guard_policy](Worker& wk) {
      wk.apply_config(cfg, addresses, stats, tls.clusters, guards);
      wk.set_guard_policy(guard);
      for (size_t i = 0; i < tls.listeners.size(); ++i) wk.set_listener_tls(i, tls.listeners[i]);
    });
  }
  refresh_probes();
  s.certificates->watch(*config_);
  watch_config_file();
  LOG_INFO("reload: applied (%zu listeners, %zu clusters)", config_->listeners.size(),
           config_->clusters.size());
}

bool Server::app_accepts_connections() const {
  for (auto& [name, probe] : state_->probes)
    if (probe->ready()) return true;
  return false;
}

void Server::stop_when_app_gone() {
  State& s = *state_;
  if (s.stopping || s.exit_timer) return;
  const bool wait =
      config_->drain.wait_for_app && has_undrained_listener(*config_) && app_accepts_connections();
  if (wait)
    LOG_INFO(
        "the app still accepts connections: the drain: false listeners serve until it has "
        "gone (a second signal stops now)");
  // Polled: the readiness probes see the app go within their interval. Without a wait, the
  // first tick also lets the /drain/wait answers leave before the loop winds down.
  s.exit_timer = std::make_unique<uv_timer_t>();
  uv_timer_init(&s.loop, s.exit_timer.get());
  s.exit_timer->data = this;
  uv_timer_start(
      s.exit_timer.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        if (uv_timer_get_repeat(t) != 0 && self->app_accepts_connections()) return;
        if (uv_timer_get_repeat(t) != 0) LOG_INFO("the app has gone: stopping");
        self->stop_now();
      },
      50, wait ? 100 : 0);
}

AdminResponse Server::resume() {
  State& s = *state_;
  auto answer = [](int status, const char* result) {
    nlohmann::json j;
    j["result"] = result;
    return AdminResponse{status, "application/json", json_body(j)};
  };
  if (s.signalled || s.stopping) return answer(409, "stopping");
  switch (s.drain->phase()) {
    case DrainPhase::kServing:
      return answer(200, "serving");
    case DrainPhase::kDone:
      return resume_serving() ? answer(200, "resumed") : answer(500, "failed");
    default:
      s.resume_pending = true;
      LOG_INFO("resume requested during the drain: serving again when it ends");
      return answer(202, "resuming when the drain ends");
  }
}

bool Server::resume_serving() {
  State& s = *state_;
  // New sockets for the listeners the drain closed, one per worker, on the port they had.
  const size_t n = config_->listeners.size();
  std::vector<std::vector<int>> fds(s.workers.size(), std::vector<int>(n, -1));
  std::string error;
  for (size_t i = 0; i < n && error.empty(); ++i) {
    const ListenerConfig& l = config_->listeners[i];
    if (!l.drain) continue;
    for (size_t w = 0; w < s.workers.size(); ++w) {
      int fd = open_listen_socket(l.address, true, error);
      if (fd < 0) {
        error = "listener " + l.name + ": " + error;
        break;
      }
      fds[w][i] = fd;
    }
  }
  if (!error.empty()) {
    for (auto& per_worker : fds)
      for (int fd : per_worker)
        if (fd >= 0) ::close(fd);
    LOG_ERROR("resume: %s; staying drained", error.c_str());
    return false;
  }
  s.drain->resume();
  s.exit_code = 0;
  // The phase is serving before a worker sees its task, so none re-applies the old drain.
  for (size_t w = 0; w < s.workers.size(); ++w)
    s.workers[w]->post([f = fds[w]](Worker& wk) { wk.resume_listeners(f); });
  LOG_INFO("resumed: the listeners accept again; readiness follows the app");
  return true;
}

void Server::stop_now() {
  State& s = *state_;
  if (s.stopping) return;
  s.stopping = true;
  for (auto& w : s.workers) w->request_stop();
  s.admin->complete_deferred(AdminResponse{503, "text/plain", "stopping\n"});
  s.admin->close();
  s.drain->close();
  for (auto& sig : s.signals) uv_close(reinterpret_cast<uv_handle_t*>(&sig->handle), nullptr);
  if (s.exit_timer) uv_close(reinterpret_cast<uv_handle_t*>(s.exit_timer.get()), nullptr);
  s.certificates->close();
  if (s.config_watch) s.config_watch->close();
  s.reloader->close();
  for (auto& [name, p] : s.probes) p->close();
  s.ctx->stop_deferred();
}

}  // namespace sluice
