#pragma once
/// How a client drives any i2o2 scheduler type: a window of `qd` reply
/// slots (future or callback replies behind one interface), and the loops
/// each workload runs over it.

#include "measure.hpp"

#include <i2o2/detail/adaptive_spin.hpp>
#include <i2o2/detail/futex.hpp>
#include <i2o2/i2o2.hpp>
#include <i2o2/reply/callback.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

namespace bench {

/// Spawns `Scheduler`. A kernel without what its policies need (an errno
/// saying unsupported or not permitted) skips the case; any other error
/// (out of descriptors or memory) is thrown on, and fails it.
template <class Scheduler>
i2o2::spawned<Scheduler> spawn_or_skip(i2o2::config cfg = {}) {
  try {
    return i2o2::spawn_scheduler<Scheduler>(std::move(cfg));
  } catch (const std::system_error& error) {
    const int code = error.code().value();
    const bool unsupported = error.code().category() == std::system_category() &&
                             (code == ENOSYS || code == EINVAL || code == EOPNOTSUPP || code == EPERM);
    if (unsupported) throw skip_case{error.what()};
    throw;
  }
}

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
  /// Refills `slots` with `ops` as one queue message (submit_many): one
  /// push and at most one wake for the lot, as a batching client would.
  void submit_batch(Handle& handle, std::span<const unsigned> slots, std::span<const i2o2::prepared_op> ops) {
    auto replies = handle.submit_many(ops);
    for (std::size_t i = 0; i < slots.size(); ++i)
      replies_[slots[i]] = std::move(replies[i]);
  }
  bool ready(unsigned slot) const noexcept { return replies_[slot].is_ready(); }
  int wait(unsigned slot) const noexcept { return replies_[slot].wait(); }
  /// Blocks until any slot's reply is in (i2o2::wait_any: spin, yield,
  /// then one futex word for every slot). Every slot must be in flight.
  void wait_any() const { i2o2::wait_any(replies_); }

private:
  std::vector<typename Handle::reply_type> replies_;
};

/// `qd` callback replies: the callback (on the scheduler thread) stores the
/// result and publishes it on the slot's word; the client waits for it
/// exactly as a future reply waits (i2o2's adaptive spin, 12 yields, then a
/// futex sleep announced by a sleeper bit, so the callback makes a wake
/// syscall only for a client that sleeps). The rows thus differ in the reply
/// mechanism, not in how the client waits. (std::atomic::wait would not do:
/// libstdc++ hashes every waited-on address into a small shared table, and
/// one sleeping client makes notify_one() a syscall for slots of others.)
/// The window must outlive the scheduler: a callback may still be inside
/// its wake after the client saw its result.
template <class Handle>
class callback_window {
public:
  explicit callback_window(unsigned qd) : slots_(std::make_unique<slot[]>(qd)) { callbacks_.reserve(qd); }

  template <class Op>
  void submit(Handle& handle, unsigned index, const Op& op) {
    handle.submit(op, {}, arm(index));
  }
  /// One queue message for the lot, with one callback per op.
  void submit_batch(Handle& handle, std::span<const unsigned> slots, std::span<const i2o2::prepared_op> ops) {
    callbacks_.clear();
    for (const unsigned index : slots) callbacks_.push_back(arm(index));
    handle.submit_many(ops, {}, callbacks_);
  }
  bool ready(unsigned index) const noexcept {
    return (slots_[index].word.load(std::memory_order_acquire) & ready_bit) != 0;
  }
  int wait(unsigned index) const noexcept {
    slot& target = slots_[index];
    const auto done = [&] { return ready(index); };
    if (!i2o2::detail::adaptive_spin::run(done)) {
      for (int round = 0; round < 12 && !done(); ++round)
        std::this_thread::yield();
      while (!done()) {
        const std::uint32_t seen = target.word.fetch_or(sleeper_bit, std::memory_order_acq_rel);
        if (seen & ready_bit) break;
        i2o2::detail::futex_wait(target.word, seen | sleeper_bit);
      }
    }
    return target.result;
  }

private:
  static constexpr std::uint32_t ready_bit = 1;
  static constexpr std::uint32_t sleeper_bit = 2;
  struct alignas(64) slot {
    std::atomic<std::uint32_t> word{ready_bit};
    int result = 0;
  };
  /// The callback of one op: stores the result, publishes it, and wakes
  /// the client only if it announced that it sleeps.
  struct completion {
    slot* target;
    void operator()(int result) const noexcept {
      target->result = result;
      const std::uint32_t before = target->word.fetch_or(ready_bit, std::memory_order_acq_rel);
      if (before & sleeper_bit) i2o2::detail::futex_wake(target->word);
    }
  };
  completion arm(unsigned index) {
    slot* target = &slots_[index];
    target->word.store(0, std::memory_order_relaxed);
    return completion{target};
  }

  std::unique_ptr<slot[]> slots_;
  std::vector<completion> callbacks_;  // reused by every batch
};

template <class Scheduler>
using window_for =
    std::conditional_t<has_callback_reply<Scheduler>, callback_window<typename Scheduler::handle_type>,
                       future_window<typename Scheduler::handle_type>>;

/// The slots completed in one pass and the ops that refill them, sent
/// together: a client that finds several replies ready resubmits them as
/// one batch (fio's io_uring engine and the raw_liburing baseline do too).
template <class Window, class Handle>
class refill_batch {
public:
  explicit refill_batch(unsigned qd) {
    slots_.reserve(qd);
    ops_.reserve(qd);
  }
  void add(unsigned slot, const i2o2::prepared_op& op) {
    slots_.push_back(slot);
    ops_.push_back(op);
  }
  void send(Handle& handle, Window& window) {
    if (slots_.empty()) return;
    window.submit_batch(handle, slots_, ops_);
    slots_.clear();
    ops_.clear();
  }

private:
  std::vector<unsigned> slots_;
  std::vector<i2o2::prepared_op> ops_;
};

/// A client's bookkeeping for run_window and run_stream (when each slot's
/// op started, which slots are in flight, the refill batch), made in the
/// client's set-up so that the timed loops allocate nothing of their own.
template <class Window, class Handle>
struct client_slots {
  explicit client_slots(unsigned qd) : started(qd), in_flight(qd), refill(qd) {}
  std::vector<std::optional<bench_clock::time_point>> started;
  std::vector<bool> in_flight;
  refill_batch<Window, Handle> refill;
};

/// Keeps `qd` ops in flight until `stop`: waits for the oldest, takes it
/// and every other reply already in, and refills those slots with
/// `make_op(slot)` as one batch (a sliding window). Then drains. With
/// `in_order` false, a pass waits for any reply instead (reads finish out
/// of order) and takes whatever has completed. `slots` has room for `qd`.
template <class Window, class Handle, class MakeOp>
void run_window(Handle& handle, Window& window, client_slots<Window, Handle>& slots, unsigned qd,
                bool in_order, int expected, const char* impl, const std::atomic<bool>& stop,
                client_meter& meter, MakeOp&& make_op) {
  auto& started = slots.started;
  auto& in_flight = slots.in_flight;
  auto& refill = slots.refill;
  std::fill(in_flight.begin(), in_flight.end(), true);
  for (unsigned slot = 0; slot < qd; ++slot) {
    started[slot] = meter.start();
    refill.add(slot, make_op(slot));
  }
  refill.send(handle, window);
  const auto take = [&](unsigned slot, int result) {
    expect_result(result, expected, impl);
    meter.finish(started[slot]);
    in_flight[slot] = false;
  };
  unsigned oldest = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    const unsigned first_taken = oldest;
    bool took_any = false;
    if (!in_order) {
      // Wait for any reply, not the oldest, so that reads finished early
      // are not left idle behind a slow one (fio reaps whichever completes).
      // Future replies: i2o2::wait_any, which can sleep on all of them at
      // once. Callback slots: polled (spin, then a few yields), and if none
      // is in by then, the pass waits on the oldest below.
      const auto any_ready = [&] {
        for (unsigned slot = 0; slot < qd; ++slot)
          if (window.ready(slot)) return true;
        return false;
      };
      if constexpr (requires { window.wait_any(); }) {
        window.wait_any();  // every slot is in flight: each pass refills all it took
      } else if (!any_ready() && !i2o2::detail::adaptive_spin::run(any_ready)) {
        for (int round = 0; round < 8 && !any_ready(); ++round)
          std::this_thread::yield();
      }
      for (unsigned slot = 0; slot < qd; ++slot) {
        if (!window.ready(slot)) continue;
        take(slot, window.wait(slot));
        took_any = true;
      }
    }
    if (!took_any) {
      take(oldest, window.wait(oldest));
      oldest = (oldest + 1) % qd;
      // In order: the replies right behind the oldest that are in already.
      while (in_order && in_flight[oldest] && window.ready(oldest)) {
        take(oldest, window.wait(oldest));
        oldest = (oldest + 1) % qd;
      }
    }
    for (unsigned i = 0; i < qd; ++i) {
      const unsigned slot = (first_taken + i) % qd;
      if (in_flight[slot]) continue;
      started[slot] = meter.start();
      in_flight[slot] = true;
      refill.add(slot, make_op(slot));
    }
    refill.send(handle, window);
  }
  meter.stop_counting();
  for (unsigned slot = 0; slot < qd; ++slot)
    expect_result(window.wait(slot), expected, impl);
}

/// Issues `count` ops with `qd` in flight, in order (a write stream), then
/// returns: fixed work rather than a fixed time. Waits for the oldest, takes
/// it and the replies right behind it that are in, and refills their slots
/// with the next ops of the stream as one batch. `slots` has room for `qd`.
template <class Window, class Handle, class MakeOp>
void run_stream(Handle& handle, Window& window, client_slots<Window, Handle>& slots, unsigned qd,
                std::uint64_t count, int expected, const char* impl, client_meter& meter, MakeOp&& make_op) {
  auto& started = slots.started;
  auto& refill = slots.refill;
  std::uint64_t issued = 0;
  std::uint64_t done = 0;
  const auto issue = [&](unsigned slot) {
    started[slot] = meter.start();
    refill.add(slot, make_op(issued++));
  };
  for (unsigned slot = 0; slot < qd && issued < count; ++slot)
    issue(slot);
  refill.send(handle, window);
  unsigned oldest = 0;
  while (done < count) {
    const std::uint64_t in_flight = issued - done;
    std::uint64_t taken = 0;
    do {
      expect_result(window.wait(oldest), expected, impl);
      meter.finish(started[oldest]);
      ++done;
      ++taken;
      if (issued < count) issue(oldest);  // sent below, after the pass
      oldest = (oldest + 1) % qd;
    } while (taken < in_flight && window.ready(oldest));
    refill.send(handle, window);
  }
  meter.stop_counting();
}

}  // namespace bench
