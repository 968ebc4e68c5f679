#pragma once
/// The msg_ring wait strategy, as the Rust original wakes: a producer posts
/// a CQE straight into the scheduler's ring with MSG_RING. On Linux 6.13+
/// it uses the ring-less sync form (IORING_REGISTER_SEND_MSG_RING, one
/// syscall); on 5.18 to 6.12 it falls back to a small shared waker ring.
///
/// Nothing is armed: the ring itself is the thing woken, so parking costs
/// no SQE. Producers only ever wake while inside the scheduler's gate, so
/// the ring's fd is never closed (and reused) under them.
/// On an IOPOLL ring it cannot sleep when idle (block() returns at once),
/// so the scheduler spins there: prefer eventfd or futex with IOPOLL.

#include "../detail/compat.hpp"
#include "../detail/fault_injection.hpp"
#include "../detail/kernel_features.hpp"
#include "../detail/ring.hpp"
#include "../detail/user_data.hpp"
#include "concept.hpp"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>

namespace i2o2::wait {

class msg_ring {
public:
  static constexpr bool can_park = true;

  /// Throws std::system_error when the kernel has no MSG_RING (Linux 5.18).
  msg_ring() {
    const auto& kernel = detail::kernel_features::get();
    if (kernel.has_sync_msg_ring()) return;
    if (!kernel.has_opcode(compat::op_msg_ring))
      throw std::system_error(ENOSYS, std::system_category(),
                              "i2o2: wait::msg_ring needs IORING_OP_MSG_RING, which needs Linux "
                              "5.18; use wait::eventfd on older kernels");
    fallback_ = std::make_unique<detail::waker_ring>();
  }

  /// Any thread; only called while the scheduler is parked.
  void notify() noexcept {
    const int target = ring_fd_.load(std::memory_order_acquire);
    if (fallback_) {
      fallback_->post(target, detail::wake_user_data);
      return;
    }
    io_uring_sqe message;
    std::memset(&message, 0, sizeof(message));
    message.opcode = compat::op_msg_ring;
    message.fd = target;
    message.off = detail::wake_user_data;  // the posted CQE's user_data
    // This is the park's only wake: a transient failure (the kernel short
    // of memory for a DEFER_TASKRUN target's task work) is tried again.
    for (;;) {
      int error = detail::injected_msg_ring_error();
      if (error == 0) {
        if (::syscall(__NR_io_uring_register, -1, compat::register_send_msg_ring, &message, 1) >= 0) return;
        error = errno;
      }
      if (!detail::transient_errno(error)) return;
      ::sched_yield();
    }
  }

  /// Scheduler thread: nothing to arm, only the ring to remember.
  bool arm(detail::ring& ring) noexcept {
    ring_fd_.store(ring.fd(), std::memory_order_release);
    return true;
  }
  void on_wake(int) noexcept {}
  bool armed() const noexcept { return false; }
  void block() noexcept {}

  /// Whether wakes use the 5.18 fallback ring rather than the sync form.
  bool uses_fallback() const noexcept { return fallback_ != nullptr; }

private:
  std::atomic<int> ring_fd_{-1};
  std::unique_ptr<detail::waker_ring> fallback_;
};
static_assert(wait_strategy<msg_ring>);

}  // namespace i2o2::wait
