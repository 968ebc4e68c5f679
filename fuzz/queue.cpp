// Fuzz target: single-threaded (so deterministic) interleavings of push,
// push_many, pop_batch (consume taking or refusing values) and "close"
// (drain everything and destroy the queue, as the scheduler's destructor
// does, then start a fresh one) on both queue families, checked against a
// std::deque model: same results, same order, full exactly when the model
// is full (capacity as the queue reports it), nothing lost or duplicated
// (a live-value counter), Q1 of DESIGN.md.
#include "fuzz_common.hpp"

#include <i2o2/queue/mpsc_ring.hpp>
#include <i2o2/queue/mutex_ring.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace {

/// A value that counts live instances, so a lost or doubled destruction shows.
struct tracked {
  static inline long live = 0;
  std::uint64_t value = 0;
  bool engaged = false;
  tracked() noexcept = default;
  explicit tracked(std::uint64_t v) noexcept : value(v), engaged(true) { ++live; }
  tracked(tracked&& other) noexcept : value(other.value), engaged(std::exchange(other.engaged, false)) {}
  tracked& operator=(tracked&& other) noexcept {
    if (engaged) --live;
    value = other.value;
    engaged = std::exchange(other.engaged, false);
    return *this;
  }
  ~tracked() {
    if (engaged) --live;
  }
};

template <class Queue>
void exercise(FuzzedDataProvider& input, std::size_t requested_capacity) {
  auto queue = std::make_unique<Queue>(requested_capacity);
  std::size_t capacity = queue->capacity();
  if (capacity < requested_capacity || capacity == 0) fuzz_fail("capacity %zu < requested %zu", capacity, requested_capacity);
  std::deque<std::uint64_t> model;
  std::uint64_t next = 1;
  long model_live = 0;  // values the model says the queue holds

  const int steps = input.ConsumeIntegralInRange(0, 200);
  for (int step = 0; step < steps && input.remaining_bytes() > 0; ++step) {
    switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0: {  // push
      tracked value(next);
      const bool pushed = queue->try_push(value);
      const bool fits = model.size() < capacity;
      if (pushed != fits) fuzz_fail("try_push returned %d with %zu of %zu held", pushed, model.size(), capacity);
      if (pushed) {
        if (value.engaged) fuzz_fail("try_push did not move from the value it took");
        model.push_back(next);
        ++model_live;
        ++next;
      } else if (!value.engaged || value.value != next) {
        fuzz_fail("a refused try_push moved from the value");
      }
      break;
    }
    case 1: {  // push_many
      const auto count = input.ConsumeIntegralInRange<std::size_t>(0, capacity + 2);
      std::vector<tracked> values;
      for (std::size_t i = 0; i < count; ++i)
        values.emplace_back(next + i);
      const bool pushed = queue->try_push_many(std::span<tracked>(values));
      const bool fits = count <= capacity - model.size();
      if (pushed != fits)
        fuzz_fail("try_push_many(%zu) returned %d with %zu of %zu held", count, pushed, model.size(), capacity);
      for (std::size_t i = 0; i < count; ++i) {
        if (pushed && count > 0 && values[i].engaged) fuzz_fail("try_push_many did not move value %zu", i);
        if (!pushed && !values[i].engaged) fuzz_fail("a refused try_push_many moved value %zu", i);
      }
      if (pushed) {
        for (std::size_t i = 0; i < count; ++i)
          model.push_back(next + i);
        model_live += static_cast<long>(count);
        next += count;
      }
      break;
    }
    case 2: {  // pop_batch, the consumer refusing after `take` values
      const auto max = input.ConsumeIntegralInRange<std::size_t>(0, capacity + 2);
      const auto take = input.ConsumeIntegralInRange<std::size_t>(0, capacity + 2);
      std::size_t offered = 0;
      std::vector<std::uint64_t> taken;
      const std::size_t popped = queue->pop_batch(max, [&](tracked& value) {
        if (!value.engaged) fuzz_fail("pop_batch offered a moved-from value");
        if (offered >= model.size() || value.value != model[offered])
          fuzz_fail("pop_batch offered %llu, the model expected %llu", static_cast<unsigned long long>(value.value),
                    offered < model.size() ? static_cast<unsigned long long>(model[offered]) : 0ULL);
        ++offered;
        if (taken.size() >= take) return false;
        taken.push_back(value.value);
        tracked moved(std::move(value));  // the consumer moves out what it takes
        return true;
      });
      const std::size_t expected = std::min({max, take, model.size()});
      if (popped != expected || taken.size() != expected)
        fuzz_fail("pop_batch took %zu (reported %zu), the model expected %zu", taken.size(), popped, expected);
      for (std::size_t i = 0; i < expected; ++i)
        model.pop_front();
      model_live -= static_cast<long>(expected);
      break;
    }
    default: {  // close: the queue is destroyed with values in it, and a new one starts
      queue.reset();
      model_live -= static_cast<long>(model.size());
      model.clear();
      if (tracked::live != 0) fuzz_fail("destroying the queue left %ld values alive", tracked::live);
      queue = std::make_unique<Queue>(requested_capacity);
      capacity = queue->capacity();
      break;
    }
    }
    if (queue->empty() != model.empty()) fuzz_fail("empty() is %d, the model holds %zu", queue->empty(), model.size());
    if (tracked::live != model_live) fuzz_fail("%ld values alive, the model holds %ld", tracked::live, model_live);
  }
  queue.reset();
  if (tracked::live != 0) fuzz_fail("destroying the queue left %ld values alive", tracked::live);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  const bool lock_free = input.ConsumeBool();
  const auto capacity = input.ConsumeIntegralInRange<std::size_t>(0, 40);
  tracked::live = 0;
  if (lock_free)
    exercise<i2o2::mpsc_ring_queue<tracked>>(input, capacity);
  else
    exercise<i2o2::mutex_ring_queue<tracked>>(input, capacity);
  return 0;
}
