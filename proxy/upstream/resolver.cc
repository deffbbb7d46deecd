#include "upstream/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"

namespace sluice {

struct ClusterResolver::Lookup {
  uv_getaddrinfo_t req;
  ClusterResolver* owner;  // null once the resolver closed: the result is dropped
  size_t endpoint;
};

namespace {

std::string address_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

bool literal_address(const HostPort& hp, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (hp.is_unix()) {
    // The configuration checked that the path fits sun_path with its NUL.
    auto* un = reinterpret_cast<sockaddr_un*>(&out);
    if (hp.unix_path.size() >= sizeof un->sun_path) return false;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, hp.unix_path.data(), hp.unix_path.size());
    return true;
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, hp.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(hp.port);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, hp.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(hp.port);
    return true;
  }
  return false;
}

bool same_list(const AddressList& a, const AddressList& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!a[i].same_address(b[i])) return false;
  return true;
}

}  // namespace

ClusterResolver::ClusterResolver(uv_loop_t* loop, ClusterConfig config, OnChange on_change)
    : loop_(loop), config_(std::move(config)), on_change_(std::move(on_change)) {
  for (const HostPort& hp : config_.endpoints) {
    Endpoint e;
    e.host_port = hp;
    sockaddr_storage ss;
    if (literal_address(hp, ss)) {
      e.literal = true;
      e.last_good.push_back(UpstreamAddress{ss, hp.str(), hp.str()});
    } else if (hp.is_unix()) {
      // Not looked up either: an endpoint that never gets an address (the cluster has none).
      e.literal = true;
      LOG_ERROR("cluster %s: %s: the path does not fit a socket address", config_.name.c_str(),
                hp.str().c_str());
    }
    endpoints_.push_back(std::move(e));
  }
}

ClusterResolver::~ClusterResolver() {
  close();
}

void ClusterResolver::start() {
  start_round();
}

void ClusterResolver::start_round() {
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].literal) continue;
    auto* l = new Lookup{{}, this, i};
    l->req.data = l;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const HostPort& hp = endpoints_[i].host_port;
    int r = uv_getaddrinfo(
        loop_, &l->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          auto* lookup = static_cast<Lookup*>(req->data);
          if (ClusterResolver* self = lookup->owner) {
            std::erase(self->in_flight_, lookup);
            self->lookup_done(lookup->endpoint, status, res);
          }
          uv_freeaddrinfo(res);
          delete lookup;
        },
        hp.host.c_str(), std::to_string(hp.port).c_str(), &hints);
    if (r != 0) {
      delete l;
      LOG_WARN("cluster %s: cannot look up %s: %s", config_.name.c_str(), hp.host.c_str(),
               uv_strerror(r));
      continue;
    }
    in_flight_.push_back(l);
  }
  if (in_flight_.empty()) finish_round();
}

void ClusterResolver::lookup_done(size_t endpoint, int status, addrinfo* res) {
  Endpoint& e = endpoints_[endpoint];
  if (status != 0) {
    LOG_WARN("cluster %s: DNS lookup of %s failed: %s%s", config_.name.c_str(),
             e.host_port.host.c_str(), uv_strerror(status),
             e.last_good.empty() ? "" : " (keeping the last good addresses)");
  } else {
    AddressList found;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
      UpstreamAddress a;
      std::memcpy(&a.address, ai->ai_addr, ai->ai_addrlen);
      bool dup = std::any_of(found.begin(), found.end(),
                             [&](const UpstreamAddress& f) { return f.same_address(a); });
      if (dup) continue;
      a.endpoint = e.host_port.str();
      a.name = a.endpoint + " (" + address_text(a.address) + ")";
      found.push_back(std::move(a));
    }
    if (found.empty()) {
      LOG_WARN("cluster %s: %s has no address", config_.name.c_str(), e.host_port.host.c_str());
    } else {
      e.last_good = std::move(found);
    }
  }
  if (in_flight_.empty()) finish_round();
}

void ClusterResolver::finish_round() {
  ++rounds_;
  AddressList all;
  bool missing = false;
  for (const Endpoint& e : endpoints_) {
    if (e.last_good.empty()) missing = true;
    for (const UpstreamAddress& a : e.last_good) {
      bool dup = std::any_of(all.begin(), all.end(),
                             [&](const UpstreamAddress& f) { return f.same_address(a); });
      if (!dup) all.push_back(a);
    }
  }
  bool changed = !same_list(all, addresses_) || rounds_ == 1;
  addresses_ = std::move(all);
  if (changed) {
    if (rounds_ > 1)
      LOG_INFO("cluster %s: addresses changed, now %zu", config_.name.c_str(), addresses_.size());
    if (on_change_) on_change_(addresses_);
  }
  bool any_name = std::any_of(endpoints_.begin(), endpoints_.end(),
                              [](const Endpoint& e) { return !e.literal; });
  if (!any_name || closed_) return;
  uint64_t refresh = static_cast<uint64_t>(std::max<int64_t>(config_.dns_refresh.count(), 1));
  if (missing) {
    schedule(std::min(retry_ms_, refresh));
    retry_ms_ = std::min(retry_ms_ * 2, refresh);
  } else {
    retry_ms_ = 1000;
    schedule(refresh);
  }
}

void ClusterResolver::schedule(uint64_t ms) {
  if (!timer_) {
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
  }
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<ClusterResolver*>(t->data)->start_round(); }, ms, 0);
}

void ClusterResolver::close() {
  if (closed_) return;
  closed_ = true;
  for (Lookup* l : in_flight_) {
    l->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&l->req));  // best effort; the callback frees it
  }
  in_flight_.clear();
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

}  // namespace sluice
