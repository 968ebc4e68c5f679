#pragma once
/// Keys that name one submitted op, so it can be cancelled later. Unique
/// per process without shared counters: a per-thread prefix (taken once per
/// thread) and a per-thread sequence.

#include <atomic>
#include <cstdint>

namespace i2o2::detail {

inline std::uint64_t next_op_key() noexcept {
  static std::atomic<std::uint64_t> threads{0};
  thread_local std::uint64_t next = (threads.fetch_add(1, std::memory_order_relaxed) + 1) << 40;
  return ++next;
}

}  // namespace i2o2::detail
