// Faults injected at the ring boundary (detail/fault_injection.hpp, test
// builds only): io_uring_enter failing with -EINTR, -EAGAIN or -EBUSY is
// retried without losing an op or releasing a guard early; ring setup
// failing is a clear error; an older kernel means a fallback.
#include "support.hpp"

#include <vector>

namespace {

using i2o2::detail::fault_injection;

struct clear_faults {
  ~clear_faults() {
    fault_injection::get().clear();
    i2o2::detail::kernel_features::stop_pretending();
  }
};

} // namespace

TEST_CASE("failed enters are retried: no op lost, no guard released early", "[faults]") {
  for (const int error : {EINTR, EAGAIN, EBUSY}) {
    DYNAMIC_SECTION("io_uring_enter fails with " << ::strerrordesc_np(error)) {
      i2o2_test::watchdog dog("enter failures");
      clear_faults cleanup;
      auto [owner, handle] = i2o2::spawn({.queue_capacity = 64, .ring_depth = 8});
      i2o2_test::pipe_pair pipe;
      auto record = std::make_shared<i2o2_test::guard_record>();
      char buffer[3] = {};
      auto parked = handle.submit(i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 3},
                                  i2o2_test::counting_guard(record));
      const long before = fault_injection::get().injected_enters();
      fault_injection::get().fail_enters(error, 200);
      int completed = 0;
      for (int round = 0; round < 50; ++round) {
        std::vector<i2o2::future_reply> replies;
        for (int i = 0; i < 20; ++i) replies.push_back(handle.submit(i2o2::op::nop{}));
        for (auto& reply : replies) completed += reply.wait() == 0 ? 1 : 0;
      }
      CHECK(completed == 1000);
      CHECK(fault_injection::get().injected_enters() - before > 0);
      CHECK(record->destroyed == 0);  // the parked read is still in the kernel
      pipe.feed("abc", 3);
      CHECK(parked.wait() == 3);
      REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // settles the read's guard
      CHECK(record->destroyed == 1);
      CHECK(std::string(buffer, 3) == "abc");
    }
  }
}

TEST_CASE("a ring setup failure is a clear error with the kernel's errno", "[faults]") {
  for (const int error : {ENOMEM, EPERM}) {
    clear_faults cleanup;
    fault_injection::get().fail_setup(error);
    try {
      i2o2::spawn();
      FAIL("spawn succeeded although ring setup failed");
    } catch (const std::system_error& failure) {
      CHECK(failure.code().value() == error);
      CHECK_THAT(failure.what(), Catch::Contains("io_uring_queue_init"));
    }
  }
}

TEST_CASE("a kernel without DEFER_TASKRUN and SINGLE_ISSUER gets a plain ring that works", "[faults]") {
  i2o2_test::watchdog dog("older kernel ring");
  clear_faults cleanup;
  i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
                                                 IORING_SETUP_SUBMIT_ALL);
  i2o2::default_scheduler scheduler({.ring_depth = 4});
  CHECK((scheduler.ring_flags() & IORING_SETUP_DEFER_TASKRUN) == 0);
  CHECK((scheduler.ring_flags() & IORING_SETUP_SINGLE_ISSUER) == 0);
  std::thread runner([&] { scheduler.run(); });
  {
    auto handle = scheduler.handle();
    for (int i = 0; i < 100; ++i) REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  }
  runner.join();
}

TEST_CASE("a kernel without SQE128 refuses config.sqe128 unless told to skip it", "[faults]") {
  clear_faults cleanup;
  i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_SQE128);
  CHECK_THROWS_WITH(i2o2::spawn({.sqe128 = true}), Catch::Contains("IORING_SETUP_SQE128") && Catch::Contains("5.19"));
  auto [owner, handle] = i2o2::spawn({.sqe128 = true, .skip_unsupported = true});
  // The flag was dropped, so an SQE128 op is refused rather than mangled.
  CHECK(handle.submit(i2o2::op::uring_cmd{.file = 0}).wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
}
