// A guard whose move may throw: basic_scheduler must reject it, naming guard_type.
#include <i2o2/i2o2.hpp>

struct fragile_guard {
  fragile_guard() = default;
  fragile_guard(fragile_guard&&) noexcept(false) {}
  fragile_guard& operator=(fragile_guard&&) noexcept(false) { return *this; }
};

i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::future, fragile_guard>* scheduler;
