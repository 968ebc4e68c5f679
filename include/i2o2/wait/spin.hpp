#pragma once
/// The spin wait strategy: the scheduler never sleeps. It polls the queue
/// and the CQ in a loop, so producers never make a syscall to wake it.
/// For a dedicated core only: it burns its CPU even when idle.

#include "concept.hpp"

namespace i2o2::wait {

struct spin {
  static constexpr bool can_park = false;
  void notify() noexcept {}
  bool arm(detail::ring&) noexcept { return false; }
  void on_wake(int) noexcept {}
  bool armed() const noexcept { return false; }
  void block() noexcept {}
};
static_assert(wait_strategy<spin>);

}  // namespace i2o2::wait
