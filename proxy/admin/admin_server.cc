#include "admin/admin_server.h"

#include "core/log.h"
#include "http/parser.h"
#include "http/rewrite.h"
#include "net/tcp_stream.h"

namespace sluice {

// One admin client connection; a request body is kept up to kMaxAdminBody (POST /bans).
class AdminServer::Connection final : public ListNode, private StreamHandler, private BodySink {
 public:
  Connection(AdminServer& server)
      : server_(server), stream_(server.ctx_, this), parser_(HTTP_REQUEST, this) {
    parser_.set_limits(16 * 1024);
  }
  int accept(uv_stream_t* s) {
    int r = stream_.accept(s);
    if (r == 0) {
      client_ip_ = stream_.peer_ip();
      stream_.read_start();
    }
    return r;
  }
  static bool is_loopback(std::string_view ip) {
    return ip.substr(0, 4) == "127." || ip == "::1" || ip.substr(0, 11) == "::ffff:127.";
  }
  void close() {
    if (closed_) return;
    closed_ = true;
    server_.connections_.remove(this);
    std::erase(server_.deferred_, this);
    stream_.close();
  }
  void answer_deferred(const AdminResponse& resp) {
    waiting_ = false;
    respond(resp, true, false);
  }

 private:
  void on_stream_read(const Slice& data) override {
    if (waiting_) return;  // one request at a time; a deferred one is still open
    Slice rest = data;
    while (!closed_) {
      ParseResult r = parser_.execute(rest);
      rest = rest.sub(r.consumed, rest.len - r.consumed);
      if (r.event == ParseEvent::kNeedMore) return;
      if (r.event == ParseEvent::kUpgrade) {  // no protocol switches here
        close();
        return;
      }
      if (r.event == ParseEvent::kError) {
        respond(AdminResponse{parser_.error_status(), "text/plain", "bad request\n"}, true, false);
        return;
      }
      if (r.event == ParseEvent::kMessageComplete) {
        const MessageHead& req = parser_.head();
        std::string_view url = req.url();
        if (body_too_long_) {
          body_.clear();
          body_too_long_ = false;
          respond(AdminResponse{413, "text/plain", "request body too long\n"}, true, false);
          return;
        }
        AdminRequest ar{req, url.substr(0, url.find('?')), client_ip_, is_loopback(client_ip_),
                        body_};
        AdminResponse resp = server_.handler_(ar);
        body_.clear();
        if (resp.deferred) {
          waiting_ = true;
          server_.deferred_.push_back(this);
          return;
        }
        respond(resp, !req.keep_alive, req.method == HTTP_HEAD);
      }
    }
  }
  void respond(const AdminResponse& resp, bool close, bool head_only) {
    BlockWriter w(server_.ctx_.blocks, resp.body.size() + 256);
    write_simple_response(w, resp.status, resp.content_type, resp.body, close, head_only);
    if (stream_.write(w.finish()) != 0 || close) {
      stream_.shutdown();
      closing_ = true;
    }
  }
  void on_stream_eof() override { close(); }
  void on_stream_error(int) override { close(); }
  void on_stream_drained() override {}
  void on_stream_closed() override { delete this; }
  void on_body(const Slice& data) override {
    if (body_.size() + data.len > kMaxAdminBody) {
      body_too_long_ = true;
      return;
    }
    body_.append(data.view());
  }

  AdminServer& server_;
  TcpStream stream_;
  HttpParser parser_;
  std::string client_ip_;
  std::string body_;
  bool body_too_long_ = false;
  bool closed_ = false;
  bool closing_ = false;
  bool waiting_ = false;
};

std::string_view AdminRequest::header(std::string_view name) const {
  size_t i = head.find(name);
  return i == std::string_view::npos ? std::string_view() : head.value(i);
}

AdminServer::AdminServer(LoopContext& ctx, Handler handler)
    : ctx_(ctx), handler_(std::move(handler)) {}

AdminServer::~AdminServer() {
  close();
}

int AdminServer::start(int fd) {
  listener_ = std::make_unique<Listener>(ctx_.loop, [this](uv_stream_t* s) {
    auto* c = new Connection(*this);
    connections_.push_back(c);
    if (c->accept(s) != 0) c->close();
  });
  return listener_->open(fd, 128);
}

void AdminServer::complete_deferred(const AdminResponse& response) {
  std::vector<Connection*> waiting;
  waiting.swap(deferred_);
  for (Connection* c : waiting) c->answer_deferred(response);
}

void AdminServer::close() {
  if (closed_) return;
  closed_ = true;
  if (listener_) listener_->close(nullptr);
  connections_.for_each([](Connection* c) { c->close(); });
}

}  // namespace sluice
