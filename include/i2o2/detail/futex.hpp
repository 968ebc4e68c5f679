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

/// Sleeps while every word still holds its expected value; returns on a
/// wake of any of them, a mismatch, a signal or after `timeout` (relative;
/// null: none) with 0 or -errno: ENOSYS before Linux 5.16. Callers re-check.
inline int futex_wait_any(const futex_waiter* waiters, std::size_t count,
                          const timespec* timeout = nullptr) noexcept {
  if (injected_futex_waitv_missing()) return -ENOSYS;
  timespec deadline{};
  if (timeout != nullptr) {  // futex_waitv takes an absolute CLOCK_MONOTONIC time
    ::clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout->tv_sec + (deadline.tv_nsec + timeout->tv_nsec) / 1'000'000'000;
    deadline.tv_nsec = (deadline.tv_nsec + timeout->tv_nsec) % 1'000'000'000;
  }
  const long result = ::syscall(sys_futex_waitv, waiters, static_cast<unsigned>(count), 0U,
                                timeout != nullptr ? &deadline : nullptr, CLOCK_MONOTONIC);
  return result < 0 ? -errno : 0;
}

}  // namespace i2o2::detail
