#pragma once
/// Thin futex(2) wrappers on a 32-bit atomic word (private futexes).

#include "fault_injection.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <ctime>

namespace i2o2::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "futex words must be plain lock-free 32-bit atomics");

/// Sleeps while `word == expected`; returns on a wake, a signal, a
/// mismatch or after `timeout` (null: no timeout). Callers re-check.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       const timespec* timeout = nullptr) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, timeout,
            nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int count = INT_MAX) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr,
            0);
}

/// One word of a futex_waitv(2) call (Linux 5.16); the kernel ABI, spelled
/// out because older kernel headers lack it.
struct futex_waiter {
  std::uint64_t expected;
  std::uint64_t address;
  std::uint32_t flags;
  std::uint32_t reserved;
};
inline constexpr std::size_t futex_waitv_max = 128;
inline constexpr long sys_futex_waitv = 449;  // the same number on every architecture
inline constexpr std::uint32_t futex_waitv_u32_private = 2 /* FUTEX_32 */ | FUTEX_PRIVATE_FLAG;

inline futex_waiter waiter_for(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  return {expected, reinterpret_cast<std::uintptr_t>(&word), futex_waitv_u32_private, 0};
}

/// The raw futex_waitv(2) call (`timeout` relative, null: none): 0 or an errno.
inline int futex_waitv(const futex_waiter* waiters, std::size_t count, const timespec* timeout) noexcept {
  timespec deadline{};
  if (timeout != nullptr) {  // futex_waitv takes an absolute CLOCK_MONOTONIC time
    ::clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout->tv_sec + (deadline.tv_nsec + timeout->tv_nsec) / 1'000'000'000;
    deadline.tv_nsec = (deadline.tv_nsec + timeout->tv_nsec) % 1'000'000'000;
  }
  const long result = ::syscall(sys_futex_waitv, waiters, static_cast<unsigned>(count), 0U,
                                timeout != nullptr ? &deadline : nullptr, CLOCK_MONOTONIC);
  return result < 0 ? errno : 0;
}

/// Whether futex_waitv was found unusable: remembered for the process, so
/// that a refused call is made once, not once per wait.
inline std::atomic<bool>& futex_waitv_unusable() noexcept {
  static std::atomic<bool> unusable{false};
  return unusable;
}

/// Sleeps while every word still holds its expected value; returns on a
/// wake of any of them, a mismatch, a signal or after `timeout` (relative;
/// null: none) with 0, -EAGAIN, -EINTR or -ETIMEDOUT. Callers re-check.
/// Any other error means futex_waitv cannot be used here (ENOSYS before
/// Linux 5.16; EPERM, say, from a seccomp profile older than it): the call
/// returns -ENOSYS at once, as does every later one, and callers fall back.
inline int futex_wait_any(const futex_waiter* waiters, std::size_t count,
                          const timespec* timeout = nullptr) noexcept {
  // Relaxed: the flag guards nothing but the syscall; a stale false only
  // makes one more call that fails.
  if (futex_waitv_unusable().load(std::memory_order_relaxed)) return -ENOSYS;
  int error = injected_futex_waitv_error();
  if (error == 0) error = futex_waitv(waiters, count, timeout);
  if (error == 0 || error == EAGAIN || error == EINTR || error == ETIMEDOUT) return -error;
  futex_waitv_unusable().store(true, std::memory_order_relaxed);
  return -ENOSYS;
}

#ifdef I2O2_TESTING
/// Test builds only: forget that futex_waitv was found unusable, as a new
/// process would.
inline void forget_futex_waitv_unusable() noexcept { futex_waitv_unusable().store(false); }
#endif

}  // namespace i2o2::detail
