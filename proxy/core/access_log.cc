#include "core/access_log.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/loop_context.h"

namespace sluice {

namespace {
// A worker hands its buffer over at least this often within one loop turn.
constexpr size_t kFlushBytes = 64 * 1024;
// Written buffers kept for reuse.
constexpr size_t kMaxSpare = 4;
// The writer thread is woken when this much is queued, else it looks every kWritePeriod: a
// wake-up (futex and context switch) per loop turn would cost the workers more than the
// formatting does.
constexpr size_t kWakeBytes = 256 * 1024;
constexpr auto kWritePeriod = std::chrono::milliseconds(50);

// std::to_chars rather than snprintf: no locale, no format parsing (a line has six numbers).
void append_number(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void append_ms(std::string& out, uint64_t us) {
  append_number(out, us / 1000);
  char frac[4] = {'.', static_cast<char>('0' + us % 1000 / 100),
                  static_cast<char>('0' + us % 100 / 10), static_cast<char>('0' + us % 10)};
  out.append(frac, 4);
}

void json_field(std::string& out, const char* name, std::string_view v) {
  out += ",\"";
  out += name;
  out += "\":\"";
  json_escape(out, v);
  out += '"';
}

// Text format: printable bytes as they are, others as \xNN, so a line stays one line.
void text_value(std::string& out, std::string_view v) {
  static const char kHex[] = "0123456789abcdef";
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
}
}  // namespace

AccessLogSink::AccessLogSink(int fd, size_t max_queued)
    : fd_(fd), max_queued_(max_queued), thread_(&AccessLogSink::run, this) {}

AccessLogSink::~AccessLogSink() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool AccessLogSink::submit(std::string& buffer) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_ || queued_ + buffer.size() > max_queued_) return false;
    queued_ += buffer.size();
    wake = queued_ >= kWakeBytes && queued_ - buffer.size() < kWakeBytes;
    queue_.push_back(std::move(buffer));
    // Hand back a written buffer with its capacity, so a worker does not regrow one per turn.
    if (!spare_.empty()) {
      buffer = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  buffer.clear();
  if (wake) wake_.notify_one();
  return true;
}

void AccessLogSink::run() {
  std::deque<std::string> batch;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, kWritePeriod, [this] { return stop_ || queued_ >= kWakeBytes; });
    if (queue_.empty()) {
      if (stop_) return;  // everything is written
      continue;
    }
    batch.swap(queue_);  // everything queued, written in one go without the lock
    lock.unlock();
    size_t bytes = 0;
    for (const std::string& chunk : batch) {
      bytes += chunk.size();
      size_t off = 0;
      while (off < chunk.size()) {
        ssize_t n = ::write(fd_, chunk.data() + off, chunk.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // stdout is gone: nothing more to do with these lines
        off += static_cast<size_t>(n);
      }
    }
    lock.lock();
    queued_ -= bytes;
    for (std::string& chunk : batch)
      if (spare_.size() < kMaxSpare && chunk.capacity() <= kFlushBytes * 2)
        spare_.push_back(std::move(chunk));
    batch.clear();
  }
}

AccessLog::AccessLog(LoopContext& ctx, AccessLogSink* sink, Counter& dropped)
    : ctx_(ctx), sink_(sink), dropped_(dropped) {}

AccessLog::~AccessLog() {
  flush();
}

void AccessLog::stamp(std::string& out) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != stamp_second_) {
    stamp_second_ = ts.tv_sec;
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    snprintf(stamp_, sizeof stamp_, "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900,
             t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
  }
  long ms = ts.tv_nsec / 1000000;
  char tail[4] = {static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                  static_cast<char>('0' + ms % 10), 'Z'};
  out += stamp_;
  out.append(tail, 4);
}

void AccessLog::append(const AccessLogEntry& e, LogFormat format, bool colour) {
  std::string& o = buffer_;
  if (format == LogFormat::kJson) {
    o += "{\"time\":\"";
    stamp(o);
    o += '"';
    json_field(o, "listener", e.listener);
    json_field(o, "client", e.client);
    json_field(o, "method", e.method);
    json_field(o, "path", e.target);
    json_field(o, "host", e.host);
    o += ",\"status\":";
    append_number(o, static_cast<uint64_t>(e.status));
    o += ",\"bytes_in\":";
    append_number(o, e.bytes_in);
    o += ",\"bytes_out\":";
    append_number(o, e.bytes_out);
    o += ",\"duration_ms\":";
    append_ms(o, e.duration_us);
    o += ",\"upstream_duration_ms\":";
    if (e.upstream_us) {
      append_ms(o, e.upstream_us);
    } else {
      o += "null";
    }
    json_field(o, "cluster", e.cluster);
    json_field(o, "upstream", e.upstream);
    o += ",\"reused\":";
    o += e.reused ? "true" : "false";
    json_field(o, "request_id", e.request_id);
    o += "}\n";
  } else {
    const char* on = "";
    const char* off = "";
    if (colour) {
      on = e.status >= 500 ? "\x1b[31m" : e.status >= 400 ? "\x1b[33m" : "\x1b[32m";
      off = "\x1b[0m";
    }
    stamp(o);
    o += ' ';
    text_value(o, e.listener);
    o += ' ';
    text_value(o, e.client);
    o += " \"";
    text_value(o, e.method);
    o += ' ';
    text_value(o, e.host);
    text_value(o, e.target);
    o += "\" ";
    o += on;
    append_number(o, static_cast<uint64_t>(e.status));
    o += off;
    o += " in=";
    append_number(o, e.bytes_in);
    o += " out=";
    append_number(o, e.bytes_out);
    o += ' ';
    append_ms(o, e.duration_us);
    o += "ms upstream=";
    if (e.upstream_us) {
      append_ms(o, e.upstream_us);
      o += "ms";
    } else {
      o += '-';
    }
    o += ' ';
    text_value(o, e.cluster.empty() ? std::string_view("-") : e.cluster);
    o += ' ';
    text_value(o, e.upstream.empty() ? std::string_view("-") : e.upstream);
    o += e.reused ? " reused" : " new";
    o += " id=";
    text_value(o, e.request_id.empty() ? std::string_view("-") : e.request_id);
    o += '\n';
  }
  ++lines_;
  if (buffer_.size() >= kFlushBytes) {
    flush();
  } else if (!flush_queued_) {
    flush_queued_ = true;
    ctx_.defer(&AccessLog::on_turn, this);
  }
}

void AccessLog::on_turn(void* p) {
  auto* self = static_cast<AccessLog*>(p);
  self->flush_queued_ = false;
  self->flush();
}

void AccessLog::flush() {
  if (buffer_.empty()) return;
  if (!sink_ || !sink_->submit(buffer_)) {
    dropped_.add(lines_);
    buffer_.clear();
  }
  lines_ = 0;
}

}  // namespace sluice
