#pragma once
/// How a client drives any i2o2 scheduler type: a window of `qd` reply
/// slots (future or callback replies behind one interface), and the loops
/// each workload runs over it.

#include "measure.hpp"

#include <i2o2/detail/adaptive_spin.hpp>
#include <i2o2/i2o2.hpp>
#include <i2o2/reply/callback.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

namespace bench {

template <class Scheduler>
inline constexpr bool has_callback_reply =
    std::is_same_v<typename Scheduler::reply_type, i2o2::callback_submitted>;

/// `qd` future replies: submit into a slot, poll it, wait on it.
template <class Handle>
class future_window {
public:
  explicit future_window(unsigned qd) : replies_(qd) {}

  template <class Op>
  void submit(Handle& handle, unsigned slot, const Op& op) {
    replies_[slot] = handle.submit(op);
  }
  bool ready(unsigned slot) const noexcept { return replies_[slot].is_ready(); }
  int wait(unsigned slot) const noexcept { return replies_[slot].wait(); }

private:
  std::vector<typename Handle::reply_type> replies_;
};

/// `qd` callback replies: the callback (on the scheduler thread) stores the
/// result and flips a flag; the client waits for the flag as the future
/// reply waits (i2o2's adaptive spin, then std::atomic::wait), so the rows
/// differ in the reply mechanism, not in how patiently the client spins.
/// The window must outlive the scheduler: a callback may still be inside
/// notify_one() after the client saw its flag.
template <class Handle>
class callback_window {
public:
  explicit callback_window(unsigned qd) : slots_(std::make_unique<slot[]>(qd)) {}

  template <class Op>
  void submit(Handle& handle, unsigned index, const Op& op) {
    slot* target = &slots_[index];
    target->done.store(0, std::memory_order_relaxed);
    handle.submit(op, {}, [target](int result) noexcept {
      target->result = result;
      target->done.store(1, std::memory_order_release);
      target->done.notify_one();
    });
  }
  bool ready(unsigned index) const noexcept {
    return slots_[index].done.load(std::memory_order_acquire) != 0;
  }
  int wait(unsigned index) const noexcept {
    const slot& target = slots_[index];
    if (!i2o2::detail::adaptive_spin::run([&] { return ready(index); }))
      while (target.done.load(std::memory_order_acquire) == 0)
        target.done.wait(0, std::memory_order_acquire);
    return target.result;
  }

private:
  struct alignas(64) slot {
    std::atomic<std::uint32_t> done{1};
    int result = 0;
  };
  std::unique_ptr<slot[]> slots_;
};

template <class Scheduler>
using window_for =
    std::conditional_t<has_callback_reply<Scheduler>, callback_window<typename Scheduler::handle_type>,
                       future_window<typename Scheduler::handle_type>>;

/// Keeps `qd` ops in flight until `stop`: waits for the oldest, counts it,
/// submits `make_op(slot)` in its place (a sliding window). Then drains.
/// With `in_order` false, every pass first takes whatever has completed in
/// any slot (reads finish out of order) and waits only when nothing has.
template <class Window, class Handle, class MakeOp>
void run_window(Handle& handle, Window& window, unsigned qd, bool in_order, int expected, const char* impl,
                const std::atomic<bool>& stop, client_meter& meter, MakeOp&& make_op) {
  std::vector<std::optional<bench_clock::time_point>> started(qd);
  for (unsigned slot = 0; slot < qd; ++slot) {
    started[slot] = meter.start();
    window.submit(handle, slot, make_op(slot));
  }
  const auto complete = [&](unsigned slot, int result) {
    expect_result(result, expected, impl);
    meter.finish(started[slot]);
    started[slot] = meter.start();
    window.submit(handle, slot, make_op(slot));
  };
  unsigned oldest = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    bool took_any = false;
    if (!in_order) {
      for (unsigned slot = 0; slot < qd; ++slot) {
        if (!window.ready(slot)) continue;
        complete(slot, window.wait(slot));
        took_any = true;
      }
    }
    if (!took_any) {
      complete(oldest, window.wait(oldest));
      oldest = (oldest + 1) % qd;
    }
  }
  meter.stop_counting();
  for (unsigned slot = 0; slot < qd; ++slot)
    expect_result(window.wait(slot), expected, impl);
}

/// Issues `count` ops with `qd` in flight, in order (a write stream), then
/// returns: fixed work rather than a fixed time.
template <class Window, class Handle, class MakeOp>
void run_stream(Handle& handle, Window& window, unsigned qd, std::uint64_t count, int expected,
                const char* impl, client_meter& meter, MakeOp&& make_op) {
  std::vector<std::optional<bench_clock::time_point>> started(qd);
  std::uint64_t issued = 0;
  std::uint64_t done = 0;
  for (unsigned slot = 0; slot < qd && issued < count; ++slot, ++issued) {
    started[slot] = meter.start();
    window.submit(handle, slot, make_op(issued));
  }
  for (unsigned slot = 0; done < count; slot = (slot + 1) % qd, ++done) {
    expect_result(window.wait(slot), expected, impl);
    meter.finish(started[slot]);
    if (issued < count) {
      started[slot] = meter.start();
      window.submit(handle, slot, make_op(issued++));
    }
  }
  meter.stop_counting();
}

}  // namespace bench
