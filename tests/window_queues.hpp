#pragma once
// Queue families for tests that open, every time, a window a real queue
// opens only by chance:
//  - late_members: a multi-value push (a chain, a batch) whose later values
//    are not offered in the pop_batch call that takes its first, as when
//    the scheduler pulls while the producer of an mpsc_ring is still
//    publishing its cells one by one;
//  - refusing: a push refused as full once, when the test asks, as when the
//    queue is full at a producer's first try and has room again by its
//    retry (the scheduler popped in between); on request the refusal is
//    held until released, as a producer descheduled mid-push would hold
//    the gate.
// Both wrap the library's own queues, so everything else is the real thing.

#include <i2o2/queue/concept.hpp>
#include <i2o2/queue/mpsc_ring.hpp>
#include <i2o2/queue/mutex_ring.hpp>

#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>
#include <span>
#include <thread>

namespace i2o2_test {

/// What late_members did, for every instantiation: a test checks that the
/// window it relies on was really open.
struct late_members_record {
  static inline std::atomic<int> held_back{0};  // pop_batch calls that stopped before a member
};

template <class T>
class late_members_queue {
public:
  explicit late_members_queue(std::size_t capacity) : inner_(capacity) {}

  bool try_push(T& value) noexcept { return try_push_many(std::span<T>(&value, 1)); }

  bool try_push_many(std::span<T> values) noexcept {
    // The sizes go in the same order as the values they describe.
    std::lock_guard lock(sizes_mutex_);
    if (!inner_.try_push_many(values)) return false;
    push_sizes_.push_back(values.size());
    return true;
  }

  template <class Consume>
  std::size_t pop_batch(std::size_t max, Consume&& consume) noexcept {
    bool first_taken_here = false;  // of a push of several values, in this call
    return inner_.pop_batch(max, [&](T& value) noexcept {
      if (members_left_ == 0) {  // the first value of a push
        const std::size_t size = front_size();
        if (!consume(value)) return false;
        drop_front_size();
        members_left_ = size - 1;
        first_taken_here = size > 1;
        return true;
      }
      if (first_taken_here) {  // "not published yet": offered by the next call
        late_members_record::held_back.fetch_add(1);
        return false;
      }
      if (!consume(value)) return false;
      --members_left_;
      return true;
    });
  }

  bool empty() const noexcept { return inner_.empty(); }
  std::size_t capacity() const noexcept { return inner_.capacity(); }

private:
  std::size_t front_size() {
    std::lock_guard lock(sizes_mutex_);
    return push_sizes_.front();
  }
  void drop_front_size() {
    std::lock_guard lock(sizes_mutex_);
    push_sizes_.pop_front();
  }

  i2o2::mutex_ring_queue<T> inner_;
  std::mutex sizes_mutex_;
  std::deque<std::size_t> push_sizes_;  // one per push still (partly) queued
  std::size_t members_left_ = 0;        // consumer only: of the push being taken
};

struct late_members {
  template <class T>
  using queue = late_members_queue<T>;
};
static_assert(i2o2::queue_family<late_members>);

/// The switch and the count of refusing, for every instantiation.
struct refusing_record {
  static inline std::atomic<bool> refuse_next{false};  // refuse the next push as full
  static inline std::atomic<int> refused{0};
  static inline std::atomic<bool> hold_refusal{false};  // the refused push returns once this is false
  static inline std::atomic<int> pop_batches{0};        // the scheduler's looks at the queue
};

template <class T>
class refusing_queue {
public:
  explicit refusing_queue(std::size_t capacity) : inner_(capacity) {}

  bool try_push(T& value) noexcept { return try_push_many(std::span<T>(&value, 1)); }
  bool try_push_many(std::span<T> values) noexcept {
    if (refusing_record::refuse_next.exchange(false)) {
      refusing_record::refused.fetch_add(1);
      while (refusing_record::hold_refusal.load())
        std::this_thread::yield();
      return false;
    }
    return inner_.try_push_many(values);
  }
  template <class Consume>
  std::size_t pop_batch(std::size_t max, Consume&& consume) noexcept {
    refusing_record::pop_batches.fetch_add(1);
    return inner_.pop_batch(max, consume);
  }
  bool empty() const noexcept { return inner_.empty(); }
  std::size_t capacity() const noexcept { return inner_.capacity(); }

private:
  typename i2o2::queue::mpsc_ring::template queue<T> inner_;
};

struct refusing {
  template <class T>
  using queue = refusing_queue<T>;
};
static_assert(i2o2::queue_family<refusing>);

}  // namespace i2o2_test
