// The scheduler against its model (scheduler_model.hpp), for the six
// queue x reply combinations that wait with wait::msg_ring.
#include "scheduler_model.hpp"

TEMPLATE_LIST_TEST_CASE("the scheduler agrees with its model (G1-G6, R1): wait::msg_ring",
                        "[property][model]", i2o2_test::waiting_with<i2o2::wait::msg_ring>) {
  rc::prop("model-based sequences", [] { run_model<TestType>(); });
}
