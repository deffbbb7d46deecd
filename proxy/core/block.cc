#include "core/block.h"

#include <cstdlib>
#include <new>

namespace sluice {

BlockPool::~BlockPool() {
  for (Block* b : free_) std::free(b);
}

BlockRef BlockPool::get(size_t min_capacity) {
  Block* b;
  if (min_capacity <= kBlockSize && !free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    size_t cap = min_capacity <= kBlockSize ? kBlockSize : min_capacity;
    b = static_cast<Block*>(std::malloc(sizeof(Block) + cap));
    if (!b) throw std::bad_alloc();
    b->pool = this;
    b->capacity = static_cast<uint32_t>(cap);
  }
  b->refs = 1;
  b->used = 0;
  ++outstanding_;
  return BlockRef(b);
}

BlockRef BlockPool::get_small(size_t capacity) {
  auto* b = static_cast<Block*>(std::malloc(sizeof(Block) + capacity));
  if (!b) throw std::bad_alloc();
  b->pool = this;
  b->capacity = static_cast<uint32_t>(capacity);
  b->refs = 1;
  b->used = 0;
  ++outstanding_;
  return BlockRef(b);
}

void BlockPool::put(Block* b) {
  --outstanding_;
  if (b->capacity == kBlockSize && free_.size() < max_free_) {
    free_.push_back(b);
  } else {
    std::free(b);
  }
}

void BlockWriter::grow(size_t n) {
  size_t cap = block_->capacity;
  while (cap < block_->used + n) cap *= 2;
  BlockRef bigger = block_->pool->get(cap);
  std::memcpy(bigger->data(), block_->data(), block_->used);
  bigger->used = block_->used;
  block_ = std::move(bigger);
}

void BlockWriter::append_decimal(uint64_t v) {
  char tmp[24];
  int i = sizeof tmp;
  do {
    tmp[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  append(std::string_view(tmp + i, sizeof tmp - i));
}

void BlockWriter::append_hex(uint64_t v) {
  static const char kDigits[] = "0123456789abcdef";
  char tmp[20];
  int i = sizeof tmp;
  do {
    tmp[--i] = kDigits[v & 15];
    v >>= 4;
  } while (v);
  append(std::string_view(tmp + i, sizeof tmp - i));
}

}  // namespace sluice
