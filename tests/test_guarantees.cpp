// The lifetime guarantees of DESIGN.md ("Guarantees"), each checked against
// the real kernel by a test that fails when the guarantee is broken:
//   G1 a guard is destroyed exactly once;
//   G2 never before the op's CQE was reaped: reply first, then guard, on the
//      scheduler thread;
//   G3 an op that never reaches the kernel resolves with a clear error and
//      releases its guard; nothing hangs;
//   G5 shutdown (last handle or explicit stop) completes every accepted op
//      with the kernel's own result, releases every guard, joins; later
//      submissions fail with scheduler_closed;
//   G6 dropping a reply early cancels nothing and frees nothing early;
//   R1 every reply resolves exactly once;
//   W1 no lost wake-up.
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it, and the lost-wake windows are entered by holding threads
// in test-only policy wrappers: no verdict depends on sleeping or timing.
// Every test case runs under a watchdog, so a hang is a failure.
#include "proc_support.hpp"
#include "support.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <barrier>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::eventually;

// ---- a reply policy that records everything --------------------------------

/// Everything observed about one op: its guard's life (support.hpp's
/// guard_record, which counting_guard updates), how often its reply was
/// completed, with what, and on which threads things happened.
struct op_record {
  i2o2_test::guard_record guard;
  std::atomic<int> completions{0};
  std::atomic<int> result{0};
  // Futex word the receiver waits on (std::atomic::wait).
  std::atomic<std::uint32_t> ready{0};
  std::atomic<std::thread::id> completer{};
  std::atomic<std::thread::id> guard_destroyer{};
};

/// A reply policy for tests: the sender records every `complete` (R1 counts
/// them), marks the op's guard_record as completed (so counting_guard can
/// tell a guard destroyed before its completion, G2) and the thread it ran
/// on. A sender destroyed without completing resolves with
/// scheduler_closed, as the reply concept demands.
struct recording_reply {
  class sender {
  public:
    explicit sender(std::shared_ptr<op_record> record) noexcept : record_(std::move(record)) {}
    sender(sender&& other) noexcept : record_(std::move(other.record_)), completed_(other.completed_) {}
    sender& operator=(sender&&) = delete;
    ~sender() {
      if (record_ && !completed_) std::move(*this).complete(i2o2::result_of(i2o2::errc::scheduler_closed));
    }

    /// Counts every call, so a second completion shows up as completions == 2
    /// instead of being hidden.
    void complete(int result) && noexcept {
      if (!record_) return;  // moved-from: owns no op
      completed_ = true;
      op_record& record = *record_;
      record.completer.store(std::this_thread::get_id());
      record.result.store(result);
      record.guard.completion_seen.store(true);
      record.completions.fetch_add(1);
      record.ready.store(1, std::memory_order_release);
      record.ready.notify_all();
    }

  private:
    std::shared_ptr<op_record> record_;
    bool completed_ = false;
  };

  class receiver {
  public:
    receiver() = default;
    explicit receiver(std::shared_ptr<op_record> record) noexcept : record_(std::move(record)) {}

    bool is_ready() const noexcept { return record_->ready.load(std::memory_order_acquire) != 0; }
    int wait() const noexcept {
      while (record_->ready.load(std::memory_order_acquire) == 0) record_->ready.wait(0);
      return record_->result.load();
    }
    const std::shared_ptr<op_record>& record() const noexcept { return record_; }

  private:
    std::shared_ptr<op_record> record_;
  };

  /// Records into `record`, which the test also holds (and may share with
  /// the op's guard).
  static std::pair<sender, receiver> make(std::shared_ptr<op_record> record) {
    sender out(record);
    return {std::move(out), receiver(std::move(record))};
  }
  /// A fresh record (submit_many calls this); reach it via receiver::record().
  static std::pair<sender, receiver> make() { return make(std::make_shared<op_record>()); }
};
static_assert(i2o2::reply_policy<recording_reply>);
static_assert(i2o2::reply_factory<recording_reply>);
static_assert(i2o2::reply_factory<recording_reply, std::shared_ptr<op_record>&>);

// ---- the guard ---------------------------------------------------------------

/// support.hpp's counting_guard (counts destructions, flags one that comes
/// before the op's completion), plus the thread that destroyed it.
///
/// It adds a default constructor (an empty guard) only because
/// basic_handle needs one: handle.hpp builds `guard_arg{}` in try_submit and
/// in reject_unrunnable, although the guard_type concept does not require
/// default construction (see the report; counting_guard itself does not
/// compile as a Guard).
class test_guard : public i2o2_test::counting_guard {
public:
  test_guard() noexcept : i2o2_test::counting_guard(nullptr) {}
  explicit test_guard(std::shared_ptr<op_record> op) noexcept
      : i2o2_test::counting_guard(std::shared_ptr<i2o2_test::guard_record>(op, &op->guard)),
        op_(std::move(op)) {}
  test_guard(test_guard&&) noexcept = default;
  test_guard& operator=(test_guard&& other) noexcept {
    if (this != &other) {
      note_thread();
      i2o2_test::counting_guard::operator=(std::move(other));
      op_ = std::move(other.op_);
    }
    return *this;
  }
  // Runs before ~counting_guard, so the thread id is stored before the
  // destroyed count (seq_cst) that the test reads first.
  ~test_guard() { note_thread(); }

private:
  void note_thread() noexcept {
    if (op_) std::exchange(op_, nullptr)->guard_destroyer.store(std::this_thread::get_id());
  }
  std::shared_ptr<op_record> op_;
};
static_assert(i2o2::guard_type<test_guard>);

using recording_scheduler =
    i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, recording_reply, test_guard>;
using recording_handle = recording_scheduler::handle_type;

/// An op submitted with a recording reply and a guard sharing one record.
struct tracked {
  std::shared_ptr<op_record> record;
  recording_reply::receiver reply;
};

template <class Op>
tracked submit_tracked(recording_handle& handle, const Op& op) {
  auto record = std::make_shared<op_record>();
  auto reply = handle.submit(op, test_guard(record), record);
  return {std::move(record), std::move(reply)};
}

constexpr int closed_result = i2o2::result_of(i2o2::errc::scheduler_closed);

/// Watches `still` for `span`: false if it stopped holding. Used only to
/// show that something that must never happen by itself (a parked op
/// resolving, a scheduler with a parked op finishing) does not happen
/// while we look; no correct run depends on how long we look.
template <class Predicate>
bool holds_for(Predicate still, std::chrono::milliseconds span) {
  const auto until = std::chrono::steady_clock::now() + span;
  while (std::chrono::steady_clock::now() < until) {
    if (!still()) return false;
    std::this_thread::sleep_for(1ms);
  }
  return still();
}

/// Submits a nop and waits for it. Ops leave the queue in order and the
/// scheduler submits every popped op in the same or an earlier
/// io_uring_enter, so once the nop is back every op this thread submitted
/// before it has reached the kernel (e.g. a read is parked on its pipe).
void barrier(recording_handle& handle) {
  auto nop = submit_tracked(handle, i2o2::op::nop{});
  REQUIRE(nop.reply.wait() == 0);
}

/// The checks every op that went through the ring must pass (G1, G2, R1):
/// one completion with `expected`, one guard destruction after it, both
/// on the scheduler thread (not `client`).
void check_completed_in_ring(const op_record& record, int expected, std::thread::id client) {
  CHECK(record.completions.load() == 1);
  CHECK(record.result.load() == expected);
  CHECK(record.guard.destroyed.load() == 1);
  CHECK_FALSE(record.guard.destroyed_before_completion.load());
  CHECK(record.guard_destroyer.load() == record.completer.load());
  CHECK(record.completer.load() != client);
}

} // namespace

// ---- G1 / G2 ------------------------------------------------------------------

TEST_CASE("G1/G2: guards of many nops and reads die once after their completion on the "
          "scheduler thread",
          "[G1][G2]") {
  i2o2_test::watchdog dog("G1/G2 many guarded ops");
  constexpr int clients = 4;
  constexpr int ops_per_client = 2048;  // a whole number of batches
  constexpr int batch = 64;
  constexpr std::uint32_t chunk = 64;

  i2o2_test::temp_file file;
  std::array<unsigned char, 4096> pattern{};
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<unsigned char>(i * 7 + 3);
  REQUIRE(::pwrite(file.fd(), pattern.data(), pattern.size(), 0) == static_cast<ssize_t>(pattern.size()));

  // Named members, not a structured binding: clang 14 lambdas cannot capture those.

  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});

  [[maybe_unused]] auto& owner = running.owner;

  auto& handle = running.handle;
  std::vector<std::vector<tracked>> per_client(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::atomic<int> bad_data{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle]() mutable {
      client_ids[c] = std::this_thread::get_id();
      auto& mine = per_client[c];
      mine.reserve(ops_per_client);
      std::vector<std::array<unsigned char, chunk>> buffers(batch);
      for (int first = 0; first < ops_per_client; first += batch) {
        for (int k = 0; k < batch; ++k) {
          const int i = first + k;
          if (i % 2 == 0) {
            mine.push_back(submit_tracked(h, i2o2::op::nop{}));
          } else {
            const std::uint64_t offset = static_cast<std::uint64_t>((i / 2) % 64) * chunk;
            mine.push_back(submit_tracked(
                h, i2o2::op::read{.file = file.fd(), .buf = buffers[k].data(), .len = chunk, .offset = offset}));
          }
        }
        for (int k = 0; k < batch; ++k) {
          const int i = first + k;
          mine[i].reply.wait();
          if (i % 2 == 1) {
            const std::size_t offset = static_cast<std::size_t>((i / 2) % 64) * chunk;
            if (std::memcmp(buffers[k].data(), pattern.data() + offset, chunk) != 0) bad_data.fetch_add(1);
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  CHECK(bad_data.load() == 0);
  std::set<std::thread::id> completers;
  for (int c = 0; c < clients; ++c) {
    REQUIRE(per_client[c].size() == static_cast<std::size_t>(ops_per_client));
    for (int i = 0; i < ops_per_client; ++i) {
      const op_record& record = *per_client[c][i].record;
      const int expected = i % 2 == 0 ? 0 : static_cast<int>(chunk);
      // Guard destruction follows completion on the scheduler thread, maybe
      // a moment after the client saw the result.
      REQUIRE(eventually([&] { return record.guard.destroyed.load() != 0; }));
      check_completed_in_ring(record, expected, client_ids[c]);
      completers.insert(record.completer.load());
    }
  }
  // One scheduler thread ran every completion, and it is no client.
  REQUIRE(completers.size() == 1);
  for (const auto& id : client_ids) CHECK(*completers.begin() != id);
  CHECK(*completers.begin() != std::this_thread::get_id());
}

TEST_CASE("G2: the guard of a read parked on an empty pipe lives until its CQE", "[G2]") {
  i2o2_test::watchdog dog("G2 parked read");
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  std::array<char, 16> buffer{};
  auto read = submit_tracked(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);  // the read is in the kernel now, parked on the pipe

  CHECK_FALSE(read.reply.is_ready());
  CHECK(read.record->guard.destroyed.load() == 0);
  CHECK(read.record->completions.load() == 0);

  pipe.feed("hello", 5);
  REQUIRE(read.reply.wait() == 5);
  CHECK(std::memcmp(buffer.data(), "hello", 5) == 0);
  REQUIRE(eventually([&] { return read.record->guard.destroyed.load() != 0; }));
  check_completed_in_ring(*read.record, 5, std::this_thread::get_id());
}

namespace {
/// A guard that owns an mmap'd page and revokes access to it when destroyed
/// (DESIGN.md "Kernel behaviour"): if it died while the kernel still had
/// the read in flight, the kernel's copy into the page fails and the read
/// completes with -EFAULT instead of the byte count.
struct page_guard {
  void* page = nullptr;
  std::atomic<int>* destroyed = nullptr;
  std::atomic<std::thread::id>* destroyer = nullptr;

  page_guard(void* p, std::atomic<int>* d, std::atomic<std::thread::id>* t) noexcept
      : page(p), destroyed(d), destroyer(t) {}
  page_guard(page_guard&& other) noexcept
      : page(std::exchange(other.page, nullptr)), destroyed(other.destroyed), destroyer(other.destroyer) {}
  page_guard& operator=(page_guard&& other) noexcept {
    std::swap(page, other.page);
    std::swap(destroyed, other.destroyed);
    std::swap(destroyer, other.destroyer);
    return *this;
  }
  ~page_guard() {
    if (page == nullptr) return;
    ::mprotect(page, 4096, PROT_NONE);
    destroyer->store(std::this_thread::get_id());
    destroyed->fetch_add(1);
  }
};
} // namespace

TEST_CASE("G2: an any_guard revoking the read buffer on destruction never makes the read fault",
          "[G2][default]") {
  i2o2_test::watchdog dog("G2 mprotect guard");
  i2o2_test::pipe_pair pipe;
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(page != MAP_FAILED);
  std::atomic<int> destroyed{0};
  std::atomic<std::thread::id> destroyer{};
  {
    // Named members, not a structured binding: clang 14 lambdas cannot capture those.
    auto running = i2o2::spawn();
    [[maybe_unused]] auto& owner = running.owner;
    auto& handle = running.handle;
    auto read = handle.submit(pipe_read(pipe, page, 4096), page_guard(page, &destroyed, &destroyer));
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked in the kernel
    CHECK_FALSE(read.is_ready());
    CHECK(destroyed.load() == 0);

    pipe.feed("kernel", 6);
    // -EFAULT here would mean the guard (and the page) went away first.
    REQUIRE(read.wait() == 6);
    REQUIRE(eventually([&] { return destroyed.load() != 0; }));
    CHECK(destroyed.load() == 1);
    CHECK(destroyer.load() != std::this_thread::get_id());
  }
  REQUIRE(::mprotect(page, 4096, PROT_READ) == 0);
  CHECK(std::memcmp(page, "kernel", 6) == 0);
  ::munmap(page, 4096);
}

// ---- G3 -------------------------------------------------------------------------

TEST_CASE("G3: an op the kernel does not support resolves with unsupported_op and releases "
          "its guard once",
          "[G3]") {
  i2o2_test::watchdog dog("G3 unsupported op");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  REQUIRE_FALSE(i2o2::detail::kernel_features::get().has_opcode(250));

  auto raw = submit_tracked(handle, i2o2::op::raw{.image = i2o2::prepared_op::with_opcode(250)});
  // Resolved before submit returned: the kernel never sees it.
  REQUIRE(raw.reply.is_ready());
  CHECK(raw.reply.wait() == i2o2::result_of(i2o2::errc::unsupported_op));
  CHECK(raw.record->completions.load() == 1);
  CHECK(raw.record->guard.destroyed.load() == 1);
  CHECK_FALSE(raw.record->guard.destroyed_before_completion.load());

  // An SQE128-only command on a ring without SQE128.
  auto cmd = submit_tracked(handle, i2o2::op::uring_cmd{.file = 0});
  REQUIRE(cmd.reply.is_ready());
  CHECK(cmd.reply.wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
  CHECK(cmd.record->completions.load() == 1);
  CHECK(cmd.record->guard.destroyed.load() == 1);
  CHECK_FALSE(cmd.record->guard.destroyed_before_completion.load());

  // The scheduler is unaffected.
  auto nop = submit_tracked(handle, i2o2::op::nop{});
  CHECK(nop.reply.wait() == 0);
}

TEST_CASE("G3/G5: after stop submit throws scheduler_closed and try_submit hands the guard back",
          "[G3][G5]") {
  i2o2_test::watchdog dog("G3 submit after stop");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  REQUIRE(submit_tracked(handle, i2o2::op::nop{}).reply.wait() == 0);
  owner.stop();
  REQUIRE(handle.closed());

  // submit: throws; the reply it would have returned resolved with
  // scheduler_closed, once, and the guard is released, once, after that.
  auto refused = std::make_shared<op_record>();
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, test_guard(refused), refused), i2o2::scheduler_closed);
  CHECK(refused->completions.load() == 1);
  CHECK(refused->result.load() == closed_result);
  CHECK(refused->guard.destroyed.load() == 1);
  CHECK_FALSE(refused->guard.destroyed_before_completion.load());

  // try_submit: returns the error and leaves the guard with the caller.
  auto kept = std::make_shared<op_record>();
  {
    test_guard guard(kept);
    auto result = handle.try_submit(i2o2::op::nop{}, std::move(guard), kept);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == i2o2::make_error_code(i2o2::errc::scheduler_closed));
    CHECK(kept->completions.load() == 1);
    CHECK(kept->result.load() == closed_result);
    CHECK(kept->guard.destroyed.load() == 0);  // still ours
  }
  CHECK(kept->guard.destroyed.load() == 1);

  // A batch is refused whole.
  std::vector<i2o2::prepared_op> ops{i2o2::op::nop{}, i2o2::op::nop{}};
  REQUIRE_THROWS_AS(handle.submit_many(ops), i2o2::scheduler_closed);
}

TEST_CASE("G3: ops queued to a scheduler that never ran resolve with scheduler_closed when it "
          "is destroyed",
          "[G3]") {
  i2o2_test::watchdog dog("G3 never-run scheduler");
  std::optional<recording_scheduler> scheduler(std::in_place, i2o2::config{});
  auto handle = scheduler->handle();
  auto queued = submit_tracked(handle, i2o2::op::nop{});  // accepted into the queue
  CHECK_FALSE(queued.reply.is_ready());
  CHECK(queued.record->guard.destroyed.load() == 0);

  scheduler.reset();  // the handle outlives it
  REQUIRE(queued.reply.is_ready());
  CHECK(queued.reply.wait() == closed_result);
  CHECK(queued.record->completions.load() == 1);
  CHECK(queued.record->guard.destroyed.load() == 1);
  CHECK_FALSE(queued.record->guard.destroyed_before_completion.load());
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, test_guard(std::make_shared<op_record>())),
                    i2o2::scheduler_closed);
}

// ---- G5 -------------------------------------------------------------------------

TEST_CASE("G5: dropping the last handle waits for a parked read that completes with the "
          "kernel's result",
          "[G5]") {
  i2o2_test::watchdog dog("G5 last handle dropped");
  i2o2_test::pipe_pair pipe;
  // No shutdown deadline: the parked read must be waited for, never cancelled.
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{.shutdown_deadline = std::nullopt});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  std::array<char, 16> buffer{};
  tracked read;
  {
    recording_handle last = std::move(handle);
    recording_handle copy = last;  // NOLINT: a copy, dropped too
    read = submit_tracked(copy, pipe_read(pipe, buffer.data(), buffer.size()));
    barrier(last);
  }  // every handle is gone: the scheduler shuts down, but must wait for the read

  std::atomic<bool> joined{false};
  std::thread joiner([&] {
    owner.join();
    joined.store(true);
  });
  CHECK(holds_for([&] { return !read.reply.is_ready() && !joined.load(); }, 100ms));
  CHECK(read.record->guard.destroyed.load() == 0);

  pipe.feed("bye", 3);
  joiner.join();  // returns only once the read has completed
  CHECK(joined.load());
  REQUIRE(read.reply.is_ready());
  CHECK(read.reply.wait() == 3);
  CHECK(std::memcmp(buffer.data(), "bye", 3) == 0);
  check_completed_in_ring(*read.record, 3, std::this_thread::get_id());
}

TEST_CASE("G5: an explicit stop without a deadline waits for a parked read", "[G5]") {
  i2o2_test::watchdog dog("G5 stop without deadline");
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  std::array<char, 16> buffer{};
  auto read = submit_tracked(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    owner.stop(std::nullopt);
    stopped.store(true);
  });
  // The gate closes at once; the read stays in flight.
  REQUIRE(eventually([&] { return handle.closed(); }));
  CHECK(holds_for([&] { return !read.reply.is_ready() && !stopped.load(); }, 100ms));
  CHECK(read.record->guard.destroyed.load() == 0);

  pipe.feed("four", 4);
  stopper.join();
  CHECK(stopped.load());
  CHECK(read.reply.wait() == 4);
  check_completed_in_ring(*read.record, 4, std::this_thread::get_id());
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, test_guard(std::make_shared<op_record>())),
                    i2o2::scheduler_closed);
}

TEST_CASE("G5: stop with a deadline cancels a read parked forever and releases its guard on "
          "its CQE",
          "[G5]") {
  i2o2_test::watchdog dog("G5 stop with deadline");
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  std::array<char, 16> buffer{};
  auto read = submit_tracked(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);
  CHECK(read.record->guard.destroyed.load() == 0);

  owner.stop(std::chrono::milliseconds(50));  // the pipe is never fed
  REQUIRE(read.reply.is_ready());
  CHECK(read.reply.wait() == -ECANCELED);
  check_completed_in_ring(*read.record, -ECANCELED, std::this_thread::get_id());

  auto late = std::make_shared<op_record>();
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, test_guard(late), late), i2o2::scheduler_closed);
  CHECK(late->result.load() == closed_result);
  test_guard kept(std::make_shared<op_record>());
  CHECK(handle.try_submit(i2o2::op::nop{}, std::move(kept)).error() ==
        i2o2::make_error_code(i2o2::errc::scheduler_closed));
}

TEST_CASE("G5/R1: ops racing an explicit stop complete in the ring or are refused and "
          "resolve once",
          "[G5][R1]") {
  i2o2_test::watchdog dog("G5 submit racing stop");
  constexpr int clients = 4;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{.queue_capacity = 64});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  struct outcome {
    std::vector<tracked> accepted;
    std::shared_ptr<op_record> refused;  // the one op each client had refused
    bool refused_by_throw = false;
  };
  std::vector<outcome> outcomes(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::atomic<int> accepted_total{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle]() mutable {
      client_ids[c] = std::this_thread::get_id();
      outcome& mine = outcomes[c];
      for (int i = 0;; ++i) {
        auto record = std::make_shared<op_record>();
        if (c % 2 == 0) {  // submit: waits for space, throws once closed
          try {
            mine.accepted.push_back({record, h.submit(i2o2::op::nop{}, test_guard(record), record)});
          } catch (const i2o2::scheduler_closed&) {
            mine.refused = record;
            mine.refused_by_throw = true;
            return;
          }
        } else {  // try_submit: retries while full, stops once closed
          test_guard guard(record);
          auto result = h.try_submit(i2o2::op::nop{}, std::move(guard), record);
          if (!result) {
            if (result.error() == i2o2::make_error_code(i2o2::errc::queue_full)) {
              std::this_thread::yield();
              continue;  // `guard` still holds the record; it dies here, uncounted below
            }
            mine.refused = record;
            return;
          }
          mine.accepted.push_back({record, std::move(*result)});
        }
        accepted_total.fetch_add(1);
        // Wait for some replies now and then so the queue drains.
        if (i % 16 == 15 && mine.accepted.size() >= 8) mine.accepted[mine.accepted.size() - 8].reply.wait();
      }
    });
  }
  REQUIRE(eventually([&] { return accepted_total.load() >= 4000; }));
  owner.stop(std::nullopt);
  for (auto& thread : threads) thread.join();

  int accepted = 0;
  for (int c = 0; c < clients; ++c) {
    const outcome& mine = outcomes[c];
    for (const auto& op : mine.accepted) {
      // Accepted before the gate closed: ran in the ring, stop waited for it.
      REQUIRE(op.reply.is_ready());
      check_completed_in_ring(*op.record, 0, client_ids[c]);
      ++accepted;
    }
    REQUIRE(mine.refused != nullptr);
    CHECK(mine.refused->completions.load() == 1);
    CHECK(mine.refused->result.load() == closed_result);
    CHECK(mine.refused->guard.destroyed.load() == 1);
    CHECK_FALSE(mine.refused->guard.destroyed_before_completion.load());
    CHECK(mine.refused_by_throw == (c % 2 == 0));
  }
  CHECK(accepted >= 4000);
}

// ---- G6 -------------------------------------------------------------------------

TEST_CASE("G6: dropping a reply early cancels nothing and frees nothing early", "[G6]") {
  i2o2_test::watchdog dog("G6 recording reply dropped");
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  std::array<char, 16> buffer{};
  std::shared_ptr<op_record> record;
  {
    auto read = submit_tracked(handle, pipe_read(pipe, buffer.data(), buffer.size()));
    record = read.record;
  }  // the receiver is gone; the op is not
  barrier(handle);
  CHECK(record->guard.destroyed.load() == 0);
  CHECK(record->completions.load() == 0);

  pipe.feed("dropped", 7);
  REQUIRE(eventually([&] { return record->guard.destroyed.load() != 0; }));
  check_completed_in_ring(*record, 7, std::this_thread::get_id());
  CHECK(std::memcmp(buffer.data(), "dropped", 7) == 0);
  CHECK(bytes_left_in(pipe) == 0);
}

TEST_CASE("G6: dropping a future_reply early keeps the guard and its buffer until the CQE",
          "[G6][default]") {
  i2o2_test::watchdog dog("G6 future_reply dropped");
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  // The guard owns (a share of) the buffer and records its destruction.
  struct buffer_guard {
    i2o2_test::counting_guard counter;
    std::shared_ptr<std::array<char, 16>> buffer;
  };
  auto guard_life = std::make_shared<i2o2_test::guard_record>();
  auto buffer = std::make_shared<std::array<char, 16>>();
  {
    auto reply = handle.submit(pipe_read(pipe, buffer->data(), buffer->size()),
                               buffer_guard{i2o2_test::counting_guard(guard_life), buffer});
  }  // dropped before completion
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked in the kernel
  CHECK(guard_life->destroyed.load() == 0);
  CHECK(buffer.use_count() == 2);  // the guard still holds its share

  pipe.feed("no cancel", 9);
  REQUIRE(eventually([&] { return guard_life->destroyed.load() != 0; }));
  CHECK(guard_life->destroyed.load() == 1);
  CHECK(eventually([&] { return buffer.use_count() == 1; }));
  CHECK(std::memcmp(buffer->data(), "no cancel", 9) == 0);
  CHECK(bytes_left_in(pipe) == 0);  // the read took the data: it was not cancelled
}

// ---- R1 -------------------------------------------------------------------------

TEST_CASE("R1: every reply resolves exactly once across thousands of mixed ops", "[R1]") {
  i2o2_test::watchdog dog("R1 exactly once");
  constexpr int clients = 4;
  constexpr int rounds = 250;  // x 12 ops per round per client

  i2o2_test::temp_file file;
  std::array<char, 512> contents{};
  for (std::size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<char>('a' + i % 26);
  REQUIRE(::pwrite(file.fd(), contents.data(), contents.size(), 0) == static_cast<ssize_t>(contents.size()));

  // Named members, not a structured binding: clang 14 lambdas cannot capture those.

  auto running = i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{.queue_capacity = 32, .ring_depth = 8});

  [[maybe_unused]] auto& owner = running.owner;

  auto& handle = running.handle;

  struct expectation {
    recording_reply::receiver reply;
    int expected;
    bool in_ring;  // went through the ring (else resolved on the client)
  };
  std::vector<std::vector<expectation>> per_client(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle]() mutable {
      client_ids[c] = std::this_thread::get_id();
      auto& mine = per_client[c];
      std::array<std::array<char, 32>, 4> buffers{};
      for (int round = 0; round < rounds; ++round) {
        // 4 guarded nops and reads
        for (int k = 0; k < 4; ++k) {
          if (k % 2 == 0) {
            mine.push_back({submit_tracked(h, i2o2::op::nop{}).reply, 0, true});
          } else {
            const auto offset = static_cast<std::uint64_t>((round * 4 + k) % 16) * 32;
            mine.push_back({submit_tracked(h, i2o2::op::read{.file = file.fd(), .buf = buffers[k].data(),
                                                               .len = 32, .offset = offset})
                                .reply,
                            32, true});
          }
        }
        // 1 unsupported op (resolved on the client)
        mine.push_back({submit_tracked(h, i2o2::op::raw{.image = i2o2::prepared_op::with_opcode(250)}).reply,
                        i2o2::result_of(i2o2::errc::unsupported_op), false});
        // 3 try_submits, retried while the small queue is full
        for (int k = 0; k < 3; ++k) {
          for (;;) {
            auto record = std::make_shared<op_record>();
            test_guard guard(record);
            auto result = h.try_submit(i2o2::op::nop{}, std::move(guard), record);
            if (result) {
              mine.push_back({std::move(*result), 0, true});
              break;
            }
            // Refused for now: it resolved once with scheduler_closed (the
            // failure path completes the sender) and we still own the guard.
            if (record->completions.load() != 1 || record->guard.destroyed.load() != 0) {
              mine.push_back({recording_reply::receiver(record), -1, false});  // flags the failure
              break;
            }
            std::this_thread::yield();
          }
        }
        // a batch of 4 nops
        std::vector<i2o2::prepared_op> ops(4, i2o2::prepared_op(i2o2::op::nop{}));
        for (auto& reply : h.submit_many(ops)) mine.push_back({std::move(reply), 0, true});
        // wait for this round's ring ops before reusing the read buffers
        for (std::size_t i = mine.size() - 12; i < mine.size(); ++i) mine[i].reply.wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  owner.stop();  // after this, no completion can still be on its way

  std::size_t total = 0;
  std::set<std::thread::id> completers;
  for (int c = 0; c < clients; ++c) {
    REQUIRE(per_client[c].size() == static_cast<std::size_t>(rounds) * 12);
    for (const auto& op : per_client[c]) {
      const op_record& record = *op.reply.record();
      REQUIRE(op.reply.is_ready());
      CHECK(record.completions.load() == 1);
      CHECK(record.result.load() == op.expected);
      if (op.in_ring) {
        completers.insert(record.completer.load());
        CHECK(record.completer.load() != client_ids[c]);
      }
      ++total;
    }
  }
  CHECK(total == static_cast<std::size_t>(clients) * rounds * 12);
  CHECK(completers.size() == 1);
}

// ---- W1 -------------------------------------------------------------------------

// Why a lost wake-up hangs, and what the park protocol (announce_park in
// detail/shared_state.hpp) does about it: an idle scheduler sleeps in
// io_uring_enter, and only a producer's wake (the eventfd write that
// completes the armed read) makes it return; in these tests nothing else
// ever does (no timeouts, no other CQEs). A producer sends the wake only if,
// after publishing its envelope, it sees the scheduler's `parked_`
// announcement. The scheduler announces, fences, re-checks the queue, and
// only then sleeps. Take either half away and a wake is lost:
//  - no re-check after announcing (or a check before it): the scheduler
//    finds the queue empty; a client publishes and reads parked_ == 0, so
//    sends no wake; the scheduler announces and sleeps with the op queued;
//  - a producer that looks at parked_ before publishing: it reads 0 while
//    the scheduler is busy; the scheduler announces, re-checks (empty) and
//    sleeps; the envelope is published after that, with no wake.
// Either way the client waits forever and the watchdog aborts the run.
//
// Both windows are a few instructions wide, so the first two tests hold
// the scheduler (and a producer) inside them with test-only policy
// wrappers, deterministically, the way test_scheduler.cpp checks a close
// racing a park. The stress tests after them then try random interleavings.

namespace {

/// A place where one thread can be held until the test lets it go:
/// `hold_next()` makes the next arrival wait there until `release()`.
struct hold_point {
  static constexpr int idle = 0, armed = 1, held = 2, released = 3;
  std::atomic<int> stage{idle};

  void arrive() noexcept {
    int expected = armed;
    if (!stage.compare_exchange_strong(expected, held)) return;
    while (stage.load() != released) std::this_thread::yield();
  }
  void hold_next() noexcept { stage.store(armed); }
  void wait_until_held() const noexcept {
    while (stage.load() != held) std::this_thread::yield();
  }
  void release() noexcept { stage.store(released); }
  void reset() noexcept { stage.store(idle); }
};

// Inside the scheduler, after its loop found nothing queued and before it
// announces its park (wait_strategy::arm runs in between).
hold_point scheduler_window;
// Inside a producer, before its envelope is published.
hold_point before_publish;
std::atomic<pid_t> scheduler_tid{0};

/// The eventfd wait strategy, holding the scheduler in `scheduler_window`
/// on a re-arm, i.e. when it goes to park again after an op completed
/// (the first arm after a wake-up comes before the op is even submitted).
struct window_holding_eventfd : i2o2::wait::eventfd {
  bool arm(i2o2::detail::ring& ring) noexcept {
    scheduler_tid.store(static_cast<pid_t>(::syscall(SYS_gettid)));
    const bool was_armed = armed();
    const bool ok = i2o2::wait::eventfd::arm(ring);
    if (was_armed) scheduler_window.arrive();
    return ok;
  }
};
static_assert(i2o2::wait_strategy<window_holding_eventfd>);

/// The MPSC ring queue, holding a producer in `before_publish`.
struct publish_holding_mpsc {
  template <class T>
  class queue : public i2o2::mpsc_ring_queue<T> {
  public:
    using i2o2::mpsc_ring_queue<T>::mpsc_ring_queue;
    bool try_push_many(std::span<T> values) noexcept {
      before_publish.arrive();
      return i2o2::mpsc_ring_queue<T>::try_push_many(values);
    }
    bool try_push(T& value) noexcept { return try_push_many(std::span<T>(&value, 1)); }
  };
};
static_assert(i2o2::queue_family<publish_holding_mpsc>);

using holding_scheduler =
    i2o2::basic_scheduler<publish_holding_mpsc, window_holding_eventfd, i2o2::reply::future, i2o2::any_guard>;

/// Waits until the scheduler thread sleeps: parked in io_uring_enter, the
/// only place it sleeps (it yields, never sleeps, while held).
void wait_until_scheduler_sleeps() {
  REQUIRE(eventually([] { return scheduler_tid.load() != 0; }));
  const pid_t tid = scheduler_tid.load();
  REQUIRE(eventually([&] { return i2o2_test::run_state(tid) == 'S'; }));
}

/// Resets the hold points however a test ends.
struct hold_reset {
  ~hold_reset() {
    scheduler_window.release();
    before_publish.release();
    scheduler_window.reset();
    before_publish.reset();
    scheduler_tid.store(0);
  }
};

} // namespace

TEST_CASE("W1: a push landing between the scheduler's empty check and its park announcement "
          "is seen by the re-check",
          "[W1]") {
  i2o2_test::watchdog dog("W1 push inside the park window (a hang here is a lost wake-up)");
  hold_reset reset;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<holding_scheduler>(i2o2::config{.ring_depth = 8, .idle_spin = std::chrono::microseconds(0)});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  wait_until_scheduler_sleeps();  // idle, so the hold below lands where intended

  scheduler_window.hold_next();
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  // The scheduler woke, ran that nop (the arm before it submitted it was a
  // fresh one, not held), found the queue empty with nothing in flight and
  // is held on the re-arm, before announcing its park.
  scheduler_window.wait_until_held();
  auto late = handle.submit(i2o2::op::nop{});  // sees no announcement: sends no wake
  scheduler_window.release();
  // The scheduler now announces, re-checks, finds `late` and runs it.
  REQUIRE(late.wait() == 0);
}

TEST_CASE("W1: a producer publishing after the scheduler went to sleep wakes it", "[W1]") {
  i2o2_test::watchdog dog("W1 publish after park (a hang here is a lost wake-up)");
  hold_reset reset;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<holding_scheduler>(i2o2::config{.ring_depth = 8, .idle_spin = std::chrono::microseconds(0)});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  wait_until_scheduler_sleeps();

  // The scheduler held before announcing: not parked.
  scheduler_window.hold_next();
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  scheduler_window.wait_until_held();

  // A producer held before publishing, while the scheduler is not parked.
  before_publish.hold_next();
  std::atomic<int> result{1};
  std::thread producer([&, h = handle]() mutable { result.store(h.submit(i2o2::op::nop{}).wait()); });
  before_publish.wait_until_held();

  // Let the scheduler announce, re-check (nothing published yet) and sleep.
  scheduler_window.release();
  wait_until_scheduler_sleeps();

  // Now publish: the producer must see the announcement and wake it.
  before_publish.release();
  producer.join();
  CHECK(result.load() == 0);
}

// The stress tests: random interleavings instead of the two held above.
// Every lost wake is fatal in them (no later submit can rescue it): one
// client per scheduler, or clients in lockstep rounds, where the round's
// last push has nobody behind it. The scheduler parks after every op (tiny
// ring and queue, submit-then-wait), and random numbers of yields between
// round trips shift where a push lands relative to its park decision.
// Measured here (2 cores, Debug) with announce_park's queue re-check
// removed: the lone client hung in 3 of 10 runs, the lockstep rounds in 5
// of 10. The window is a few instructions wide and is hit mostly when the
// scheduler is preempted inside it, so the held tests above are what catch
// that mutation every time; these are for orderings nobody thought to hold.

namespace {
/// Round trips per W1 stress test; about 2.5 s each in a Debug build on 2 cores.
constexpr int w1_cycles = 80000;

/// Mostly a few yields, sometimes many (long enough for the scheduler to
/// go all the way to sleep), sometimes none.
void random_pause(std::minstd_rand& random) {
  const unsigned draw = static_cast<unsigned>(random());
  const unsigned pauses = draw % 8 == 0 ? (draw >> 3) % 256 : (draw >> 3) % 4;
  for (unsigned k = 0; k < pauses; ++k) std::this_thread::yield();
}

/// A scheduler that parks after every op.
i2o2::config parking_config() { return i2o2::config{.queue_capacity = 4, .ring_depth = 2}; }
} // namespace

TEST_CASE("W1: a lone client doing submit-then-wait never loses a wake-up", "[W1][stress]") {
  i2o2_test::watchdog dog("W1 lone client (a hang here is a lost wake-up)", 60s);
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn(parking_config());
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  std::minstd_rand random(17U);
  int wrong = 0;
  for (int i = 0; i < w1_cycles; ++i) {
    if (handle.submit(i2o2::op::nop{}).wait() != 0) ++wrong;
    random_pause(random);
  }
  CHECK(wrong == 0);
}

TEST_CASE("W1: clients in lockstep rounds on one scheduler never lose a wake-up",
          "[W1][stress]") {
  i2o2_test::watchdog dog("W1 lockstep rounds (a hang here is a lost wake-up)", 60s);
  // Three clients and the scheduler on two cores lost the most wake-ups
  // per second when measured (more clients mostly add barrier overhead).
  constexpr int clients = 3;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn(parking_config());
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  std::barrier round_done(clients);
  std::atomic<int> wrong{0};
  std::atomic<long> completed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle]() mutable {
      std::minstd_rand random(static_cast<unsigned>(c) * 7919U + 1U);
      for (int round = 0; round < w1_cycles / clients; ++round) {
        random_pause(random);
        if (h.submit(i2o2::op::nop{}).wait() != 0) wrong.fetch_add(1);
        completed.fetch_add(1, std::memory_order_relaxed);
        // Nobody submits again until every client has its reply, so a lost
        // wake for the round's last push is never rescued.
        round_done.arrive_and_wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong.load() == 0);
  CHECK(completed.load() == w1_cycles / clients * clients);
}
