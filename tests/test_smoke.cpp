// The shortest path through the library: spawn, submit a nop, wait.
#include "support.hpp"

TEST_CASE("a nop submitted to the default scheduler resolves with 0", "[smoke]") {
  i2o2_test::watchdog dog("smoke nop");
  auto [owner, handle] = i2o2::spawn();
  auto reply = handle.submit(i2o2::op::nop{});
  REQUIRE(reply.wait() == 0);
  REQUIRE(reply.try_get() == 0);
}
