// The core behaviours and guarantees, for every queue x wait x reply
// combination (tests/policy_matrix.hpp): 2 x 4 x 3 = 24 schedulers.
#include "policy_matrix.hpp"

#include <random>
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

} // namespace

TEMPLATE_LIST_TEST_CASE("writes and reads land in the file", "[matrix]", all_policies) {
  i2o2_test::watchdog dog("matrix write/read");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = start<typename TestType::scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::temp_file file;
  const std::string text = "the quick brown fox";
  REQUIRE(i2o2_test::submit(handle, i2o2::op::write{.file = file.fd(), .buf = text.data(),
                                                    .len = static_cast<std::uint32_t>(text.size()),
                                                    .offset = 8})
              .wait() == static_cast<int>(text.size()));
  std::string on_disk(text.size(), '\0');
  REQUIRE(::pread(file.fd(), on_disk.data(), on_disk.size(), 8) == static_cast<ssize_t>(text.size()));
  CHECK(on_disk == text);

  std::string back(text.size(), '\0');
  CHECK(i2o2_test::submit(handle, i2o2::op::read{.file = file.fd(), .buf = back.data(),
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

TEMPLATE_LIST_TEST_CASE("no wake-up is lost while the scheduler parks and wakes constantly (W1)",
                        "[matrix]", all_policies) {
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
        for (unsigned pause = random() % 64; pause > 0; --pause) std::this_thread::yield();
        if (i2o2_test::submit(handle, i2o2::op::nop{}).wait() == 0) completed.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
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
        if (i2o2_test::submit(handle, i2o2::op::write{.file = file.fd(), .buf = &record, .len = sizeof(record),
                                                      .offset = offset})
                .wait() == sizeof(record))
          right.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(right == clients * writes);
  std::vector<std::uint64_t> records(clients * writes);
  REQUIRE(::pread(file.fd(), records.data(), records.size() * sizeof(std::uint64_t), 0) ==
          static_cast<ssize_t>(records.size() * sizeof(std::uint64_t)));
  for (int c = 0; c < clients; ++c)
    for (int i = 0; i < writes; ++i)
      REQUIRE(records[c * writes + i] == (static_cast<std::uint64_t>(c) << 32 | static_cast<std::uint32_t>(i)));
}
