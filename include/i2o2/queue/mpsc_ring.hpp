#pragma once
/// A bounded lock-free multi-producer single-consumer array queue.
///
/// Each cell carries a sequence number (D. Vyukov's bounded queue): a cell
/// is free for ticket `t` when its sequence is `t`, full when it is `t + 1`,
/// and the consumer frees it for the next lap by setting `t + capacity`.
/// Producers claim tickets with a CAS on `tail`; the single consumer owns
/// `head` and never needs an atomic RMW.

#include "concept.hpp"

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace i2o2 {

namespace detail {
inline constexpr std::size_t cache_line = 64;
}

template <class T>
class mpsc_ring_queue {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "mpsc_ring_queue needs a nothrow move constructor: a throwing move would "
                "leave a claimed cell empty forever");
  static_assert(std::is_nothrow_destructible_v<T>, "mpsc_ring_queue needs a nothrow destructor");

public:
  /// `capacity` is rounded up to a power of two, and to at least 2.
  explicit mpsc_ring_queue(std::size_t capacity)
      : mask_(std::bit_ceil(capacity < 2 ? std::size_t{2} : capacity) - 1),
        cells_(std::make_unique<cell[]>(mask_ + 1)) {
    for (std::size_t i = 0; i <= mask_; ++i)
      cells_[i].sequence.store(i, std::memory_order_relaxed);
  }

  mpsc_ring_queue(const mpsc_ring_queue&) = delete;
  mpsc_ring_queue& operator=(const mpsc_ring_queue&) = delete;

  ~mpsc_ring_queue() {
    while (pop_batch(mask_ + 1, [](T&) noexcept { return true; }) != 0) {
    }
  }

  /// Any thread. Moves from `value` only when it returns true.
  bool try_push(T& value) noexcept { return try_push_many(std::span<T>(&value, 1)); }

  /// Any thread. All of `values` land contiguously, or none (false: no room
  /// right now, or never: more values than the capacity).
  bool try_push_many(std::span<T> values) noexcept {
    const std::size_t count = values.size();
    if (count == 0) return true;
    if (count > capacity()) return false;
    std::uint64_t first = producer_.tail.load(std::memory_order_relaxed);
    for (;;) {
      // Cells are freed in ticket order, so if the last cell we need is free
      // for this lap, every cell before it is too.
      const std::uint64_t last = first + count - 1;
      const std::uint64_t sequence = cells_[last & mask_].sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::int64_t>(sequence - last);
      if (lag == 0) {
        if (producer_.tail.compare_exchange_weak(first, first + count, std::memory_order_relaxed)) break;
      } else if (lag < 0) {
        return false;  // full: the consumer has not freed that cell yet
      } else {
        first = producer_.tail.load(std::memory_order_relaxed);  // another producer moved on
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      cell& target = cells_[(first + i) & mask_];
      ::new (static_cast<void*>(target.storage)) T(std::move(values[i]));
      // Release: the consumer that sees the sequence sees the value.
      target.sequence.store(first + i + 1, std::memory_order_release);
    }
    return true;
  }

  /// Scheduler thread only. Offers up to `max` values in order; see the
  /// queue concept.
  template <class Consume>
  std::size_t pop_batch(std::size_t max, Consume&& consume) noexcept {
    std::size_t popped = 0;
    while (popped < max) {
      cell& source = cells_[consumer_.head & mask_];
      // Acquire pairs with the producer's release of this cell.
      if (source.sequence.load(std::memory_order_acquire) != consumer_.head + 1) break;
      T* value = std::launder(reinterpret_cast<T*>(source.storage));
      if (!consume(*value)) break;
      value->~T();
      // Release: a producer that sees the new lap may overwrite the cell.
      source.sequence.store(consumer_.head + mask_ + 1, std::memory_order_release);
      ++consumer_.head;
      ++popped;
    }
    return popped;
  }

  /// Scheduler thread only. A value claimed but not yet published counts as
  /// empty; its producer wakes the scheduler after publishing it.
  bool empty() const noexcept {
    return cells_[consumer_.head & mask_].sequence.load(std::memory_order_acquire) != consumer_.head + 1;
  }

  std::size_t capacity() const noexcept { return mask_ + 1; }

private:
  struct cell {
    std::atomic<std::uint64_t> sequence;
    alignas(T) std::byte storage[sizeof(T)];
  };

  // Read-only after construction: shared by everyone without contention.
  const std::size_t mask_;
  const std::unique_ptr<cell[]> cells_;
  // Written by every producer.
  struct alignas(detail::cache_line) producer_line {
    std::atomic<std::uint64_t> tail{0};
  };
  // Written by the consumer only; on its own line so producers' CAS traffic
  // on the tail does not evict it.
  struct alignas(detail::cache_line) consumer_line {
    std::uint64_t head = 0;
  };
  static_assert(sizeof(producer_line) == detail::cache_line && sizeof(consumer_line) == detail::cache_line,
                "producer and consumer indices must each fill a whole cache line");

  producer_line producer_;
  consumer_line consumer_;
};

namespace queue {
/// The bounded lock-free MPSC queue (the default).
struct mpsc_ring {
  template <class T>
  using queue = mpsc_ring_queue<T>;
};
static_assert(queue_family<mpsc_ring>);
}  // namespace queue

}  // namespace i2o2
