#pragma once
/// A bounded ring buffer behind one mutex: simple, robust, the reference
/// for correctness the lock-free queue is checked against.

#include "concept.hpp"
#include "mpsc_ring.hpp"  // detail::cache_line

#include <algorithm>
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
    std::lock_guard lock(locked_.mutex);
    if (values.size() > capacity_ - locked_.size) return false;
    for (T& value : values) {
      ::new (static_cast<void*>(cells_[(locked_.head + locked_.size) % capacity_].storage)) T(std::move(value));
      ++locked_.size;
    }
    // Relaxed is enough: empty() is a hint the scheduler re-checks under
    // the lock in pop_batch, and the park protocol has its own fences.
    published_.size.store(locked_.size, std::memory_order_relaxed);
    return true;
  }

  /// The one consumer. What is in when it starts is consumed outside the
  /// lock: producers only write cells past those (they still count in the
  /// size), and `consume` may push itself (a callback run on the scheduler
  /// thread submitting more) without deadlocking on the lock.
  template <class Consume>
  std::size_t pop_batch(std::size_t max, Consume&& consume) noexcept {
    std::size_t head = 0;
    std::size_t available = 0;
    {
      std::lock_guard lock(locked_.mutex);
      head = locked_.head;
      available = std::min(max, locked_.size);
    }
    std::size_t popped = 0;
    while (popped < available) {
      T* value = std::launder(reinterpret_cast<T*>(cells_[(head + popped) % capacity_].storage));
      if (!consume(*value)) break;
      value->~T();
      ++popped;
    }
    if (popped == 0) return 0;
    std::lock_guard lock(locked_.mutex);
    locked_.head = (locked_.head + popped) % capacity_;
    locked_.size -= popped;
    published_.size.store(locked_.size, std::memory_order_relaxed);
    return popped;
  }

  /// Scheduler thread. Lock-free so that the park re-check stays cheap.
  bool empty() const noexcept { return published_.size.load(std::memory_order_seq_cst) == 0; }
  std::size_t capacity() const noexcept { return capacity_; }

private:
  struct cell {
    alignas(T) std::byte storage[sizeof(T)];
  };

  // Producers and the consumer both write under the one lock, so there is
  // no producer/consumer split to make; what is split is (1) the constant
  // fields every push reads, (2) the lock's line, written by whoever holds
  // it, and (3) the size the idle scheduler polls without the lock: its
  // polling must not pull the lock's line away from a holder mid-push.
  struct alignas(detail::cache_line) locked_line {
    std::mutex mutex;
    std::size_t head = 0;
    std::size_t size = 0;
  };
  struct alignas(detail::cache_line) published_line {
    std::atomic<std::size_t> size{0};  // locked_line::size as last published
  };
  static_assert(alignof(locked_line) == detail::cache_line && sizeof(locked_line) % detail::cache_line == 0 &&
                    sizeof(published_line) == detail::cache_line,
                "mutex_ring_queue: the locked state and the polled size each fill whole cache lines");

  const std::size_t capacity_;
  const std::unique_ptr<cell[]> cells_;
  locked_line locked_;
  published_line published_;
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
