// A reply whose complete() may throw: basic_scheduler must reject it, naming reply_policy.
#include <i2o2/i2o2.hpp>

struct throwing_reply {
  struct sender {
    void complete(int) && {}  // not noexcept: a throw would lose the guard
  };
  struct receiver {};
};

i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, throwing_reply, i2o2::any_guard>* scheduler;
