#include "upstream/readiness_probe.h"

#include <sys/un.h>

#include <algorithm>

#include "core/log.h"

namespace sluice {

// One connect: a socket (TCP, or a pipe for a Unix-socket endpoint) and its timeout, freed once
// both handles have closed.
struct ReadinessProbe::Attempt {
  union {
    uv_handle_t handle;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } socket;
  uv_timer_t timer;
  uv_connect_t req;
  ReadinessProbe* owner;  // null once the probe closed
  std::string name;
  int open_handles = 2;
  bool done = false;

  void finish() {
    if (done) return;
    done = true;
    uv_timer_stop(&timer);
    for (uv_handle_t* h : {&socket.handle, reinterpret_cast<uv_handle_t*>(&timer)}) {
      uv_close(h, [](uv_handle_t* h) {
        auto* a = static_cast<Attempt*>(h->data);
        if (--a->open_handles == 0) delete a;
      });
    }
  }
};

ReadinessProbe::ReadinessProbe(uv_loop_t* loop, std::string cluster, uint64_t interval_ms,
                               uint64_t timeout_ms)
    : loop_(loop),
      cluster_(std::move(cluster)),
      interval_ms_(interval_ms),
      timeout_ms_(timeout_ms) {
  reason_ = "cluster " + cluster_ + ": not probed yet";
}

ReadinessProbe::~ReadinessProbe() {
  close();
}

void ReadinessProbe::set_addresses(const AddressList& addresses) {
  addresses_ = addresses;
}

void ReadinessProbe::start() {
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  start_round();
}

void ReadinessProbe::start_round() {
  if (closed_) return;
  if (pending_ == 0) {
    round_ok_ = false;
    round_error_.clear();
    if (addresses_.empty()) {
      ready_ = false;
      reason_ = "cluster " + cluster_ + ": no address (endpoints not resolved)";
    }
    for (const UpstreamAddress& addr : addresses_) {
      auto* a = new Attempt;
      a->owner = this;
      a->name = addr.name;
      const bool unix_socket = addr.address.ss_family == AF_UNIX;
      if (unix_socket) {
        uv_pipe_init(loop_, &a->socket.pipe, /*ipc=*/0);
      } else {
        uv_tcp_init(loop_, &a->socket.tcp);
      }
      uv_timer_init(loop_, &a->timer);
      a->socket.handle.data = a->timer.data = a->req.data = a;
      ++pending_;
      attempts_.push_back(a);
      auto connected = [](uv_connect_t* req, int status) {
        auto* a = static_cast<Attempt*>(req->data);
        if (a->owner) a->owner->attempt_done(a, status);
        a->finish();
      };
      int r = 0;
      if (unix_socket) {
        // Errors (ENOENT while the app has not created its socket) come to the callback.
        const auto& un = reinterpret_cast<const sockaddr_un&>(addr.address);
        uv_pipe_connect(&a->req, &a->socket.pipe, un.sun_path, connected);
      } else {
        r = uv_tcp_connect(&a->req, &a->socket.tcp,
                           reinterpret_cast<const sockaddr*>(&addr.address), connected);
      }
      if (r != 0) {
        attempt_done(a, r);
        a->finish();
        continue;
      }
      uv_timer_start(
          &a->timer,
          [](uv_timer_t* t) {
            auto* a = static_cast<Attempt*>(t->data);
            if (a->owner) a->owner->attempt_done(a, UV_ETIMEDOUT);
            a->owner = nullptr;  // the connect callback (UV_ECANCELED) must not count it again
            a->finish();
          },
          timeout_ms_, 0);
    }
  }
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<ReadinessProbe*>(t->data)->start_round(); },
      interval_ms_, 0);
}

void ReadinessProbe::attempt_done(Attempt* a, int status) {
  a->owner = nullptr;
  std::erase(attempts_, a);
  if (status == 0) {
    round_ok_ = true;
  } else if (round_error_.empty()) {
    round_error_ = a->name + ": " + uv_strerror(status);
  }
  if (--pending_ > 0) return;
  bool was = ready_;
  ready_ = round_ok_;
  reason_ = ready_ ? std::string() : "cluster " + cluster_ + ": " + round_error_;
  if (was != ready_) {
    if (ready_) {
      LOG_INFO("readiness: cluster %s is reachable", cluster_.c_str());
    } else {
      LOG_WARN("readiness: %s; /readyz answers 503", reason_.c_str());
    }
  }
}

void ReadinessProbe::close() {
  if (closed_) return;
  closed_ = true;
  for (Attempt* a : attempts_) {
    a->owner = nullptr;
    a->finish();
  }
  attempts_.clear();
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

}  // namespace sluice
