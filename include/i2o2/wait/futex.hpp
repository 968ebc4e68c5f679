#pragma once
/// The futex wait strategy (Linux 6.7+): the parked scheduler has an
/// IORING_OP_FUTEX_WAIT in flight on a futex word; a producer bumps the
/// word and futex_wake()s it. Cheaper than an eventfd write for producers:
/// no file, no VFS, one syscall that only runs when the scheduler parked.

#include "../detail/futex.hpp"
#include "../detail/kernel_features.hpp"
#include "../detail/user_data.hpp"
#include "concept.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

namespace i2o2::wait {

class futex {
public:
  static constexpr bool can_park = true;

  /// Throws std::system_error when the kernel lacks IORING_OP_FUTEX_WAIT.
  futex() {
    if (!detail::kernel_features::get().has_opcode(compat::op_futex_wait))
      throw std::system_error(ENOSYS, std::system_category(),
                              "i2o2: wait::futex needs IORING_OP_FUTEX_WAIT, which needs Linux "
                              "6.7; use wait::eventfd on older kernels");
  }

  /// Any thread.
  void notify() noexcept {
    word_.fetch_add(1, std::memory_order_release);
    detail::futex_wake(word_, 1);
  }

  /// Scheduler thread. Waits for the word to differ from its value when
  /// last seen: a notify() since then (even before this op reaches the
  /// kernel) makes the wait fail at once with -EAGAIN, which wakes us too.
  bool arm(detail::ring& ring) noexcept {
    if (armed_) return true;
    io_uring_sqe* sqe = ring.get_sqe();
    if (sqe == nullptr) return false;
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = compat::op_futex_wait;
    sqe->fd = static_cast<int>(compat::futex2_size_u32 | compat::futex2_private);
    sqe->addr = reinterpret_cast<std::uintptr_t>(&word_);
    sqe->off = last_seen_;
    sqe->addr3 = compat::futex_bitset_match_any;
    sqe->user_data = detail::wake_user_data;
    armed_ = true;
    return true;
  }

  void on_wake(int) noexcept {
    armed_ = false;
    last_seen_ = word_.load(std::memory_order_acquire);
  }
  bool armed() const noexcept { return armed_; }

  void block() noexcept {
    detail::futex_wait(word_, last_seen_);
    last_seen_ = word_.load(std::memory_order_acquire);
  }

private:
  // The futex word: bumped by every notify(); on a line of its own since
  // producers write it while the scheduler's fields are hot elsewhere.
  alignas(64) std::atomic<std::uint32_t> word_{0};
  // Scheduler thread only: the word's value when the last wake was taken.
  alignas(64) std::uint32_t last_seen_ = 0;
  bool armed_ = false;
};
static_assert(wait_strategy<futex>);

}  // namespace i2o2::wait
