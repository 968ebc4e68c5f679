// The core behaviours and guarantees, for every queue x wait x reply
// combination (tests/policy_matrix.hpp): 2 x 4 x 3 = 24 schedulers.
#include "policy_matrix.hpp"

#include <i2o2/detail/cpu_relax.hpp>

#include <optional>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

using i2o2_test::all_policies;
using i2o2_test::counting_guard;
using i2o2_test::guard_record;

namespace {

template <class Scheduler>
i2o2::spawned<Scheduler> start(i2o2::config cfg = {.queue_capacity = 16, .ring_depth = 4}) {
  return i2o2::spawn_scheduler<Scheduler>(std::move(cfg));
}

/// A later op's reply resolving proves earlier completions were fully
/// processed (reply, then guard) on the scheduler thread.
template <class Handle>
void settle(Handle& handle) {
  REQUIRE(i2o2_test::submit(handle, i2o2::op::nop{}).wait() == 0);
}

/// `call(reply_args...)` is a try_submit: returns something to wait on if it
/// was taken, else the refusal.
template <class Handle, class Call>
std::pair<std::optional<i2o2_test::pending>, std::error_code> try_request(Call&& call) {
  if constexpr (std::is_same_v<typename Handle::reply_type, i2o2::callback_submitted>) {
    auto state = std::make_shared<i2o2_test::pending::slot>();
    auto result = call(i2o2_test::record_into(state));
    if (!result) return {std::nullopt, result.error()};
    state->cancel_key = result.value().cancel_key();
    return {i2o2_test::pending(state), {}};
  } else {
    auto result = call();
    if (!result) return {std::nullopt, result.error()};
    return {i2o2_test::pending(std::move(result).value()), {}};
  }
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("writes and reads land in the file", "[matrix]", all_policies) {
  i2o2_test::watchdog dog("matrix write/read");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::temp_file file;
  const std::string text = "the quick brown fox";
  REQUIRE(i2o2_test::submit(handle, i2o2::op::write{.file = file.fd(),
                                                    .buf = text.data(),
                                                    .len = static_cast<std::uint32_t>(text.size()),
                                                    .offset = 8})
              .wait() == static_cast<int>(text.size()));
  std::string on_disk(text.size(), '\0');
  REQUIRE(::pread(file.fd(), on_disk.data(), on_disk.size(), 8) == static_cast<ssize_t>(text.size()));
  CHECK(on_disk == text);

  std::string back(text.size(), '\0');
  CHECK(i2o2_test::submit(handle, i2o2::op::read{.file = file.fd(),
                                                 .buf = back.data(),
                                                 .len = static_cast<std::uint32_t>(back.size()),
                                                 .offset = 8})
            .wait() == static_cast<int>(text.size()));
  CHECK(back == text);
}

TEMPLATE_LIST_TEST_CASE("a guard outlives its parked op and dies once after it (G1, G2)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix parked guard");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;
  auto record = std::make_shared<guard_record>();
  char buffer[4] = {};
  auto parked = i2o2_test::submit(handle, i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 4},
                                  counting_guard(record));
  settle(handle);  // the read has reached the kernel and is parked
  CHECK_FALSE(parked.try_get().has_value());
  CHECK(record->destroyed == 0);

  pipe.feed("data", 4);
  CHECK(parked.wait() == 4);
  settle(handle);
  CHECK(record->destroyed == 1);
  CHECK(std::string(buffer, 4) == "data");
}

TEMPLATE_LIST_TEST_CASE("the last handle leaving waits for a parked op, then joins (G5)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix last handle");
  auto spawned = start<typename TestType::scheduler>();
  i2o2_test::pipe_pair pipe;
  auto record = std::make_shared<guard_record>();
  char buffer[2] = {};
  std::optional<i2o2_test::pending> parked;
  {
    auto handle = std::move(spawned.handle);
    parked.emplace(i2o2_test::submit(handle, i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 2},
                                     counting_guard(record)));
  }  // the last handle is gone: the scheduler drains
  CHECK_FALSE(parked->try_get().has_value());
  CHECK(record->destroyed == 0);
  pipe.feed("ok", 2);
  spawned.owner.join();  // returns only once the read completed
  CHECK(parked->wait() == 2);
  CHECK(record->destroyed == 1);
}

TEMPLATE_LIST_TEST_CASE("a stop deadline cancels a hung op, guard released on its CQE (G5)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix deadline");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;
  auto record = std::make_shared<guard_record>();
  char buffer[1] = {};
  auto parked = i2o2_test::submit(handle, i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 1},
                                  counting_guard(record));
  settle(handle);
  owner.stop(std::chrono::milliseconds(20));
  CHECK(parked.wait() == -ECANCELED);
  CHECK(record->destroyed == 1);
  CHECK_THROWS_AS(i2o2_test::submit(handle, i2o2::op::nop{}), i2o2::scheduler_closed);
}

TEMPLATE_LIST_TEST_CASE("no wake-up is lost while the scheduler parks and wakes constantly (W1)", "[matrix]",
                        all_policies) {
  // Each round trip lets the scheduler go idle, so it parks between most
  // submits; a push that slipped between its queue check and its sleep
  // without a wake would leave a client waiting forever: the watchdog
  // turns that into a failure.
  i2o2_test::watchdog dog("matrix lost wake");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  constexpr int clients = 2;
  constexpr int round_trips = 2000;
  std::atomic<int> completed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&handle = handle, &completed, c] {
      std::minstd_rand random(static_cast<unsigned>(c + 1));
      for (int i = 0; i < round_trips; ++i) {
        // A pause of 0-63 us, spun rather than yielded: under other load a
        // yield can cost a whole time slice, and 4000 of them the test.
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(random() % 64);
        while (std::chrono::steady_clock::now() < until)
          i2o2::detail::cpu_relax();
        if (i2o2_test::submit(handle, i2o2::op::nop{}).wait() == 0) completed.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  CHECK(completed == clients * round_trips);
}

TEMPLATE_LIST_TEST_CASE("concurrent clients each get their own results", "[matrix]", all_policies) {
  i2o2_test::watchdog dog("matrix clients");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::temp_file file;
  constexpr int clients = 4;
  constexpr int writes = 500;
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; i < writes; ++i) {
        const std::uint64_t record = static_cast<std::uint64_t>(c) << 32 | static_cast<std::uint32_t>(i);
        const std::uint64_t offset = (static_cast<std::uint64_t>(c) * writes + i) * sizeof(record);
        if (i2o2_test::submit(
                handle,
                i2o2::op::write{.file = file.fd(), .buf = &record, .len = sizeof(record), .offset = offset})
                .wait() == sizeof(record))
          right.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  CHECK(right == clients * writes);
  std::vector<std::uint64_t> records(clients * writes);
  REQUIRE(::pread(file.fd(), records.data(), records.size() * sizeof(std::uint64_t), 0) ==
          static_cast<ssize_t>(records.size() * sizeof(std::uint64_t)));
  for (int c = 0; c < clients; ++c)
    for (int i = 0; i < writes; ++i)
      REQUIRE(records[c * writes + i] ==
              (static_cast<std::uint64_t>(c) << 32 | static_cast<std::uint32_t>(i)));
}

TEMPLATE_LIST_TEST_CASE("a dropped reply cancels nothing and frees nothing early (G6)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix dropped reply");
  auto running = start<typename TestType::scheduler>();
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;
  auto record = std::make_shared<guard_record>();
  char buffer[3] = {};
  {
    auto dropped = i2o2_test::submit(handle, i2o2::op::read{.file = pipe.read_end(), .buf = buffer, .len = 3},
                                     counting_guard(record));
  }  // the reply is gone; the read stays parked in the kernel
  settle(handle);
  CHECK(record->destroyed == 0);
  pipe.feed("abc", 3);
  // The read still completes into the buffer; its guard then dies once.
  REQUIRE(i2o2_test::eventually([&] { return record->destroyed.load() == 1; }));
  CHECK(std::string(buffer, 3) == "abc");
  settle(handle);
  CHECK(record->destroyed == 1);
}

TEMPLATE_LIST_TEST_CASE("a full queue refuses try_submit, loses nothing, and leaves the guard (backpressure)",
                        "[matrix]", all_policies) {
  i2o2_test::watchdog dog("matrix backpressure");
  auto running = start<typename TestType::scheduler>();
  auto& handle = running.handle;
  using handle_type = std::remove_reference_t<decltype(handle)>;
  i2o2_test::pipe_pair pipe;
  // One-byte reads parked on an empty pipe fill the ring (depth 4), then
  // the queue (capacity 16); the next try_submit must be refused.
  std::vector<i2o2_test::pending> accepted;
  std::vector<std::shared_ptr<guard_record>> records;
  std::vector<char> buffer(64);
  bool refused = false;
  for (std::size_t i = 0; i < buffer.size() && !refused; ++i) {
    auto record = std::make_shared<guard_record>();
    typename handle_type::guard_arg guard = counting_guard(record);
    auto [reply, error] = try_request<handle_type>([&](auto&&... reply_args) {
      return handle.try_submit(i2o2::op::read{.file = pipe.read_end(), .buf = &buffer[i], .len = 1},
                               std::move(guard), std::forward<decltype(reply_args)>(reply_args)...);
    });
    if (!reply) {
      CHECK(error == i2o2::errc::queue_full);
      CHECK(guard.has_value());  // handed back, still the caller's
      CHECK(record->destroyed == 0);
      refused = true;
    } else {
      accepted.push_back(std::move(*reply));
      records.push_back(record);
    }
  }
  REQUIRE(refused);
  REQUIRE(accepted.size() >= 16);  // at least a full queue's worth was taken
  const std::string bytes(accepted.size(), 'x');
  pipe.feed(bytes.data(), bytes.size());
  for (auto& reply : accepted)
    CHECK(reply.wait() == 1);
  settle(handle);
  for (const auto& record : records)
    CHECK(record->destroyed == 1);
}

TEMPLATE_LIST_TEST_CASE("a closed scheduler refuses ops with scheduler_closed (G3)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix closed");
  auto running = start<typename TestType::scheduler>();
  auto& handle = running.handle;
  using handle_type = std::remove_reference_t<decltype(handle)>;
  running.owner.stop();
  auto record = std::make_shared<guard_record>();
  CHECK_THROWS_AS(i2o2_test::submit(handle, i2o2::op::nop{}, counting_guard(record)), i2o2::scheduler_closed);
  CHECK(record->destroyed == 1);  // submit released it

  auto kept = std::make_shared<guard_record>();
  typename handle_type::guard_arg guard = counting_guard(kept);
  auto [reply, error] = try_request<handle_type>([&](auto&&... reply_args) {
    return handle.try_submit(i2o2::op::nop{}, std::move(guard),
                             std::forward<decltype(reply_args)>(reply_args)...);
  });
  CHECK_FALSE(reply.has_value());
  CHECK(error == i2o2::errc::scheduler_closed);
  CHECK(guard.has_value());  // try_submit leaves it with the caller
  CHECK(kept->destroyed == 0);
}

TEMPLATE_LIST_TEST_CASE("a registered file serves ops; its guard dies after unregistering (G4)", "[matrix]",
                        all_policies) {
  i2o2_test::watchdog dog("matrix registered file");
  auto running =
      start<typename TestType::scheduler>({.queue_capacity = 16, .ring_depth = 4, .registered_files = 2});
  auto& handle = running.handle;
  using handle_type = std::remove_reference_t<decltype(handle)>;
  i2o2_test::temp_file file;
  auto record = std::make_shared<guard_record>();
  const int index = i2o2_test::request<handle_type>([&](auto&&... reply_args) {
                      return handle.register_file(file.fd(), counting_guard(record),
                                                  std::forward<decltype(reply_args)>(reply_args)...);
                    }).wait();
  REQUIRE(index >= 0);
  const std::string text = "fixed";
  CHECK(i2o2_test::submit(handle, i2o2::op::write{.file = i2o2::fixed_file(static_cast<unsigned>(index)),
                                                  .buf = text.data(),
                                                  .len = static_cast<std::uint32_t>(text.size())})
            .wait() == static_cast<int>(text.size()));
  CHECK(i2o2_test::pread_string(file.fd(), text.size(), 0) == text);
  CHECK(record->destroyed == 0);
  CHECK(i2o2_test::request<handle_type>([&](auto&&... reply_args) {
          return handle.unregister_file(static_cast<unsigned>(index),
                                        std::forward<decltype(reply_args)>(reply_args)...);
        }).wait() == 0);
  REQUIRE(i2o2_test::eventually([&] { return record->destroyed.load() == 1; }));
  settle(handle);
  CHECK(record->destroyed == 1);
}
