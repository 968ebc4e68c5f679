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
// Each test runs over all 24 queue x wait x reply combinations
// (tests/any_scheduler.hpp), its guards recording into a `guard_watch`: how
// often they died, on which thread, and whether the op's reply had resolved
// by then. A few stay on one concrete type, each saying why: the recording
// reply policy below (it sees completions no receiver is returned for), a
// scheduler that never runs, and the policy wrappers that hold threads
// inside the lost-wake windows.
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it, and the lost-wake windows are entered by holding threads
// in test-only policy wrappers: no verdict depends on sleeping or timing.
// Every test case runs under a watchdog, so a hang is a failure.
#include "any_scheduler.hpp"
#include "guard_watch.hpp"
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
using i2o2_test::guard_watch;
using i2o2_test::holds_for;
using i2o2_test::submit_watched;
using i2o2_test::watch_guard;
using i2o2_test::watched_op;

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


// ---- what the tests over every combination observe --------------------------

namespace {

using i2o2_test::any_handle;
using i2o2_test::pending;

/// Stress sizes: `full` for the default combination (the first name), a
/// `divisor`-th of it for the other 23, which keeps the file within its CI
/// budget while every combination still goes through the race.
int scaled(const std::string& policy, int full, int divisor) {
  return policy == i2o2_test::policy_names().front() ? full : full / divisor;
}

/// How long `holds_for` watches a parked op: long for the default
/// combination, shorter for the others (nothing correct ends the wait early;
/// it only bounds how long a wrong early completion could go unseen).
std::chrono::milliseconds watch_span(const std::string& policy) {
  return policy == i2o2_test::policy_names().front() ? 100ms : 20ms;
}

/// Submits a nop and waits for it. Ops leave the queue in order and the
/// scheduler submits every popped op in the same or an earlier
/// io_uring_enter, so once the nop is back every op this thread submitted
/// before it has reached the kernel (e.g. a read is parked on its pipe).
void barrier(any_handle& handle) { REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0); }

/// R1 for one reply: resolved with `expected`; exactly once where the reply
/// policy lets us count (callbacks; a future completed twice would crash).
void check_resolved_once(const pending& reply, int expected) {
  REQUIRE(reply.is_ready());
  CHECK(reply.wait() == expected);
  const int completions = reply.completions();
  CHECK((completions == 1 || completions == -1));
}

/// The checks every op that went through the ring must pass (G1, G2, R1):
/// resolved once with `expected`, its guard destroyed once, after that,
/// off the `client` thread.
void check_ring_op(const watched_op& op, int expected, std::thread::id client) {
  check_resolved_once(op.reply, expected);
  CHECK(op.watch->destroyed.load() == 1);
  CHECK(op.watch->before_reply.load() == 0);
  CHECK(op.watch->destroyer.load() != client);
}

} // namespace

// ---- G1 / G2 ------------------------------------------------------------------

TEST_CASE("G1/G2: guards of many nops and reads die once after their completion on the "
          "scheduler thread",
          "[G1][G2]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G1/G2 many guarded ops");
  constexpr int clients = 4;
  constexpr int batch = 64;
  const int ops_per_client = scaled(policy, 2048, 8);
  REQUIRE(ops_per_client % batch == 0);  // a whole number of batches
  constexpr std::uint32_t chunk = 64;

  i2o2_test::temp_file file;
  std::array<unsigned char, 4096> pattern{};
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<unsigned char>(i * 7 + 3);
  REQUIRE(::pwrite(file.fd(), pattern.data(), pattern.size(), 0) == static_cast<ssize_t>(pattern.size()));

  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();
  std::vector<std::vector<watched_op>> per_client(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::atomic<int> bad_data{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle.clone()] {
      client_ids[c] = std::this_thread::get_id();
      auto& mine = per_client[c];
      mine.reserve(ops_per_client);
      std::vector<std::array<unsigned char, chunk>> buffers(batch);
      for (int first = 0; first < ops_per_client; first += batch) {
        for (int k = 0; k < batch; ++k) {
          const int i = first + k;
          if (i % 2 == 0) {
            mine.push_back(submit_watched(*h, i2o2::op::nop{}));
          } else {
            const std::uint64_t offset = static_cast<std::uint64_t>((i / 2) % 64) * chunk;
            mine.push_back(submit_watched(*h, i2o2::op::read{.file = file.fd(),
                                                             .buf = buffers[k].data(),
                                                             .len = chunk,
                                                             .offset = offset}));
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
  std::set<std::thread::id> destroyers;
  for (int c = 0; c < clients; ++c) {
    REQUIRE(per_client[c].size() == static_cast<std::size_t>(ops_per_client));
    for (int i = 0; i < ops_per_client; ++i) {
      const watched_op& op = per_client[c][i];
      const int expected = i % 2 == 0 ? 0 : static_cast<int>(chunk);
      // Guard destruction follows completion on the scheduler thread, maybe
      // a moment after the client saw the result.
      REQUIRE(eventually([&] { return op.watch->destroyed.load() != 0; }));
      check_ring_op(op, expected, client_ids[c]);
      destroyers.insert(op.watch->destroyer.load());
    }
  }
  // One scheduler thread released every guard, and it is no client.
  REQUIRE(destroyers.size() == 1);
  for (const auto& id : client_ids) CHECK(*destroyers.begin() != id);
  CHECK(*destroyers.begin() != std::this_thread::get_id());
}

TEST_CASE("G2: the guard of a read parked on an empty pipe lives until its CQE", "[G2]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G2 parked read");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();

  std::array<char, 16> buffer{};
  auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);  // the read is in the kernel now, parked on the pipe

  CHECK_FALSE(read.reply.is_ready());
  CHECK(read.watch->destroyed.load() == 0);
  CHECK(read.reply.completions() <= 0);  // a callback has not run (-1: nothing to count)

  pipe.feed("hello", 5);
  REQUIRE(read.reply.wait() == 5);
  CHECK(std::memcmp(buffer.data(), "hello", 5) == 0);
  REQUIRE(eventually([&] { return read.watch->destroyed.load() != 0; }));
  check_ring_op(read, 5, std::this_thread::get_id());
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
          "[G2]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G2 mprotect guard");
  i2o2_test::pipe_pair pipe;
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(page != MAP_FAILED);
  std::atomic<int> destroyed{0};
  std::atomic<std::thread::id> destroyer{};
  {
    auto scheduler = i2o2_test::spawn_policy(policy);
    auto& handle = scheduler->handle();
    auto read = handle.submit(pipe_read(pipe, page, 4096), page_guard(page, &destroyed, &destroyer));
    barrier(handle);  // the read is parked in the kernel
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
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G3 unsupported op");
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();
  REQUIRE_FALSE(i2o2::detail::kernel_features::get().has_opcode(250));

  // Resolved before submit returned: the kernel never sees it. (That the
  // reply came before the guard's release is checked in the recording-reply
  // test below: here no reply exists yet when the guard dies.)
  auto raw = submit_watched(handle, i2o2::op::raw{.image = i2o2::prepared_op::with_opcode(250)});
  REQUIRE(raw.reply.is_ready());
  check_resolved_once(raw.reply, i2o2::result_of(i2o2::errc::unsupported_op));
  CHECK(raw.watch->destroyed.load() == 1);

  // An SQE128-only command on a ring without SQE128.
  auto cmd = submit_watched(handle, i2o2::op::uring_cmd{.file = 0});
  REQUIRE(cmd.reply.is_ready());
  check_resolved_once(cmd.reply, i2o2::result_of(i2o2::errc::needs_sqe128));
  CHECK(cmd.watch->destroyed.load() == 1);

  // The scheduler is unaffected.
  auto nop = submit_watched(handle, i2o2::op::nop{});
  CHECK(nop.reply.wait() == 0);
}

TEST_CASE("G3/G5: after stop submit throws scheduler_closed and try_submit hands the guard back",
          "[G3][G5]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G3 submit after stop");
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();
  REQUIRE(submit_watched(handle, i2o2::op::nop{}).reply.wait() == 0);
  scheduler->stop();
  REQUIRE(handle.closed());

  // submit: throws, and the guard is released, once.
  auto refused = std::make_shared<guard_watch>();
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, watch_guard(refused)), i2o2::scheduler_closed);
  CHECK(refused->destroyed.load() == 1);

  // try_submit: returns the error and leaves the guard with the caller.
  auto kept = std::make_shared<guard_watch>();
  {
    i2o2::any_guard guard = watch_guard(kept);
    auto attempt = handle.try_submit(i2o2::op::nop{}, guard);
    REQUIRE_FALSE(attempt.reply.has_value());
    CHECK(attempt.error == i2o2::make_error_code(i2o2::errc::scheduler_closed));
    CHECK(guard.has_value());
    CHECK(kept->destroyed.load() == 0);  // still ours
  }
  CHECK(kept->destroyed.load() == 1);

  // A batch is refused whole.
  std::vector<i2o2::prepared_op> ops{i2o2::op::nop{}, i2o2::op::nop{}};
  REQUIRE_THROWS_AS(handle.submit_many(ops), i2o2::scheduler_closed);
}

// Kept on the recording reply: only a reply policy that records its own
// completions sees those of replies submit never returns (it throws) or
// returns refused, and on which thread a ring op's reply was completed.
TEST_CASE("G2/G3/R1: ring ops, rejected ops and refused ops each complete their reply once, "
          "before their guard dies (recording reply)",
          "[G2][G3][G5][R1]") {
  i2o2_test::watchdog dog("G3 refusals on the recording reply");
  i2o2_test::pipe_pair pipe;
  // A tiny queue and ring, so that parked reads fill both.
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running =
      i2o2::spawn_scheduler<recording_scheduler>(i2o2::config{.queue_capacity = 2, .ring_depth = 2});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  // A ring op: its reply completed, then its guard released, on the
  // scheduler thread.
  auto nop = submit_tracked(handle, i2o2::op::nop{});
  REQUIRE(nop.reply.wait() == 0);
  REQUIRE(eventually([&] { return nop.record->guard.destroyed.load() != 0; }));
  check_completed_in_ring(*nop.record, 0, std::this_thread::get_id());

  // Rejected on the client (G3): an opcode the kernel lacks, and an
  // SQE128-only command on a ring without SQE128.
  REQUIRE_FALSE(i2o2::detail::kernel_features::get().has_opcode(250));
  auto raw = submit_tracked(handle, i2o2::op::raw{.image = i2o2::prepared_op::with_opcode(250)});
  REQUIRE(raw.reply.is_ready());
  CHECK(raw.reply.wait() == i2o2::result_of(i2o2::errc::unsupported_op));
  CHECK(raw.record->completions.load() == 1);
  CHECK(raw.record->guard.destroyed.load() == 1);
  CHECK_FALSE(raw.record->guard.destroyed_before_completion.load());
  auto cmd = submit_tracked(handle, i2o2::op::uring_cmd{.file = 0});
  REQUIRE(cmd.reply.is_ready());
  CHECK(cmd.reply.wait() == i2o2::result_of(i2o2::errc::needs_sqe128));
  CHECK(cmd.record->completions.load() == 1);
  CHECK(cmd.record->guard.destroyed.load() == 1);
  CHECK_FALSE(cmd.record->guard.destroyed_before_completion.load());

  // Refused while the queue is full: reads parked on the pipe fill the ring,
  // then the queue behind it. The refused try_submit resolved once with
  // queue_full and left the guard with us.
  std::array<char, 64> bytes{};
  std::vector<tracked> parked;
  bool refused_full = false;
  for (std::size_t i = 0; i < bytes.size() && !refused_full; ++i) {
    auto record = std::make_shared<op_record>();
    test_guard guard(record);
    auto result = handle.try_submit(pipe_read(pipe, &bytes[i], 1), std::move(guard), record);
    if (result) {
      parked.push_back({record, std::move(*result)});
      continue;
    }
    refused_full = true;
    CHECK(result.error() == i2o2::make_error_code(i2o2::errc::queue_full));
    CHECK(record->completions.load() == 1);
    CHECK(record->result.load() == i2o2::result_of(i2o2::errc::queue_full));
    CHECK(record->guard.destroyed.load() == 0);  // still ours
  }
  REQUIRE(refused_full);
  const std::string fill(parked.size(), 'x');
  pipe.feed(fill.data(), fill.size());  // one byte for each parked read
  for (const auto& read : parked) {
    CHECK(read.reply.wait() == 1);
    REQUIRE(eventually([&] { return read.record->guard.destroyed.load() != 0; }));
    check_completed_in_ring(*read.record, 1, std::this_thread::get_id());
  }

  // Refused after stop (G5): submit throws, the reply it would have returned
  // resolved with scheduler_closed, once, and the guard was released after
  // that; try_submit resolved it too and handed the guard back.
  owner.stop();
  auto refused = std::make_shared<op_record>();
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, test_guard(refused), refused), i2o2::scheduler_closed);
  CHECK(refused->completions.load() == 1);
  CHECK(refused->result.load() == closed_result);
  CHECK(refused->guard.destroyed.load() == 1);
  CHECK_FALSE(refused->guard.destroyed_before_completion.load());
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
}

// Kept on one concrete type: the harness spawns running schedulers only;
// this needs one constructed and destroyed without ever running.
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
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G5 last handle dropped");
  i2o2_test::pipe_pair pipe;
  // No shutdown deadline: the parked read must be waited for, never cancelled.
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.shutdown_deadline = std::nullopt});

  std::array<char, 16> buffer{};
  std::optional<watched_op> read;
  {
    std::unique_ptr<any_handle> last = scheduler->take_handle();
    std::unique_ptr<any_handle> copy = last->clone();  // dropped too
    read = submit_watched(*copy, pipe_read(pipe, buffer.data(), buffer.size()));
    barrier(*last);
  }  // every handle is gone: the scheduler shuts down, but must wait for the read

  std::atomic<bool> joined{false};
  std::thread joiner([&] {
    scheduler->join();
    joined.store(true);
  });
  CHECK(holds_for([&] { return !read->reply.is_ready() && !joined.load(); }, watch_span(policy)));
  CHECK(read->watch->destroyed.load() == 0);

  pipe.feed("bye", 3);
  joiner.join();  // returns only once the read has completed
  CHECK(joined.load());
  REQUIRE(read->reply.is_ready());
  CHECK(read->reply.wait() == 3);
  CHECK(std::memcmp(buffer.data(), "bye", 3) == 0);
  check_ring_op(*read, 3, std::this_thread::get_id());
}

TEST_CASE("G5: an explicit stop without a deadline waits for a parked read", "[G5]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G5 stop without deadline");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();

  std::array<char, 16> buffer{};
  auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    scheduler->stop(std::nullopt);
    stopped.store(true);
  });
  // The gate closes at once; the read stays in flight.
  REQUIRE(eventually([&] { return handle.closed(); }));
  CHECK(holds_for([&] { return !read.reply.is_ready() && !stopped.load(); }, watch_span(policy)));
  CHECK(read.watch->destroyed.load() == 0);

  pipe.feed("four", 4);
  stopper.join();
  CHECK(stopped.load());
  CHECK(read.reply.wait() == 4);
  check_ring_op(read, 4, std::this_thread::get_id());
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, watch_guard(std::make_shared<guard_watch>())),
                    i2o2::scheduler_closed);
}

TEST_CASE("G5: stop with a deadline cancels a read parked forever and releases its guard on "
          "its CQE",
          "[G5]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G5 stop with deadline");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();

  std::array<char, 16> buffer{};
  auto read = submit_watched(handle, pipe_read(pipe, buffer.data(), buffer.size()));
  barrier(handle);
  CHECK(read.watch->destroyed.load() == 0);

  // The pipe is never fed; any deadline will do.
  scheduler->stop(policy == i2o2_test::policy_names().front() ? 50ms : 10ms);
  REQUIRE(read.reply.is_ready());
  check_ring_op(read, -ECANCELED, std::this_thread::get_id());

  auto late = std::make_shared<guard_watch>();
  REQUIRE_THROWS_AS(handle.submit(i2o2::op::nop{}, watch_guard(late)), i2o2::scheduler_closed);
  CHECK(late->destroyed.load() == 1);
  i2o2::any_guard kept = watch_guard(std::make_shared<guard_watch>());
  CHECK(handle.try_submit(i2o2::op::nop{}, kept).error ==
        i2o2::make_error_code(i2o2::errc::scheduler_closed));
  CHECK(kept.has_value());
}

TEST_CASE("G5/R1: ops racing an explicit stop complete in the ring or are refused and "
          "resolve once",
          "[G5][R1]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G5 submit racing stop");
  constexpr int clients = 4;
  const int enough = scaled(policy, 4000, 10);  // accepted before the stop
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 64});
  auto& handle = scheduler->handle();

  struct outcome {
    std::vector<watched_op> accepted;
    std::shared_ptr<guard_watch> refused;  // the one op each client had refused
    bool refused_by_throw = false;
    bool guard_handed_back = false;  // by the refusing try_submit
  };
  std::vector<outcome> outcomes(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::atomic<int> accepted_total{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle.clone()] {
      client_ids[c] = std::this_thread::get_id();
      outcome& mine = outcomes[c];
      for (int i = 0;; ++i) {
        auto watch = std::make_shared<guard_watch>();
        if (c % 2 == 0) {  // submit: waits for space, throws once closed
          try {
            pending reply = h->submit(i2o2::op::nop{}, watch_guard(watch));
            watch->watch(reply);
            mine.accepted.push_back({watch, std::move(reply)});
          } catch (const i2o2::scheduler_closed&) {
            watch->watch(std::nullopt);
            mine.refused = watch;
            mine.refused_by_throw = true;
            return;
          }
        } else {  // try_submit: retries while full, stops once closed
          i2o2::any_guard guard = watch_guard(watch);
          auto attempt = h->try_submit(i2o2::op::nop{}, guard);
          if (!attempt.reply) {
            watch->watch(std::nullopt);
            if (attempt.error == i2o2::make_error_code(i2o2::errc::queue_full)) {
              std::this_thread::yield();
              continue;  // `guard` still holds the watch; it dies here, unchecked below
            }
            mine.refused = watch;
            mine.guard_handed_back = guard.has_value();
            return;  // `guard` dies here, on this thread
          }
          watch->watch(*attempt.reply);
          mine.accepted.push_back({watch, std::move(*attempt.reply)});
        }
        accepted_total.fetch_add(1);
        // Wait for some replies now and then so the queue drains.
        if (i % 16 == 15 && mine.accepted.size() >= 8) mine.accepted[mine.accepted.size() - 8].reply.wait();
      }
    });
  }
  REQUIRE(eventually([&] { return accepted_total.load() >= enough; }));
  scheduler->stop(std::nullopt);
  for (auto& thread : threads) thread.join();

  int accepted = 0;
  for (int c = 0; c < clients; ++c) {
    const outcome& mine = outcomes[c];
    for (const auto& op : mine.accepted) {
      // Accepted before the gate closed: ran in the ring, stop waited for it.
      REQUIRE(op.reply.is_ready());
      check_ring_op(op, 0, client_ids[c]);
      ++accepted;
    }
    REQUIRE(mine.refused != nullptr);
    CHECK(mine.refused->destroyed.load() == 1);
    CHECK(mine.refused_by_throw == (c % 2 == 0));
    if (c % 2 == 1) CHECK(mine.guard_handed_back);
  }
  CHECK(accepted >= enough);
}

// ---- G6 -------------------------------------------------------------------------

namespace {
/// A guard's life, and what the read's buffer held when the guard died:
/// the data is there only if the kernel had finished the read by then.
struct release_record {
  explicit release_record(const std::array<char, 16>* buffer) noexcept : buffer_(buffer) {}

  std::atomic<int> destroyed{0};
  std::atomic<std::thread::id> destroyer{};
  std::array<char, 16> seen{};  // published by `destroyed` (seq_cst)

  void guard_destroyed() noexcept {
    std::memcpy(seen.data(), buffer_->data(), seen.size());
    destroyer.store(std::this_thread::get_id());
    destroyed.fetch_add(1);
  }

private:
  const std::array<char, 16>* buffer_;
};
} // namespace

TEST_CASE("G6: dropping a reply early cancels nothing and frees nothing early", "[G6]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G6 reply dropped");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();

  std::array<char, 16> buffer{};
  auto record = std::make_shared<release_record>(&buffer);
  {
    auto read = handle.submit(pipe_read(pipe, buffer.data(), buffer.size()),
                              i2o2_test::recording_guard<release_record>(record));
  }  // the reply is gone; the op is not
  barrier(handle);
  CHECK(record->destroyed.load() == 0);

  pipe.feed("dropped", 7);
  REQUIRE(eventually([&] { return record->destroyed.load() != 0; }));
  CHECK(record->destroyed.load() == 1);
  CHECK(record->destroyer.load() != std::this_thread::get_id());
  CHECK(std::memcmp(record->seen.data(), "dropped", 7) == 0);  // the read was done when it died
  CHECK(std::memcmp(buffer.data(), "dropped", 7) == 0);
  CHECK(bytes_left_in(pipe) == 0);  // the read took the data: it was not cancelled
}

TEST_CASE("G6: dropping a reply early keeps the guard and its buffer until the CQE", "[G6]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G6 reply dropped, guard owns the buffer");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();

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
  barrier(handle);  // the read is parked in the kernel
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
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("R1 exactly once");
  constexpr int clients = 4;
  const int rounds = scaled(policy, 250, 10);  // x 12 ops per round per client

  i2o2_test::temp_file file;
  std::array<char, 512> contents{};
  for (std::size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<char>('a' + i % 26);
  REQUIRE(::pwrite(file.fd(), contents.data(), contents.size(), 0) == static_cast<ssize_t>(contents.size()));

  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 32, .ring_depth = 8});
  auto& handle = scheduler->handle();

  struct expectation {
    pending reply;
    int expected;
    std::shared_ptr<guard_watch> watch;
    bool in_ring;  // went through the ring (else resolved on the client)
  };
  std::vector<std::vector<expectation>> per_client(clients);
  std::vector<std::thread::id> client_ids(clients);
  std::atomic<int> bad_refusals{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle.clone()] {
      client_ids[c] = std::this_thread::get_id();
      auto& mine = per_client[c];
      std::array<std::array<char, 32>, 4> buffers{};
      for (int round = 0; round < rounds; ++round) {
        // 4 guarded nops and reads
        for (int k = 0; k < 4; ++k) {
          if (k % 2 == 0) {
            auto op = submit_watched(*h, i2o2::op::nop{});
            mine.push_back({std::move(op.reply), 0, std::move(op.watch), true});
          } else {
            const auto offset = static_cast<std::uint64_t>((round * 4 + k) % 16) * 32;
            auto op = submit_watched(
                *h, i2o2::op::read{.file = file.fd(), .buf = buffers[k].data(), .len = 32, .offset = offset});
            mine.push_back({std::move(op.reply), 32, std::move(op.watch), true});
          }
        }
        // 1 unsupported op (resolved on the client)
        auto rejected = submit_watched(*h, i2o2::op::raw{.image = i2o2::prepared_op::with_opcode(250)});
        mine.push_back({std::move(rejected.reply), i2o2::result_of(i2o2::errc::unsupported_op),
                        std::move(rejected.watch), false});
        // 3 guarded try_submits, retried while the small queue is full
        for (int k = 0; k < 3; ++k) {
          for (;;) {
            auto watch = std::make_shared<guard_watch>();
            i2o2::any_guard guard = watch_guard(watch);
            auto attempt = h->try_submit(i2o2::op::nop{}, guard);
            if (attempt.reply) {
              watch->watch(*attempt.reply);
              mine.push_back({std::move(*attempt.reply), 0, std::move(watch), true});
              break;
            }
            watch->watch(std::nullopt);
            // Refused for now: only ever for a full queue, and we still own the guard.
            if (attempt.error != i2o2::make_error_code(i2o2::errc::queue_full) || !guard.has_value() ||
                watch->destroyed.load() != 0) {
              bad_refusals.fetch_add(1);
              break;
            }
            std::this_thread::yield();
          }
        }
        // a guarded batch of 4 nops
        std::vector<i2o2::prepared_op> ops(4, i2o2::prepared_op(i2o2::op::nop{}));
        std::vector<std::shared_ptr<guard_watch>> watches;
        std::vector<i2o2::any_guard> guards;
        for (int k = 0; k < 4; ++k) {
          watches.push_back(std::make_shared<guard_watch>());
          guards.emplace_back(watch_guard(watches.back()));
        }
        auto replies = h->submit_many(ops, guards);
        for (std::size_t k = 0; k < replies.size(); ++k) {
          watches[k]->watch(replies[k]);
          mine.push_back({std::move(replies[k]), 0, std::move(watches[k]), true});
        }
        // wait for this round's ring ops before reusing the read buffers
        for (std::size_t i = mine.size() - 12; i < mine.size(); ++i) mine[i].reply.wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  scheduler->stop();  // after this, no completion can still be on its way

  CHECK(bad_refusals.load() == 0);
  std::size_t total = 0;
  std::set<std::thread::id> destroyers;
  for (int c = 0; c < clients; ++c) {
    REQUIRE(per_client[c].size() == static_cast<std::size_t>(rounds) * 12);
    for (const auto& op : per_client[c]) {
      check_resolved_once(op.reply, op.expected);
      CHECK(op.watch->destroyed.load() == 1);
      CHECK(op.watch->before_reply.load() == 0);
      if (op.in_ring) {
        destroyers.insert(op.watch->destroyer.load());
        CHECK(op.watch->destroyer.load() != client_ids[c]);
      }
      ++total;
    }
  }
  CHECK(total == static_cast<std::size_t>(clients) * rounds * 12);
  CHECK(destroyers.size() == 1);
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

// Kept on one concrete type: it holds threads in test-only wrappers of the
// eventfd wait and the MPSC queue, which exist for that type alone.
TEST_CASE("W1: a push landing between the scheduler's empty check and its park announcement "
          "is seen by the re-check",
          "[W1]") {
  i2o2_test::watchdog dog("W1 push inside the park window (a hang here is a lost wake-up)");
  hold_reset reset;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<holding_scheduler>(i2o2::config{
      .ring_depth = 8, .idle_spin = std::chrono::microseconds(0), .busy_spin = std::chrono::microseconds(0)});
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

// Kept on one concrete type: it holds threads in test-only wrappers of the
// eventfd wait and the MPSC queue, which exist for that type alone.
TEST_CASE("W1: a producer publishing after the scheduler went to sleep wakes it", "[W1]") {
  i2o2_test::watchdog dog("W1 publish after park (a hang here is a lost wake-up)");
  hold_reset reset;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<holding_scheduler>(i2o2::config{
      .ring_depth = 8, .idle_spin = std::chrono::microseconds(0), .busy_spin = std::chrono::microseconds(0)});
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
// that mutation every time; these are for orderings nobody thought to hold,
// and for the wait strategies and queues the held tests do not cover.

namespace {
/// False for the spin wait, whose scheduler never parks.
bool parks(const std::string& policy) { return policy.find("/spin/") == std::string::npos; }

/// Round trips per W1 stress test: 80000 for the default combination
/// (about 2.5 s in a Debug build on 2 cores), a 40th of that for the others
/// that park, and a 1000th for the spin wait: it never parks, so there is
/// no wake to lose, only round trips to see through.
int w1_cycles(const std::string& policy) {
  constexpr int full = 80000;
  if (!parks(policy)) return full / 1000;
  return scaled(policy, full, 40);
}

/// Mostly a few yields, sometimes many (long enough for the scheduler to
/// go all the way to sleep), sometimes none. None for the spin wait: its
/// scheduler never sleeps, and a yield on a core it shares with the
/// spinning scheduler thread can cost a whole time slice.
void random_pause(std::minstd_rand& random, bool parking) {
  if (!parking) return;
  const unsigned draw = static_cast<unsigned>(random());
  const unsigned pauses = draw % 8 == 0 ? (draw >> 3) % 256 : (draw >> 3) % 4;
  for (unsigned k = 0; k < pauses; ++k) std::this_thread::yield();
}

/// A scheduler that parks after every op.
i2o2::config parking_config() { return i2o2::config{.queue_capacity = 4, .ring_depth = 2}; }
} // namespace

TEST_CASE("W1: a lone client doing submit-then-wait never loses a wake-up", "[W1][stress]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("W1 lone client (a hang here is a lost wake-up)", 60s);
  const int cycles = w1_cycles(policy);
  auto scheduler = i2o2_test::spawn_policy(policy, parking_config());
  auto& handle = scheduler->handle();
  std::minstd_rand random(17U);
  int wrong = 0;
  for (int i = 0; i < cycles; ++i) {
    if (handle.submit(i2o2::op::nop{}).wait() != 0) ++wrong;
    random_pause(random, parks(policy));
  }
  CHECK(wrong == 0);
}

TEST_CASE("W1: clients in lockstep rounds on one scheduler never lose a wake-up",
          "[W1][stress]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("W1 lockstep rounds (a hang here is a lost wake-up)", 60s);
  // Three clients and the scheduler on two cores lost the most wake-ups
  // per second when measured (more clients mostly add barrier overhead).
  constexpr int clients = 3;
  const int rounds = w1_cycles(policy) / clients;
  auto scheduler = i2o2_test::spawn_policy(policy, parking_config());
  auto& handle = scheduler->handle();
  std::barrier round_done(clients);
  std::atomic<int> wrong{0};
  std::atomic<long> completed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c, h = handle.clone()] {
      std::minstd_rand random(static_cast<unsigned>(c) * 7919U + 1U);
      for (int round = 0; round < rounds; ++round) {
        random_pause(random, parks(policy));
        if (h->submit(i2o2::op::nop{}).wait() != 0) wrong.fetch_add(1);
        completed.fetch_add(1, std::memory_order_relaxed);
        // Nobody submits again until every client has its reply, so a lost
        // wake for the round's last push is never rescued.
        round_done.arrive_and_wait();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(wrong.load() == 0);
  CHECK(completed.load() == static_cast<long>(rounds) * clients);
}

// ---- a chain holding an op that cannot run -------------------------------------

// basic_handle::send_batch used to complete the rejected op's sender in
// reject_unrunnable and then again with -ECANCELED, dereferencing a
// moved-from sender (SIGSEGV for every reply type).
TEST_CASE("G3/R1: a chain holding an op the kernel cannot run resolves each reply once and "
          "releases each guard",
          "[G3][R1][chain_reject]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("G3 chain with an unsupported op");
  auto scheduler = i2o2_test::spawn_policy(policy);
  auto& handle = scheduler->handle();
  REQUIRE_FALSE(i2o2::detail::kernel_features::get().has_opcode(250));

  const std::vector<i2o2::prepared_op> ops{i2o2::op::nop{}, i2o2::prepared_op::with_opcode(250),
                                           i2o2::op::nop{}};
  std::vector<std::shared_ptr<guard_watch>> watches;
  std::vector<i2o2::any_guard> guards;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    watches.push_back(std::make_shared<guard_watch>());
    guards.emplace_back(watch_guard(watches.back()));
  }
  auto replies = handle.submit_chain(ops, guards);
  REQUIRE(replies.size() == ops.size());
  // Nothing of the chain is sent: the op that cannot run says why, the
  // others are cancelled.
  check_resolved_once(replies[0], -ECANCELED);
  check_resolved_once(replies[1], i2o2::result_of(i2o2::errc::unsupported_op));
  check_resolved_once(replies[2], -ECANCELED);
  for (const auto& watch : watches) CHECK(watch->destroyed.load() == 1);
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
}
