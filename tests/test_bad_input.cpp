// Bad input gets a clear error, loses nothing and never hangs: bad fds, ops
// the kernel (or the ring) cannot run, a full queue, a closed scheduler,
// nonsense configs, setup flags the kernel lacks, oversized batches.
// Every scheduler test runs over all 24 queue x wait x reply combinations
// (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "support.hpp"

#include <i2o2/wait/spin.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include <sys/resource.h>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using i2o2::detail::kernel_features;
using i2o2_test::counting_guard;
using i2o2_test::guard_record;

i2o2::config small_ring() { return i2o2::config{.ring_depth = 8, .shutdown_deadline = 2s}; }

/// Ends every pretence, however the test case leaves.
struct pretence {
  pretence(std::uint32_t setup_flags, std::vector<std::uint8_t> opcodes = {}) {
    kernel_features::pretend_missing(setup_flags, std::move(opcodes));
  }
  pretence(const pretence&) = delete;
  pretence& operator=(const pretence&) = delete;
  ~pretence() { kernel_features::stop_pretending(); }
};

/// A guard that counts its destruction into a fresh record.
std::pair<i2o2::any_guard, std::shared_ptr<guard_record>> counted_guard() {
  auto record = std::make_shared<guard_record>();
  return {i2o2::any_guard(counting_guard(record)), record};
}

/// The IORING_SETUP_* flags a scheduler made from `cfg` gets. The ring is
/// made from the config alone (detail::ring), whatever the policies, and
/// any_scheduler does not expose it: a default scheduler of the same config
/// (created, never run) shows them.
std::uint32_t ring_flags_for(const i2o2::config& cfg) { return i2o2::default_scheduler(cfg).ring_flags(); }

/// The message of the std::invalid_argument that spawning `policy` with
/// `cfg` throws (fails the test if it throws nothing or something else).
std::string invalid_config_message(const std::string& policy, const i2o2::config& cfg) {
  try {
    auto spawned = i2o2_test::spawn_policy(policy, cfg);
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  FAIL("the config was accepted");
  return {};
}

} // namespace

TEST_CASE("a bad fd resolves with -EBADF and the scheduler carries on", "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("bad fd", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  i2o2_test::temp_file file;
  // A descriptor that was valid and is closed now (closed after the
  // scheduler's own descriptors exist, so nothing reuses the number).
  const int closed_fd = ::dup(file.fd());
  REQUIRE(closed_fd >= 0);
  REQUIRE(::close(closed_fd) == 0);

  char buffer[16] = {};
  for (const int fd : {-1, closed_fd}) {
    INFO("fd " << fd);
    auto [guard, record] = counted_guard();
    CHECK(handle.submit(i2o2::op::read{.file = fd, .buf = buffer, .len = 16}, std::move(guard)).wait() ==
          -EBADF);
    CHECK(handle.submit(i2o2::op::write{.file = fd, .buf = buffer, .len = 16}).wait() == -EBADF);
    CHECK(handle.submit(i2o2::op::fsync{.file = fd}).wait() == -EBADF);
    CHECK(handle.submit(i2o2::op::fallocate{.file = fd, .len = 4096}).wait() == -EBADF);
    CHECK(handle.submit(i2o2::op::close{.file = fd}).wait() == -EBADF);
    // One more round trip orders the guard's release (after its reply)
    // before this check.
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    CHECK(record->destroyed.load() == 1);
  }
  CHECK(::fcntl(file.fd(), F_GETFD) != -1);  // the temp file's own fd is untouched
}

TEST_CASE("an opcode no kernel has resolves with unsupported_op and releases its guard once",
          "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("unknown opcode", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  const i2o2::op::raw unknown{i2o2::prepared_op::with_opcode(250)};

  SECTION("counting guard") {
    auto [guard, record] = counted_guard();
    auto reply = handle.submit(unknown, std::move(guard));
    CHECK(reply.wait() == i2o2::result_of(i2o2::errc::unsupported_op));
    CHECK(i2o2::to_error_code(reply.wait()) == i2o2::make_error_code(i2o2::errc::unsupported_op));
    // Never sent, so released on the submitting thread before submit returns.
    CHECK(record->destroyed.load() == 1);
  }
  SECTION("shared_ptr guard") {
    auto owned = std::make_shared<int>(42);
    auto reply = handle.submit(unknown, i2o2::any_guard(owned));
    CHECK(reply.wait() == i2o2::result_of(i2o2::errc::unsupported_op));
    CHECK(owned.use_count() == 1);
  }
  SECTION("try_submit") {
    auto result = handle.try_submit(unknown);
    REQUIRE(result.reply.has_value());
    CHECK(result.reply->wait() == i2o2::result_of(i2o2::errc::unsupported_op));
  }
  // The scheduler is unharmed.
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
}

TEST_CASE("an op setting SQE flags the scheduler owns resolves with reserved_flags and is never sent",
          "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  const unsigned flag = GENERATE(unsigned{IOSQE_IO_LINK}, unsigned{IOSQE_IO_HARDLINK},
                                 unsigned{IOSQE_CQE_SKIP_SUCCESS}, unsigned{IOSQE_IO_DRAIN});
  CAPTURE(flag);
  i2o2_test::watchdog dog("reserved flags", 20s);
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  // A read that would park: sent with a link, the scheduler's next SQE (its
  // own wake-up read, say) would wait behind it; with CQE_SKIP_SUCCESS a nop
  // would never resolve; with a drain, both wait for the scheduler's armed
  // wake-up op, which may never complete.
  std::array<char, 4> buffer{};
  i2o2::op::raw linked{i2o2::prepare(i2o2_test::pipe_read(pipe, buffer.data(), 1))};
  linked.image.sqe().flags |= static_cast<std::uint8_t>(flag);
  const i2o2::op::raw skipped{[&] {
    auto image = i2o2::prepare(i2o2::op::nop{});
    image.sqe().flags |= static_cast<std::uint8_t>(flag);
    return image;
  }()};
  const auto reserved = i2o2::result_of(i2o2::errc::reserved_flags);

  SECTION("submit: resolved at once, the guard released") {
    auto [guard, record] = counted_guard();
    auto reply = handle.submit(linked, std::move(guard));
    CHECK(reply.wait() == reserved);
    CHECK(record->destroyed.load() == 1);
    CHECK(handle.submit(skipped).wait() == reserved);
  }
  SECTION("try_submit: the guard stays with the caller") {
    auto [guard, record] = counted_guard();
    auto result = handle.try_submit(linked, guard);
    REQUIRE(result.reply.has_value());
    CHECK(result.reply->wait() == reserved);
    CHECK(record->destroyed.load() == 0);
    guard = i2o2::any_guard{};
    CHECK(record->destroyed.load() == 1);
  }
  SECTION("inside a chain: the chain is refused whole") {
    const std::vector<i2o2::prepared_op> chain{i2o2::prepare(i2o2::op::nop{}), linked.image,
                                               i2o2::prepare(i2o2::op::nop{})};
    auto replies = handle.submit_chain(chain);
    REQUIRE(replies.size() == 3);
    CHECK(replies[0].wait() == -ECANCELED);
    CHECK(replies[1].wait() == reserved);
    CHECK(replies[2].wait() == -ECANCELED);
  }
  CHECK(i2o2::to_error_code(reserved) == i2o2::make_error_code(i2o2::errc::reserved_flags));
  // Nothing reached the pipe, and the scheduler is unharmed.
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  pipe.feed("x", 1);
  CHECK(i2o2_test::bytes_left_in(pipe) == 1);
}

TEST_CASE("an op the kernel lacks (pretend: ftruncate) resolves with unsupported_op", "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("pretend ftruncate missing", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  i2o2_test::temp_file file;
  REQUIRE(::ftruncate(file.fd(), 1000) == 0);
  {
    pretence missing(0, {i2o2::compat::op_ftruncate});
    auto [guard, record] = counted_guard();
    CHECK(handle.submit(i2o2::op::ftruncate{.file = file.fd(), .length = 10}, std::move(guard)).wait() ==
          i2o2::result_of(i2o2::errc::unsupported_op));
    CHECK(record->destroyed.load() == 1);
    struct stat st {};
    REQUIRE(::fstat(file.fd(), &st) == 0);
    CHECK(st.st_size == 1000);  // never reached the kernel
    // Only ftruncate is "missing".
    CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  }
  if (!kernel_features::get().has_opcode(i2o2::compat::op_ftruncate)) {
    WARN("SKIP: this kernel really lacks IORING_OP_FTRUNCATE (Linux 6.9); no after-pretence check");
    return;
  }
  CHECK(handle.submit(i2o2::op::ftruncate{.file = file.fd(), .length = 10}).wait() == 0);
  struct stat st {};
  REQUIRE(::fstat(file.fd(), &st) == 0);
  CHECK(st.st_size == 10);
}

TEST_CASE("uring_cmd on a ring without SQE128 resolves with needs_sqe128", "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("uring_cmd without sqe128", 20s);
  REQUIRE((ring_flags_for(small_ring()) & IORING_SETUP_SQE128) == 0);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  i2o2_test::temp_file file;
  auto [guard, record] = counted_guard();
  auto reply = handle.submit(i2o2::op::uring_cmd{.file = file.fd()}, std::move(guard));
  CHECK(reply.wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
  CHECK(record->destroyed.load() == 1);
  auto tried = handle.try_submit(i2o2::op::uring_cmd{.file = file.fd()});
  REQUIRE(tried.reply.has_value());
  CHECK(tried.reply->wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
}

TEST_CASE("an op asking for its CQE's extra words on a ring without CQE32 resolves with needs_cqe32",
          "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("extra_out without cqe32", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  const int needs_cqe32 = i2o2::result_of(i2o2::errc::needs_cqe32);
  i2o2::cqe_extra extra{{7, 7}};
  i2o2::prepared_op nop = i2o2::op::nop{};
  nop.extra_out = &extra;
  auto [guard, record] = counted_guard();
  CHECK(handle.submit(nop, std::move(guard)).wait() == needs_cqe32);
  CHECK(record->destroyed.load() == 1);
  i2o2::any_guard none;
  auto tried = handle.try_submit(nop, none);
  REQUIRE(tried.reply.has_value());
  CHECK(tried.reply->wait() == needs_cqe32);
  // uring_cmd's own field, on a ring with SQE128 but not CQE32.
  auto sqe128_only =
      i2o2_test::spawn_policy(policy, {.ring_depth = 8, .sqe128 = true, .skip_unsupported = true});
  CHECK(sqe128_only->handle().submit(i2o2::op::uring_cmd{.file = 0, .extra_out = &extra}).wait() ==
        needs_cqe32);
  CHECK(extra.words[0] == 7);  // never written
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(std::string(i2o2::make_error_code(i2o2::errc::needs_cqe32).message()).find("cqe32") !=
        std::string::npos);
}

TEST_CASE("a timed op on an IOPOLL ring resolves with unsupported_op, not a false timeout", "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("timed op on iopoll", 20s);
  // IOPOLL rings refuse LINK_TIMEOUT, which cancels the op it guards at once:
  // the op would resolve with -ECANCELED as if its deadline had passed.
  auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8, .iopoll = true});
  auto& handle = scheduler->handle();
  auto [guard, record] = counted_guard();
  CHECK(handle.submit(i2o2::op::nop{.options = {.timeout = 10s}}, std::move(guard)).wait() ==
        i2o2::result_of(i2o2::errc::unsupported_op));
  CHECK(record->destroyed.load() == 1);
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
}

TEST_CASE("an op with a negative timeout resolves with -EINVAL and is never sent", "[bad_input]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("negative timeout", 20s);
  // The kernel refuses a negative LINK_TIMEOUT, which fails the op it
  // guards as -ECANCELED: indistinguishable from a real timeout.
  auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8});
  auto& handle = scheduler->handle();
  i2o2_test::pipe_pair pipe;
  pipe.feed("x", 1);  // a read that would succeed at once
  char sink = 0;
  auto [guard, record] = counted_guard();
  CHECK(handle.submit(i2o2_test::pipe_read(pipe, &sink, 1, {.timeout = -1ms}), std::move(guard)).wait() ==
        -EINVAL);
  CHECK(record->destroyed.load() == 1);
  CHECK(i2o2_test::bytes_left_in(pipe) == 1);  // never sent
}

TEST_CASE("try_submit on a full queue fails with queue_full, keeps the guard and loses nothing",
          "[bad_input][queue_full]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("try_submit on a full queue", 30s);
  i2o2_test::pipe_pair pipe;
  constexpr std::size_t queue_capacity = 2;
  std::vector<std::shared_ptr<guard_record>> records;
  std::vector<i2o2_test::pending> replies;
  std::string bytes(64, '\0');
  std::size_t failures = 0;
  std::shared_ptr<guard_record> refused_record;
  {
    auto scheduler = i2o2_test::spawn_policy(
        policy, {.queue_capacity = queue_capacity, .ring_depth = 2, .shutdown_deadline = 2s});
    auto& handle = scheduler->handle();
    // Reads parked on the empty pipe: nothing completes until it is fed.
    // The first queue_full may come before the scheduler has pulled the
    // first ops into the ring; keep trying (the scheduler never stops
    // pulling while the ring has room) until refusals persist.
    std::size_t refusals_in_a_row = 0;
    while (refusals_in_a_row < 200 && replies.size() < bytes.size()) {
      auto [guard, record] = counted_guard();
      auto result = handle.try_submit(
          i2o2::op::read{.file = pipe.read_end(), .buf = &bytes[replies.size()], .len = 1,
                         .offset = i2o2::op::current_position},
          guard);
      if (result.reply) {
        replies.push_back(std::move(*result.reply));
        records.push_back(record);
        refusals_in_a_row = 0;
        continue;
      }
      ++failures;
      ++refusals_in_a_row;
      REQUIRE(result.error == i2o2::make_error_code(i2o2::errc::queue_full));
      REQUIRE(result.error == i2o2::errc::queue_full);
      // Refused: the guard was not moved from, the caller still owns it.
      REQUIRE(guard.has_value());
      REQUIRE(record->destroyed.load() == 0);
      refused_record = record;
      std::this_thread::yield();
    }  // each refused guard dies here, in the caller's hands
    REQUIRE(failures > 0);
    REQUIRE(replies.size() < bytes.size());
    // At least a full queue's worth, and more once the ring took some.
    CHECK(replies.size() >= queue_capacity);
    WARN(replies.size() << " parked reads accepted (queue capacity " << queue_capacity << ", ring depth 2)");
    CHECK(refused_record->destroyed.load() == 1);
    for (auto& reply : replies) CHECK_FALSE(reply.try_get().has_value());
    for (auto& record : records) CHECK(record->destroyed.load() == 0);

    // Feed one byte per read: every accepted read completes.
    std::string data;
    for (std::size_t i = 0; i < replies.size(); ++i) data.push_back(static_cast<char>('a' + i % 26));
    pipe.feed(data.data(), data.size());
    for (auto& reply : replies) CHECK(reply.wait() == 1);
    std::string got = bytes.substr(0, replies.size());
    std::sort(got.begin(), got.end());
    std::sort(data.begin(), data.end());
    CHECK(got == data);

    // And the queue takes ops again.
    auto again = handle.try_submit(i2o2::op::nop{});
    REQUIRE(again.reply.has_value());
    CHECK(again.reply->wait() == 0);
  }  // the scheduler thread joins: every guard has been released
  for (auto& record : records) CHECK(record->destroyed.load() == 1);
}

TEST_CASE("after stop, submit throws scheduler_closed and try_submit returns it", "[bad_input][closed]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("submit after shutdown", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, small_ring());
  auto& handle = scheduler->handle();
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  scheduler->stop();
  CHECK(handle.closed());

  {
    auto [guard, record] = counted_guard();
    CHECK_THROWS_AS(handle.submit(i2o2::op::nop{}, std::move(guard)), i2o2::scheduler_closed);
    CHECK(record->destroyed.load() == 1);
  }
  {
    auto owned = std::make_shared<int>(7);
    try {
      (void)handle.submit(i2o2::op::nop{}, i2o2::any_guard(owned));
      FAIL("submit after stop did not throw");
    } catch (const i2o2::scheduler_closed& error) {
      CHECK(error.code() == i2o2::errc::scheduler_closed);
    }
    CHECK(owned.use_count() == 1);
  }
  {
    auto [guard, record] = counted_guard();
    auto result = handle.try_submit(i2o2::op::nop{}, guard);
    REQUIRE_FALSE(result.reply.has_value());
    CHECK(result.error == i2o2::make_error_code(i2o2::errc::scheduler_closed));
    CHECK(guard.has_value());  // handed back, not released
    CHECK(record->destroyed.load() == 0);
    guard.reset();
    CHECK(record->destroyed.load() == 1);
  }
  {
    std::vector<i2o2::prepared_op> batch{i2o2::op::nop{}, i2o2::op::nop{}};
    CHECK_THROWS_AS(handle.submit_many(batch), i2o2::scheduler_closed);
  }
  // A copy of a closed handle is closed too.
  auto copy = handle.clone();
  CHECK(copy->closed());
  CHECK_THROWS_AS(copy->submit(i2o2::op::nop{}), i2o2::scheduler_closed);
}

// Default type only: submit_result's own API (value() of a refusal), which
// any_handle::try_submit does not pass on.
TEST_CASE("value() of a try_submit refused after stop throws std::system_error", "[bad_input][closed]") {
  i2o2_test::watchdog dog("submit_result::value after shutdown", 20s);
  auto [owner, handle] = i2o2::spawn(small_ring());
  owner.stop();
  auto result = handle.try_submit(i2o2::op::nop{});
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error() == i2o2::make_error_code(i2o2::errc::scheduler_closed));
  CHECK_THROWS_AS(std::move(result).value(), std::system_error);
}

TEST_CASE("nonsense configs throw std::invalid_argument naming the field", "[bad_input][config]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("nonsense configs", 20s);
  CHECK_THAT(invalid_config_message(policy, {.ring_depth = 0}), Catch::Contains("ring_depth"));
  CHECK_THAT(invalid_config_message(policy, {.ring_depth = 3}),
             Catch::Contains("ring_depth") && Catch::Contains("3"));
  CHECK_THAT(invalid_config_message(policy, {.ring_depth = 65536}),
             Catch::Contains("ring_depth") && Catch::Contains("65536"));
  CHECK_THAT(invalid_config_message(policy, {.queue_capacity = 0}), Catch::Contains("queue_capacity"));
  CHECK_THAT(invalid_config_message(policy, {.queue_capacity = i2o2::max_queue_capacity + 1}),
             Catch::Contains("queue_capacity"));
  CHECK_THAT(invalid_config_message(policy, {.submit_budget = std::chrono::nanoseconds(-1)}),
             Catch::Contains("submit_budget"));
  CHECK_THAT(invalid_config_message(policy, {.idle_spin = std::chrono::microseconds(-1)}),
             Catch::Contains("idle_spin"));
  CHECK_THAT(invalid_config_message(policy, {.busy_spin = std::chrono::microseconds(-1)}),
             Catch::Contains("busy_spin"));
  // An adaptive poll longer than a second is a mistake (wait::spin never parks).
  CHECK_THAT(invalid_config_message(policy, {.busy_spin = std::chrono::seconds(2)}),
             Catch::Contains("busy_spin") && Catch::Contains("2000000"));
  CHECK_THAT(invalid_config_message(policy, {.shutdown_deadline = -1ms}),
             Catch::Contains("shutdown_deadline"));
  // SQPOLL settings the kernel would take wrongly (a negative idle as 49
  // days of polling, 0 as a second) or refuse with a bare EINVAL.
  CHECK_THAT(invalid_config_message(policy, {.sqpoll = true, .sqpoll_idle = -1ms}),
             Catch::Contains("sqpoll_idle"));
  CHECK_THAT(invalid_config_message(policy, {.sqpoll = true, .sqpoll_idle = 0ms}),
             Catch::Contains("sqpoll_idle"));
  CHECK_THAT(
      invalid_config_message(policy, {.sqpoll = true, .sqpoll_idle = std::chrono::milliseconds(1LL << 32)}),
      Catch::Contains("sqpoll_idle"));
  CHECK_THAT(invalid_config_message(policy, {.sqpoll = true, .coop_taskrun = true}),
             Catch::Contains("sqpoll") && Catch::Contains("coop_taskrun"));
  // Refused before the scheduler allocates its bookkeeping for the tables.
  CHECK_THAT(invalid_config_message(policy, {.registered_files = i2o2::max_registered_files + 1}),
             Catch::Contains("registered_files"));
  CHECK_THAT(invalid_config_message(policy, {.registered_buffers = i2o2::max_registered_buffers + 1}),
             Catch::Contains("registered_buffers"));
  // The limits themselves are fine, and such a scheduler runs.
  std::unique_ptr<i2o2_test::any_scheduler> smallest;
  CHECK_NOTHROW(smallest = i2o2_test::spawn_policy(policy, {.queue_capacity = 1, .ring_depth = 1}));
  if (smallest) CHECK(smallest->handle().submit(i2o2::op::nop{}).wait() == 0);
  // And the scheduler type itself validates, not only spawn (the harness
  // only spawns: checked on the default type).
  CHECK_THROWS_AS(i2o2::default_scheduler(i2o2::config{.ring_depth = 6}), std::invalid_argument);
}

TEST_CASE("a setup flag the kernel lacks names itself and its kernel, or is skipped on request",
          "[bad_input][config]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("missing setup flag", 20s);
  pretence missing(IORING_SETUP_SQE128);
  try {
    auto spawned = i2o2_test::spawn_policy(policy, {.ring_depth = 8, .sqe128 = true});
    FAIL("a ring with a missing IORING_SETUP_SQE128 was created");
  } catch (const std::system_error& error) {
    const std::string what = error.what();
    CHECK_THAT(what, Catch::Contains("IORING_SETUP_SQE128"));
    CHECK_THAT(what, Catch::Contains("5.19"));
  }

  const i2o2::config skipping{.ring_depth = 8, .sqe128 = true, .skip_unsupported = true};
  CHECK((ring_flags_for(skipping) & IORING_SETUP_SQE128) == 0);
  auto scheduler = i2o2_test::spawn_policy(policy, skipping);
  auto& handle = scheduler->handle();
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  // The ring really has 64-byte SQEs: a uring_cmd is refused, not sent.
  CHECK(handle.submit(i2o2::op::uring_cmd{}).wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
}

TEST_CASE("spawn pinned to a CPU that does not exist throws std::system_error", "[bad_input][config]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("bad cpu affinity", 20s);
  try {
    auto spawned = i2o2_test::spawn_policy(policy, {.cpu_affinity = 9999u});
    FAIL("spawn pinned to CPU 9999 succeeded");
  } catch (const std::system_error& error) {
    CHECK_THAT(std::string(error.what()), Catch::Contains("9999"));
  }
}

TEST_CASE("submit_many with more ops than the queue holds throws batch_too_large and leaves the guards "
          "with the caller",
          "[bad_input][batch]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("batch too large", 20s);
  auto scheduler = i2o2_test::spawn_policy(policy, {.queue_capacity = 2, .ring_depth = 8, .shutdown_deadline = 2s});
  auto& handle = scheduler->handle();
  std::vector<i2o2::prepared_op> batch(3, i2o2::prepared_op(i2o2::op::nop{}));
  std::vector<std::shared_ptr<guard_record>> records;
  std::vector<i2o2::any_guard> guards;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto [guard, record] = counted_guard();
    guards.push_back(std::move(guard));
    records.push_back(record);
  }
  try {
    (void)handle.submit_many(batch, guards);
    FAIL("submit_many of 3 ops into a queue of 2 succeeded");
  } catch (const std::system_error& error) {
    CHECK(error.code() == i2o2::make_error_code(i2o2::errc::batch_too_large));
  }
  // Refused before anything was taken: the caller still owns every guard.
  for (auto& record : records)
    CHECK(record->destroyed.load() == 0);
  guards.clear();
  for (auto& record : records) CHECK(record->destroyed.load() == 1);

  // A batch that fits still goes through.
  std::vector<i2o2::prepared_op> fits(2, i2o2::prepared_op(i2o2::op::nop{}));
  auto replies = handle.submit_many(fits);
  REQUIRE(replies.size() == 2);
  for (auto& reply : replies) CHECK(reply.wait() == 0);
}

TEST_CASE("a ring refused for want of descriptors says so, not that the flags were wrong", "[bad_input]") {
  using spin_scheduler =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::spin, i2o2::reply::future, i2o2::any_guard>;
  i2o2_test::watchdog dog("ring without descriptors");
  { spin_scheduler probed_first({.ring_depth = 8}); }  // the kernel's features are known before the limit

  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  const int lowest_free = ::open("/dev/null", O_RDONLY);  // descriptors are handed out lowest first
  REQUIRE(lowest_free >= 0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // no descriptor left to open
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  std::optional<std::system_error> refused;
  try {
    spin_scheduler scheduler({.ring_depth = 8});
  } catch (const std::system_error& error) {
    refused = error;
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);

  REQUIRE(refused.has_value());
  CHECK(refused->code() == std::errc::too_many_files_open);
  CHECK_THAT(refused->what(), !Catch::Contains("setup flags"));
}
