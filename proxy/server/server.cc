#include "server/server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <future>
#include <thread>

#include "admin/admin_server.h"
#include "core/log.h"
#include "demo/demo_app.h"
#include "http/message.h"
#include "net/listener.h"
#include "server/drain_coordinator.h"
#include "server/worker.h"

namespace sluice {

namespace {

// Blocking resolution, done once at start-up before any loop runs.
bool resolve(const ClusterConfig& cluster, ResolvedCluster& out, std::string& error) {
  out.config = cluster;
  for (const HostPort& ep : cluster.endpoints) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string port = std::to_string(ep.port);
    int r = getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
    if (r != 0) {
      error = "cluster " + cluster.name + ": cannot resolve " + ep.host + ": " + gai_strerror(r);
      return false;
    }
    // The first address of each endpoint (DNS re-resolution and all addresses come with #4).
    sockaddr_storage ss{};
    std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
    out.addresses.push_back(ss);
    out.address_names.push_back(ep.str());
    freeaddrinfo(res);
  }
  if (out.addresses.empty()) {
    error = "cluster " + cluster.name + ": no endpoints";
    return false;
  }
  return true;
}

struct SignalWatch {
  uv_signal_t handle;
  std::function<void(int)> fn;
};

class DemoThread {
 public:
  explicit DemoThread(int fd) : fd_(fd) {}
  ~DemoThread() { stop(); }
  void start() {
    std::promise<void> ready;
    auto fut = ready.get_future();
    thread_ = std::thread([this, r = std::move(ready)]() mutable {
      uv_loop_init(&loop_);
      LoopContext ctx(&loop_, 1);
      DemoApp app(ctx);
      uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
        static_cast<DemoApp*>(a->data)->close();
        uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
      });
      stop_.data = &app;
      int rc = app.start(fd_);
      if (rc != 0) LOG_ERROR("demo app: %s", uv_strerror(rc));
      r.set_value();
      uv_run(&loop_, UV_RUN_DEFAULT);
      uv_loop_close(&loop_);
    });
    fut.wait();
  }
  void stop() {
    if (!thread_.joinable()) return;
    uv_async_send(&stop_);
    thread_.join();
  }

 private:
  int fd_;
  uv_loop_t loop_;
  uv_async_t stop_;
  std::thread thread_;
};

}  // namespace

struct Server::State {
  uv_loop_t loop;
  std::unique_ptr<LoopContext> ctx;
  std::unique_ptr<AdminServer> admin;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<SignalWatch>> signals;
  std::unique_ptr<DemoThread> demo;
  std::unique_ptr<DrainCoordinator> drain;
  std::unique_ptr<uv_timer_t> exit_timer;
  int exit_code = 0;
  bool stopping = false;
};

Server::Server(ConfigPtr config, ServerOptions options)
    : config_(std::move(config)), options_(options), state_(std::make_unique<State>()) {}

Server::~Server() = default;

int Server::run() {
  State& st = *state_;
  auto config = std::make_shared<Config>(*config_);
  unsigned workers = config->workers ? config->workers : std::thread::hardware_concurrency();
  if (workers == 0) workers = 1;
  config->workers = workers;

  std::string error;
  if (options_.demo) {
    int fd = open_listen_socket(HostPort{"127.0.0.1", 0}, false, error);
    if (fd < 0) {
      fprintf(stderr, "sluice: demo app: %s\n", error.c_str());
      return 1;
    }
    uint16_t port = static_cast<uint16_t>(bound_port(fd));
    for (auto& c : config->clusters) c.endpoints = {HostPort{"127.0.0.1", port}};
    st.demo = std::make_unique<DemoThread>(fd);
    st.demo->start();
  }

  std::vector<std::shared_ptr<const ResolvedCluster>> clusters;
  for (const auto& c : config->clusters) {
    auto rc = std::make_shared<ResolvedCluster>();
    if (!resolve(c, *rc, error)) {
      fprintf(stderr, "sluice: %s\n", error.c_str());
      return 1;
    }
    clusters.push_back(std::move(rc));
  }

  // Listening sockets: one per listener per worker (SO_REUSEPORT). Port 0 takes the port the
  // first socket got, so every worker listens on the same one.
  std::vector<std::vector<int>> fds(workers);
  for (auto& l : config->listeners) {
    HostPort addr = l.address;
    for (unsigned w = 0; w < workers; ++w) {
      int fd = open_listen_socket(addr, true, error);
      if (fd < 0) {
        fprintf(stderr, "sluice: listener %s: %s\n", l.name.c_str(), error.c_str());
        return 1;
      }
      if (addr.port == 0) addr.port = static_cast<uint16_t>(bound_port(fd));
      fds[w].push_back(fd);
    }
    l.address = addr;
  }
  int admin_fd = open_listen_socket(config->admin.address, false, error);
  if (admin_fd < 0) {
    fprintf(stderr, "sluice: admin: %s\n", error.c_str());
    return 1;
  }
  config->admin.address.port = static_cast<uint16_t>(bound_port(admin_fd));
  config_ = config;

  uv_loop_init(&st.loop);
  st.ctx = std::make_unique<LoopContext>(&st.loop, 7);
  st.ctx->start_deferred();

  auto drain_state = std::make_shared<DrainState>();
  std::vector<std::future<std::string>> ready;
  for (unsigned w = 0; w < workers; ++w) {
    st.workers.push_back(
        std::make_unique<Worker>(w, WorkerSetup{config_, clusters, fds[w], drain_state}));
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

  st.drain = std::make_unique<DrainCoordinator>(
      &st.loop, config_->drain, drain_state,
      DrainCoordinator::Hooks{
          [this] {
            DrainCounts c;
            for (auto& w : state_->workers) {
              const WorkerStats& ws = w->stats();
              c.connections += ws.downstream_connections_active.get();
              c.in_flight += ws.exchanges_active.get();
              c.websockets += ws.websocket_sessions_active.get();
              c.forced += ws.drain_forced_closes.get();
            }
            return c;
          },
          [this] {
            for (auto& w : state_->workers) w->notify_drain();
          },
          [this](int status) {
            State& s = *state_;
            s.exit_code = status;
            s.admin->complete_deferred(
                AdminResponse{200, "application/json", s.drain->status_json()});
            // Let the /drain/wait answers leave before the loop winds down.
            s.exit_timer = std::make_unique<uv_timer_t>();
            uv_timer_init(&s.loop, s.exit_timer.get());
            s.exit_timer->data = this;
            uv_timer_start(
                s.exit_timer.get(),
                [](uv_timer_t* t) { static_cast<Server*>(t->data)->stop_now(); }, 50, 0);
          }});

  st.admin = std::make_unique<AdminServer>(
      *st.ctx, [this](const AdminRequest& req) { return admin_request(req); });
  if (int r = st.admin->start(admin_fd); r != 0) {
    fprintf(stderr, "sluice: admin %s: %s\n", config_->admin.address.str().c_str(), uv_strerror(r));
    ok = false;
  }

  for (int signum : {SIGTERM, SIGINT}) {
    auto sw = std::make_unique<SignalWatch>();
    uv_signal_init(&st.loop, &sw->handle);
    sw->handle.data = sw.get();
    sw->fn = [this](int signum) {
      State& s = *state_;
      if (s.drain->phase() == DrainPhase::kServing) {
        s.drain->start(strsignal(signum));
        return;
      }
      // A second signal during a drain: stop at once.
      LOG_WARN("%s during the drain: stopping now", strsignal(signum));
      s.exit_code = 2;
      stop_now();
    };
    uv_signal_start(
        &sw->handle,
        [](uv_signal_t* h, int signum) { static_cast<SignalWatch*>(h->data)->fn(signum); }, signum);
    st.signals.push_back(std::move(sw));
  }
  signal(SIGPIPE, SIG_IGN);

  if (!ok) {
    st.exit_code = 1;
    stop_now();
  } else {
    std::string listeners;
    for (auto& l : config_->listeners)
      listeners += (listeners.empty() ? "" : ", ") + l.address.str();
    std::string upstreams;
    for (auto& c : config_->clusters)
      for (auto& e : c.endpoints) upstreams += (upstreams.empty() ? "" : ", ") + e.str();
    fprintf(stderr, "sluice: listening on %s (%u workers), upstream %s, admin %s\n",
            listeners.c_str(), workers, upstreams.c_str(), config_->admin.address.str().c_str());
    fflush(stderr);
  }

  uv_run(&st.loop, UV_RUN_DEFAULT);
  for (auto& w : st.workers) w->join();
  st.workers.clear();
  st.admin.reset();
  st.drain.reset();
  uv_run(&st.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&st.loop) != 0) LOG_ERROR("main loop closed with handles still open");
  if (st.demo) st.demo->stop();
  LOG_INFO("stopped");
  return st.exit_code;
}

AdminResponse Server::admin_request(const AdminRequest& req) {
  State& s = *state_;
  std::string_view path = req.path;
  if (path == "/healthz") return AdminResponse{200, "text/plain", "ok\n"};
  if (path == "/readyz") {
    if (s.drain->phase() != DrainPhase::kServing)
      return AdminResponse{503, "text/plain", "draining\n"};
    return AdminResponse{200, "text/plain", "ready\n"};
  }
  if (path == "/drain" || path == "/drain/wait") {
    const bool get = req.head.method == HTTP_GET || req.head.method == HTTP_HEAD;
    if (path == "/drain" && get)
      return AdminResponse{200, "application/json", s.drain->status_json()};
    if (path == "/drain" && req.head.method != HTTP_POST)
      return AdminResponse{405, "text/plain", "use GET or POST\n"};
    if (path == "/drain/wait" && !get) return AdminResponse{405, "text/plain", "use GET\n"};
    // Starting a drain changes the pod's state: loopback, or the admin token.
    const std::string& token = config_->admin_token;
    if (!req.from_loopback && (token.empty() || req.header("x-sluice-admin-token") != token)) {
      LOG_WARN("admin: refused %s from %.*s (not loopback, no valid token)",
               std::string(path).c_str(), static_cast<int>(req.client_ip.size()),
               req.client_ip.data());
      return AdminResponse{403, "text/plain", "forbidden: loopback or admin token required\n"};
    }
    bool was_serving = s.drain->phase() == DrainPhase::kServing;
    s.drain->start(path == "/drain" ? "admin POST /drain" : "admin GET /drain/wait");
    if (path == "/drain")
      return AdminResponse{was_serving ? 202 : 200, "application/json", s.drain->status_json()};
    if (s.drain->finished()) return AdminResponse{200, "application/json", s.drain->status_json()};
    AdminResponse r;
    r.deferred = true;
    return r;
  }
  return AdminResponse{404, "text/plain", "not found\n"};
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
  s.ctx->stop_deferred();
}

int run_demo_app(const HostPort& listen) {
  std::string error;
  int fd = open_listen_socket(listen, false, error);
  if (fd < 0) {
    fprintf(stderr, "sluice demo-app: %s\n", error.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int port = bound_port(fd);
  {
    LoopContext ctx(&loop, 1);
    DemoApp app(ctx);
    if (int r = app.start(fd); r != 0) {
      fprintf(stderr, "sluice demo-app: listen: %s\n", uv_strerror(r));
      return 1;
    }
    std::vector<std::unique_ptr<SignalWatch>> signals;
    for (int signum : {SIGTERM, SIGINT}) {
      auto sw = std::make_unique<SignalWatch>();
      uv_signal_init(&loop, &sw->handle);
      sw->handle.data = sw.get();
      sw->fn = [&](int) {
        app.close();
        for (auto& s : signals) uv_close(reinterpret_cast<uv_handle_t*>(&s->handle), nullptr);
      };
      uv_signal_start(
          &sw->handle,
          [](uv_signal_t* h, int signum) { static_cast<SignalWatch*>(h->data)->fn(signum); },
          signum);
      signals.push_back(std::move(sw));
    }
    fprintf(stderr, "sluice demo-app: listening on %s:%d\n", listen.host.c_str(), port);
    fflush(stderr);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}

}  // namespace sluice
