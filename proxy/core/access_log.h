#pragma once
// The access log: one line per request on stdout, JSON or text. Writing never blocks a worker:
// each worker appends lines to its own buffer and, when the buffer holds 64 KiB or on the
// worker's heartbeat (every 250 ms), hands it to the AccessLogSink, whose own thread writes it
// out. When
// the sink's queue is full (stdout is slow or not read), the lines are dropped and counted,
// never the request.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/stats.h"

namespace sluice {

class AccessLogSink {
 public:
  // Writes to `fd` (not owned) from its own thread; queues at most `max_queued` bytes.
  explicit AccessLogSink(int fd, size_t max_queued = 4u << 20);
  ~AccessLogSink();  // writes what is queued, then joins
  AccessLogSink(const AccessLogSink&) = delete;
  AccessLogSink& operator=(const AccessLogSink&) = delete;
  // Thread-safe. Takes the buffer's contents (leaving it empty) unless the queue is full.
  bool submit(std::string& buffer);

 private:
  void run();
  int fd_;
  size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  std::vector<std::string> spare_;  // written buffers, capacity kept, handed back by submit
  size_t queued_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

// One request's line. `listener`, `method`, `cluster` and `protocol` are sluice's own
// names (configuration names are checked to [A-Za-z0-9._-], methods come from llhttp's table,
// the protocol is a literal) and go into a JSON line without the escaping scan; every
// other string may hold any byte.
struct AccessLogEntry {
  std::string_view listener, client, method, target, host;
  int status = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  uint64_t duration_us = 0;
  uint64_t upstream_us = 0;  // 0: no upstream response
  std::string_view cluster, upstream;
  bool reused = false;
  std::string_view request_id;
  std::string_view protocol;  // "HTTP/1.1" or "HTTP/2"
  std::string_view reason;    // why sluice refused the request itself (empty: it did not)
  int grpc_status = -1;       // a gRPC call's final grpc-status (17: another value; -1: none)
};

// A worker's side of the access log. Must outlive the loop's deferred tasks (the worker
// destroys it after its loop has closed).
class AccessLog {
 public:
  AccessLog(AccessLogSink* sink, Counter& dropped);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  void append(const AccessLogEntry& e, LogFormat format, bool colour);
  void flush();  // hands the buffer to the sink (or drops and counts its lines)

 private:
  // stamp_ holds "2026-11-23T16:39:16.123Z" for now (the date part made once a second).
  void refresh_stamp();

  AccessLogSink* sink_;
  Counter& dropped_;
  std::string buffer_;
  size_t lines_ = 0;
  int64_t stamp_second_ = -1;
  char stamp_[64] = {};   // "2026-11-23T16:39:16." for stamp_second_, then the milliseconds
  size_t stamp_len_ = 0;  // of the part before the milliseconds
};

}  // namespace sluice
