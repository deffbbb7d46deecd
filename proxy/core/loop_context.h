#pragma once
// LoopContext: what every connection object of one worker thread needs — the loop, the block
// pool, a PRNG and the worker's counters. Owned by the Worker; never shared across threads,
// except that the counters may be read (relaxed) by the main thread.
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/block.h"
#include "core/stats.h"

namespace sluice {

class LoopContext {
 public:
  // Registers itself as the loop's data, so that an object holding a libuv handle finds its
  // context from the handle (a pointer less in each of the two streams of every connection).
  explicit LoopContext(uv_loop_t* loop, uint64_t seed) : loop(loop), rng_(seed | 1) {
    loop->data = this;
  }
  ~LoopContext() {
    if (loop->data == this) loop->data = nullptr;
  }
  LoopContext(const LoopContext&) = delete;
  LoopContext& operator=(const LoopContext&) = delete;
  static LoopContext& of(const uv_loop_t* l) { return *static_cast<LoopContext*>(l->data); }
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
