#include "server/file_watch.h"

#include <cstdio>

namespace sluice {

struct FileWatch::Handles {
  uv_fs_event_t event;
  uv_timer_t timer;
  FileWatch* owner = nullptr;  // null once closed: late callbacks do nothing
  int open = 2;                // handles not closed yet (initialising them cannot fail)

  static void closed(uv_handle_t* h) {
    auto* self = static_cast<Handles*>(h->data);
    if (--self->open == 0) delete self;
  }
};

FileWatch::FileWatch(uv_loop_t* loop, std::string path, uint64_t settle_ms, Changed changed)
    : path_(std::move(path)),
      settle_ms_(settle_ms),
      changed_(std::move(changed)),
      handles_(new Handles) {
  handles_->owner = this;
  handles_->event.data = handles_->timer.data = handles_;
  uv_fs_event_init(loop, &handles_->event);
  uv_timer_init(loop, &handles_->timer);
  readable_ = read(path_, content_);
}

FileWatch::~FileWatch() {
  close();
}

bool FileWatch::start(std::string& error) {
  if (!handles_) {
    error = "the watch is closed";
    return false;
  }
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
  int r = uv_fs_event_start(&handles_->event, &FileWatch::on_event, dir.c_str(), 0);
  if (r != 0) {
    error = "cannot watch " + dir + ": " + uv_strerror(r);
    return false;
  }
  return true;
}

void FileWatch::close() {
  Handles* h = handles_;
  if (!h) return;
  handles_ = nullptr;
  h->owner = nullptr;
  // Closing stops them; the block is freed by the second close callback.
  uv_close(reinterpret_cast<uv_handle_t*>(&h->event), &Handles::closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&h->timer), &Handles::closed);
}

void FileWatch::on_event(uv_fs_event_t* e, const char*, int, int) {
  auto* h = static_cast<Handles*>(e->data);
  if (!h->owner) return;
  // Any change in the directory: the file's own name, a temporary file renamed over it, or
  // a symlink swap. Settle, then compare the bytes.
  uv_timer_start(&h->timer, &FileWatch::on_settled, h->owner->settle_ms_, 0);
}

void FileWatch::on_settled(uv_timer_t* t) {
  auto* h = static_cast<Handles*>(t->data);
  FileWatch* self = h->owner;
  if (!self) return;
  std::string now;
  const bool readable = read(self->path_, now);
  // A file being replaced can be missing for a moment: wait for it to come back.
  if (!readable || (self->readable_ && now == self->content_)) return;
  self->content_ = std::move(now);
  self->readable_ = true;
  // The callback may close or destroy this watch: it runs from a copy, and nothing of the
  // watch is used after it.
  const Changed changed = self->changed_;
  changed();
}

bool FileWatch::read(const std::string& path, std::string& out) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return false;
  out.clear();
  char buf[16384];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool ok = !ferror(f);
  fclose(f);
  return ok;
}

}  // namespace sluice
