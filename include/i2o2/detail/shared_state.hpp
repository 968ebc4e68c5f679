#pragma once
/// What handles and the scheduler share: the queue, the wait strategy, the
/// park announcement and the gate that closes submissions.
///
/// Protocols (each is what a guarantee rests on):
/// - Park (W1): the scheduler stores `parked_ = 1`, fences, re-checks the
///   queue and only then sleeps; a producer publishes its envelope, fences,
///   and wakes the scheduler only if it sees `parked_`, exchanging it to 0
///   so one park costs at most one wake.
/// - Gate (G3/G5): a producer counts itself in before pushing and out after;
///   closing sets the top bit. The scheduler finishes only once the gate is
///   closed with nobody inside and the queue is empty, so an accepted op is
///   never stranded and a late one is refused with scheduler_closed.
/// - Space: a producer that finds the queue full sleeps on `space_epoch_`;
///   the scheduler bumps it after popping when someone waits.
/// - Cancel: a cancel counts itself in `cancels_queued_` before pushing,
///   so a scheduler whose queue front waits for room sets the ops behind it
///   aside to reach the cancel, which may be what makes that room. A
///   scheduler about to sleep waiting for room rechecks the count and the
///   queue after announcing; the cancel's producer wakes it after counting
///   in and failing to push, and after pushing.
/// - Stop (G5): close() counts itself in `stop_requests_` after closing the
///   gate and setting the deadline, then wakes as a producer does. A
///   scheduler that sleeps for another reason than an empty queue (CQ room,
///   a closing drain) announces it with the count it last acted on, so a
///   stop or an earlier deadline always reaches it.

#include "../errors.hpp"
#include "cpu_relax.hpp"
#include "dekker_fence.hpp"
#include "envelope.hpp"
#include "futex.hpp"
#include "kernel_features.hpp"
#include "overflow_lane.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace i2o2::detail {

enum class push_result { accepted, closed, full };

template <class Queue, class Wait, class Envelope>
class shared_state {
public:
  /// `ring_flags`: the IORING_SETUP_* flags the ring really has.
  shared_state(std::size_t queue_capacity, std::uint32_t ring_flags, std::size_t max_chain_length,
               std::optional<std::chrono::nanoseconds> default_deadline)
      : queue_(queue_capacity), ring_flags_(ring_flags), max_chain_length_(max_chain_length),
        default_deadline_(default_deadline) {}

  Queue& queue() noexcept { return queue_; }
  Wait& wait() noexcept { return wait_; }
  bool sqe128() const noexcept { return (ring_flags_ & IORING_SETUP_SQE128) != 0; }
  bool cqe32() const noexcept { return (ring_flags_ & IORING_SETUP_CQE32) != 0; }
  bool iopoll() const noexcept { return (ring_flags_ & IORING_SETUP_IOPOLL) != 0; }
  /// The longest chain the ring can take in one submission.
  std::size_t max_chain_length() const noexcept { return max_chain_length_; }

  // ---- producer side (any thread) ---------------------------------------

  /// Pushes all of `items` contiguously. With `wait_for_space`, waits while
  /// the queue is full; otherwise returns `full` at once. Items are moved
  /// from only when the result is `accepted`.
  push_result push(std::span<Envelope> items, bool wait_for_space) noexcept {
    if (!enter_gate()) return push_result::closed;
    const bool cancel = items.size() == 1 && items.front().kind == envelope_kind::cancel;
    if (!wait_for_space && serving_thread == this && !overflow_.empty()) {
      // A try from the scheduler thread must not overtake what it sent
      // into the overflow lane before: while that waits, the queue is full
      // to it.
      leave_gate();
      return push_result::full;
    }
    if (wait_for_space && serving_thread == this) {
      // A submit from the scheduler thread itself (a coroutine resumed
      // there): waiting for room only that thread can make would deadlock,
      // so what does not fit goes to the overflow lane, in order. A cancel
      // is counted as below, in the queue or the lane (the scheduler, this
      // thread, cannot be taking it meanwhile).
      if (cancel) cancels_queued_.fetch_add(1, std::memory_order_relaxed);
      if (!overflow_.empty() || !queue_.try_push_many(items)) {
        for (auto& item : items)
          overflow_.push(std::move(item), queue_.capacity());
      }
      leave_gate();
      return push_result::accepted;
    }
    // A cancel counts itself in before it pushes: a scheduler whose queue
    // front waits for room then sets the ops behind it aside to reach the
    // cancel (which may end an op in flight, making that room), also when
    // the queue is full and the cancel is still waiting to get in.
    if (cancel) cancels_queued_.fetch_add(1, std::memory_order_seq_cst);
    const auto refused = [&](push_result result) {
      if (cancel) cancels_queued_.fetch_sub(1, std::memory_order_relaxed);
      leave_gate();
      return result;
    };
    for (;;) {
      if (queue_.try_push_many(items)) {
        // Wake from inside the gate: the scheduler cannot finish (and a wait
        // strategy cannot release what a wake touches) while we are in it.
        wake_scheduler();
        leave_gate();
        return push_result::accepted;
      }
      if (!wait_for_space) return refused(push_result::full);
      const std::uint32_t epoch = space_epoch_.load(std::memory_order_acquire);
      space_waiters_.fetch_add(1, std::memory_order_seq_cst);
      dekker_fence(space_waiters_);
      const bool closed = (gate_.load(std::memory_order_acquire) & closed_bit) != 0;
      if (!closed && !queue_.try_push_many(items)) {
        // A scheduler waiting for CQ room must hear of a cancel it could
        // make space for.
        if (cancel) wake_scheduler();
        futex_wait(space_epoch_, epoch);
        space_waiters_.fetch_sub(1, std::memory_order_relaxed);
        continue;
      }
      space_waiters_.fetch_sub(1, std::memory_order_relaxed);
      if (closed) return refused(push_result::closed);
      wake_scheduler();
      leave_gate();
      return push_result::accepted;
    }
  }

  /// Stops accepting ops and wakes the scheduler to drain and finish.
  /// Any thread; idempotent. `deadline`: see config::shutdown_deadline.
  /// Of several deadlines (a stop after the last handle's drop, say), the
  /// earliest holds.
  void close(std::optional<std::chrono::nanoseconds> deadline) noexcept {
    if (deadline) {
      // Saturated: a deadline too far off to count from now means never;
      // one already past (negative), now.
      const auto ahead = std::max(*deadline, std::chrono::nanoseconds::zero());
      const auto now = std::chrono::steady_clock::now();
      const auto room = std::chrono::steady_clock::time_point::max() - now;
      const std::int64_t at = (ahead >= room ? std::chrono::steady_clock::time_point::max() : now + ahead)
                                  .time_since_epoch()
                                  .count();
      std::int64_t current = stop_deadline_.load(std::memory_order_relaxed);
      while ((current == no_deadline || at < current) &&
             !stop_deadline_.compare_exchange_weak(current, at, std::memory_order_relaxed)) {
      }
    }
    // Counted in like a producer, so the scheduler cannot finish (and the
    // ring cannot close) before our wake has been sent.
    gate_.fetch_add(1, std::memory_order_acq_rel);
    gate_.fetch_or(closed_bit, std::memory_order_seq_cst);
    // Producers sleeping for space must see the gate closed.
    space_epoch_.fetch_add(1, std::memory_order_release);
    futex_wake(space_epoch_);
    // Release: a scheduler that sees the new count sees the gate and the
    // deadline above. A scheduler asleep with an older count is woken.
    stop_requests_.fetch_add(1, std::memory_order_release);
    wake_scheduler();
    leave_gate();
  }

  bool closed() const noexcept { return (gate_.load(std::memory_order_acquire) & closed_bit) != 0; }

  void add_handle() noexcept { handles_.fetch_add(1, std::memory_order_relaxed); }
  /// The last handle going away shuts the scheduler down (G5), with the
  /// config's shutdown deadline.
  void drop_handle() noexcept {
    if (handles_.fetch_sub(1, std::memory_order_acq_rel) == 1) close(default_deadline_);
  }
  std::optional<std::chrono::nanoseconds> default_deadline() const noexcept { return default_deadline_; }

  // ---- scheduler side ----------------------------------------------------

  /// The scheduler thread marks itself while it runs (see push()).
  void mark_scheduler_thread(bool running) noexcept { serving_thread = running ? this : nullptr; }

  /// Envelopes the scheduler thread submitted while the queue was full.
  /// Scheduler thread only.
  overflow_lane<Envelope>& overflow() noexcept { return overflow_; }

  /// The queue is empty and no producer is mid-push, so everything a
  /// submit that has returned put in the queue has been popped. (A queue
  /// alone may look empty while a producer that claimed the front cell has
  /// yet to publish it, and later cells are published.)
  bool queue_drained() const noexcept {
    // Acquire pairs with leave_gate(): what a producer published before
    // leaving is visible to empty().
    return (gate_.load(std::memory_order_acquire) & ~closed_bit) == 0 && queue_.empty();
  }

  /// Announces the scheduler is about to sleep; true if it may (the queue
  /// is still empty and the gate open after the announcement). On false it
  /// stays awake.
  bool announce_park() noexcept {
    parked_.store(1, std::memory_order_relaxed);
    // The store above is ordered before the queue re-check, pairing with the
    // producer's fence between publishing and reading `parked_` (Dekker).
    // Without it a push could slip between them unseen.
    dekker_fence(parked_);
    // The gate too: a close() that ran since the loop last looked found
    // nobody parked and sent no wake, so it must be seen here.
    if (!queue_.empty() || (gate_.load(std::memory_order_relaxed) & closed_bit) != 0) {
      parked_.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void end_park() noexcept { parked_.store(0, std::memory_order_relaxed); }

  /// How many times close() has run. Read before deciding how long to
  /// sleep (on the gate and the deadline), then passed to announce_wait.
  std::uint32_t stop_requests() const noexcept { return stop_requests_.load(std::memory_order_acquire); }

  /// Announces a sleep with work still queued (waiting for CQ room), or
  /// while closing: unlike announce_park, it may sleep with the queue not
  /// empty and the gate closed, but a close() since `stop_requests_seen`
  /// (a new deadline, or the close itself) must not find it asleep, nor a
  /// cancel queued or on its way while the queue holds what could be set
  /// aside to reach it, nor the overflow lane's front waiting for a turn
  /// only a look at the queue can give. True if it may sleep; producers
  /// and close() then wake it as for a park.
  bool announce_wait(std::uint32_t stop_requests_seen) noexcept {
    parked_.store(1, std::memory_order_relaxed);
    dekker_fence(parked_);  // pairs with the fence in close()'s and push()'s wake_scheduler()
    if (stop_requests_.load(std::memory_order_relaxed) != stop_requests_seen ||
        (cancel_queued() && !queue_.empty()) || lane_waits_for_a_producer()) {
      parked_.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  /// The overflow lane's front waits for its turn with the queue empty:
  /// only because a producer was mid-push when the scheduler looked, and
  /// one that leaves without pushing (a try_submit refused) wakes nobody.
  /// Scheduler thread only.
  bool lane_waits_for_a_producer() const noexcept {
    return !overflow_.empty() && !overflow_.front_due() && queue_.empty();
  }

  /// Whether a cancel is in the queue, or on its way in. Any thread.
  bool cancel_queued() const noexcept { return cancels_queued_.load(std::memory_order_seq_cst) > 0; }
  /// Scheduler: a cancel left the queue.
  void cancel_taken() noexcept { cancels_queued_.fetch_sub(1, std::memory_order_relaxed); }

  /// Scheduler: after popping, let producers waiting for space retry.
  void signal_space() noexcept {
    dekker_fence(space_waiters_);
    if (space_waiters_.load(std::memory_order_relaxed) == 0) return;
    space_epoch_.fetch_add(1, std::memory_order_release);
    futex_wake(space_epoch_);
  }

  /// Closed, and no producer is between entering and leaving the gate.
  bool closed_and_quiet() const noexcept { return gate_.load(std::memory_order_acquire) == closed_bit; }

  std::optional<std::chrono::steady_clock::time_point> stop_deadline() const noexcept {
    const auto at = stop_deadline_.load(std::memory_order_relaxed);
    if (at == no_deadline) return std::nullopt;
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(at));
  }

private:
  static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;
  static constexpr std::int64_t no_deadline = INT64_MIN;

  bool enter_gate() noexcept {
    // Acquire pairs with close(): a producer that sees the gate open pushes
    // before the scheduler can decide it is quiet.
    if (gate_.fetch_add(1, std::memory_order_acq_rel) & closed_bit) {
      leave_gate();
      return false;
    }
    return true;
  }
  void leave_gate() noexcept { gate_.fetch_sub(1, std::memory_order_release); }

  void wake_scheduler() noexcept {
    // Pairs with the fence in announce_park().
    dekker_fence(parked_);
    if (parked_.load(std::memory_order_relaxed) != 0 && parked_.exchange(0, std::memory_order_acq_rel) != 0)
      wait_.notify();
  }

  // The state whose scheduler runs on this thread, if any.
  static inline thread_local const shared_state* serving_thread = nullptr;

  // Read-mostly after construction.
  Queue queue_;
  Wait wait_;
  const std::uint32_t ring_flags_;
  const std::size_t max_chain_length_;
  const std::optional<std::chrono::nanoseconds> default_deadline_;
  // Written by the scheduler on every park, read by every producer.
  alignas(64) std::atomic<std::uint32_t> parked_{0};
  // Written by every producer on every submit.
  alignas(64) std::atomic<std::uint64_t> gate_{0};
  // Touched only when the queue is full.
  alignas(64) std::atomic<std::uint32_t> space_epoch_{0};
  std::atomic<std::uint32_t> space_waiters_{0};
  std::atomic<std::size_t> handles_{0};
  std::atomic<std::int64_t> stop_deadline_{no_deadline};
  std::atomic<std::uint32_t> stop_requests_{0};
  // Cancels pushed or being pushed that the scheduler has not taken yet.
  std::atomic<std::int32_t> cancels_queued_{0};
  // Scheduler thread only, and written for every envelope pulled (its pop
  // count): on lines of its own, apart from what producers read.
  alignas(64) overflow_lane<Envelope> overflow_;
};

}  // namespace i2o2::detail
