#pragma once
// LoopContext: what every connection object of one worker thread needs — the loop, the block
// pool, a PRNG and the worker's counters. Owned by the Worker; never shared across threads,
// except that the counters may be read (relaxed) by the main thread.
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/block.h"

namespace sluice {

// A counter with one writer (its worker) and lock-free readers: relaxed load + store compile to
// a plain add, no locked instruction on the hot path.
class Counter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

struct WorkerStats {
  Counter downstream_connections_total;
  Counter downstream_connections_active;
  Counter drain_exempt_connections;  // active ones on `drain: false` listeners
  Counter downstream_requests_total;
  Counter downstream_errors_total;  // responses sluice generated with a 4xx/5xx
  Counter upstream_connections_created;
  Counter upstream_requests_total;
  Counter upstream_retries_total;
  Counter upstream_connect_failures;
  Counter upstream_ejections;  // outlier detection took an address out of rotation
  Counter upstream_timeouts;
  Counter websocket_sessions_active;
  Counter exchanges_active;  // requests between their head and the end of their response
  Counter drain_forced_closes;
  Counter websocket_closed[5];  // by TunnelEnd
};

class LoopContext {
 public:
  explicit LoopContext(uv_loop_t* loop, uint64_t seed) : loop(loop), rng_(seed | 1) {}
  uv_loop_t* loop;
  BlockPool blocks;
  // The block of the read in progress, between a stream's alloc_cb and read_cb. libuv runs
  // the two back to back for one stream, so one slot per loop serves every stream.
  BlockRef read_block;
  WorkerStats stats;

  uint64_t random() {  // xorshift64*: request ids, load-balancing choices
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1Dull;
  }
  uint64_t now_ms() const { return uv_now(loop); }

  // Runs fn(arg) on a later turn of the loop (after this round of I/O callbacks), in FIFO order,
  // so an object never re-enters itself from inside its own callback. Objects with tasks queued
  // must stay alive until they run: connections queue their own deletion the same way.
  using Task = void (*)(void*);
  void defer(Task fn, void* arg);
  void start_deferred();  // owner calls once the loop exists
  void stop_deferred();   // closes the two handles (idempotent)

 private:
  static void run_deferred(uv_check_t* h);
  uint64_t rng_;
  std::vector<std::pair<Task, void*>> deferred_, running_;
  uv_check_t check_;
  uv_idle_t idle_;  // active while tasks wait, so the loop polls without blocking
  bool deferred_started_ = false;
};

}  // namespace sluice
