#pragma once
/// A bounded ring buffer behind one mutex: simple, robust, the reference
/// for correctness the lock-free queue is checked against.

#include "concept.hpp"
#include "mpsc_ring.hpp"  // detail::cache_line

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

namespace i2o2 {

template <class T>
class mutex_ring_queue {
  static_assert(std::is_nothrow_move_constructible_v<T>, "mutex_ring_queue needs a nothrow move constructor");

public:
  explicit mutex_ring_queue(std::size_t capacity)
      : capacity_(capacity == 0 ? 1 : capacity), cells_(std::make_unique<cell[]>(capacity_)) {}
  mutex_ring_queue(const mutex_ring_queue&) = delete;
  mutex_ring_queue& operator=(const mutex_ring_queue&) = delete;
  ~mutex_ring_queue() {
    while (pop_batch(capacity_, [](T&) noexcept { return true; }) != 0) {
    }
  }

  bool try_push(T& value) noexcept { return try_push_many(std::span<T>(&value, 1)); }

  bool try_push_many(std::span<T> values) noexcept {
    std::lock_guard lock(mutex_);
    if (values.size() > capacity_ - size_) return false;
    for (T& value : values) {
      ::new (static_cast<void*>(cells_[(head_ + size_) % capacity_].storage)) T(std::move(value));
      ++size_;
    }
    // Relaxed is enough: empty() is a hint the scheduler re-checks under
    // the lock in pop_batch, and the park protocol has its own fences.
    published_.store(size_, std::memory_order_relaxed);
    return true;
  }

  template <class Consume>
  std::size_t pop_batch(std::size_t max, Consume&& consume) noexcept {
    std::lock_guard lock(mutex_);
    std::size_t popped = 0;
    while (popped < max && size_ != 0) {
      T* value = std::launder(reinterpret_cast<T*>(cells_[head_].storage));
      if (!consume(*value)) break;
      value->~T();
      head_ = (head_ + 1) % capacity_;
      --size_;
      ++popped;
    }
    published_.store(size_, std::memory_order_relaxed);
    return popped;
  }

  /// Scheduler thread. Lock-free so that the park re-check stays cheap.
  bool empty() const noexcept { return published_.load(std::memory_order_seq_cst) == 0; }
  std::size_t capacity() const noexcept { return capacity_; }

private:
  struct cell {
    alignas(T) std::byte storage[sizeof(T)];
  };

  const std::size_t capacity_;
  const std::unique_ptr<cell[]> cells_;
  alignas(detail::cache_line) std::mutex mutex_;
  std::size_t head_ = 0;  // guarded by mutex_
  std::size_t size_ = 0;  // guarded by mutex_
  // size_ as last published, for lock-free empty().
  std::atomic<std::size_t> published_{0};
};

namespace queue {
/// The mutex-protected ring buffer.
struct mutex_ring {
  template <class T>
  using queue = mutex_ring_queue<T>;
};
static_assert(queue_family<mutex_ring>);
}  // namespace queue

}  // namespace i2o2
