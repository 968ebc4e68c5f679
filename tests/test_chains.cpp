// Linked chains (handle.hpp submit_chain, scheduler.hpp pull()): each op
// has its own reply; a soft link cancels the rest after a failure, a hard
// link keeps going; a chain lands in one submission, whole, in order, also
// when it has to wait for room; a chain that can never fit, or that holds an
// op with a timeout, is refused up front and nothing is sent.
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it. Every test case runs under a watchdog, once for each
// queue x wait x reply combination (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "window_queues.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::counting_guard;
using i2o2_test::eventually;
using i2o2_test::guard_record;
using i2o2_test::pending;
using i2o2_test::pread_string;
using i2o2_test::holds_for;
using i2o2_test::settle;
using i2o2_test::size_of;

i2o2::config small_ring() { return i2o2::config{.queue_capacity = 64, .ring_depth = 8}; }


/// `submit_chain(op, op, ...)` through the type-erased handle: a
/// soft-linked chain of the given ops, one reply each.
template <i2o2::operation... Ops>
std::vector<pending> chain(i2o2_test::any_handle& handle, const Ops&... ops) {
  const std::array<i2o2::prepared_op, sizeof...(Ops)> images{i2o2::prepared_op(ops)...};
  return handle.submit_chain(images);
}

std::vector<i2o2::any_guard> counted_guards(std::vector<std::shared_ptr<guard_record>>& records,
                                            std::size_t count) {
  std::vector<i2o2::any_guard> guards;
  for (std::size_t i = 0; i < count; ++i) {
    records.push_back(std::make_shared<guard_record>());
    guards.emplace_back(counting_guard(records.back()));
  }
  return guards;
}

}  // namespace

TEST_CASE("a write + fsync chain: both replies succeed and the data is on disk", "[chains]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("write+fsync chain");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  const std::string data = "linked write, then fsync";
  auto replies = chain(
      handle,
      i2o2::op::write{
          .file = file.fd(), .buf = data.data(), .len = static_cast<std::uint32_t>(data.size()), .offset = 0},
      i2o2::op::fsync{.file = file.fd()});
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].wait() == static_cast<int>(data.size()));
  CHECK(replies[1].wait() == 0);
  CHECK(pread_string(file.fd(), data.size(), 0) == data);
}

TEST_CASE("a chain runs its ops one after another, in order", "[chains][order]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("chain order");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  for (int round = 0; round < 20; ++round) {
    std::array<char, 4> seen{};
    // Same offset: only in this order does the read see B and the file end as B.
    auto replies = chain(handle, i2o2::op::write{.file = file.fd(), .buf = "AAAA", .len = 4, .offset = 0},
                         i2o2::op::write{.file = file.fd(), .buf = "BBBB", .len = 4, .offset = 0},
                         i2o2::op::read{.file = file.fd(), .buf = seen.data(), .len = 4, .offset = 0},
                         i2o2::op::write{.file = file.fd(), .buf = "CC", .len = 2, .offset = 0});
    REQUIRE(replies.size() == 4);
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(replies[i].wait() == 4);
    CHECK(replies[3].wait() == 2);
    CHECK(std::string(seen.data(), 4) == "BBBB");
    CHECK(pread_string(file.fd(), 4, 0) == "CCBB");
  }
}

TEST_CASE("a soft-linked chain whose op fails resolves that op with its error and the rest "
          "with -ECANCELED",
          "[chains][soft]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("soft chain failure");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  std::vector<std::shared_ptr<guard_record>> records;

  SECTION("the first op fails") {
    const std::array<i2o2::prepared_op, 3> ops{
        i2o2::op::write{.file = -1, .buf = "bad", .len = 3, .offset = 0},
        i2o2::op::write{.file = file.fd(), .buf = "never", .len = 5, .offset = 0}, i2o2::op::nop{}};
    auto guards = counted_guards(records, ops.size());
    auto replies = handle.submit_chain(ops, guards);
    REQUIRE(replies.size() == 3);
    CHECK(replies[0].wait() == -EBADF);
    CHECK(replies[1].wait() == -ECANCELED);
    CHECK(replies[2].wait() == -ECANCELED);
    CHECK(size_of(file.fd()) == 0);
  }
  SECTION("a middle op fails") {
    const std::array<i2o2::prepared_op, 3> ops{
        i2o2::op::write{.file = file.fd(), .buf = "first", .len = 5, .offset = 0},
        i2o2::op::write{.file = -1, .buf = "bad", .len = 3, .offset = 0},
        i2o2::op::write{.file = file.fd(), .buf = "never", .len = 5, .offset = 5}};
    auto guards = counted_guards(records, ops.size());
    auto replies = handle.submit_chain(ops, guards);
    REQUIRE(replies.size() == 3);
    CHECK(replies[0].wait() == 5);
    CHECK(replies[1].wait() == -EBADF);
    CHECK(replies[2].wait() == -ECANCELED);
    CHECK(pread_string(file.fd(), 20, 0) == "first");
  }
  SECTION("a short read breaks the chain") {
    REQUIRE(::pwrite(file.fd(), "0123456789", 10, 0) == 10);
    std::array<char, 100> buffer{};
    const std::array<i2o2::prepared_op, 2> ops{
        i2o2::op::read{.file = file.fd(), .buf = buffer.data(), .len = 100, .offset = 0},
        i2o2::op::write{.file = file.fd(), .buf = "never", .len = 5, .offset = 0}};
    auto guards = counted_guards(records, ops.size());
    auto replies = handle.submit_chain(ops, guards);
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].wait() == 10);
    CHECK(replies[1].wait() == -ECANCELED);
    CHECK(pread_string(file.fd(), 20, 0) == "0123456789");
  }
  // Every op's guard, cancelled or not, is released exactly once.
  REQUIRE(settle(handle, [&] {
    for (const auto& record : records)
      if (record->destroyed.load() == 0) return false;
    return true;
  }));
  for (const auto& record : records)
    CHECK(record->destroyed.load() == 1);
}

TEST_CASE("a hard-linked chain keeps going after a failure", "[chains][hard]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("hard chain");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  const std::array<i2o2::prepared_op, 4> ops{
      i2o2::op::write{.file = -1, .buf = "bad", .len = 3, .offset = 0},
      i2o2::op::write{.file = file.fd(), .buf = "after", .len = 5, .offset = 0},
      i2o2::op::write{.file = -1, .buf = "bad", .len = 3, .offset = 0},
      i2o2::op::write{.file = file.fd(), .buf = "again", .len = 5, .offset = 5}};
  auto replies = handle.submit_chain(ops, {}, i2o2::link_kind::hard);
  REQUIRE(replies.size() == 4);
  CHECK(replies[0].wait() == -EBADF);
  CHECK(replies[1].wait() == 5);
  CHECK(replies[2].wait() == -EBADF);
  CHECK(replies[3].wait() == 5);
  CHECK(pread_string(file.fd(), 20, 0) == "afteragain");
}

TEST_CASE("open, read and close as one chain through a direct descriptor", "[chains][openat]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("openat chain");
  i2o2_test::temp_file file;
  REQUIRE(::pwrite(file.fd(), "opened in a chain", 17, 0) == 17);
  // Slot 1 of the table is left to the kernel: the scheduler registers nothing
  // here. (No O_CLOEXEC: the kernel refuses it for a direct descriptor.)
  auto scheduler = i2o2_test::spawn_policy(
      policy, i2o2::config{.queue_capacity = 64, .ring_depth = 8, .registered_files = 2});
  auto& handle = scheduler->handle();

  std::array<char, 32> buffer{};
  auto replies =
      chain(handle, i2o2::op::openat{.path = file.path().c_str(), .flags = O_RDONLY, .fixed_slot = 1U},
            i2o2::op::read{.file = i2o2::fixed_file(1), .buf = buffer.data(), .len = 17, .offset = 0},
            i2o2::op::close{.file = i2o2::fixed_file(1)});
  REQUIRE(replies.size() == 3);
  CHECK(replies[0].wait() == 0);
  CHECK(replies[1].wait() == 17);
  CHECK(replies[2].wait() == 0);
  CHECK(std::string(buffer.data(), 17) == "opened in a chain");
  // Closed: the slot is empty again.
  CHECK(
      handle.submit(i2o2::op::read{.file = i2o2::fixed_file(1), .buf = buffer.data(), .len = 1, .offset = 0})
          .wait() == -EBADF);
}

TEST_CASE("a chain sent while the queue and the ring are full waits, then goes in whole and "
          "runs in order",
          "[chains][full]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("chain on a full queue");
  i2o2_test::pipe_pair fill;  // the filler reads park here
  i2o2_test::pipe_pair gate;  // the chain's first op parks here
  i2o2_test::temp_file file;
  // A CQ of 8 leaves the scheduler room for 5 or 6 ops in flight; the queue holds 4.
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 4, .ring_depth = 4});
  auto& handle = scheduler->handle();

  // Another thread fills ring and queue with one-byte reads parked on
  // `fill`: try_submit until the queue is full with at least 9 accepted
  // (at least 5 in the ring and 4 queued). Then at most one queue cell can
  // still free up, and the 3-op chain needs 3.
  std::vector<pending> fillers;
  std::array<char, 64> sinks{};
  std::atomic<int> unexpected_errors{0};
  std::thread filler([&, client = handle.clone()] {
    while (fillers.size() < sinks.size()) {
      auto result = client->try_submit(pipe_read(fill, &sinks[fillers.size()], 1));
      if (result.reply) {
        fillers.push_back(std::move(*result.reply));
        continue;
      }
      if (result.error != i2o2::make_error_code(i2o2::errc::queue_full)) unexpected_errors.fetch_add(1);
      if (fillers.size() >= 9) break;
      std::this_thread::yield();
    }
  });
  filler.join();
  REQUIRE(unexpected_errors.load() == 0);
  REQUIRE(fillers.size() >= 9);
  REQUIRE(fillers.size() < sinks.size());
  for (const auto& reply : fillers)
    REQUIRE_FALSE(reply.is_ready());

  // The chain: a read parked on `gate`, then two writes to the same offset.
  char gate_byte = 0;
  std::vector<pending> chained;
  std::atomic<bool> chain_sent{false};
  std::thread chainer([&, client = handle.clone()] {
    const std::array<i2o2::prepared_op, 3> ops{
        pipe_read(gate, &gate_byte, 1),
        i2o2::op::write{.file = file.fd(), .buf = "AAAA", .len = 4, .offset = 0},
        i2o2::op::write{.file = file.fd(), .buf = "BBBB", .len = 4, .offset = 0}};
    chained = client->submit_chain(ops);
    chain_sent.store(true);
  });
  // No room: submit_chain waits (it neither fails nor sends part of it).
  CHECK(holds_for([&] { return !chain_sent.load(); }, 100ms));

  // Free the ring one op at a time, so that the chain reaches the front of
  // the queue while the ring has room for fewer than 3 ops: it must wait
  // there rather than be split.
  for (std::size_t done = 0; done < fillers.size(); ++done) {
    fill.feed("x", 1);
    REQUIRE(eventually([&] {
      std::size_t ready = 0;
      for (const auto& reply : fillers)
        ready += reply.is_ready() ? 1 : 0;
      return ready >= done + 1;
    }));
  }
  for (const auto& reply : fillers)
    CHECK(reply.wait() == 1);

  REQUIRE(eventually([&] { return chain_sent.load(); }));
  chainer.join();
  REQUIRE(chained.size() == 3);
  // A nop queued behind the chain: once it is back, the chain is in the
  // kernel. Its writes are linked behind the parked read, so nothing has
  // been written; a chain split over two submissions would have written.
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK_FALSE(chained[0].is_ready());
  CHECK(size_of(file.fd()) == 0);

  gate.feed("g", 1);
  CHECK(chained[0].wait() == 1);
  CHECK(chained[1].wait() == 4);
  CHECK(chained[2].wait() == 4);
  CHECK(gate_byte == 'g');
  CHECK(pread_string(file.fd(), 8, 0) == "BBBB");
}

TEST_CASE("a chain longer than the ring can take at once throws batch_too_large and sends "
          "nothing",
          "[chains][errors]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("chain too long");
  i2o2_test::temp_file file;
  // ring_depth 4: 4 SQEs, so the longest chain is 4 ops.
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 64, .ring_depth = 4});
  auto& handle = scheduler->handle();

  const auto writes = [&](std::size_t count) {
    std::vector<i2o2::prepared_op> ops;
    for (std::size_t i = 0; i < count; ++i)
      ops.emplace_back(i2o2::op::write{.file = file.fd(), .buf = "w", .len = 1, .offset = i});
    return ops;
  };

  for (const std::size_t length : {std::size_t{64}, std::size_t{5}}) {
    for (const auto link : {i2o2::link_kind::soft, i2o2::link_kind::hard}) {
      INFO("chain of " << length << (link == i2o2::link_kind::soft ? " soft" : " hard") << " links");
      const auto ops = writes(length);
      std::vector<std::shared_ptr<guard_record>> records;
      auto guards = counted_guards(records, length);
      try {
        handle.submit_chain(ops, guards, link);
        FAIL_CHECK("submit_chain did not throw");
      } catch (const std::system_error& error) {
        CHECK(error.code() == i2o2::make_error_code(i2o2::errc::batch_too_large));
      }
      // Nothing taken: the caller still holds every guard.
      for (std::size_t i = 0; i < length; ++i) {
        CHECK(guards[i].has_value());
        CHECK(records[i]->destroyed.load() == 0);
      }
    }
  }
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(size_of(file.fd()) == 0);  // nothing was sent

  // The longest chain that fits runs.
  auto replies = handle.submit_chain(writes(4));
  REQUIRE(replies.size() == 4);
  for (auto& reply : replies)
    CHECK(reply.wait() == 1);
  CHECK(pread_string(file.fd(), 8, 0) == "wwww");
}

TEST_CASE("an op with a timeout inside a chain throws std::invalid_argument and sends nothing",
          "[chains][errors]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("timeout in chain");
  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  // Any non-zero timeout is refused in a chain; a long one keeps the last
  // check (the same op outside a chain) from racing a loaded machine.
  const i2o2::op_options timed{.timeout = 60s};

  SECTION("in the middle") {
    const std::array<i2o2::prepared_op, 3> ops{
        i2o2::op::write{.file = file.fd(), .buf = "a", .len = 1, .offset = 0},
        i2o2::op::write{.file = file.fd(), .buf = "b", .len = 1, .offset = 1, .options = timed},
        i2o2::op::write{.file = file.fd(), .buf = "c", .len = 1, .offset = 2}};
    std::vector<std::shared_ptr<guard_record>> records;
    auto guards = counted_guards(records, ops.size());
    CHECK_THROWS_AS(handle.submit_chain(ops, guards), std::invalid_argument);
    // Nothing reached the kernel, so whatever happened to each guard, it
    // has exactly one owner or died exactly once.
    for (std::size_t i = 0; i < ops.size(); ++i) {
      REQUIRE(settle(handle, [&] { return guards[i].has_value() || records[i]->destroyed.load() != 0; }));
      CHECK(records[i]->destroyed.load() + (guards[i].has_value() ? 1 : 0) == 1);
    }
  }
  SECTION("last, and alone") {
    CHECK_THROWS_AS(
        chain(handle, i2o2::op::write{.file = file.fd(), .buf = "a", .len = 1, .offset = 0},
              i2o2::op::write{.file = file.fd(), .buf = "b", .len = 1, .offset = 1, .options = timed}),
        std::invalid_argument);
    CHECK_THROWS_AS(chain(handle, i2o2::op::nop{.options = timed}), std::invalid_argument);
    const std::array<i2o2::prepared_op, 1> one{i2o2::op::nop{.options = timed}};
    CHECK_THROWS_AS(handle.submit_chain(one, {}, i2o2::link_kind::hard), std::invalid_argument);
  }
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(size_of(file.fd()) == 0);
  // The same op outside a chain is fine.
  CHECK(handle.submit(i2o2::op::write{.file = file.fd(), .buf = "x", .len = 1, .offset = 0, .options = timed})
            .wait() == 1);
}

TEST_CASE("every guard of a chain is released once, after its own op", "[chains][guards]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("chain guards");
  i2o2_test::temp_file file;
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();

  std::array<char, 4> buffer{};
  const std::array<i2o2::prepared_op, 3> ops{
      pipe_read(pipe, buffer.data(), 4),
      i2o2::op::write{.file = file.fd(), .buf = "data", .len = 4, .offset = 0},
      i2o2::op::fsync{.file = file.fd()}};
  std::vector<std::shared_ptr<guard_record>> records;
  auto guards = counted_guards(records, ops.size());
  auto replies = handle.submit_chain(ops, guards);
  REQUIRE(replies.size() == 3);
  for (const auto& guard : guards)
    CHECK_FALSE(guard.has_value());  // all handed over

  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the chain is parked on its read
  for (const auto& record : records)
    CHECK(record->destroyed.load() == 0);

  pipe.feed("data", 4);
  CHECK(replies[0].wait() == 4);
  CHECK(replies[1].wait() == 4);
  CHECK(replies[2].wait() == 0);
  REQUIRE(settle(handle, [&] {
    for (const auto& record : records)
      if (record->destroyed.load() == 0) return false;
    return true;
  }));
  for (const auto& record : records)
    CHECK(record->destroyed.load() == 1);
  CHECK(pread_string(file.fd(), 4, 0) == "data");
}

// Default policies but the queue: the late_members queue (a chain's later
// ops offered only after its head was taken) must be built into a concrete
// scheduler type, which the harness cannot hold.
TEST_CASE("a chain whose later ops are published after its head was pulled still goes in whole", "[chains]") {
  // Without the loop's wait for a chain's unpublished members, the head
  // enters the kernel alone, its link ends with that submission, and the
  // write below runs at once instead of after the parked read.
  i2o2_test::watchdog dog("chain members published late");
  using scheduler_type = i2o2::basic_scheduler<i2o2_test::late_members, i2o2::wait::eventfd,
                                               i2o2::reply::future, i2o2::any_guard>;
  auto running = i2o2::spawn_scheduler<scheduler_type>(small_ring());
  auto& handle = running.handle;
  i2o2_test::pipe_pair parked;   // the chain's read parks here
  i2o2_test::pipe_pair written;  // and its write lands here (at once, when it runs)
  char byte = 0;
  const int held_before = i2o2_test::late_members_record::held_back.load();

  auto replies = handle.submit_chain(
      pipe_read(parked, &byte, 1),
      i2o2::op::write{
          .file = written.write_end(), .buf = "w", .len = 1, .offset = i2o2::op::current_position});
  // Submitted after the chain: once it is in, the chain's write is too,
  // and it would have completed already had its link been cut.
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  REQUIRE(i2o2_test::late_members_record::held_back.load() > held_before);  // the window was open
  CHECK_FALSE(replies[1].is_ready());
  CHECK(i2o2_test::bytes_left_in(written) == 0);

  parked.feed("r", 1);
  CHECK(replies[0].wait() == 1);
  CHECK(replies[1].wait() == 1);
  CHECK(i2o2_test::bytes_left_in(written) == 1);
}
