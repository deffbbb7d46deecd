#pragma once
// FileWatch: calls back when the content of one file changes (config reload on change, for
// local development). It watches the file's directory, since editors save by renaming a new
// file over the old one and Kubernetes updates a mounted ConfigMap by swapping a symlink; a
// burst of events is settled first, and the callback runs only when the bytes differ from the
// last ones seen. Owned by the Server on the main loop; its libuv handles live in a block that
// frees itself after both close callbacks, so the FileWatch may be destroyed right after
// close().
#include <uv.h>

#include <functional>
#include <string>

namespace sluice {

class FileWatch {
 public:
  using Changed = std::function<void()>;
  FileWatch(uv_loop_t* loop, std::string path, uint64_t settle_ms, Changed changed);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Starts watching; false (with the reason) when the directory cannot be watched.
  bool start(std::string& error);
  // Idempotent; no callback after it.
  void close();
  const std::string& path() const { return path_; }

 private:
  struct Handles;
  static void on_event(uv_fs_event_t* h, const char* name, int events, int status);
  static void on_settled(uv_timer_t* t);
  static bool read(const std::string& path, std::string& out);

  std::string path_;
  uint64_t settle_ms_;
  Changed changed_;
  std::string content_;  // as last seen
  bool readable_ = false;
  Handles* handles_;  // null once closed
};

}  // namespace sluice
