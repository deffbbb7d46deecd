#include "demo/demo_app.h"

#include <charconv>
#include <string>

#include "http/parser.h"
#include "http/rewrite.h"
#include "net/tcp_stream.h"

namespace sluice {

namespace {
constexpr size_t kFill = 64 * 1024;
const char* fill_bytes() {
  static const std::string fill(kFill, 'x');
  return fill.data();
}

bool parse_tail(std::string_view url, std::string_view prefix, uint64_t& out) {
  if (url.substr(0, prefix.size()) != prefix) return false;
  std::string_view n = url.substr(prefix.size());
  auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), out);
  return ec == std::errc() && p == n.data() + n.size();
}
}  // namespace

class DemoApp::Connection final : public ListNode, private StreamHandler, private BodySink {
 public:
  explicit Connection(DemoApp& app)
      : app_(app), stream_(app.ctx_, this), parser_(HTTP_REQUEST, this) {
    uv_timer_init(app.ctx_.loop, &timer_);
    timer_.data = this;
  }
  int accept(uv_stream_t* s) {
    int r = stream_.accept(s);
    if (r == 0) stream_.read_start();
    return r;
  }
  void close() {
    if (closed_) return;
    closed_ = true;
    app_.connections_.remove(this);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
             [](uv_handle_t* h) { static_cast<Connection*>(h->data)->handle_closed(); });
    stream_.close();
  }

 private:
  void on_stream_read(const Slice& data) override {
    if (busy_ || held_.len) {  // one request at a time; pipelined bytes wait
      held_ = concat(held_, data);
      stream_.read_stop();
      return;
    }
    process(data);
  }
  Slice concat(const Slice& a, const Slice& b) {
    if (!a.len) return b;
    BlockWriter w(app_.ctx_.blocks, a.len + b.len);
    w.append(a.view());
    w.append(b.view());
    return w.finish();
  }
  void process(Slice rest) {
    while (!closed_) {
      if (busy_ && request_done_) {
        held_ = concat(held_, rest);
        if (held_.len) stream_.read_stop();
        return;
      }
      ParseResult r = parser_.execute(rest);
      rest = rest.sub(r.consumed, rest.len - r.consumed);
      if (r.event == ParseEvent::kNeedMore) return;
      if (r.event == ParseEvent::kUpgrade) {  // no protocol switches here
        close();
        return;
      }
      if (r.event == ParseEvent::kError) {
        simple(parser_.error_status(), "bad request\n", true);
        return;
      }
      if (r.event == ParseEvent::kHead) {
        busy_ = true;
        request_done_ = false;
        start(parser_.head());
      } else {
        request_done_ = true;
        if (echo_) {
          if (echo_chunked_) write(kLastChunk);
          echo_ = false;
          done();
        } else if (!busy_) {
          done();
        }
      }
    }
  }
  void start(const MessageHead& req) {
    keep_alive_ = req.keep_alive;
    std::string_view url = req.url();
    uint64_t n;
    if (url == "/" || url == "/index.html") {
      simple(200, "Hello from the sluice demo app\n", false);
    } else if (parse_tail(url, "/bytes/", n)) {
      BlockWriter w(app_.ctx_.blocks);
      w.append("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ");
      w.append_decimal(n);
      w.append(keep_alive_ ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
      write(w.finish());
      remaining_ = n;
      pump();
    } else if (parse_tail(url, "/status/", n) && n >= 200 && n <= 599) {
      simple(static_cast<int>(n), std::string(status_reason(static_cast<int>(n))) + "\n", false);
    } else if (parse_tail(url, "/delay/", n)) {
      uv_timer_start(
          &timer_,
          [](uv_timer_t* t) { static_cast<Connection*>(t->data)->simple(200, "delayed\n", false); },
          n, 0);
    } else if (url == "/echo") {
      echo_ = true;
      echo_chunked_ = !req.has_content_length;
      BlockWriter w(app_.ctx_.blocks);
      w.append("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n");
      if (echo_chunked_) {
        w.append("Transfer-Encoding: chunked\r\n");
      } else {
        w.append("Content-Length: ");
        w.append_decimal(req.content_length);
        w.append("\r\n");
      }
      if (!keep_alive_) w.append("Connection: close\r\n");
      w.append("\r\n");
      write(w.finish());
    } else {
      simple(404, "not found\n", false);
    }
  }
  void on_body(const Slice& data) override {
    if (!echo_) return;
    if (echo_chunked_) {
      Slice parts[3] = {chunk_header(app_.ctx_.blocks, data.len), data, kChunkEnd};
      if (stream_.write(parts, 3) != 0) close();
    } else {
      write(data);
    }
    if (stream_.above_high_watermark()) stream_.read_stop();
  }
  void pump() {
    while (remaining_ && !closed_ && !stream_.above_high_watermark()) {
      size_t n = remaining_ < kFill ? remaining_ : kFill;
      remaining_ -= n;
      write(Slice{BlockRef(), fill_bytes(), n});
    }
    if (!remaining_ && !closed_) done_if_read();
  }
  void done_if_read() {
    busy_ = false;
    if (request_done_) done();
  }
  void simple(int status, const std::string& body, bool close) {
    BlockWriter w(app_.ctx_.blocks);
    write_simple_response(w, status, "text/plain", body, close || !keep_alive_,
                          parser_.head().method == HTTP_HEAD);
    write(w.finish());
    if (close) keep_alive_ = false;
    done_if_read();
  }
  // The response is complete and the request fully read.
  void done() {
    busy_ = false;
    if (!keep_alive_) {
      stream_.shutdown();
      return;
    }
    parser_.release_memory();
    if (held_.len) {
      Slice h = std::move(held_);
      held_ = Slice();
      stream_.read_start();
      process(h);
    }
  }
  void write(const Slice& s) {
    if (!closed_ && stream_.write(s) != 0) close();
  }
  void on_stream_eof() override { close(); }
  void on_stream_error(int) override { close(); }
  void on_stream_drained() override {
    if (remaining_) pump();
    if (echo_) stream_.read_start();
  }
  void on_stream_closed() override { handle_closed(); }
  void handle_closed() {
    if (--open_handles_ == 0) delete this;
  }

  DemoApp& app_;
  TcpStream stream_;
  uv_timer_t timer_;
  HttpParser parser_;
  Slice held_;
  uint64_t remaining_ = 0;
  uint8_t open_handles_ = 2;
  bool closed_ = false;
  bool busy_ = false;
  bool request_done_ = false;
  bool keep_alive_ = true;
  bool echo_ = false;
  bool echo_chunked_ = false;
};

DemoApp::~DemoApp() {
  close();
}

int DemoApp::start(int fd) {
  listener_ = std::make_unique<Listener>(ctx_.loop, [this](uv_stream_t* s) {
    auto* c = new Connection(*this);
    connections_.push_back(c);
    if (c->accept(s) != 0) c->close();
  });
  return listener_->open(fd, 4096);
}

void DemoApp::close() {
  if (closed_) return;
  closed_ = true;
  if (listener_) listener_->close(nullptr);
  connections_.for_each([](Connection* c) { c->close(); });
}

}  // namespace sluice
