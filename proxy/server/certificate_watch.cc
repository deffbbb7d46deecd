#include "server/certificate_watch.h"

#include <set>
#include <string>

#include "core/log.h"

namespace sluice {

void CertificateWatch::watch(const Config& config) {
  unwatch();
  std::set<std::string> dirs;
  auto dir_of = [](const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash + 1);
  };
  for (const ListenerConfig& l : config.listeners) {
    if (!l.tls.enabled) continue;
    for (const TlsCertificate& c : l.tls.certificates) {
      dirs.insert(dir_of(c.cert));
      dirs.insert(dir_of(c.key));
    }
    if (!l.tls.client_ca.empty()) dirs.insert(dir_of(l.tls.client_ca));
  }
  for (const std::string& d : dirs) {
    auto* w = new uv_fs_event_t;
    uv_fs_event_init(loop_, w);
    w->data = this;
    int r = uv_fs_event_start(
        w,
        [](uv_fs_event_t* h, const char*, int, int) {
          static_cast<CertificateWatch*>(h->data)->on_event();
        },
        d.c_str(), 0);
    if (r != 0) {
      LOG_WARN("tls: cannot watch %s for certificate changes (%s); SIGHUP reloads them", d.c_str(),
               uv_strerror(r));
      uv_close(reinterpret_cast<uv_handle_t*>(w),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_fs_event_t*>(h); });
      continue;
    }
    watches_.push_back(w);
  }
}

void CertificateWatch::on_event() {
  if (!settle_) {
    settle_ = new uv_timer_t;
    uv_timer_init(loop_, settle_);
    settle_->data = this;
  }
  // A secret update is several events (new directory, symlink swap, old one removed): act once
  // they have settled.
  uv_timer_start(
      settle_, [](uv_timer_t* t) { static_cast<CertificateWatch*>(t->data)->changed_(); },
      settle_ms_, 0);
}

void CertificateWatch::unwatch() {
  for (uv_fs_event_t* w : watches_) {
    uv_fs_event_stop(w);
    uv_close(reinterpret_cast<uv_handle_t*>(w),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_fs_event_t*>(h); });
  }
  watches_.clear();
}

void CertificateWatch::close() {
  unwatch();
  if (settle_) {
    uv_close(reinterpret_cast<uv_handle_t*>(settle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    settle_ = nullptr;
  }
}

}  // namespace sluice
