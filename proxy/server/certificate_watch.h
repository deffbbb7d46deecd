#pragma once
// CertificateWatch: the directories holding the listeners' certificate, key and client CA
// files, watched for changes (a Kubernetes secret update swaps a symlink in the directory). A
// burst of events is acted on once it has been quiet for the settle time. Owns its
// uv_fs_event_t handles and the settle timer, each freed in its close callback. Owned by the
// Server.
#include <uv.h>

#include <functional>
#include <vector>

#include "core/config.h"

namespace sluice {

class CertificateWatch {
 public:
  CertificateWatch(uv_loop_t* loop, uint64_t settle_ms, std::function<void()> changed)
      : loop_(loop), settle_ms_(settle_ms), changed_(std::move(changed)) {}
  ~CertificateWatch() { close(); }
  CertificateWatch(const CertificateWatch&) = delete;
  CertificateWatch& operator=(const CertificateWatch&) = delete;

  // Watches the directories of `config`'s listener files (replacing an earlier watch).
  void watch(const Config& config);
  // Idempotent; no callback follows.
  void close();

 private:
  void unwatch();
  void on_event();

  uv_loop_t* loop_;
  uint64_t settle_ms_;
  std::function<void()> changed_;
  std::vector<uv_fs_event_t*> watches_;
  uv_timer_t* settle_ = nullptr;
};

}  // namespace sluice
