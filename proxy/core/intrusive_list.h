#pragma once
// A minimal intrusive doubly-linked list: O(1) insert/remove with no allocation, so that
// connections can move between pool states (connecting / idle / busy) on the hot path.
#include <cstddef>

namespace sluice {

struct ListNode {
  ListNode* prev = nullptr;
  ListNode* next = nullptr;
  bool linked() const { return next != nullptr; }
  void unlink() {
    if (!next) return;
    prev->next = next;
    next->prev = prev;
    prev = next = nullptr;
  }
};

// T must derive from ListNode (once per list it belongs to, via a tag base if needed).
template <typename T, typename Node = ListNode>
class IntrusiveList {
 public:
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == &head_; }
  size_t size() const { return size_; }
  void push_front(T* t) { insert_after(&head_, node(t)); }
  void push_back(T* t) { insert_after(head_.prev, node(t)); }
  T* front() const { return empty() ? nullptr : item(head_.next); }
  T* back() const { return empty() ? nullptr : item(head_.prev); }
  void remove(T* t) {
    Node* n = node(t);
    if (!n->linked()) return;
    n->unlink();
    --size_;
  }
  T* pop_front() {
    T* t = front();
    if (t) remove(t);
    return t;
  }
  // Calls f on every element; f may remove the element it is given.
  template <typename F>
  void for_each(F&& f) {
    for (ListNode* n = head_.next; n != &head_;) {
      ListNode* next = n->next;
      f(item(n));
      n = next;
    }
  }

 private:
  static Node* node(T* t) { return static_cast<Node*>(t); }
  static T* item(ListNode* n) { return static_cast<T*>(static_cast<Node*>(n)); }
  void insert_after(ListNode* pos, ListNode* n) {
    n->prev = pos;
    n->next = pos->next;
    pos->next->prev = n;
    pos->next = n;
    ++size_;
  }
  ListNode head_;
  size_t size_ = 0;
};

}  // namespace sluice
