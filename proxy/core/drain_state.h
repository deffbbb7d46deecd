#pragma once
// DrainState: the drain phase, written by the main thread's DrainCoordinator and read by the
// workers (a relaxed load on the response path decides `Connection: close`). Phase changes
// also reach each worker through its mailbox so it can act on them at once.
#include <atomic>
#include <cstdint>

namespace sluice {

enum class DrainPhase : uint8_t {
  kServing = 0,
  kDelay = 1,     // still accepting; every response says Connection: close
  kDraining = 2,  // listeners closed, idle connections closed, sessions told to go away
  kForced = 3,    // the budget ran out: whatever is left is closed
  kDone = 4,
};
const char* drain_phase_name(DrainPhase p);

struct DrainState {
  std::atomic<DrainPhase> phase{DrainPhase::kServing};
  // Set before the phase moves to kForced (the budget ran out), cleared by a resume. A worker
  // that sees the phase only once it is kDone (it was busy while the drain ended by itself)
  // learns from it whether there was a kForced to apply: closing what is left must not happen
  // to a drain that finished. Read after an acquire load of `phase`.
  std::atomic<bool> forced{false};
  DrainPhase get() const { return phase.load(std::memory_order_relaxed); }
  bool draining() const { return get() != DrainPhase::kServing; }
};

}  // namespace sluice
