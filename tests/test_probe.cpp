// The kernel feature probe under a small RLIMIT_MEMLOCK. Without
// CAP_IPC_LOCK, every io_uring counts against the limit until the kernel
// frees it, some time after close. A probe that took a refusal for want of
// memory as a missing feature used to report CQE32, SINGLE_ISSUER and
// DEFER_TASKRUN missing at 64 KiB, and then left too little for the
// scheduler's own ring.
//
// This file holds one test case on purpose: the probe runs once per
// process, so the child below must be forked before anything probed.
#include "support.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace {

/// What the child saw, sent back through a pipe.
struct child_report {
  int stage = 0;  // 1: limited, 2: probed, 3: a scheduler ran a nop
  std::uint32_t flags = 0;
  int nop_result = -1;
};

std::uint32_t probed_flags() {
  const auto& kernel = i2o2::detail::kernel_features::get();
  std::uint32_t flags = 0;
  for (const auto& info : i2o2::detail::known_setup_flags)
    if (kernel.has_setup_flag(info.flag)) flags |= info.flag;
  return flags;
}

/// In the child: runs as a user of its own (no capabilities, so no
/// CAP_IPC_LOCK; and no other process charging the same user) with a
/// 64 KiB RLIMIT_MEMLOCK, the default of many distributions and containers.
[[noreturn]] void limited_child(int report_fd) {
  child_report report;
  const rlimit limit{64 * 1024, 64 * 1024};
  const uid_t own_user = 0x50000000U + static_cast<uid_t>(::getpid());
  if (::setrlimit(RLIMIT_MEMLOCK, &limit) == 0 && ::setresuid(own_user, own_user, own_user) == 0) {
    report.stage = 1;
    report.flags = probed_flags();
    report.stage = 2;
    try {
      auto [owner, handle] = i2o2::spawn({.queue_capacity = 8, .ring_depth = 4});
      report.nop_result = handle.submit(i2o2::op::nop{}).wait();
      report.stage = 3;
    } catch (const std::exception& error) {
      std::fprintf(stderr, "child: %s\n", error.what());
    }
  }
  (void)!::write(report_fd, &report, sizeof(report));
  ::_exit(0);
}

}  // namespace

TEST_CASE("the feature probe under a 64 KiB RLIMIT_MEMLOCK finds every flag it finds without a limit, and "
          "leaves room for a scheduler",
          "[probe][memlock]") {
  // Forked before any other thread exists (TSan refuses threads in a child
  // forked from a multi-threaded parent): the parent's watchdog comes after,
  // and the child's own limit is an alarm.
  int report_pipe[2];
  REQUIRE(::pipe(report_pipe) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::alarm(60);  // a hang kills the child; the parent then reads a short report
    limited_child(report_pipe[1]);
  }
  i2o2_test::watchdog dog("feature probe under RLIMIT_MEMLOCK", std::chrono::seconds(90));
  ::close(report_pipe[1]);
  child_report report;
  const auto got = ::read(report_pipe[0], &report, sizeof(report));
  ::close(report_pipe[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(got == static_cast<ssize_t>(sizeof(report)));
  if (report.stage == 0) {
    WARN("SKIP: the child could not become a user of its own (needs root)");
    return;
  }
  REQUIRE(report.stage >= 2);
  // The parent probes only now, with no limit (root keeps CAP_IPC_LOCK).
  CHECK(report.flags == probed_flags());
  CHECK(report.stage == 3);
  CHECK(report.nop_result == 0);
}
