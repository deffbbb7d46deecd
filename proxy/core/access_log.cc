#include "core/access_log.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace sluice {

namespace {
// A worker hands its buffer over when it holds this much (and on its heartbeat): handing it
// over on every loop turn took a buffer from the sink's few spares each time, and a new one
// grew line by line when there was none.
constexpr size_t kFlushBytes = 64 * 1024;
// Room for the line that crosses kFlushBytes (a longer one grows the buffer).
constexpr size_t kLineRoom = 8 * 1024;
// Written buffers kept for reuse.
constexpr size_t kMaxSpare = 4;
// The writer thread is woken when this much is queued, else it looks every kWritePeriod: a
// wake-up (futex and context switch) per loop turn would cost the workers more than the
// formatting does.
constexpr size_t kWakeBytes = 256 * 1024;
constexpr auto kWritePeriod = std::chrono::milliseconds(50);

// Writes one line into the buffer, grown once for the line's worst case (every byte of every
// string escaped), with plain stores: appending piece by piece to a std::string checks its
// capacity and measures each literal every time, which was most of the access log's cost.
class LineWriter {
 public:
  LineWriter(std::string& buf, size_t worst) : buf_(buf) {
    const size_t base = buf.size();
    buf.resize(base + worst);
    p_ = buf.data() + base;
  }
  ~LineWriter() { buf_.resize(static_cast<size_t>(p_ - buf_.data())); }
  LineWriter(const LineWriter&) = delete;
  LineWriter& operator=(const LineWriter&) = delete;

  template <size_t N>
  void lit(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void raw(std::string_view s) {
    if (s.empty()) return;  // an empty view may have no data pointer: not for memcpy
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void ch(char c) { *p_++ = c; }
  // std::to_chars rather than snprintf: no locale, no format parsing.
  void number(uint64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  void ms(uint64_t us) {
    number(us / 1000);
    p_[0] = '.';
    p_[1] = static_cast<char>('0' + us % 1000 / 100);
    p_[2] = static_cast<char>('0' + us % 100 / 10);
    p_[3] = static_cast<char>('0' + us % 10);
    p_ += 4;
  }
  // A JSON string's content: plain bytes copied as they are (eight at a time while a whole
  // word is plain), the others escaped (at most 6 bytes each: \u00XX).
  void json(std::string_view s) {
    const char* in = s.data();
    const size_t n = s.size();
    size_t i = 0;
    while (n - i >= 8 && plain_word(in + i)) {
      std::memcpy(p_, in + i, 8);
      p_ += 8;
      i += 8;
    }
    for (; i < n; ++i) {
      const auto u = static_cast<unsigned char>(in[i]);
      if (kJsonPlain[u]) {
        *p_++ = static_cast<char>(u);
      } else if (u == '"' || u == '\\') {
        p_[0] = '\\';
        p_[1] = static_cast<char>(u);
        p_ += 2;
      } else {
        lit("\\u00");
        hex(u);
      }
    }
  }
  // Text format: printable bytes as they are, others as \xNN (4 bytes), so a line stays one.
  void text(std::string_view s) {
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f) {
        lit("\\x");
        hex(u);
      } else {
        *p_++ = c;
      }
    }
  }
  // A field whose value is one of sluice's own names, made of characters JSON takes as they
  // are (AccessLogEntry says which): copied without the escaping scan.
  void own_field(std::string_view key_quoted, std::string_view v) {
    raw(key_quoted);
    raw(v);
    ch('"');
  }
  void json_field(std::string_view key_quoted, std::string_view v) {
    raw(key_quoted);  // ,"name":"
    json(v);
    ch('"');
  }

 private:
  // Whether the eight bytes at p are all plain: none below 0x20, '"', '\\' or 0x7f (bytes from
  // 0x80 on are plain). The classic "has a byte less than / equal to" word tricks: they may
  // only err towards "not plain", and the byte loop then decides.
  static bool plain_word(const char* p) {
    constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t ascii = ~w & kHigh;  // the bytes below 0x80
    const uint64_t below_space = (w - kOnes * 0x20) & ascii;
    const uint64_t q = w ^ (kOnes * '"'), b = w ^ (kOnes * '\\'), del = w ^ (kOnes * 0x7f);
    const uint64_t special = ((q - kOnes) & ~q) | ((b - kOnes) & ~b) | ((del - kOnes) & ~del);
    return (below_space | (special & kHigh)) == 0;
  }
  static constexpr std::array<bool, 256> kJsonPlain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x7f; ++c) t[c] = c != '"' && c != '\\';
    for (int c = 0x80; c < 0x100; ++c) t[c] = true;  // UTF-8 bytes pass as they are
    return t;
  }();
  void hex(unsigned char u) {
    static constexpr char kHex[] = "0123456789abcdef";
    p_[0] = kHex[u >> 4];
    p_[1] = kHex[u & 15];
    p_ += 2;
  }

  std::string& buf_;
  char* p_;
};

// The worst case of a line: its fixed text and numbers, and every string byte escaped.
size_t worst_line(const AccessLogEntry& e) {
  const size_t strings = e.listener.size() + e.client.size() + e.method.size() + e.target.size() +
                         e.host.size() + e.cluster.size() + e.upstream.size() +
                         e.request_id.size() + e.protocol.size() + e.reason.size();
  return 512 + 6 * strings;
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

AccessLog::AccessLog(AccessLogSink* sink, Counter& dropped) : sink_(sink), dropped_(dropped) {}

AccessLog::~AccessLog() {
  flush();
}

void AccessLog::refresh_stamp() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != stamp_second_) {
    stamp_second_ = ts.tv_sec;
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    int n = snprintf(stamp_, sizeof stamp_, "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900,
                     t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
    stamp_len_ = n > 0 ? static_cast<size_t>(n) : 0;
  }
  const long ms = ts.tv_nsec / 1000000;
  stamp_[stamp_len_] = static_cast<char>('0' + ms / 100);
  stamp_[stamp_len_ + 1] = static_cast<char>('0' + ms / 10 % 10);
  stamp_[stamp_len_ + 2] = static_cast<char>('0' + ms % 10);
  stamp_[stamp_len_ + 3] = 'Z';
}

void AccessLog::append(const AccessLogEntry& e, LogFormat format, bool colour) {
  refresh_stamp();
  const std::string_view stamp(stamp_, stamp_len_ + 4);
  {
    LineWriter o(buffer_, worst_line(e));
    if (format == LogFormat::kJson) {
      o.lit("{\"time\":\"");
      o.raw(stamp);
      o.ch('"');
      o.own_field(",\"listener\":\"", e.listener);
      o.json_field(",\"client\":\"", e.client);
      o.own_field(",\"method\":\"", e.method);
      o.json_field(",\"path\":\"", e.target);
      o.json_field(",\"host\":\"", e.host);
      o.lit(",\"status\":");
      o.number(static_cast<uint64_t>(e.status));
      o.lit(",\"bytes_in\":");
      o.number(e.bytes_in);
      o.lit(",\"bytes_out\":");
      o.number(e.bytes_out);
      o.lit(",\"duration_ms\":");
      o.ms(e.duration_us);
      o.lit(",\"upstream_duration_ms\":");
      if (e.upstream_us) {
        o.ms(e.upstream_us);
      } else {
        o.lit("null");
      }
      o.own_field(",\"cluster\":\"", e.cluster);
      o.json_field(",\"upstream\":\"", e.upstream);
      if (e.reused) {
        o.lit(",\"reused\":true");
      } else {
        o.lit(",\"reused\":false");
      }
      o.json_field(",\"request_id\":\"", e.request_id);
      o.own_field(",\"protocol\":\"", e.protocol);
      if (e.reason.empty()) {
        o.lit(",\"reason\":null");
      } else {
        o.json_field(",\"reason\":\"", e.reason);
      }
      if (e.grpc_status >= 0) {  // gRPC calls only
        o.lit(",\"grpc_status\":");
        o.number(static_cast<uint64_t>(e.grpc_status));
      }
      o.lit("}\n");
    } else {
      std::string_view on, off;
      if (colour) {
        on = e.status >= 500 ? "\x1b[31m" : e.status >= 400 ? "\x1b[33m" : "\x1b[32m";
        off = "\x1b[0m";
      }
      auto or_dash = [](std::string_view v) { return v.empty() ? std::string_view("-") : v; };
      o.raw(stamp);
      o.ch(' ');
      o.text(e.listener);
      o.ch(' ');
      o.text(e.client);
      o.lit(" \"");
      o.text(e.method);
      o.ch(' ');
      o.text(e.host);
      o.text(e.target);
      if (!e.protocol.empty()) {
        o.ch(' ');
        o.text(e.protocol);
      }
      o.lit("\" ");
      o.raw(on);
      o.number(static_cast<uint64_t>(e.status));
      o.raw(off);
      o.lit(" in=");
      o.number(e.bytes_in);
      o.lit(" out=");
      o.number(e.bytes_out);
      o.ch(' ');
      o.ms(e.duration_us);
      o.lit("ms upstream=");
      if (e.upstream_us) {
        o.ms(e.upstream_us);
        o.lit("ms");
      } else {
        o.ch('-');
      }
      o.ch(' ');
      o.text(or_dash(e.cluster));
      o.ch(' ');
      o.text(or_dash(e.upstream));
      if (e.reused) {
        o.lit(" reused");
      } else {
        o.lit(" new");
      }
      o.lit(" id=");
      o.text(or_dash(e.request_id));
      if (!e.reason.empty()) {
        o.lit(" reason=");
        o.text(e.reason);
      }
      if (e.grpc_status >= 0) {
        o.lit(" grpc_status=");
        o.number(static_cast<uint64_t>(e.grpc_status));
      }
      o.ch('\n');
    }
  }
  ++lines_;
  if (buffer_.size() >= kFlushBytes) flush();
}

void AccessLog::flush() {
  if (buffer_.empty()) return;
  if (!sink_ || !sink_->submit(buffer_)) {
    dropped_.add(lines_);
    buffer_.clear();
  }
  lines_ = 0;
  // With no spare to take back (the writer has not written its queue yet), the buffer is a new
  // empty string: reserved at once for a whole hand-over, it never grows line by line (each
  // doubling copies everything so far; that was 460 instructions per request under load).
  if (buffer_.capacity() < kFlushBytes + kLineRoom) buffer_.reserve(kFlushBytes + kLineRoom);
}

}  // namespace sluice
