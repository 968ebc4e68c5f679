// i2o2::wait_any: a client with several future replies in flight takes
// whichever finishes first. Reads are parked on empty pipes and finished
// in a chosen order by writing to those pipes.
#include "proc_support.hpp"
#include "support.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
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

TEST_CASE("wait_any over many replies still sees the last one finish", "[wait_any]") {
  i2o2_test::watchdog dog("wait_any over many");
  constexpr std::size_t count = 130;  // past the 128 words a futex_waitv call takes: no limit here
  auto running = i2o2::spawn({.queue_capacity = 256, .ring_depth = 256});
  parked_reads reads(running.handle, count);
  reads.pipes[count - 1].feed("z", 1);
  CHECK(i2o2::wait_any(reads.replies) == count - 1);
  for (std::size_t i = 0; i + 1 < count; ++i) reads.pipes[i].feed("z", 1);
  for (const auto& reply : reads.replies) CHECK(reply.wait() == 1);
}

TEST_CASE("any_waiter: of the senders that saw a sleeping wait_any, only the first makes the wake syscall",
          "[wait_any]") {
  // A disk completing 30 reads at once used to cost the scheduler 30 wake
  // syscalls for one sleeping client.
  i2o2_test::watchdog dog("any_waiter wake");
  constexpr std::uint32_t senders = 8;
  auto* waiter = i2o2::detail::any_waiter::make();
  waiter->hold(senders);  // one reference per announcement, as wait_any takes
  std::atomic<pid_t> sleeper_tid{0};
  std::thread sleeper([&] {
    sleeper_tid.store(static_cast<pid_t>(::syscall(SYS_gettid)));
    waiter->sleep();
  });
  REQUIRE(i2o2_test::eventually(
      [&] { return sleeper_tid.load() != 0 && i2o2_test::run_state(sleeper_tid.load()) == 'S'; }));
  int syscalls = 0;
  for (std::uint32_t i = 0; i < senders; ++i)
    syscalls += waiter->wake() ? 1 : 0;
  CHECK(syscalls == 1);
  sleeper.join();     // woken: a hang here is the watchdog's failure
  waiter->release();  // the client's own reference, the last: back to the pool (ASan checks)
}

namespace {

/// `count` future replies with their senders, no scheduler: the test
/// completes them itself, when it chooses.
struct reply_pairs {
  explicit reply_pairs(std::size_t count) {
    senders.reserve(count);
    replies.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      auto made = i2o2::reply::future::make();
      senders.push_back(std::move(made.first));
      replies.push_back(std::move(made.second));
    }
  }
  /// Completes reply `i` with result `100 + i`.
  void complete(std::size_t i) { std::move(senders[i]).complete(100 + static_cast<int>(i)); }

  std::vector<i2o2::reply::future::sender> senders;
  std::vector<i2o2::future_reply> replies;
};

/// Runs `wait_any` on another thread; `asleep()` once it sleeps in it.
class any_waiting_thread {
public:
  explicit any_waiting_thread(std::span<const i2o2::future_reply> replies)
      : thread_([this, replies] {
          tid_.store(static_cast<pid_t>(::syscall(SYS_gettid)));
          got_.store(i2o2::wait_any(replies));
        }) {}
  ~any_waiting_thread() {
    if (thread_.joinable()) thread_.join();
  }
  bool asleep() const { return tid_.load() != 0 && i2o2_test::run_state(tid_.load()) == 'S'; }
  /// Sends the thread `signal` (once it is known).
  bool send(int signal) const { return ::syscall(SYS_tgkill, ::getpid(), tid_.load(), signal) == 0; }
  /// The index wait_any returned, once it has.
  std::size_t join() {
    thread_.join();
    return got_.load();
  }

private:
  std::atomic<pid_t> tid_{0};
  std::atomic<std::size_t> got_{SIZE_MAX};
  std::thread thread_;
};

}  // namespace

TEST_CASE(
    "wait_any asleep on 32 replies that complete together wakes and takes one; every result stays right",
    "[wait_any]") {
  i2o2_test::watchdog dog("wait_any burst");
  reply_pairs pairs(32);
  any_waiting_thread waiting(pairs.replies);
  REQUIRE(i2o2_test::eventually([&] { return waiting.asleep(); }));
  for (std::size_t i = pairs.replies.size(); i-- > 0;)
    pairs.complete(i);  // newest first, as a disk may
  const std::size_t got = waiting.join();
  REQUIRE(got < pairs.replies.size());
  CHECK(pairs.replies[got].try_get() == std::optional<int>(100 + static_cast<int>(got)));
  for (std::size_t i = 0; i < pairs.replies.size(); ++i)
    CHECK(pairs.replies[i].wait() == 100 + static_cast<int>(i));
  CHECK(i2o2::wait_any(pairs.replies) == 0);  // all in: the first, at once
}

namespace {
std::atomic<int> signals_handled{0};
void count_signal(int) { signals_handled.fetch_add(1); }
}  // namespace

TEST_CASE("wait_any interrupted by signals while it sleeps announces itself again, and still wakes",
          "[wait_any]") {
  // A handler without SA_RESTART: each signal ends the futex sleep with
  // EINTR and no reply in, so wait_any must withdraw and announce again,
  // holding a fresh reference per announcement (one hold for every round
  // would release more than was held, which any_waiter asserts, and free
  // the waiter while its senders still use it).
  i2o2_test::watchdog dog("wait_any with signals");
  struct sigaction action {};
  action.sa_handler = count_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction previous {};
  REQUIRE(::sigaction(SIGUSR1, &action, &previous) == 0);
  struct restore {
    struct sigaction& previous;
    ~restore() { ::sigaction(SIGUSR1, &previous, nullptr); }
  } restore_on_exit{previous};

  reply_pairs pairs(4);
  const int handled_before = signals_handled.load();
  const auto handled = [&] { return signals_handled.load() - handled_before; };
  any_waiting_thread waiting(pairs.replies);
  constexpr int interruptions = 5;
  for (int i = 1; i <= interruptions; ++i) {
    // Asleep again: the handler has run for every earlier signal.
    REQUIRE(i2o2_test::eventually([&] { return handled() == i - 1 && waiting.asleep(); }));
    REQUIRE(waiting.send(SIGUSR1));
  }
  REQUIRE(i2o2_test::eventually([&] { return handled() == interruptions && waiting.asleep(); }));
  pairs.complete(2);
  CHECK(waiting.join() == 2);
  for (std::size_t i = 0; i < pairs.replies.size(); ++i)
    if (i != 2) pairs.complete(i);
  for (std::size_t i = 0; i < pairs.replies.size(); ++i)
    CHECK(pairs.replies[i].wait() == 100 + static_cast<int>(i));
}

TEST_CASE("wait_any racing its replies' completions returns one that is in, and loses no wake",
          "[wait_any]") {
  // Completions land before, during and after wait_any announces itself,
  // while it sleeps and while it withdraws: each sender that saw the
  // announcement holds the waiter until its wake is done, and the client
  // drops the rest (any_waiter asserts no over-release; ASan builds report
  // a use after the last release, TSan a race on the hand-over).
  i2o2_test::watchdog dog("wait_any racing completions");
  constexpr int rounds = 3000;
  constexpr std::size_t count = 4;
  std::atomic<int> round_ready{-1};  // the round whose replies the completer may complete
  std::atomic<int> round_done{-1};   // the round the waiter has checked
  std::vector<std::unique_ptr<reply_pairs>> all;
  for (int round = 0; round < rounds; ++round)
    all.push_back(std::make_unique<reply_pairs>(count));
  std::atomic<pid_t> waiter_tid{0};
  std::thread completer([&] {
    std::minstd_rand random(7);
    for (int round = 0; round < rounds; ++round) {
      while (round_ready.load() < round)
        std::this_thread::yield();
      // Every fourth round, once the waiter sleeps; the others after a
      // random spin of up to a few microseconds, between the completions
      // too, so that they fall anywhere in wait_any.
      if (round % 4 == 0)
        while (i2o2_test::run_state(waiter_tid.load()) != 'S' && round_done.load() < round)
          std::this_thread::yield();
      for (std::size_t i = 0; i < count; ++i) {
        const std::size_t which = (i + static_cast<std::size_t>(round)) % count;
        for (unsigned spin = random() % 2048; spin > 0; --spin)
          i2o2::detail::cpu_relax();
        all[static_cast<std::size_t>(round)]->complete(which);
      }
    }
  });
  waiter_tid.store(static_cast<pid_t>(::syscall(SYS_gettid)));
  int wrong = 0;
  for (int round = 0; round < rounds; ++round) {
    auto& pairs = *all[static_cast<std::size_t>(round)];
    round_ready.store(round);
    const std::size_t got = i2o2::wait_any(pairs.replies);
    if (got >= count || pairs.replies[got].try_get() != std::optional<int>(100 + static_cast<int>(got)))
      ++wrong;
    round_done.store(round);
  }
  completer.join();
  CHECK(wrong == 0);
  for (auto& pairs : all)
    for (std::size_t i = 0; i < count; ++i)
      CHECK(pairs->replies[i].wait() == 100 + static_cast<int>(i));
}
