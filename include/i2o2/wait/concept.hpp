#pragma once
/// The Wait policy: how an idle scheduler parks and how a producer wakes it.
///
/// The park protocol itself (announce, re-check, sleep; push, then wake only
/// if announced) lives in the scheduler, so a strategy only provides:
///  1. default construction (may throw: the scheduler is not created);
///  2. `W::can_park`: false for strategies that never sleep (`spin`);
///  3. `notify()`: any thread, noexcept: make the parked scheduler's
///     `io_uring_enter` return. Called at most once per announced park;
///  4. `arm(ring)`: scheduler thread, before announcing a park: make sure
///     `notify()` will complete a CQE tagged `detail::wake_user_data`; false
///     when the SQ has no room (the scheduler then does not park). Arming
///     without parking after all is fine: the armed op waits for next time;
///  5. `on_wake(result)`: scheduler thread, for that CQE;
///  6. `armed()`: whether its op is in flight (it holds a CQ slot and must
///     be cancelled before the ring closes);
///  7. `block()`: for rings that cannot sleep on a CQE (IOPOLL): sleep in a
///     plain syscall until `notify()`.

#include "../detail/ring.hpp"

#include <concepts>

namespace i2o2 {

template <class W>
concept wait_strategy = std::default_initializable<W> && requires(W& wait, detail::ring& ring, int result) {
  { W::can_park } -> std::convertible_to<bool>;
  { wait.notify() }
  noexcept;
  { wait.arm(ring) } -> std::same_as<bool>;
  { wait.on_wake(result) }
  noexcept;
  { wait.armed() } -> std::same_as<bool>;
  { wait.block() }
  noexcept;
};

}  // namespace i2o2
