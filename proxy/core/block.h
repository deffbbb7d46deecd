#pragma once
// Read and write memory: reference-counted blocks handed out by a per-worker pool.
//
// A Block is owned by whoever holds BlockRefs to it; the last ref returns it to its pool's free
// list (or frees it when oversized). Blocks never cross threads, so the count is a plain
// integer. An idle connection holds no block: reads borrow one in alloc_cb and give it back
// as soon as the bytes are parsed or forwarded.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

class BlockPool;

struct Block {
  BlockPool* pool;
  uint32_t refs;
  uint32_t capacity;
  uint32_t used;  // bytes written so far (for writers that fill a block)
  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
};

class BlockRef {
 public:
  BlockRef() = default;
  explicit BlockRef(Block* b) : b_(b) {}  // adopts one reference
  BlockRef(const BlockRef& o) : b_(o.b_) {
    if (b_) ++b_->refs;
  }
  BlockRef(BlockRef&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  BlockRef& operator=(BlockRef o) noexcept {
    std::swap(b_, o.b_);
    return *this;
  }
  ~BlockRef() { reset(); }
  void reset();
  Block* get() const { return b_; }
  Block* operator->() const { return b_; }
  explicit operator bool() const { return b_ != nullptr; }

 private:
  Block* b_ = nullptr;
};

// A view into a block that keeps the block alive.
struct Slice {
  BlockRef block;
  const char* data = nullptr;
  size_t len = 0;

  std::string_view view() const { return {data, len}; }
  Slice sub(size_t off, size_t n) const { return Slice{block, data + off, n}; }
};

// Slices queued for writing, oldest first: a vector taken from the front. (A std::deque would
// allocate its map and a first node when it is made, for every HTTP/2 stream.)
class SliceQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  const Slice& front() const { return items_[head_]; }
  void push_back(Slice s) { items_.push_back(std::move(s)); }
  void pop_front() {
    items_[head_++] = Slice();  // its block goes back now
    off_ = 0;
    if (head_ == items_.size()) clear();
  }
  // Copies up to `len` bytes from the front into `buf` and consumes them (an HTTP/2 data
  // provider filling a DATA frame). Returns the bytes copied.
  size_t take(uint8_t* buf, size_t len) {
    size_t n = 0;
    while (n < len && !empty()) {
      const Slice& s = front();
      size_t k = s.len - off_ < len - n ? s.len - off_ : len - n;
      std::memcpy(buf + n, s.data + off_, k);
      n += k;
      off_ += k;
      if (off_ == s.len) pop_front();
    }
    return n;
  }
  void clear() {
    items_.clear();
    head_ = 0;
    off_ = 0;
  }

 private:
  std::vector<Slice> items_;
  size_t head_ = 0;
  size_t off_ = 0;  // bytes of the front slice already taken
};

// Per-worker block allocator with a bounded free list.
class BlockPool {
 public:
  static constexpr uint32_t kBlockSize = 16 * 1024;

  explicit BlockPool(size_t max_free = 256) : max_free_(max_free) {}
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block with at least `min_capacity` bytes (the standard size unless larger is needed).
  BlockRef get(size_t min_capacity = kBlockSize);
  // An exact-size block for a few bytes (chunk headers), freed rather than pooled.
  BlockRef get_small(size_t capacity);
  size_t outstanding() const { return outstanding_; }

 private:
  friend class BlockRef;
  void put(Block* b);

  std::vector<Block*> free_;
  size_t max_free_;
  size_t outstanding_ = 0;
};

inline void BlockRef::reset() {
  if (b_ && --b_->refs == 0) b_->pool->put(b_);
  b_ = nullptr;
}

// Appends bytes into pool blocks; used to serialize heads and small responses.
class BlockWriter {
 public:
  explicit BlockWriter(BlockPool& pool, size_t hint = 0)
      : BlockWriter(pool.get(hint > BlockPool::kBlockSize ? hint : BlockPool::kBlockSize)) {}
  explicit BlockWriter(BlockRef block) : block_(std::move(block)) { block_->used = 0; }
  void append(std::string_view s) {
    reserve(s.size());
    std::memcpy(block_->data() + block_->used, s.data(), s.size());
    block_->used += static_cast<uint32_t>(s.size());
  }
  void append(char c) {
    reserve(1);
    block_->data()[block_->used++] = c;
  }
  void append_decimal(uint64_t v);
  void append_hex(uint64_t v);
  size_t size() const { return block_->used; }
  // Hands over the written bytes as one slice; the writer must not be used afterwards.
  Slice finish() {
    Slice s{block_, block_->data(), block_->used};
    return s;
  }

 private:
  void reserve(size_t n) {
    if (block_->used + n > block_->capacity) grow(n);
  }
  void grow(size_t n);
  BlockRef block_;
};

}  // namespace sluice
