// i2o2::wait_any: a client with several future replies in flight takes
// whichever finishes first. Reads are parked on empty pipes and finished
// in a chosen order by writing to those pipes.
#include "proc_support.hpp"
#include "support.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace {

/// `count` reads parked on pipes of their own, through `handle`.
struct parked_reads {
  parked_reads(i2o2::handle& handle, std::size_t count) : pipes(count), buffers(count) {
    for (std::size_t i = 0; i < count; ++i)
      replies.push_back(handle.submit(i2o2_test::pipe_read(pipes[i], buffers[i].data(), 1)));
    i2o2_test::churn(handle);  // every read is parked in the kernel
  }
  std::vector<i2o2_test::pipe_pair> pipes;
  std::vector<std::array<char, 1>> buffers;
  std::vector<i2o2::future_reply> replies;
};

}  // namespace

TEST_CASE("wait_any returns the reply that finished, whichever it is, and leaves the rest parked",
          "[wait_any]") {
  i2o2_test::watchdog dog("wait_any order");
  auto [owner, handle] = i2o2::spawn({.queue_capacity = 64, .ring_depth = 16});
  parked_reads reads(handle, 4);
  for (const std::size_t finish : {2U, 0U, 3U, 1U}) {
    INFO("finishing read " << finish);
    reads.pipes[finish].feed("x", 1);
    const std::size_t got = i2o2::wait_any(reads.replies);
    CHECK(got == finish);
    CHECK(reads.replies[got].wait() == 1);
    // Taken: the client refills the slot, here with a read parked again.
    reads.replies[got] = handle.submit(i2o2_test::pipe_read(reads.pipes[got], reads.buffers[got].data(), 1));
    i2o2_test::churn(handle);
    for (const auto& reply : reads.replies) CHECK_FALSE(reply.is_ready());
  }
  for (std::size_t i = 0; i < reads.pipes.size(); ++i) reads.pipes[i].feed("y", 1);
  for (const auto& reply : reads.replies) CHECK(reply.wait() == 1);
}

TEST_CASE("wait_any on replies already in returns the first of them at once", "[wait_any]") {
  i2o2_test::watchdog dog("wait_any ready");
  auto [owner, handle] = i2o2::spawn({.queue_capacity = 64, .ring_depth = 16});
  parked_reads reads(handle, 3);
  reads.pipes[2].feed("a", 1);
  reads.pipes[1].feed("b", 1);
  REQUIRE(reads.replies[2].wait() == 1);
  REQUIRE(reads.replies[1].wait() == 1);
  CHECK(i2o2::wait_any(reads.replies) == 1);
  reads.pipes[0].feed("c", 1);
  CHECK(reads.replies[0].wait() == 1);
}

TEST_CASE("wait_any over more replies than futex_waitv takes still sees the last one finish", "[wait_any]") {
  i2o2_test::watchdog dog("wait_any past 128");
  constexpr std::size_t count = 130;  // futex_waitv sleeps on at most 128 words
  auto [owner, handle] = i2o2::spawn({.queue_capacity = 256, .ring_depth = 256});
  parked_reads reads(handle, count);
  reads.pipes[count - 1].feed("z", 1);
  CHECK(i2o2::wait_any(reads.replies) == count - 1);
  for (std::size_t i = 0; i + 1 < count; ++i) reads.pipes[i].feed("z", 1);
  for (const auto& reply : reads.replies) CHECK(reply.wait() == 1);
}

TEST_CASE("wait_any without futex_waitv (before Linux 5.16, or refused by seccomp) still sees a later reply "
          "finish first, and tries futex_waitv once",
          "[wait_any]") {
  // ENOSYS: a kernel without it; EPERM: what a seccomp profile older than
  // futex_waitv answers. Either way wait_any falls back to sleeping on one
  // word at a time; before, EPERM made it call futex_waitv in a tight loop.
  const int error = GENERATE(ENOSYS, EPERM);
  CAPTURE(error);
  i2o2_test::watchdog dog("wait_any without futex_waitv");
  using i2o2::detail::fault_injection;
  auto [owner, handle] = i2o2::spawn({.queue_capacity = 64, .ring_depth = 16});
  parked_reads reads(handle, 3);
  i2o2::detail::forget_futex_waitv_unusable();  // as in a new process
  fault_injection::get().fail_futex_waitv(error);
  const long injected_before = fault_injection::get().injected_futex_waitvs();
  const auto calls = [&] { return fault_injection::get().injected_futex_waitvs() - injected_before; };
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<std::size_t> got{99};
  std::thread waiter([&] {
    waiter_tid.store(static_cast<pid_t>(::syscall(SYS_gettid)));
    got.store(i2o2::wait_any(reads.replies));
  });
  // However the case ends: the injection off and forgotten, the waiter let
  // go and joined.
  struct cleanup {
    parked_reads& reads;
    std::thread& waiter;
    ~cleanup() {
      fault_injection::get().clear();
      if (waiter.joinable()) {
        for (auto& pipe : reads.pipes)
          pipe.feed("!", 1);
        waiter.join();
      }
      i2o2::detail::forget_futex_waitv_unusable();
    }
  } cleanup_on_exit{reads, waiter};
  // Asleep in the fallback (on read 0's word) before read 2 finishes.
  const bool asleep = i2o2_test::eventually([&] {
    return waiter_tid.load() != 0 && calls() > 0 && i2o2_test::run_state(waiter_tid.load()) == 'S';
  });
  CHECK(calls() == 1);  // not once per round of the fallback, nor in a tight loop
  REQUIRE(asleep);
  reads.pipes[2].feed("x", 1);
  waiter.join();  // a hang here is the watchdog's failure
  CHECK(calls() == 1);
  CHECK(got.load() == 2);
  CHECK(reads.replies[2].wait() == 1);
  CHECK_FALSE(reads.replies[0].is_ready());
  reads.pipes[0].feed("y", 1);
  reads.pipes[1].feed("z", 1);
  for (const auto& reply : reads.replies) CHECK(reply.wait() == 1);
}
