#pragma once
// The exchange's view of its upstream: a place to send one request (UpstreamSide) and the
// events of its response (UpstreamHandler). A pooled HTTP/1.1 connection is one today
// (UpstreamConnection); a stream on a multiplexed HTTP/2 connection will be another. The
// request head arrives in sluice's canonical form, its rewritten HTTP/1.1 serialization (kept
// by the exchange for a retry); body bytes arrive unframed and each side frames them for its
// protocol.
#include <cstdint>
#include <memory>

#include <string>

#include "core/block.h"
#include "core/config.h"
#include "core/intrusive_list.h"
#include "core/stats.h"
#include "http/message.h"
#include "http/rewrite.h"

namespace sluice {

class TcpStream;
class ClusterGuard;

enum class UpstreamError : uint8_t {
  kConnectRefused,   // connect failed (refused, unreachable): 502
  kConnectTimeout,   // 503
  kTlsHandshake,     // TCP connected, TLS failed (verification, protocol): 502
  kReset,            // read/write error on an established connection
  kClosed,           // the upstream closed the connection before the response was complete
  kResponseTimeout,  // no response head in time: 504
  kBadResponse,      // unparsable response: 502
  // HTTP/2: the server never processed the request (a stream above a GOAWAY's last stream id,
  // or refused with REFUSED_STREAM): safe to retry whatever its method.
  kUnprocessed,
  kUpgradeOverHttp2,  // an Upgrade request to an HTTP/2 cluster (HTTP/2 has no Upgrade): 502
};
const char* upstream_error_name(UpstreamError e);

// The exchange currently using an upstream side.
class UpstreamHandler {
 public:
  virtual void on_upstream_head(const MessageHead& head) = 0;
  virtual void on_upstream_body(const Slice& data) = 0;
  // The response's trailer fields, as they came (an HTTP/1.1 chunked trailer section, an
  // HTTP/2 trailing HEADERS frame): called only when there is at least one, right before
  // on_upstream_complete. The handler may let go of the side here (its client went away).
  virtual void on_upstream_trailers(const MessageHead& trailers) = 0;
  virtual void on_upstream_complete() = 0;
  // The side is already closed when this is called; `response_started` says whether any
  // response byte had arrived.
  virtual void on_upstream_error(UpstreamError e, bool response_started) = 0;
  virtual void on_upstream_drained() = 0;
  // A 101 response head completed: the connection now carries another protocol; `rest` holds
  // the bytes that followed the head in the same read. The handler takes the socket
  // (take_socket) before it returns.
  virtual void on_upstream_upgraded(const Slice& rest) = 0;

 protected:
  ~UpstreamHandler() = default;
};

class UpstreamSide {
 public:
  // Whether it carried a request before this one (a stale keep-alive connection may be retried).
  virtual bool reused() const = 0;
  // The exchange takes the side for one request; response events go to `handler` until the
  // response completes, fails, or the exchange lets go (release, reset).
  virtual void bind(UpstreamHandler* handler, bool head_request) = 0;
  // The request in order: head, body pieces, end. Each returns 0 or an error, after which the
  // side is unusable (the caller resets it).
  virtual int send_head(const Slice& head, Framing framing) = 0;
  virtual int send_body(const Slice& data) = 0;
  // `trailers`: a complete chunked-encoding end with trailer fields, or empty.
  virtual int send_end(const Slice& trailers) = 0;
  // The whole request is written: the response head must come within the timeout (like Envoy's
  // route timeout, it does not count the time a large upload takes).
  virtual void expect_response(uint64_t timeout_ms) = 0;
  // Request bytes not yet taken by the upstream (backpressure).
  virtual size_t queued() const = 0;
  // Response backpressure: stop and resume delivering response bytes.
  virtual void pause_response() = 0;
  virtual void resume_response() = 0;
  // The response completed; `request_sent` says whether the whole request went out. The side
  // goes back to its pool when it can carry another request, else it closes.
  virtual void release(bool request_sent) = 0;
  // The exchange abandons the side mid-request or mid-response: closed, never reused.
  virtual void reset() = 0;
  // After on_upstream_upgraded: the socket leaves the side (and its pool) for a tunnel. The
  // side is gone after this call.
  virtual std::unique_ptr<TcpStream> take_socket() = 0;

 protected:
  ~UpstreamSide() = default;
};

enum class PoolFailure : uint8_t {
  kConnectRefused,
  kConnectTimeout,
  kQueueFull,
  kQueueTimeout,
  kTlsHandshake,
};
const char* pool_failure_name(PoolFailure f);

// Something waiting for an upstream side (an exchange). It is on its source's wait list while
// queued.
class PoolClient : public ListNode {
 public:
  virtual void on_pool_ready(UpstreamSide* side) = 0;
  virtual void on_pool_failure(PoolFailure f) = 0;

 protected:
  ~PoolClient() = default;

 private:
  friend class UpstreamPool;
  friend class WaitQueue;
  uint64_t queued_at_ms_ = 0;
  bool wants_fresh_ = false;
};

// Where an exchange gets an UpstreamSide for one upstream address: the pool of HTTP/1.1
// keep-alive connections today (UpstreamPool), a multiplexed HTTP/2 connection pool next.
class UpstreamSource {
 public:
  enum class Acquire : uint8_t { kReady, kQueued, kFailed };
  // kReady: *side is the caller's to bind now. kQueued: the client gets on_pool_ready or
  // on_pool_failure later (cancel() takes it off the queue). kFailed: *failure says why.
  // `fresh` asks for a new connection (a retry after a reused one turned out stale).
  virtual Acquire acquire_side(PoolClient* client, bool fresh, UpstreamSide** side,
                               PoolFailure* failure) = 0;
  virtual void cancel(PoolClient* client) = 0;
  // The endpoint as configured ("api.example.com:443"): the Host of HTTP/1.0 requests;
  // "localhost" for a Unix socket (a path is no authority).
  virtual const std::string& host() const = 0;
  // For logs: the endpoint and its address.
  virtual const std::string& name() const = 0;
  // Exchanges that chose it hold it until they are done (a retired one waits for them).
  void add_user() { ++users_; }
  void remove_user() { --users_; }

 protected:
  ~UpstreamSource() = default;
  uint32_t users_ = 0;
};

// The addresses of one cluster as an exchange uses them: which to send a request to (load
// balancing, outlier detection), where to count it, and the cluster's settings.
class UpstreamSet {
 public:
  // nullptr when the cluster has no address yet. `exclude` (where a connect just failed) is
  // skipped when another address exists.
  virtual UpstreamSource* pick_source(const UpstreamSource* exclude = nullptr) = 0;
  virtual size_t address_count() const = 0;
  virtual ClusterStats& stats() = 0;
  virtual const ClusterConfig& config() const = 0;
  // The cluster's circuit breaker, caps and retry budget, shared by every worker (null: none),
  // and this worker's slot in it.
  virtual ClusterGuard* guard() { return nullptr; }
  virtual unsigned guard_slot() const { return 0; }
  // Exchanges that use it hold it until they are done (a cluster a reload removed stays for
  // the requests that started on it).
  void add_user() { ++users_; }
  void remove_user() { --users_; }

 protected:
  ~UpstreamSet() = default;
  uint32_t users_ = 0;
};

}  // namespace sluice
