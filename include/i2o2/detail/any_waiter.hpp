#pragma once
/// The one futex word a sleeping `wait_any` waits on, shared with the
/// senders of every reply it watches: the first of them to complete sets
/// it and wakes the client; the others find it set and make no syscall.
/// A disk completing 30 reads at once thus costs the scheduler one wake,
/// not 30 (0.75 us each in a VM, before the client could take the first).
///
/// Reference counted: the client holds one, and so does each reply it
/// announced itself on, until either that reply's sender (which saw the
/// announcement) or the client (which withdrew it first) lets go. Pooled,
/// so that a sleep allocates nothing in steady state.

#include "futex.hpp"
#include "state_pool.hpp"

#include <atomic>
#include <cassert>
#include <cstdint>

namespace i2o2::detail {

class any_waiter {
public:
  /// A waiter holding the caller's reference, its word not yet set.
  static any_waiter* make() { return pool::make(); }

  /// Client: adds `count` references, one per announcement about to be made.
  void hold(std::uint32_t count) noexcept { references_.fetch_add(count, std::memory_order_relaxed); }

  /// Client: lets go of `count` references (its own, and those of
  /// announcements no sender saw).
  void release(std::uint32_t count = 1) noexcept {
    if (count == 0) return;
    // acq_rel: the last owner must see the others' writes before freeing.
    const std::uint32_t held = references_.fetch_sub(count, std::memory_order_acq_rel);
    assert(held >= count && "an any_waiter released more references than were held");
    if (held == count) pool::destroy(this);
  }

  /// Client: sleeps until a sender woke it (or a signal, or a spurious
  /// wake; callers look at their replies again).
  void sleep() noexcept { futex_wait(woken_, 0); }

  /// Sender that saw the announcement: wakes the client unless another
  /// sender did, then lets go of that announcement's reference. True if
  /// it made the wake syscall. The reference keeps the word alive for the
  /// syscall, even when the client already woke and left.
  bool wake() noexcept {
    const bool first = woken_.exchange(1, std::memory_order_acq_rel) == 0;
    if (first) futex_wake(woken_);
    release();
    return first;
  }

private:
  using pool = state_pool<any_waiter, 16>;

  std::atomic<std::uint32_t> woken_{0};  // the futex word: 1 once a sender woke the client
  std::atomic<std::uint32_t> references_{1};
};

}  // namespace i2o2::detail
