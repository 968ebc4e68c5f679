// Faults injected at the ring boundary (detail/fault_injection.hpp, test
// builds only): io_uring_enter failing with -EINTR, -EAGAIN or -EBUSY is
// retried without losing an op or releasing a guard early; ring setup
// failing is a clear error; an older kernel means a fallback; a feature
// probe that fails for a passing reason is not kept. The hooks sit in the
// ring every scheduler shares, so each test runs over all 24 queue x wait x
// reply combinations (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "proc_support.hpp"
#include "support.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using i2o2::detail::fault_injection;
using i2o2::detail::kernel_features;

struct clear_faults {
  ~clear_faults() {
    fault_injection::get().clear();
    i2o2::detail::kernel_features::stop_pretending();
  }
};

/// Ends a case that re-probes the kernel: a sure result is kept again.
struct probe_afresh {
  ~probe_afresh() {
    fault_injection::get().clear();
    kernel_features::probe_again();
    (void)kernel_features::get();
  }
};

std::uint32_t flags_of(const kernel_features& kernel) {
  std::uint32_t flags = 0;
  for (const auto& info : i2o2::detail::known_setup_flags)
    if (kernel.has_setup_flag(info.flag)) flags |= info.flag;
  return flags;
}

} // namespace

TEST_CASE("failed enters are retried: no op lost, no guard released early", "[faults]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  for (const int error : {EINTR, EAGAIN, EBUSY}) {
    DYNAMIC_SECTION("io_uring_enter fails with " << ::strerrordesc_np(error)) {
      i2o2_test::watchdog dog("enter failures");
      clear_faults cleanup;
      auto scheduler = i2o2_test::spawn_policy(policy, {.queue_capacity = 64, .ring_depth = 8});
      auto& handle = scheduler->handle();
      i2o2_test::pipe_pair pipe;
      auto record = std::make_shared<i2o2_test::guard_record>();
      char buffer[3] = {};
      auto parked = handle.submit(i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 3},
                                  i2o2_test::counting_guard(record));
      const long before = fault_injection::get().injected_enters();
      fault_injection::get().fail_enters(error, 200);
      int completed = 0;
      for (int round = 0; round < 50; ++round) {
        std::vector<i2o2_test::pending> replies;
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
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  for (const int error : {ENOMEM, EPERM}) {
    clear_faults cleanup;
    fault_injection::get().fail_setup(error);
    try {
      i2o2_test::spawn_policy(policy);
      FAIL("spawn succeeded although ring setup failed");
    } catch (const std::system_error& failure) {
      CHECK(failure.code().value() == error);
      CHECK_THAT(failure.what(), Catch::Contains("io_uring_queue_init"));
    }
  }
}

TEST_CASE("a feature probe refused IORING_REGISTER_PROBE lets every op through for the kernel to answer, "
          "and is probed again",
          "[faults][probe]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("probe refused");
  probe_afresh cleanup;
  const i2o2::op::raw unknown{i2o2::prepared_op::with_opcode(250)};  // an opcode no kernel has
  // ENOMEM, as a kernel short of memory (or EPERM from a seccomp rule).
  kernel_features::probe_again();
  fault_injection::get().fail_opcode_probe(ENOMEM);
  const kernel_features& unsure = kernel_features::get();
  REQUIRE(unsure.available());
  CHECK_FALSE(unsure.sure());
  CHECK(unsure.has_opcode(IORING_OP_NOP));
  CHECK(unsure.has_opcode(250));              // unknown: the kernel will say
  CHECK(&kernel_features::get() == &unsure);  // used, not probed per call
  {
    // Its ring probes again, refused again.
    fault_injection::get().fail_opcode_probe(ENOMEM);
    auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8});
    auto& handle = scheduler->handle();
    CHECK(&kernel_features::get() == &unsure);
    CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);  // was errc::unsupported_op
    CHECK(handle.submit(unknown).wait() == -EINVAL);    // the kernel's answer
  }
  // The next scheduler's creation probes again, which works now.
  auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8});
  auto& handle = scheduler->handle();
  const kernel_features& probed = kernel_features::get();
  CHECK(&probed != &unsure);
  CHECK(probed.sure());
  CHECK(probed.has_opcode(IORING_OP_NOP));
  CHECK_FALSE(probed.has_opcode(250));
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(handle.submit(unknown).wait() == i2o2::result_of(i2o2::errc::unsupported_op));
}

TEST_CASE("a setup-flag trial refused for a passing reason is not kept: the flags are probed again",
          "[faults][probe]") {
  i2o2_test::watchdog dog("flag trial refused");
  probe_afresh cleanup;
  kernel_features::probe_again();
  const kernel_features& clean = kernel_features::get();
  REQUIRE(clean.sure());
  // ENOMEM once, as when the locked memory limit is used up for a moment.
  kernel_features::probe_again();
  fault_injection::get().fail_flag_trial(ENOMEM);
  const kernel_features& unsure = kernel_features::get();
  REQUIRE(unsure.available());
  CHECK_FALSE(unsure.sure());
  CHECK((flags_of(unsure) & flags_of(clean)) == flags_of(clean));  // untried: presumed present
  CHECK(&kernel_features::get() == &unsure);                       // used, not probed per call
  // The next scheduler's creation probes again, which works now.
  auto [owner, handle] = i2o2::spawn({.ring_depth = 8});
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  const kernel_features& again = kernel_features::get();
  CHECK(&again != &unsure);
  CHECK(again.sure());
  CHECK(flags_of(again) == flags_of(clean));
}

TEST_CASE("a kernel without DEFER_TASKRUN and SINGLE_ISSUER gets a plain ring that works", "[faults]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("older kernel ring");
  clear_faults cleanup;
  i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
                                                 IORING_SETUP_SUBMIT_ALL);
  const i2o2::config cfg{.ring_depth = 4};
  {
    // The ring is made from the config alone, whatever the policies, and
    // any_scheduler does not expose it: a default scheduler of the same
    // config (created, never run) shows its flags.
    i2o2::default_scheduler probe(cfg);
    CHECK((probe.ring_flags() & IORING_SETUP_DEFER_TASKRUN) == 0);
    CHECK((probe.ring_flags() & IORING_SETUP_SINGLE_ISSUER) == 0);
  }
  auto scheduler = i2o2_test::spawn_policy(policy, cfg);
  {
    auto handle = scheduler->take_handle();
    for (int i = 0; i < 100; ++i) REQUIRE(handle->submit(i2o2::op::nop{}).wait() == 0);
  }
  scheduler->join();
}

TEST_CASE("a kernel without SQE128 refuses config.sqe128 unless told to skip it", "[faults]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  clear_faults cleanup;
  i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_SQE128);
  CHECK_THROWS_WITH(i2o2_test::spawn_policy(policy, {.sqe128 = true}),
                    Catch::Contains("IORING_SETUP_SQE128") && Catch::Contains("5.19"));
  auto scheduler = i2o2_test::spawn_policy(policy, {.sqe128 = true, .skip_unsupported = true});
  auto& handle = scheduler->handle();
  // The flag was dropped, so an SQE128 op is refused rather than mangled.
  CHECK(handle.submit(i2o2::op::uring_cmd{.file = 0}).wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
}

TEST_CASE("a kernel without CQE32 refuses config.cqe32 unless told to skip it", "[faults]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  clear_faults cleanup;
  i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_CQE32);
  CHECK_THROWS_WITH(i2o2_test::spawn_policy(policy, {.cqe32 = true}),
                    Catch::Contains("IORING_SETUP_CQE32") && Catch::Contains("5.19"));
  auto scheduler = i2o2_test::spawn_policy(policy, {.cqe32 = true, .skip_unsupported = true});
  auto& handle = scheduler->handle();
  // The flag was dropped: an op wanting the extra words is refused, not
  // answered with words the 16-byte CQE never had.
  i2o2::cqe_extra extra;
  i2o2::prepared_op nop = i2o2::op::nop{};
  nop.extra_out = &extra;
  CHECK(handle.submit(nop).wait() == i2o2::result_of(i2o2::errc::needs_cqe32));
}

TEST_CASE("a kernel without sparse table registration (before 5.19) still gets its empty tables",
          "[faults]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("sparse tables refused");
  clear_faults cleanup;
  fault_injection::get().refuse_sparse_tables(true);
  auto scheduler =
      i2o2_test::spawn_policy(policy, {.ring_depth = 8, .registered_files = 3, .registered_buffers = 2});
  auto& handle = scheduler->handle();
  i2o2_test::temp_file file;
  REQUIRE(::pwrite(file.fd(), "hello", 5, 0) == 5);
  // Empty slots: an op on one fails in the kernel, as with a sparse table.
  char bytes[8] = {};
  CHECK(handle.submit(i2o2::op::read{.file = i2o2::fixed_file(2), .buf = bytes, .len = 5, .offset = 0})
            .wait() == -EBADF);
  const int index = handle.register_file(file.fd()).wait();
  REQUIRE(index >= 0);
  CHECK(handle
            .submit(i2o2::op::read{
                .file = i2o2::fixed_file(static_cast<unsigned>(index)), .buf = bytes, .len = 5, .offset = 0})
            .wait() == 5);
  alignas(4096) static char page[4096];
  const int buffer = handle.register_buffer(page, sizeof(page)).wait();
  REQUIRE(buffer >= 0);
  CHECK(handle
            .submit(i2o2::op::read_fixed{.file = file.fd(),
                                         .buf = page,
                                         .len = 5,
                                         .offset = 0,
                                         .buf_index = static_cast<std::uint16_t>(buffer)})
            .wait() == 5);
  CHECK(std::string(page, 5) == "hello");
  CHECK(handle.unregister_file(static_cast<unsigned>(index)).wait() == 0);
  CHECK(handle.unregister_buffer(static_cast<unsigned>(buffer)).wait() == 0);
}

TEST_CASE("the sync MSG_RING probe believes only a message that arrived", "[faults][may_skip]") {
  using i2o2::detail::kernel_features;
  io_uring target{};
  REQUIRE(io_uring_queue_init(4, &target, 0) == 0);
  const bool sent = kernel_features::sends_sync_msg_ring(target.ring_fd);
  io_uring_cqe* cqe = nullptr;
  const bool arrived = io_uring_peek_cqe(&target, &cqe) == 0;
  io_uring_queue_exit(&target);
  CHECK(sent == arrived);
  CHECK(kernel_features::get().has_sync_msg_ring() == sent);
  if (!sent) WARN("SKIP: this kernel lacks the sync MSG_RING (Linux 6.13); only the refusals are checked");
  // The EBADF a kernel answers for fd -1 (older ones whatever the opcode)
  // is no evidence of the sync form.
  CHECK_FALSE(kernel_features::sends_sync_msg_ring(-1));
  i2o2_test::pipe_pair pipe;
  CHECK_FALSE(kernel_features::sends_sync_msg_ring(pipe.read_end()));
}

TEST_CASE("a msg_ring wake-up that fails for a moment is posted again: no wake-up is lost", "[faults]") {
  const bool fallback_ring = GENERATE(false, true);  // the 5.18-6.12 waker ring, or the sync form
  CAPTURE(fallback_ring);
  i2o2_test::watchdog dog("msg_ring wake failures");
  clear_faults cleanup;
  struct stop_pretending {
    ~stop_pretending() { i2o2::detail::kernel_features::stop_pretending(); }
  } pretending;
  i2o2::detail::kernel_features::pretend_missing(0, {}, fallback_ring);
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::msg_ring, i2o2::reply::future,
                                          i2o2::any_guard>;
  const std::string name = "i2o2-msgwake";
  // No idle or busy spin: between ops the scheduler parks, and each op needs a wake-up.
  auto running = i2o2::spawn_scheduler<scheduler>({.ring_depth = 8,
                                                   .idle_spin = std::chrono::microseconds(0),
                                                   .busy_spin = std::chrono::microseconds(0),
                                                   .thread_name = name});
  const auto tid = i2o2_test::thread_named(name);
  REQUIRE(tid.has_value());
  const long before = fault_injection::get().injected_msg_rings();
  for (int round = 0; round < 20; ++round) {
    // Parked (asleep in io_uring_enter) before the push, so the push wakes it.
    REQUIRE(i2o2_test::eventually([&] { return i2o2_test::run_state(*tid) == 'S'; }));
    fault_injection::get().fail_msg_rings(round % 2 == 0 ? EAGAIN : ENOMEM, 2);
    CHECK(running.handle.submit(i2o2::op::nop{}).wait() == 0);
  }
  CHECK(fault_injection::get().injected_msg_rings() - before > 0);

  if (!fallback_ring) return;
  // The waker ring's enter refused for a moment (-EAGAIN, -EBUSY) leaves
  // its MSG_RING unsent: it is submitted again, never taken for a sent
  // wake (which left the scheduler parked until some later wake).
  const long enters_before = fault_injection::get().injected_waker_enters();
  for (int round = 0; round < 10; ++round) {
    REQUIRE(i2o2_test::eventually([&] { return i2o2_test::run_state(*tid) == 'S'; }));
    fault_injection::get().fail_waker_enters(round % 2 == 0 ? EAGAIN : EBUSY, 1);
    CHECK(running.handle.submit(i2o2::op::nop{}).wait() == 0);
  }
  CHECK(fault_injection::get().injected_waker_enters() - enters_before == 10);
}

TEST_CASE("kernel_supports answers as submit does, and kernel_needed_for names the release",
          "[faults][probe]") {
  i2o2_test::watchdog dog("kernel_supports");
  clear_faults cleanup;
  i2o2_test::temp_file file;
  const i2o2::op::ftruncate truncate{.file = file.fd(), .length = 10};
  CHECK(i2o2::kernel_supports(i2o2::op::nop{}));
  CHECK(std::string(i2o2::kernel_needed_for(truncate)) == "Linux 6.9");
  CHECK(std::string(i2o2::kernel_needed_for(i2o2::op::read{})) == "Linux 5.6");
  CHECK(std::string(i2o2::kernel_needed_for(i2o2::op::raw{i2o2::prepared_op::with_opcode(250)})) ==
        "a newer kernel");

  auto [owner, handle] = i2o2::spawn({.ring_depth = 8});
  if (!i2o2::kernel_supports(truncate)) {
    WARN("SKIP: this kernel has no IORING_OP_FTRUNCATE (Linux 6.9)");
    return;
  }
  CHECK(handle.submit(truncate).wait() == 0);
  // A kernel before 6.9: the caller learns it before sending, as submit
  // would have answered.
  kernel_features::pretend_missing(0, {i2o2::compat::op_ftruncate});
  CHECK_FALSE(i2o2::kernel_supports(truncate));
  CHECK(handle.submit(truncate).wait() == i2o2::result_of(i2o2::errc::unsupported_op));
  CHECK(i2o2::kernel_supports(i2o2::op::nop{}));
}
