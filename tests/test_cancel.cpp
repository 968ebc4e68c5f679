// Cancellation (handle.hpp cancel(reply), scheduler.hpp control()), per-op
// deadlines (op_options::timeout, a linked timeout placed by the
// scheduler) and the shutdown deadline (owner.stop(deadline)). In every
// case the cancelled op resolves with the kernel's own result and its guard
// is released once, only after that op's own CQE (G1/G2).
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it. Every test case runs under a watchdog.
#include "support.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::churn;
using i2o2_test::reply_watch_record;
using i2o2_test::settle;

i2o2::config small_ring() { return i2o2::config{.queue_capacity = 64, .ring_depth = 8}; }

/// An op submitted with a guard watching its own reply (G2: reply first,
/// then guard).
struct watched_op {
  std::shared_ptr<reply_watch_record> record;
  std::shared_ptr<i2o2::reply_t> reply;
};

template <class Op>
watched_op submit_watched(i2o2::handle& handle, const Op& op) {
  auto record = std::make_shared<reply_watch_record>(reply_watch_record::if_unwatched::early);
  // The guard only reads the reply after it is set; an op parked on a pipe
  // cannot complete before that.
  auto reply = std::make_shared<i2o2::reply_t>(handle.submit(op, i2o2_test::reply_watch_guard(record)));
  record->watch(reply);
  return {std::move(record), std::move(reply)};
}

/// After a guard's op resolved: it dies exactly once, after the reply.
void check_released_once_after_reply(i2o2::handle& handle, const reply_watch_record& record) {
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
  i2o2_test::watchdog dog("cancel parked read");
  i2o2_test::pipe_pair pipe;
  auto [owner, handle] = i2o2::spawn(small_ring());

  // Several rounds, so that the read's slot is reused (its user_data then
  // carries a non-zero generation the cancel must match).
  for (int round = 0; round < 8; ++round) {
    INFO("round " << round);
    std::array<char, 8> buffer{};
    auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4));
    churn(handle, round);  // the read is parked in the kernel
    REQUIRE_FALSE(read.reply->is_ready());
    CHECK(read.record->destroyed.load() == 0);

    CHECK(handle.cancel(*read.reply).wait() == 0);
    CHECK(read.reply->wait() == -ECANCELED);
    check_released_once_after_reply(handle, *read.record);

    // The cancelled read took nothing: bytes written now stay in the pipe.
    pipe.feed("left", 4);
    CHECK(bytes_left_in(pipe) == 4);
    CHECK(std::string(buffer.data(), 4) == std::string(4, '\0'));
  }
}

TEST_CASE("cancel of an op that already finished resolves -ENOENT and leaves its result alone", "[cancel]") {
  i2o2_test::watchdog dog("cancel finished op");
  i2o2_test::temp_file file;
  auto [owner, handle] = i2o2::spawn(small_ring());

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
  const i2o2::reply_t nothing;
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
  i2o2_test::watchdog dog("cancel behind its target");
  i2o2_test::pipe_pair fill;
  i2o2_test::pipe_pair target_pipe;
  // A CQ of 8 leaves room for 5 or 6 ops in flight: six fillers use it up.
  auto [owner, handle] = i2o2::spawn(i2o2::config{.queue_capacity = 16, .ring_depth = 4});

  std::array<char, 6> sinks{};
  std::vector<i2o2::reply_t> fillers;
  for (auto& sink : sinks)
    fillers.push_back(handle.submit(pipe_read(fill, &sink, 1)));
  char byte = 0;
  auto target = submit_watched(handle, pipe_read(target_pipe, &byte, 1));
  auto cancel = handle.cancel(*target.reply);

  // Neither can run yet: the target waits for room, the cancel behind it.
  CHECK_FALSE(cancel.wait_for(100ms).has_value());
  CHECK_FALSE(target.reply->is_ready());

  fill.feed("xxxxxx", 6);
  for (auto& filler : fillers)
    CHECK(filler.wait() == 1);
  CHECK(cancel.wait() == 0);
  CHECK(target.reply->wait() == -ECANCELED);
  check_released_once_after_reply(handle, *target.record);
  target_pipe.feed("t", 1);
  CHECK(bytes_left_in(target_pipe) == 1);
}

// ---- per-op deadlines -----------------------------------------------------------------

TEST_CASE("a per-op timeout cancels a read still parked when it expires; one that gets its "
          "data first resolves with the byte count",
          "[cancel][timeout]") {
  i2o2_test::watchdog dog("per-op timeout");
  i2o2_test::pipe_pair pipe;
  i2o2_test::temp_file file;
  REQUIRE(::pwrite(file.fd(), "file", 4, 0) == 4);
  auto [owner, handle] = i2o2::spawn(small_ring());

  SECTION("expires: -ECANCELED") {
    for (int round = 0; round < 4; ++round) {
      std::array<char, 8> buffer{};
      auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4, {.timeout = 10ms}));
      CHECK(read.reply->wait() == -ECANCELED);
      check_released_once_after_reply(handle, *read.record);
      pipe.feed("late", 4);
      CHECK(bytes_left_in(pipe) == 4);
    }
  }
  SECTION("data first: the byte count") {
    std::array<char, 8> buffer{};
    auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4, {.timeout = 60s}));
    churn(handle, 1);  // parked, with its timeout armed behind it
    REQUIRE_FALSE(read.reply->is_ready());
    pipe.feed("fast", 4);
    CHECK(read.reply->wait() == 4);
    CHECK(std::string(buffer.data(), 4) == "fast");
    check_released_once_after_reply(handle, *read.record);
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
    std::vector<i2o2::reply_t> nops;
    for (int i = 0; i < 100; ++i)
      nops.push_back(handle.submit(i2o2::op::nop{.options = {.timeout = 60s}}));
    for (auto& nop : nops)
      CHECK(nop.wait() == 0);
  }
  // Every linked timeout has been accounted for: a shutdown without a
  // deadline finishes (it would wait forever for a lost timeout CQE).
  owner.stop(std::nullopt);
  CHECK(handle.closed());
}

// ---- the shutdown deadline --------------------------------------------------------------

TEST_CASE("stop with a deadline cancels a parked read: -ECANCELED, and its guard is released "
          "once before stop returns",
          "[cancel][shutdown]") {
  i2o2_test::watchdog dog("shutdown deadline");
  i2o2_test::pipe_pair pipe;
  auto [owner, handle] = i2o2::spawn(small_ring());

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
  REQUIRE_FALSE(read.reply->is_ready());

  // Stop on another thread, so that a deadline cancel that misses its
  // target fails this test instead of hanging it: then the pipe is fed so
  // that the shutdown can finish.
  auto& stopping = owner;
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    stopping.stop(20ms);
    stopped.store(true);
  });
  const auto first = read.reply->wait_for(10s);
  const auto second = other.wait_for(10s);
  if (!first || !second) {
    FAIL_CHECK("the shutdown deadline did not cancel the parked reads within 10 s");
    pipe.feed("unstuck!", 8);
  }
  stopper.join();
  CHECK(first.value_or(0) == -ECANCELED);
  CHECK(second.value_or(0) == -ECANCELED);
  // stop() returned: the scheduler thread is gone, every guard released.
  CHECK(read.record->destroyed.load() == 1);
  CHECK(read.record->before_reply.load() == 0);
  CHECK(counted->destroyed.load() == 1);
  CHECK(handle.closed());
  CHECK_THROWS_AS(handle.submit(i2o2::op::nop{}), i2o2::scheduler_closed);
}

TEST_CASE("dropping the last handle with config::shutdown_deadline cancels a parked read",
          "[cancel][shutdown]") {
  i2o2_test::watchdog dog("last handle deadline");
  i2o2_test::pipe_pair pipe;
  auto [owner, handle] =
      i2o2::spawn(i2o2::config{.queue_capacity = 64, .ring_depth = 8, .shutdown_deadline = 20ms});

  std::array<char, 8> buffer{};
  auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), 4));
  churn(handle, 1);
  REQUIRE_FALSE(read.reply->is_ready());
  { auto last = std::move(handle); }

  const auto result = read.reply->wait_for(10s);
  if (!result) {
    FAIL_CHECK("the shutdown deadline did not cancel the parked read within 10 s");
    pipe.feed("unstuck!", 8);
  }
  owner.join();
  CHECK(result.value_or(0) == -ECANCELED);
  CHECK(read.record->destroyed.load() == 1);
  CHECK(read.record->before_reply.load() == 0);
}
