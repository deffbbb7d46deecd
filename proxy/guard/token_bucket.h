#pragma once
// Token-bucket arithmetic as GCRA (the generic cell rate algorithm): a bucket is one number, the
// theoretical arrival time (TAT) of the next request, in nanoseconds of a monotonic clock. A
// rate of one request per `interval_ns` with `burst` requests at once admits a request at `now`
// when TAT' = max(TAT, now) + interval is at most `burst` intervals ahead of now. Exactly a
// token bucket of `burst` tokens refilled at one per interval, with integer maths and no
// floating point drift, and the wait until the next token falls out of the same numbers.
#include <algorithm>
#include <cstdint>

namespace sluice {

// 128-bit products for rescaling spans (GCC and clang; __extension__ keeps -Wpedantic quiet).
__extension__ typedef unsigned __int128 uint128_t;

struct BucketParams {
  uint64_t interval_ns = 1'000'000'000;  // time per request (period / requests)
  uint64_t burst_ns = 1'000'000'000;     // burst × interval: how far ahead TAT may run
};

// Admits a request at `now` (returns 0, TAT advanced) or refuses it: then returns the
// nanoseconds until one token is available (at least 1) and leaves TAT unchanged.
inline uint64_t bucket_take(uint64_t& tat, uint64_t now, const BucketParams& p) {
  const uint64_t next = std::max(tat, now) + p.interval_ns;
  const uint64_t ahead = next - now;
  if (ahead > p.burst_ns) return ahead - p.burst_ns;
  tat = next;
  return 0;
}

// Retry-After in whole seconds for a wait: rounded up, at least 1 (RFC 9110 §10.2.3).
inline uint64_t retry_after_seconds(uint64_t wait_ns) {
  const uint64_t s = (wait_ns + 999'999'999) / 1'000'000'000;
  return s < 1 ? 1 : s;
}

}  // namespace sluice
