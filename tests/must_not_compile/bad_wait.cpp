// A wait strategy without notify(): basic_scheduler must reject it, naming wait_strategy.
#include <i2o2/i2o2.hpp>

struct silent_wait {
  static constexpr bool can_park = true;
  bool arm(i2o2::detail::ring&) noexcept { return true; }
  void on_wake(int) noexcept {}
  bool armed() const noexcept { return false; }
  void block() noexcept {}
};

i2o2::basic_scheduler<i2o2::queue::mpsc_ring, silent_wait, i2o2::reply::future, i2o2::any_guard>* scheduler;
