// Cancellation (handle.hpp cancel(reply), scheduler.hpp control()), per-op
// deadlines (op_options::timeout, a linked timeout placed by the
// scheduler) and the shutdown deadline (owner.stop(deadline)). In every
// case the cancelled op resolves with the kernel's own result and its guard
// is released once, only after that op's own CQE (G1/G2).
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it. Every test case runs under a watchdog, once for each
// queue x wait x reply combination (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "guard_watch.hpp"
#include "proc_support.hpp"

#include <i2o2/reply/callback.hpp>
#include <i2o2/wait/msg_ring.hpp>

#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::any_handle;
using i2o2_test::churn;
using i2o2_test::eventually;
using i2o2_test::pending;
using i2o2_test::guard_watch;
using i2o2_test::holds_for;
using i2o2_test::submit_watched;
using i2o2_test::settle;

i2o2::config small_ring() { return i2o2::config{.queue_capacity = 64, .ring_depth = 8}; }


/// A reply of `policy`'s reply type that never named an op: a
/// default-constructed future or awaitable reply, or, for the callback
/// reply, what a submit refused before sending returns (cancel key 0).
pending never_named(const std::string& policy) {
  if (policy.ends_with("/future")) return pending(i2o2::future_reply{});
  if (policy.ends_with("/awaitable"))
    return pending(
        i2o2::awaitable_reply<i2o2::inline_executor>(i2o2::future_reply{}, i2o2::inline_executor{}));
  if (policy.ends_with("/callback")) return pending(std::make_shared<pending::slot>());
  throw std::logic_error("no reply type in the policy name " + policy);
}

/// After a guard's op resolved: it dies exactly once, after the reply.
void check_released_once_after_reply(any_handle& handle, const i2o2_test::guard_watch& record) {
  REQUIRE(settle(handle, [&] { return record.destroyed.load() != 0; }));
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(record.destroyed.load() == 1);
  CHECK(record.before_reply.load() == 0);
}

}  // namespace

// ---- handle.cancel --------------------------------------------------------------

TEST_CASE("cancel of a parked read resolves 0; the read resolves -ECANCELED and its guard dies "
          "once, after its own CQE",
          "[cancel]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel parked read");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  // Several rounds, so that the read's slot is reused (its user_data then
  // carries a non-zero generation the cancel must match).
  for (int round = 0; round < 8; ++round) {
    INFO("round " << round);
    std::array<char, 8> buffer{};
    auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4));
    churn(handle, round);  // the read is parked in the kernel
    REQUIRE_FALSE(read.reply.is_ready());
    CHECK(read.watch->destroyed.load() == 0);

    CHECK(handle.cancel(read.reply).wait() == 0);
    CHECK(read.reply.wait() == -ECANCELED);
    check_released_once_after_reply(handle, *read.watch);

    // The cancelled read took nothing: bytes written now stay in the pipe.
    pipe.feed("left", 4);
    CHECK(bytes_left_in(pipe) == 4);
    CHECK(std::string(buffer.data(), 4) == std::string(4, '\0'));
  }
}

TEST_CASE("cancel of an op that already finished resolves -ENOENT and leaves its result alone", "[cancel]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel finished op");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  auto write = handle.submit(i2o2::op::write{.file = file.fd(), .buf = "done", .len = 4, .offset = 0});
  REQUIRE(write.wait() == 4);
  CHECK(handle.cancel(write).wait() == -ENOENT);
  CHECK(write.try_get() == std::optional<int>(4));
  CHECK(write.wait() == 4);

  auto nop = handle.submit(i2o2::op::nop{});
  REQUIRE(nop.wait() == 0);
  churn(handle, 4);  // the slot is reused by other ops meanwhile
  CHECK(handle.cancel(nop).wait() == -ENOENT);
  CHECK(nop.wait() == 0);

  // A reply that never named an op (default-constructed) finds nothing either.
  const pending nothing = never_named(policy);
  CHECK(nothing.cancel_key() == 0);
  CHECK(handle.cancel(nothing).wait() == -ENOENT);

  // A second cancel of a cancelled op: already gone.
  i2o2_test::pipe_pair pipe;
  char byte = 0;
  auto read = handle.submit(pipe_read(pipe, &byte, 1));
  churn(handle, 1);
  CHECK(handle.cancel(read).wait() == 0);
  CHECK(read.wait() == -ECANCELED);
  CHECK(handle.cancel(read).wait() == -ENOENT);
  CHECK(read.wait() == -ECANCELED);
}

TEST_CASE("a cancel queued behind its target while the ring is full still finds it once it is "
          "placed",
          "[cancel][full]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel behind its target");
  i2o2_test::pipe_pair fill;
  i2o2_test::pipe_pair target_pipe;
  // A CQ of 8 leaves room for 5 or 6 ops in flight: six fillers use it up.
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();

  std::array<char, 6> sinks{};
  std::vector<pending> fillers;
  for (auto& sink : sinks)
    fillers.push_back(handle.submit(pipe_read(fill, &sink, 1)));
  char byte = 0;
  auto target = submit_watched(handle, pipe_read(target_pipe, &byte, 1));
  auto cancel = handle.cancel(target.reply);

  // Neither can run yet: the target waits for room, the cancel behind it.
  CHECK(holds_for([&] { return !cancel.is_ready(); }, 100ms));
  CHECK_FALSE(target.reply.is_ready());

  fill.feed("xxxxxx", 6);
  for (auto& filler : fillers)
    CHECK(filler.wait() == 1);
  CHECK(cancel.wait() == 0);
  CHECK(target.reply.wait() == -ECANCELED);
  check_released_once_after_reply(handle, *target.watch);
  target_pipe.feed("t", 1);
  CHECK(bytes_left_in(target_pipe) == 1);
}

// ---- per-op deadlines -----------------------------------------------------------------

TEST_CASE("a per-op timeout cancels a read still parked when it expires; one that gets its "
          "data first resolves with the byte count",
          "[cancel][timeout]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("per-op timeout");
  i2o2_test::pipe_pair pipe;
  i2o2_test::temp_file file;
  REQUIRE(::pwrite(file.fd(), "file", 4, 0) == 4);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  SECTION("expires: -ECANCELED") {
    for (int round = 0; round < 4; ++round) {
      std::array<char, 8> buffer{};
      auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4, {.timeout = 10ms}));
      CHECK(read.reply.wait() == -ECANCELED);
      check_released_once_after_reply(handle, *read.watch);
      pipe.feed("late", 4);
      CHECK(bytes_left_in(pipe) == 4);
    }
  }
  SECTION("data first: the byte count") {
    std::array<char, 8> buffer{};
    auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4, {.timeout = 60s}));
    churn(handle, 1);  // parked, with its timeout armed behind it
    REQUIRE_FALSE(read.reply.is_ready());
    pipe.feed("fast", 4);
    CHECK(read.reply.wait() == 4);
    CHECK(std::string(buffer.data(), 4) == "fast");
    check_released_once_after_reply(handle, *read.watch);
  }
  SECTION("ops that finish at once are unaffected") {
    std::array<char, 8> buffer{};
    CHECK(handle.submit(i2o2::op::nop{.options = {.timeout = 10ms}}).wait() == 0);
    CHECK(
        handle
            .submit(i2o2::op::read{
                .file = file.fd(), .buf = buffer.data(), .len = 4, .offset = 0, .options = {.timeout = 60s}})
            .wait() == 4);
    CHECK(std::string(buffer.data(), 4) == "file");
    // Many at once: each takes two SQEs and two CQEs (op + linked timeout).
    std::vector<pending> nops;
    for (int i = 0; i < 100; ++i)
      nops.push_back(handle.submit(i2o2::op::nop{.options = {.timeout = 60s}}));
    for (auto& nop : nops)
      CHECK(nop.wait() == 0);
  }
  // Every linked timeout has been accounted for: a shutdown without a
  // deadline finishes (it would wait forever for a lost timeout CQE).
  scheduler->stop(std::nullopt);
  CHECK(handle.closed());
}

// ---- the shutdown deadline --------------------------------------------------------------

TEST_CASE("stop with a deadline cancels a parked read: -ECANCELED, and its guard is released "
          "once before stop returns",
          "[cancel][shutdown]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("shutdown deadline");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  int nops_before = 0;
  SECTION("the read's slot is fresh") { nops_before = 0; }
  SECTION("the read's slot was used before (non-zero generation)") { nops_before = 3; }
  // Nops go through the slot the read then takes (the free list is LIFO).
  churn(handle, nops_before);
  INFO("nops through the read's slot before it: " << nops_before);

  std::array<char, 8> buffer{};
  auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4));
  // A second parked read with a plain counting guard.
  auto counted = std::make_shared<i2o2_test::guard_record>();
  std::array<char, 8> other_buffer{};
  auto other = handle.submit(pipe_read(pipe, other_buffer.data(), 4), i2o2_test::counting_guard(counted));
  churn(handle, 1);
  REQUIRE_FALSE(read.reply.is_ready());

  // Stop on another thread, so that a deadline cancel that misses its
  // target fails this test instead of hanging it: then the pipe is fed so
  // that the shutdown can finish.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    scheduler->stop(20ms);
    stopped.store(true);
  });
  eventually([&] { return read.reply.is_ready() && other.is_ready(); }, 10s);
  const auto first = read.reply.try_get();
  const auto second = other.try_get();
  if (!first || !second) {
    FAIL_CHECK("the shutdown deadline did not cancel the parked reads within 10 s");
    pipe.feed("unstuck!", 8);
  }
  stopper.join();
  CHECK(first.value_or(0) == -ECANCELED);
  CHECK(second.value_or(0) == -ECANCELED);
  // stop() returned: the scheduler thread is gone, every guard released.
  CHECK(read.watch->destroyed.load() == 1);
  CHECK(read.watch->before_reply.load() == 0);
  CHECK(counted->destroyed.load() == 1);
  CHECK(handle.closed());
  CHECK_THROWS_AS(handle.submit(i2o2::op::nop{}), i2o2::scheduler_closed);
}

TEST_CASE("dropping the last handle with config::shutdown_deadline cancels a parked read",
          "[cancel][shutdown]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("last handle deadline");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(
      policy, i2o2::config{.queue_capacity = 64, .ring_depth = 8, .shutdown_deadline = 20ms});
  auto handle = scheduler->take_handle();

  std::array<char, 8> buffer{};
  auto read = submit_watched(*handle, pipe_read(pipe, buffer.data(), 4));
  churn(*handle, 1);
  REQUIRE_FALSE(read.reply.is_ready());
  handle.reset();  // the last handle

  eventually([&] { return read.reply.is_ready(); }, 10s);
  const auto result = read.reply.try_get();
  if (!result) {
    FAIL_CHECK("the shutdown deadline did not cancel the parked read within 10 s");
    pipe.feed("unstuck!", 8);
  }
  scheduler->join();
  CHECK(result.value_or(0) == -ECANCELED);
  CHECK(read.watch->destroyed.load() == 1);
  CHECK(read.watch->before_reply.load() == 0);
}

// ---- a ring full of ops that never finish -----------------------------------------------

namespace {

/// Parks six reads on `pipe`: every op slot of a ring_depth 4 ring (a CQ of
/// 8, two entries of which user ops leave to the wake and a cancel). The
/// first five are known to be in the ring (a nop behind them came back);
/// the sixth is the last op before the caller's next one.
std::vector<pending> fill_every_op_slot(any_handle& handle, const i2o2_test::pipe_pair& pipe,
                                        std::array<char, 8>& sinks) {
  std::vector<pending> reads;
  for (int i = 0; i < 5; ++i)
    reads.push_back(handle.submit(pipe_read(pipe, &sinks[i], 1)));
  churn(handle, 1);
  reads.push_back(handle.submit(pipe_read(pipe, &sinks[5], 1)));
  return reads;
}

/// Waits for every reply to resolve; if the ops stay stuck, says so and
/// feeds the pipe so that the test can end. Returns the results.
std::vector<int> results_or_unstick(std::vector<pending>& replies, i2o2_test::pipe_pair& pipe,
                                    const char* what) {
  const bool resolved = eventually(
      [&] {
        for (auto& reply : replies)
          if (!reply.is_ready()) return false;
        return true;
      },
      10s);
  if (!resolved) {
    FAIL_CHECK(what);
    pipe.feed("unstuck!", 8);
  }
  std::vector<int> results;
  for (auto& reply : replies)
    results.push_back(reply.wait());
  return results;
}

}  // namespace

TEST_CASE("a cancel gets through while parked reads hold every op slot", "[cancel][full]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel with a full ring");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();
  std::array<char, 8> sinks{};
  auto reads = fill_every_op_slot(handle, pipe, sinks);

  // The last read took the last op slot; each cancel takes the CQ entry
  // kept for cancels, and its target's completion then frees a slot.
  std::vector<pending> cancels;
  cancels.push_back(handle.cancel(reads.back()));
  cancels.push_back(handle.cancel(reads.front()));
  const auto cancel_results =
      results_or_unstick(cancels, pipe, "a cancel stayed queued behind the full ring");
  CHECK(cancel_results == std::vector<int>{0, 0});
  CHECK(reads.back().wait() == -ECANCELED);
  CHECK(reads.front().wait() == -ECANCELED);

  pipe.feed("abcd", 4);  // the four reads left take a byte each
  for (std::size_t i = 1; i + 1 < reads.size(); ++i)
    CHECK(reads[i].wait() == 1);
  CHECK(bytes_left_in(pipe) == 0);
}

TEST_CASE("a cancel queued behind a read that waits for room reaches the parked read it names",
          "[cancel][full]") {
  // The read waiting for room would wait for ever (nothing else ends a
  // parked read), and the cancel with it, were it not set aside.
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel behind a read waiting for room");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();
  std::array<char, 8> sinks{};
  auto reads = fill_every_op_slot(handle, pipe, sinks);
  auto waiting = handle.submit(pipe_read(pipe, &sinks[6], 1));  // no op slot left for it

  std::vector<pending> cancels;
  cancels.push_back(handle.cancel(reads.front()));
  const auto cancel_results =
      results_or_unstick(cancels, pipe, "the cancel stayed queued behind the read waiting for room");
  CHECK(cancel_results == std::vector<int>{0});
  CHECK(reads.front().wait() == -ECANCELED);

  // The waiting read took the cancelled one's slot: the five others and it
  // take a byte each.
  pipe.feed("abcdef", 6);
  for (std::size_t i = 1; i < reads.size(); ++i)
    CHECK(reads[i].wait() == 1);
  CHECK(waiting.wait() == 1);
  CHECK(bytes_left_in(pipe) == 0);
}

TEST_CASE("a cancel sent while the ring and the queue are full of reads gets in and reaches its read",
          "[cancel][full]") {
  // The cancel's own push waits for queue space, which only the scheduler
  // setting the waiting reads aside makes.
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel into a full queue");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 2, .ring_depth = 4});
  auto& handle = scheduler->handle();
  std::array<char, 8> sinks{};
  auto reads = fill_every_op_slot(handle, pipe, sinks);
  std::vector<pending> waiting;  // fill the queue (capacity 2) behind them
  waiting.push_back(handle.submit(pipe_read(pipe, &sinks[6], 1)));
  waiting.push_back(handle.submit(pipe_read(pipe, &sinks[7], 1)));
  // Nothing can fit: with no cancel to reach, the reads stay queued.
  CHECK(handle.try_submit(i2o2::op::nop{}).error == i2o2::errc::queue_full);

  std::optional<pending> cancel;
  std::atomic<bool> sent{false};
  std::thread canceller([&] {
    cancel.emplace(handle.cancel(reads.front()));
    sent.store(true);
  });
  if (!eventually([&] { return sent.load(); }, 10s)) {
    FAIL_CHECK("the cancel never got into the queue");
    pipe.feed("unstuck!", 8);
  }
  canceller.join();
  CHECK(cancel->wait() == 0);
  CHECK(reads.front().wait() == -ECANCELED);

  pipe.feed("abcdefg", 7);  // the five reads left, then the two that waited
  for (std::size_t i = 1; i < reads.size(); ++i)
    CHECK(reads[i].wait() == 1);
  for (auto& read : waiting)
    CHECK(read.wait() == 1);
  CHECK(bytes_left_in(pipe) == 0);
}

TEST_CASE("a cancel naming a read set aside goes as soon as that read is in the ring, not after the reads "
          "set aside behind it",
          "[cancel][full]") {
  // The target waits for room with reads behind it; the cancel sets them all
  // aside and must wait for its target. One slot freed lets the target in:
  // the cancel follows it at once, not behind the reads after it, which
  // need room that only the cancel can make.
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel of a read set aside");
  i2o2_test::pipe_pair fill;
  i2o2_test::pipe_pair target_pipe;
  i2o2_test::pipe_pair behind_pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();
  std::array<char, 8> sinks{};
  auto fillers = fill_every_op_slot(handle, fill, sinks);
  char target_byte = 0;
  auto target = handle.submit(pipe_read(target_pipe, &target_byte, 1));
  std::array<char, 3> behind_bytes{};
  std::vector<pending> behind;
  for (char& byte : behind_bytes)
    behind.push_back(handle.submit(pipe_read(behind_pipe, &byte, 1)));
  std::vector<pending> cancels;
  cancels.push_back(handle.cancel(target));
  CHECK_FALSE(cancels.front().is_ready());  // its target is not in the ring yet

  fill.feed("a", 1);  // one filler completes (whichever): room for the target
  const auto cancel_results = results_or_unstick(
      cancels, target_pipe, "the cancel waited behind the reads set aside after its target");
  CHECK(cancel_results == std::vector<int>{0});
  CHECK(target.wait() == -ECANCELED);

  fill.feed("bcdef", 5);
  behind_pipe.feed("xyz", 3);
  for (auto& filler : fillers)
    CHECK(filler.wait() == 1);
  for (auto& read : behind)
    CHECK(read.wait() == 1);
  CHECK(bytes_left_in(fill) == 0);
  CHECK(bytes_left_in(behind_pipe) == 0);
}

// A concrete type: the scheduler thread is held in a callback (a callback
// reply) while the ops are queued, so that one pull takes them all; and the
// msg_ring wait arms no op, so the scheduler may sleep with the SQ full.
TEST_CASE("a cancel that finds the SQ full of ops pulled with it goes once they are submitted",
          "[cancel][full]") {
  // ring_depth 4: an SQ of 4 and six op slots. Two reads park; then four
  // more and a cancel of the first are pulled at once: the reads take every
  // SQE and the last CQ room. The cancel must go after the submit, not
  // wait for a completion: none comes but the one it causes.
  i2o2_test::watchdog dog("cancel behind a full SQ");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::msg_ring, i2o2::reply::callback<>, void>;
  // No submit budget: one pull may place as many ops as fit.
  auto running = i2o2::spawn_scheduler<scheduler_type>(
      i2o2::config{.queue_capacity = 16, .ring_depth = 4, .submit_budget = std::chrono::nanoseconds(0)});
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;
  i2o2_test::callback_results<7> results;  // the six reads, then the cancel
  const auto into = [&results](std::size_t index) { return results.into(index); };
  std::array<char, 6> sinks{};
  const auto first = handle.submit(pipe_read(pipe, &sinks[0], 1), {}, into(0));
  handle.submit(pipe_read(pipe, &sinks[1], 1), {}, into(1));

  std::atomic<int> stage{0};  // 1: the scheduler thread is held; 2: released
  handle.submit(i2o2::op::nop{}, {}, [&stage](int) noexcept {
    stage.store(1);
    while (stage.load() != 2)
      std::this_thread::yield();
  });
  REQUIRE(eventually([&] { return stage.load() == 1; }));
  for (std::size_t i = 2; i < 6; ++i)
    handle.submit(pipe_read(pipe, &sinks[i], 1), {}, into(i));
  handle.cancel(first, into(6));
  stage.store(2);

  if (!eventually([&] { return results.arrived(6); }, 10s)) {
    FAIL_CHECK("the cancel waited for a completion that only it could cause");
    pipe.feed("unstuck!", 8);
  }
  CHECK(results[6] == 0);
  REQUIRE(eventually([&] { return results.arrived(0); }));
  CHECK(results[0] == -ECANCELED);
  pipe.feed("abcde", 5);
  for (std::size_t i = 1; i < 6; ++i) {
    REQUIRE(eventually([&] { return results.arrived(i); }));
    CHECK(results[i] == 1);
  }
}

TEST_CASE("a cancel into a full queue gets in while another client keeps it full", "[cancel][full]") {
  // The reads set aside free queue space, which the other client, blocked
  // in submit, races the cancel for: it must not win every time. (With a
  // queue's worth set aside at most, it usually did, and both sides slept.)
  i2o2_test::watchdog dog("cancel racing another client for space");
  for (int round = 0; round < 8; ++round) {
    CAPTURE(round);
    i2o2_test::pipe_pair pipe;
    auto running = i2o2::spawn({.queue_capacity = 2, .ring_depth = 4});
    auto& handle = running.handle;
    std::array<char, 16> sinks{};
    std::vector<i2o2::reply_t> reads;
    for (int i = 0; i < 5; ++i)
      reads.push_back(handle.submit(pipe_read(pipe, &sinks[i], 1)));
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    reads.push_back(handle.submit(pipe_read(pipe, &sinks[5], 1)));  // every op slot taken
    reads.push_back(handle.submit(pipe_read(pipe, &sinks[6], 1)));  // the queue (2) full
    reads.push_back(handle.submit(pipe_read(pipe, &sinks[7], 1)));
    std::vector<i2o2::reply_t> more(4);
    std::atomic<pid_t> other_tid{0};
    std::thread other([&] {  // another client, blocked waiting for space
      other_tid.store(static_cast<pid_t>(::syscall(SYS_gettid)));
      for (int i = 0; i < 4; ++i)
        more[i] = handle.submit(pipe_read(pipe, &sinks[8 + i], 1));
    });
    REQUIRE(
        eventually([&] { return other_tid.load() != 0 && i2o2_test::run_state(other_tid.load()) == 'S'; }));

    std::optional<i2o2::reply_t> cancel;
    std::atomic<bool> sent{false};
    std::thread canceller([&] {
      cancel.emplace(handle.cancel(reads.front()));
      sent.store(true);
    });
    const bool through = eventually([&] { return sent.load() && cancel->is_ready(); }, 10s);
    if (!through) {
      FAIL_CHECK("the cancel never got through");
      pipe.feed("unstuck!unstuck!", 16);
    }
    canceller.join();
    CHECK(cancel->wait() == 0);
    CHECK(reads.front().wait() == -ECANCELED);
    pipe.feed("abcdefghijk", 11);  // the other seven reads, then the other client's four
    other.join();
    for (std::size_t i = 1; i < reads.size(); ++i)
      CHECK(reads[i].wait() == 1);
    for (auto& read : more)
      CHECK(read.wait() == 1);
  }
}

// A concrete type: the first cancel is sent from a callback, on the
// scheduler thread.
TEST_CASE("a cancel sent from the scheduler thread leaves later cancels able to pass ops waiting for room",
          "[cancel][full]") {
  // A cancel the scheduler thread queues itself must be counted like any
  // other: counted out but never in, it hid the next cancel from the
  // scheduler, which then waited behind the read waiting for room.
  i2o2_test::watchdog dog("cancel after a scheduler-thread cancel");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  auto running = i2o2::spawn_scheduler<scheduler_type>(i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = running.handle;
  i2o2_test::callback_results<9> results;  // seven reads, the inner cancel, the cancel
  const auto into = [&results](std::size_t index) { return results.into(index); };
  auto* sender = &handle;
  handle.submit(i2o2::op::nop{}, {}, [sender, into](int) noexcept {
    sender->cancel(i2o2::callback_submitted{}, into(7));  // names nothing: -ENOENT
  });
  REQUIRE(eventually([&] { return results.arrived(7); }));
  CHECK(results[7] == -ENOENT);

  i2o2_test::pipe_pair pipe;
  std::array<char, 8> sinks{};
  std::array<i2o2::callback_submitted, 7> reads;
  for (std::size_t i = 0; i < 5; ++i)
    reads[i] = handle.submit(pipe_read(pipe, &sinks[i], 1), {}, into(i));
  std::atomic<bool> churned{false};
  handle.submit(i2o2::op::nop{}, {}, [&churned](int) noexcept { churned.store(true); });
  REQUIRE(eventually([&] { return churned.load(); }));
  reads[5] = handle.submit(pipe_read(pipe, &sinks[5], 1), {}, into(5));  // the last op slot
  reads[6] = handle.submit(pipe_read(pipe, &sinks[6], 1), {}, into(6));  // waits for room
  handle.cancel(reads[0], into(8));
  if (!eventually([&] { return results.arrived(8); }, 10s)) {
    FAIL_CHECK("the cancel waited behind the read waiting for room");
    pipe.feed("unstuck!", 8);
  }
  CHECK(results[8] == 0);
  REQUIRE(eventually([&] { return results.arrived(0); }));
  CHECK(results[0] == -ECANCELED);
  pipe.feed("abcdef", 6);
  for (std::size_t i = 1; i < 7; ++i) {
    REQUIRE(eventually([&] { return results.arrived(i); }));
    CHECK(results[i] == 1);
  }
}

TEST_CASE("stop with a deadline cancels parked reads that hold every op slot, and ops queued behind "
          "them",
          "[cancel][full][shutdown]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("shutdown deadline with a full ring");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(
      policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4, .shutdown_deadline = std::nullopt});
  auto& handle = scheduler->handle();
  std::array<char, 8> sinks{};
  auto reads = fill_every_op_slot(handle, pipe, sinks);
  int queued_behind = 0;
  SECTION("nothing queued") {}
  SECTION("a read queued, waiting for CQ room") {
    // The scheduler then sleeps waiting for a completion, with work queued.
    reads.push_back(handle.submit(pipe_read(pipe, &sinks[6], 1)));
    queued_behind = 1;
  }
  INFO("reads queued behind the full ring: " << queued_behind);

  std::thread stopper([&] { scheduler->stop(20ms); });
  const auto results = results_or_unstick(reads, pipe, "the shutdown deadline did not cancel the reads");
  stopper.join();
  for (const int result : results)
    CHECK(result == -ECANCELED);
  CHECK(handle.closed());
}

TEST_CASE("a stop with a deadline reaches a scheduler already draining without one", "[cancel][shutdown]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("later deadline");
  i2o2_test::pipe_pair pipe;
  std::optional<std::chrono::milliseconds> first_deadline;
  SECTION("the last handle dropped without a deadline") { first_deadline = std::nullopt; }
  SECTION("the last handle dropped with a longer deadline: the earliest holds") { first_deadline = 1h; }
  auto scheduler = i2o2_test::spawn_policy(
      policy, i2o2::config{.queue_capacity = 16, .ring_depth = 8, .shutdown_deadline = first_deadline});
  auto handle = scheduler->take_handle();
  std::array<char, 8> buffer{};
  std::vector<pending> reads;
  reads.push_back(handle->submit(pipe_read(pipe, buffer.data(), 4)));
  churn(*handle, 1);
  handle.reset();  // closes: the scheduler drains, asleep until the read completes

  std::thread stopper([&] { scheduler->stop(20ms); });
  const auto results = results_or_unstick(reads, pipe, "the later, earlier deadline was not honoured");
  stopper.join();
  CHECK(results.front() == -ECANCELED);
}

TEST_CASE("a shutdown deadline too far off to count in nanoseconds never comes", "[cancel][shutdown]") {
  // milliseconds::max() as nanoseconds, or now + nanoseconds::max(),
  // overflowed into the past: every op in flight was cancelled at once.
  i2o2_test::watchdog dog("far deadline");
  i2o2_test::pipe_pair pipe;
  const bool from_config = GENERATE(true, false);
  CAPTURE(from_config);
  const auto far = std::chrono::milliseconds::max();
  // One policy: the deadline's arithmetic is the same for all.
  const i2o2::config settings{.queue_capacity = 16,
                              .ring_depth = 8,
                              .shutdown_deadline = from_config ? std::optional(far) : std::nullopt};
  auto scheduler = i2o2_test::spawn_policy(i2o2_test::policy_names().front(), settings);
  auto handle = scheduler->take_handle();
  char sink = 0;
  auto read = handle->submit(pipe_read(pipe, &sink, 1));
  churn(*handle, 1);
  std::thread stopper([&] {
    if (from_config)
      handle.reset();  // the last handle: the config's deadline
    else
      scheduler->stop(std::chrono::nanoseconds::max());
  });
  // Nothing may cancel the read now; it ends when it reads.
  CHECK(i2o2_test::holds_for([&] { return !read.is_ready(); }, 100ms));
  pipe.feed("x", 1);
  CHECK(read.wait() == 1);
  stopper.join();
  if (from_config) scheduler->join();
}

TEST_CASE("a stop deadline ends a hard-linked chain whose second op starts only after the first is cancelled",
          "[cancel][shutdown]") {
  // At the deadline the second read is not started yet: its cancel finds
  // nothing (-ENOENT). Cancelling the first then starts it (a hard link
  // survives the failure), parked on its own pipe: it must be asked again,
  // or the shutdown waits for it for ever.
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("deadline and a hard link");
  i2o2_test::pipe_pair first_pipe;
  i2o2_test::pipe_pair second_pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, {.queue_capacity = 16, .ring_depth = 8});
  auto& handle = scheduler->handle();
  char first = 0;
  char second = 0;
  const std::vector<i2o2::prepared_op> ops{i2o2_test::pipe_read(first_pipe, &first, 1),
                                           i2o2_test::pipe_read(second_pipe, &second, 1)};
  auto chain = handle.submit_chain(ops, {}, i2o2::link_kind::hard);
  churn(handle, 1);
  REQUIRE_FALSE(chain[0].is_ready());

  std::thread stopper([&] { scheduler->stop(20ms); });
  const bool ended = eventually([&] { return chain[0].is_ready() && chain[1].is_ready(); }, 10s);
  if (!ended) {
    FAIL_CHECK("the deadline did not end the hard-linked chain within 10 s");
    second_pipe.feed("x", 1);
  }
  stopper.join();
  CHECK(chain[0].wait() == -ECANCELED);
  CHECK(chain[1].wait() == (ended ? -ECANCELED : 1));
}

namespace {

/// Holds the scheduler thread inside a callback until released: what the
/// test does meanwhile lands before the scheduler's next pass.
struct scheduler_hold {
  std::atomic<bool> held{false};
  std::atomic<bool> released{false};
  auto callback() {
    return [this](int) noexcept {
      held.store(true);
      while (!released.load())
        std::this_thread::yield();
    };
  }
};

template <class Wait>
void check_deadline_passed_with_a_full_sq() {
  using scheduler =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, Wait, i2o2::reply::callback<>, i2o2::any_guard>;
  i2o2_test::pipe_pair pipe;
  // One SQE: the read pulled in the pass after the stop fills the SQ, and
  // the deadline's cancel finds no SQE for itself in that pass.
  auto running = i2o2::spawn_scheduler<scheduler>({.ring_depth = 1, .shutdown_deadline = std::nullopt});
  auto& handle = running.handle;
  scheduler_hold hold;
  handle.submit(i2o2::op::nop{}, {}, hold.callback());
  REQUIRE(eventually([&] { return hold.held.load(); }));

  std::atomic<int> read_result{1};
  char sink = 0;
  handle.submit(pipe_read(pipe, &sink, 1), {}, [&](int result) noexcept { read_result.store(result); });
  running.owner.scheduler().request_stop(std::chrono::nanoseconds(0));  // already past
  hold.released.store(true);

  if (!eventually([&] { return read_result.load() != 1; }, 10s)) {
    FAIL_CHECK("the read was not cancelled at the (past) deadline");
    pipe.feed("x", 1);
  }
  running.owner.join();
  CHECK(read_result.load() == -ECANCELED);
}

}  // namespace

TEST_CASE("a deadline already past when the SQ is full of unsubmitted ops still cancels them",
          "[cancel][shutdown]") {
  i2o2_test::watchdog dog("past deadline, full SQ");
  SECTION("eventfd") { check_deadline_passed_with_a_full_sq<i2o2::wait::eventfd>(); }
  SECTION("futex") { check_deadline_passed_with_a_full_sq<i2o2::wait::futex>(); }
  SECTION("msg_ring") { check_deadline_passed_with_a_full_sq<i2o2::wait::msg_ring>(); }
  SECTION("spin") { check_deadline_passed_with_a_full_sq<i2o2::wait::spin>(); }
}

TEST_CASE("an op of submit_many or submit_chain can be cancelled through its own reply", "[cancel]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("cancel a batch's op");
  i2o2_test::pipe_pair first_pipe;
  i2o2_test::pipe_pair second_pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8, .shutdown_deadline = 20ms});
  auto& handle = scheduler->handle();
  char first = 0;
  char second = 0;
  const std::vector<i2o2::prepared_op> ops{i2o2_test::pipe_read(first_pipe, &first, 1),
                                           i2o2_test::pipe_read(second_pipe, &second, 1)};
  SECTION("submit_many: the second op alone") {
    const auto replies = handle.submit_many(ops);
    REQUIRE(replies.size() == 2);
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // both taken: parked on their pipes
    CHECK(handle.cancel(replies[1]).wait() == 0);
    CHECK(replies[1].wait() == -ECANCELED);
    CHECK_FALSE(replies[0].is_ready());
    first_pipe.feed("x", 1);
    CHECK(replies[0].wait() == 1);
  }
  SECTION("submit_chain: the first op, and the link breaks") {
    // (The kernel cannot find a chain's later op before it is issued: a
    // cancel of it answers -ENOENT while the first is parked.)
    const auto replies = handle.submit_chain(ops);
    REQUIRE(replies.size() == 2);
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    CHECK(handle.cancel(replies[0]).wait() == 0);
    CHECK(replies[0].wait() == -ECANCELED);
    CHECK(replies[1].wait() == -ECANCELED);
  }
}

TEST_CASE("a future_reply move-assigned into a variable can still be cancelled", "[cancel]") {
  i2o2_test::watchdog dog("cancel a move-assigned reply");
  i2o2_test::pipe_pair pipe;
  auto running = i2o2::spawn({.ring_depth = 8, .shutdown_deadline = 20ms});
  auto& handle = running.handle;
  char byte = 0;
  i2o2::future_reply reply;
  reply = handle.submit(i2o2_test::pipe_read(pipe, &byte, 1));
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // taken: parked on the empty pipe
  CHECK(handle.cancel(reply).wait() == 0);
  CHECK(reply.wait() == -ECANCELED);
}
