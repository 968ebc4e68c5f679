// queue_micro: the queue policies alone, under Google Benchmark.
//
// For i2o2::mpsc_ring_queue (lock-free, the default) and
// i2o2::mutex_ring_queue (one mutex), each with two element types: a
// 64-bit word (the queue's own cost) and the default scheduler's real
// envelope (what a submit moves: the SQE image, the reply sender, the guard).
//
//   push_pop        one thread: push one, pop one (uncontended)
//   push32_pop32    one thread: push 32 one by one, take them in one pop_batch
//   contended       1-4 producer threads pushing, one consumer (the
//                   scheduler's role) taking batches; items/s is what the
//                   consumer received. Threads yield when the queue is full
//                   or empty, so more threads than cores still make progress.
//
// Usage: queue_micro [Google Benchmark flags, e.g. --benchmark_filter=contended]

#include <i2o2/i2o2.hpp>
#include <i2o2/queue/mutex_ring.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace {

constexpr std::size_t capacity = 1024;  // i2o2::config's default queue_capacity

using word = std::uint64_t;
using envelope = i2o2::handle::envelope_type;

template <class T>
T make_value() {
  if constexpr (std::is_same_v<T, envelope>)
    return envelope{i2o2::prepare(i2o2::op::nop{}), i2o2::reply::future::sender(nullptr), i2o2::any_guard{}};
  else
    return T{42};
}

/// Takes a value the way the scheduler does: look at it, let the queue destroy it.
struct take {
  template <class T>
  bool operator()(T& value) const noexcept {
    benchmark::DoNotOptimize(&value);
    return true;
  }
};

template <class Queue, class T>
void push_pop(benchmark::State& state) {
  Queue queue(capacity);
  T value = make_value<T>();
  for (auto _ : state) {
    queue.try_push(value);
    benchmark::DoNotOptimize(queue.pop_batch(1, take{}));
  }
  state.SetItemsProcessed(state.iterations());
}

template <class Queue, class T>
void push32_pop32(benchmark::State& state) {
  Queue queue(capacity);
  T value = make_value<T>();
  for (auto _ : state) {
    for (int i = 0; i < 32; ++i)
      queue.try_push(value);
    benchmark::DoNotOptimize(queue.pop_batch(32, take{}));
  }
  state.SetItemsProcessed(state.iterations() * 32);
}

/// Thread 0 consumes, the others produce: each producer pushes one value
/// per iteration and the consumer takes one per producer per iteration, so
/// every thread finishes its (equal) iteration count with the queue empty.
template <class Queue, class T>
void contended(benchmark::State& state) {
  static std::unique_ptr<Queue> queue;
  const auto producers = static_cast<std::size_t>(state.threads() - 1);
  if (state.thread_index() == 0) {
    // Before the loop's start barrier: producers touch the queue only after it.
    queue = std::make_unique<Queue>(capacity);
    for (auto _ : state) {
      std::size_t wanted = producers;
      while (wanted != 0) {
        const std::size_t taken = queue->pop_batch(wanted, take{});
        if (taken == 0) std::this_thread::yield();
        wanted -= taken;
      }
    }
    // After the loop's finish barrier: every producer is done.
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(producers));
    state.SetLabel(std::to_string(producers) + (producers == 1 ? " producer" : " producers"));
    queue.reset();
  } else {
    T value = make_value<T>();
    for (auto _ : state) {
      while (!queue->try_push(value))
        std::this_thread::yield();
    }
  }
}

template <class T>
using mpsc = i2o2::mpsc_ring_queue<T>;
template <class T>
using mutex = i2o2::mutex_ring_queue<T>;

}  // namespace

BENCHMARK_TEMPLATE(push_pop, mpsc<word>, word);
BENCHMARK_TEMPLATE(push_pop, mutex<word>, word);
BENCHMARK_TEMPLATE(push_pop, mpsc<envelope>, envelope);
BENCHMARK_TEMPLATE(push_pop, mutex<envelope>, envelope);

BENCHMARK_TEMPLATE(push32_pop32, mpsc<word>, word);
BENCHMARK_TEMPLATE(push32_pop32, mutex<word>, word);
BENCHMARK_TEMPLATE(push32_pop32, mpsc<envelope>, envelope);
BENCHMARK_TEMPLATE(push32_pop32, mutex<envelope>, envelope);

BENCHMARK_TEMPLATE(contended, mpsc<word>, word)->DenseThreadRange(2, 5)->UseRealTime();
BENCHMARK_TEMPLATE(contended, mutex<word>, word)->DenseThreadRange(2, 5)->UseRealTime();
BENCHMARK_TEMPLATE(contended, mpsc<envelope>, envelope)->DenseThreadRange(2, 5)->UseRealTime();
BENCHMARK_TEMPLATE(contended, mutex<envelope>, envelope)->DenseThreadRange(2, 5)->UseRealTime();

BENCHMARK_MAIN();
