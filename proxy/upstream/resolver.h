#pragma once
// ClusterResolver: turns one cluster's endpoints into addresses on the main thread's loop.
// DNS names go through uv_getaddrinfo (libuv's thread pool: no loop ever blocks on DNS) and
// are looked up again every dns_refresh; IP literals need no lookup. A failed lookup keeps the
// endpoint's last good addresses; an endpoint that never resolved is retried sooner (1 s,
// doubling up to dns_refresh). Whenever the combined list changes, `on_change` gets it.
// Unix-socket endpoints are fixed addresses like IP literals: no lookup, no refresh (whether
// the socket exists is the connect's business, and the readiness probe's).
#include <uv.h>

#include <functional>
#include <vector>

#include "core/config.h"
#include "upstream/upstream_cluster.h"

namespace sluice {

class ClusterResolver {
 public:
  using OnChange = std::function<void(const AddressList&)>;
  ClusterResolver(uv_loop_t* loop, ClusterConfig config, OnChange on_change);
  ~ClusterResolver();
  ClusterResolver(const ClusterResolver&) = delete;
  ClusterResolver& operator=(const ClusterResolver&) = delete;

  // Starts the first round of lookups (IP-only clusters are done when this returns).
  void start();
  // Every endpoint has been looked up once (successfully or not).
  bool first_round_done() const { return rounds_ > 0; }
  const AddressList& addresses() const { return addresses_; }
  const ClusterConfig& config() const { return config_; }
  // Stops the timer; lookups still running are ignored when they finish. Idempotent.
  void close();

 private:
  struct Lookup;
  struct Endpoint {
    HostPort host_port;
    bool literal = false;
    AddressList last_good;  // what the last successful lookup (or the literal) gave
  };
  void start_round();
  void lookup_done(size_t endpoint, int status, addrinfo* res);
  void finish_round();
  void schedule(uint64_t ms);

  uv_loop_t* loop_;
  ClusterConfig config_;
  OnChange on_change_;
  std::vector<Endpoint> endpoints_;
  std::vector<Lookup*> in_flight_;
  AddressList addresses_;
  uv_timer_t* timer_ = nullptr;  // freed in its close callback
  uint64_t retry_ms_ = 1000;
  unsigned rounds_ = 0;
  bool closed_ = false;
};

}  // namespace sluice
