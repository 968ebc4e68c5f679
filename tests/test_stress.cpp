// Many client threads against one scheduler, every result checked: each
// thread writes distinct 8-byte records at distinct offsets of one file,
// and the file is read back with pread(2) afterwards. A lost, duplicated,
// misdirected or torn op shows up as a wrong reply or a wrong record; a
// hang (a lost wake-up, a producer stuck on a full queue) trips the
// watchdog. Both run over all 24 queue x wait x reply combinations
// (tests/any_scheduler.hpp): full size for the default, scaled down for the
// rest to keep the suite short.
#include "any_scheduler.hpp"
#include "support.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::size_of;

/// The record thread `client` writes as its `index`th: unique, never zero
/// (a hole in the file reads as zero).
constexpr std::uint64_t record_of(int client, int index) noexcept {
  return (std::uint64_t{0xA5} << 56) | (static_cast<std::uint64_t>(client) << 32) |
         static_cast<std::uint64_t>(index);
}

/// Reads `count` records back from `fd` and counts those that differ from
/// record_of(client, index), client-major.
std::size_t wrong_records(int fd, int clients, int per_client) {
  std::vector<std::uint64_t> contents(static_cast<std::size_t>(clients) * per_client);
  const auto bytes = static_cast<ssize_t>(contents.size() * sizeof(std::uint64_t));
  REQUIRE(::pread(fd, contents.data(), static_cast<std::size_t>(bytes), 0) == bytes);
  std::size_t wrong = 0;
  for (int c = 0; c < clients; ++c)
    for (int i = 0; i < per_client; ++i)
      if (contents[static_cast<std::size_t>(c) * per_client + i] != record_of(c, i)) ++wrong;
  return wrong;
}

bool is_default(const std::string& policy) { return policy == i2o2_test::policy_names().front(); }
bool spins(const std::string& policy) { return policy.find("/spin/") != std::string::npos; }

} // namespace

TEST_CASE("16 clients x 10000 submits of writes and nops against every scheduler", "[stress]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("stress: 16 clients on one scheduler", 120s);
  // Full size for the default; a tenth of the submits for the rest, and
  // half the clients where the scheduler spins (it holds one of the cores).
  const int clients = spins(policy) ? 8 : 16;
  const int submits = is_default(policy) ? 10000 : 1000;
  constexpr int batch = 32;         // replies waited for in pipelined batches
  constexpr int nop_every = 8;      // every 8th submit is a nop
  const int writes = submits - submits / nop_every;
  CAPTURE(clients, submits);

  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy);

  std::atomic<long> wrong_results{0};
  std::atomic<long> completed{0};
  std::vector<std::weak_ptr<std::vector<std::uint64_t>>> buffers(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = std::shared_ptr<i2o2_test::any_handle>(scheduler->handle().clone())] {
      // The records this thread writes; every op's guard holds a share of
      // them, so they outlive the kernel's use even if this thread let go.
      auto records = std::make_shared<std::vector<std::uint64_t>>(writes);
      buffers[c] = records;
      for (int i = 0; i < writes; ++i) (*records)[i] = record_of(c, i);

      std::vector<std::pair<i2o2_test::pending, int>> pending;  // reply, expected result
      pending.reserve(batch);
      int written = 0;
      for (int s = 0; s < submits; ++s) {
        if (s % nop_every == nop_every - 1) {
          pending.emplace_back(h->submit(i2o2::op::nop{}), 0);
        } else {
          const std::uint64_t offset = (static_cast<std::uint64_t>(c) * writes + written) * sizeof(std::uint64_t);
          pending.emplace_back(h->submit(i2o2::op::write{.file = file.fd(),
                                                         .buf = &(*records)[written],
                                                         .len = sizeof(std::uint64_t),
                                                         .offset = offset},
                                         records),
                               static_cast<int>(sizeof(std::uint64_t)));
          ++written;
        }
        if (pending.size() == batch || s == submits - 1) {
          for (auto& [reply, expected] : pending) {
            if (reply.wait() != expected) wrong_results.fetch_add(1);
            completed.fetch_add(1, std::memory_order_relaxed);
          }
          pending.clear();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(wrong_results.load() == 0);
  CHECK(completed.load() == static_cast<long>(clients) * submits);
  CHECK(size_of(file.fd()) == static_cast<off_t>(clients) * writes * 8);
  CHECK(wrong_records(file.fd(), clients, writes) == 0);
  // Every write's guard has been released (each held a share of its
  // thread's records), and with it the records.
  scheduler->stop();
  for (const auto& records : buffers) CHECK(records.expired());
}

TEST_CASE("8 clients on a tiny queue and ring mixing submit and try_submit and submit_many",
          "[stress]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  // Back-pressure: the queue (8 envelopes) and the ring (4 SQEs) are full
  // most of the time, so submit waits for space, try_submit is refused with
  // queue_full and retried, and batches wait for room for all of them.
  i2o2_test::watchdog dog("stress: back-pressure on a tiny queue", 120s);
  // Full size for the default; a tenth of the rounds for the rest, and
  // where the scheduler spins (it holds one of the cores, and a refused
  // client's retries compete with it for the other) half the clients and a
  // thirtieth of the rounds.
  const int clients = spins(policy) ? 4 : 8;
  const int rounds = is_default(policy) ? 3000 : spins(policy) ? 100 : 300;  // x 6 writes per round per client
  constexpr int per_round = 6;
  const int writes = rounds * per_round;
  CAPTURE(clients, rounds);

  i2o2_test::temp_file file;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 8, .ring_depth = 4});

  std::atomic<long> wrong_results{0};
  std::atomic<long> bad_refusals{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = std::shared_ptr<i2o2_test::any_handle>(scheduler->handle().clone())] {
      std::vector<std::uint64_t> records(writes);
      for (int i = 0; i < writes; ++i) records[i] = record_of(c, i);
      const auto write_of = [&](int i) {
        return i2o2::op::write{.file = file.fd(),
                               .buf = &records[i],
                               .len = sizeof(std::uint64_t),
                               .offset = (static_cast<std::uint64_t>(c) * writes + i) * sizeof(std::uint64_t)};
      };
      std::vector<i2o2_test::pending> pending;
      pending.reserve(per_round);
      for (int r = 0; r < rounds; ++r) {
        const int first = r * per_round;
        // 1: submit, waiting for space.
        pending.push_back(h->submit(write_of(first)));
        // 1: try_submit, retried while the queue is full; the guard comes
        // back on every refusal.
        auto token = std::make_shared<int>(c);
        for (;;) {
          i2o2::any_guard guard(token);
          auto result = h->try_submit(write_of(first + 1), guard);
          if (result.reply) {
            pending.push_back(std::move(*result.reply));
            break;
          }
          if (result.error != i2o2::make_error_code(i2o2::errc::queue_full) || !guard.has_value())
            bad_refusals.fetch_add(1);
          std::this_thread::yield();
        }
        // 4: one batch.
        std::vector<i2o2::prepared_op> batch;
        for (int k = 2; k < per_round; ++k) batch.emplace_back(write_of(first + k));
        for (auto& reply : h->submit_many(batch)) pending.push_back(std::move(reply));
        for (auto& reply : pending)
          if (reply.wait() != static_cast<int>(sizeof(std::uint64_t))) wrong_results.fetch_add(1);
        pending.clear();
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(wrong_results.load() == 0);
  CHECK(bad_refusals.load() == 0);
  CHECK(size_of(file.fd()) == static_cast<off_t>(clients) * writes * 8);
  CHECK(wrong_records(file.fd(), clients, writes) == 0);
}
