// The scheduler loop itself: running on the caller's thread, the ring flags
// it picks, surviving signals (-EINTR), back-pressure from a tiny ring, and
// how many IO ops one enter hands over (config::submit_budget).
// The tests of scheduler behaviour run over all 24 queue x wait x reply
// combinations (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "proc_support.hpp"
#include "support.hpp"
#include "window_queues.hpp"

#include <i2o2/reply/callback.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using scheduler = i2o2::default_scheduler;

std::atomic<int> signals_seen{0};
void count_signal(int) { signals_seen.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

// Default type only: run() on the caller's thread is an API of the concrete
// scheduler type (the harness spawns every combination on its own thread).
TEST_CASE("run() serves ops on the caller's thread and returns at shutdown", "[scheduler]") {
  i2o2_test::watchdog dog("run on the caller's thread");
  scheduler sched(i2o2::config{.ring_depth = 4});
  std::thread::id ran_on;
  std::thread caller([&] {
    ran_on = std::this_thread::get_id();
    sched.run();
  });
  {
    auto handle = sched.handle();
    std::thread::id guard_died_on;
    struct thread_noting_guard {
      std::thread::id* where;
      thread_noting_guard(std::thread::id* w) : where(w) {}
      thread_noting_guard(thread_noting_guard&& other) noexcept
          : where(std::exchange(other.where, nullptr)) {}
      thread_noting_guard& operator=(thread_noting_guard&& other) noexcept {
        where = std::exchange(other.where, nullptr);
        return *this;
      }
      ~thread_noting_guard() {
        if (where) *where = std::this_thread::get_id();
      }
    };
    REQUIRE(handle.submit(i2o2::op::nop{}, thread_noting_guard(&guard_died_on)).wait() == 0);
    // A second round trip orders the first guard's destruction before this read.
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    CHECK(guard_died_on == ran_on);
  }  // the last handle goes: run() returns
  caller.join();
}

TEST_CASE("run() whose on_started throws closes the scheduler: later submits are refused, not stranded",
          "[scheduler]") {
  i2o2_test::watchdog dog("on_started throws");
  auto handle = std::optional<scheduler::handle_type>();
  {
    scheduler sched(i2o2::config{.ring_depth = 4});
    handle.emplace(sched.handle());
    auto queued = handle->submit(i2o2::op::nop{});  // before run: it waits in the queue
    CHECK_THROWS_AS(sched.run([](std::exception_ptr) { throw std::runtime_error("not today"); }),
                    std::runtime_error);
    CHECK(handle->closed());
    // Resolved when run threw, not when the scheduler goes: its owner may
    // wait for this op's client before that.
    CHECK(queued.try_get() == i2o2::result_of(i2o2::errc::scheduler_closed));
    CHECK_THROWS_AS(handle->submit(i2o2::op::nop{}), i2o2::scheduler_closed);
  }
  CHECK_THROWS_AS(handle->submit(i2o2::op::nop{}), i2o2::scheduler_closed);
}

// Default type only: inspects ring_flags() of the concrete scheduler type
// (the ring is made from the config alone, whatever the policies).
TEST_CASE("the ring is a single-issuer, deferred-taskrun ring where the kernel has both", "[scheduler]") {
  const auto& kernel = i2o2::detail::kernel_features::get();
  if (!kernel.has_setup_flag(IORING_SETUP_DEFER_TASKRUN)) {
    WARN("SKIP: this kernel lacks IORING_SETUP_DEFER_TASKRUN (Linux 6.1)");
    return;
  }
  scheduler sched;
  CHECK((sched.ring_flags() & IORING_SETUP_SINGLE_ISSUER) != 0);
  CHECK((sched.ring_flags() & IORING_SETUP_DEFER_TASKRUN) != 0);
  CHECK((sched.ring_flags() & IORING_SETUP_R_DISABLED) != 0);
  // So the idle spin can see completions waiting as deferred task work.
  CHECK((sched.ring_flags() & IORING_SETUP_TASKRUN_FLAG) != 0);
}

TEST_CASE("an idle-spinning scheduler posts a completion that arrives during its spin", "[scheduler]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  // A long idle spin: a read completed while the scheduler spins must be
  // delivered without waiting for the spin to end or for another submit.
  // (The spin wait never parks, so it never idle-spins either: there the
  // read must simply complete.)
  i2o2_test::watchdog dog("taskrun spin");
  auto scheduler = i2o2_test::spawn_policy(policy, {.idle_spin = std::chrono::seconds(30)});
  auto& handle = scheduler->handle();
  i2o2_test::pipe_pair pipe;
  char byte = 0;
  auto reply = handle.submit(i2o2::op::read{.file = pipe.read_end(), .buf = &byte, .len = 1});
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked; the scheduler now spins
  pipe.feed("z", 1);
  // Without the TASKRUN check this waits out the 30 s spin (the watchdog
  // fires first); with it, the CQE is posted at once.
  CHECK(i2o2_test::eventually([&] { return reply.is_ready(); }, std::chrono::seconds(10)));
  CHECK(reply.try_get() == std::optional<int>(1));
  CHECK(byte == 'z');
}

TEST_CASE("an idle spin too long to count never ends, and the scheduler still stops", "[scheduler]") {
  // microseconds::max() is "never park": counted in nanoseconds it would
  // overflow (UBSan: signed overflow) and wrap to a spin already over.
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  CHECK(i2o2::detail::idle_spin_end({.idle_spin = std::chrono::microseconds::max()}, now) ==
        clock::time_point::max());
  CHECK(i2o2::detail::idle_spin_end({.idle_spin = std::chrono::hours(24 * 365 * 300)}, now) ==
        clock::time_point::max());
  CHECK(i2o2::detail::idle_spin_end({.idle_spin = std::chrono::microseconds(10)}, now) ==
        now + std::chrono::microseconds(10));

  i2o2_test::watchdog dog("endless idle spin");
  // Completions reach the spin as deferred task work (DEFER_TASKRUN), or
  // posted by the kernel straight to the CQ (a ring without it).
  const bool deferred = GENERATE(true, false);
  CAPTURE(deferred);
  struct stop_pretending {
    ~stop_pretending() { i2o2::detail::kernel_features::stop_pretending(); }
  } cleanup;
  if (!deferred) i2o2::detail::kernel_features::pretend_missing(IORING_SETUP_DEFER_TASKRUN);
  auto [owner, handle] = i2o2::spawn({.ring_depth = 8, .idle_spin = std::chrono::microseconds::max()});
  for (int i = 0; i < 3; ++i)
    CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  // A read completed while the scheduler spins is delivered by the spin.
  i2o2_test::pipe_pair pipe;
  char byte = 0;
  auto reply = handle.submit(i2o2::op::read{.file = pipe.read_end(), .buf = &byte, .len = 1});
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked; the scheduler spins
  pipe.feed("z", 1);
  CHECK(i2o2_test::eventually([&] { return reply.is_ready(); }, std::chrono::seconds(10)));
  CHECK(reply.try_get() == std::optional<int>(1));
  owner.stop();  // the spin sees the stop
  CHECK(handle.closed());
}

TEST_CASE("the busy spin polls while most idle gaps fit its limit, and only then", "[scheduler]") {
  using std::chrono::microseconds;
  i2o2::detail::busy_spin spin(microseconds(200), microseconds(10));
  CHECK(spin.enabled());
  CHECK(spin.next() == microseconds(200));  // optimistic at first
  // Gaps longer than the limit (a client gone quiet, a socket poll): after
  // a few the scheduler parks after its idle spin alone.
  int misses = 0;
  while (spin.polling()) {
    spin.gap(microseconds(300));
    ++misses;
    REQUIRE(misses < 100);
  }
  CHECK(misses >= 4);  // one long gap is not enough to give up
  CHECK(spin.next().count() == 0);
  // Gaps the idle spin catches say nothing: they do not bring it back.
  for (int round = 0; round < 100; ++round)
    spin.gap(microseconds(round % 10));
  CHECK_FALSE(spin.polling());
  // Measured while parking too: gaps that fit again bring the spin back.
  int hits = 0;
  while (!spin.polling()) {
    spin.gap(microseconds(200));  // at the limit counts as within it
    ++hits;
    REQUIRE(hits < 100);
  }
  CHECK(spin.next() == microseconds(200));  // the whole limit, not a fitted budget
  // Mostly short with a few long gaps (QD 32 on a disk completing in
  // bursts): still polls, after every gap.
  for (int round = 0; round < 200; ++round) {
    spin.gap(microseconds(round % 4 == 0 ? 250 : 50));
    REQUIRE(spin.polling());
  }
  // Every other gap long (a 50 us op after 1 ms of thinking): each miss
  // burns the whole limit for one wake saved; it stops.
  for (int round = 0; round < 100; ++round)
    spin.gap(microseconds(round % 2 == 0 ? 50 : 1000));
  CHECK_FALSE(spin.polling());

  i2o2::detail::busy_spin off(microseconds(0), microseconds(10));
  off.gap(microseconds(50));
  CHECK_FALSE(off.enabled());
  CHECK_FALSE(off.polling());
  CHECK(off.next().count() == 0);
  // idle_spin of microseconds::max() (never park) does not overflow.
  i2o2::detail::busy_spin endless(microseconds(200), microseconds::max());
  endless.gap(microseconds(300));
  CHECK(endless.polling());  // no gap is longer than a never-ending idle spin
}

TEST_CASE("a scheduler whose idle gaps are long stops busy-spinning, and stays stopped", "[scheduler]") {
  // A client that sends a few ops back to back, then thinks for 5 ms (a
  // request/response server): only the long gaps may count, and they are
  // misses, so the busy spin turns off after a few requests and stays off.
  // - idle_spin 1 ms, three ops per request: the gaps between the ops are
  //   the idle spin's to catch and must not count as hits (they kept the
  //   spin on: 200 us of CPU per request);
  // - idle_spin 0, two writes per request: an IO op that the park's own
  //   enter submits (once the submit budget has learned its cost) completes
  //   inline, which must not count as a short gap. The gap between the two
  //   writes is a real hit and the think time a miss, so half the gaps hit
  //   and the spin stays off; counting each inline completion as a third
  //   and fourth hit makes three in four, which turns it back on for good.
  const bool idle_spin = GENERATE(true, false);
  CAPTURE(idle_spin);
  const int ops_per_request = idle_spin ? 3 : 2;
  i2o2_test::watchdog dog("busy spin turns off");
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running =
      i2o2::spawn({.ring_depth = 8,
                   .idle_spin = idle_spin ? std::chrono::microseconds(1000) : std::chrono::microseconds(0)});
  auto& owner = running.owner;
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;  // holds every byte written here
  const auto request = [&] {
    for (int op = 0; op < ops_per_request; ++op)
      REQUIRE(handle.submit(i2o2::op::write{.file = pipe.write_end(), .buf = "w", .len = 1}).wait() == 1);
    // The think time is the stimulus, not a synchronisation: a longer
    // sleep only makes the gap longer, still a miss.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  CHECK(owner.scheduler().busy_spinning());  // optimistic at first
  int requests = 0;
  while (owner.scheduler().busy_spinning()) {
    request();
    REQUIRE(++requests < 50);
  }
  for (int round = 0; round < 30; ++round) {
    request();
    CHECK_FALSE(owner.scheduler().busy_spinning());
  }
}

namespace {
/// The eventfd wait, counting the wakes producers send.
struct counting_eventfd : i2o2::wait::eventfd {
  static inline std::atomic<int> notifies{0};
  void notify() noexcept {
    notifies.fetch_add(1, std::memory_order_relaxed);
    eventfd::notify();
  }
};
static_assert(i2o2::wait_strategy<counting_eventfd>);
}  // namespace

TEST_CASE("a busy scheduler polls before parking: its client's submits need no wake", "[scheduler]") {
  // idle_spin 0: only the busy spin polls. With it, nops sent one after
  // another find the scheduler awake; without it (the control) each must
  // wake the parked scheduler.
  const bool busy_spin = GENERATE(true, false);
  CAPTURE(busy_spin);
  i2o2_test::watchdog dog("busy spin");
  using counting_scheduler =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, counting_eventfd, i2o2::reply::future, i2o2::any_guard>;
  const std::string name = "i2o2-busyspin";
  auto running = i2o2::spawn_scheduler<counting_scheduler>(
      {.ring_depth = 8,
       .idle_spin = std::chrono::microseconds(0),
       .busy_spin = busy_spin ? std::chrono::seconds(1) : std::chrono::microseconds(0),
       .thread_name = name});
  const auto tid = i2o2_test::thread_named(name);
  REQUIRE(tid.has_value());
  auto& handle = running.handle;
  const auto parked = [&] { return i2o2_test::run_state(*tid) == 'S'; };

  const int before = counting_eventfd::notifies.load();
  constexpr int rounds = 20;
  for (int round = 0; round < rounds; ++round) {
    // The control parks between nops, so each one wakes it.
    if (!busy_spin) REQUIRE(i2o2_test::eventually(parked));
    CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  }
  const int wakes = counting_eventfd::notifies.load() - before;
  if (busy_spin)
    CHECK(wakes <= 2);  // a wake only if this thread stalled for the 1 s limit
  else
    CHECK(wakes == rounds);

  // A spin that catches nothing ends: with nothing more to do the scheduler
  // parks (the 1 s limit, then asleep in io_uring_enter).
  CHECK(i2o2_test::eventually(parked));
}

TEST_CASE("signals interrupting io_uring_enter (-EINTR) lose no op", "[scheduler]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("ops under a signal storm");
  struct sigaction action {};
  action.sa_handler = count_signal;
  action.sa_flags = SA_RESTART;  // io_uring_enter returns -EINTR regardless
  sigemptyset(&action.sa_mask);
  REQUIRE(::sigaction(SIGUSR1, &action, nullptr) == 0);
  const int seen_before = signals_seen.load();

  // The scheduler thread, found by its name, is the storm's target.
  const std::string name = "i2o2-signals";
  auto scheduler = i2o2_test::spawn_policy(policy, {.ring_depth = 8, .thread_name = name});
  const auto scheduler_tid = i2o2_test::thread_named(name);
  REQUIRE(scheduler_tid.has_value());
  const pid_t process = ::getpid();
  const pid_t target = *scheduler_tid;
  std::atomic<bool> storming{true};
  std::thread storm([&storming, process, target] {
    while (storming.load()) {
      ::syscall(SYS_tgkill, process, target, SIGUSR1);
      std::this_thread::yield();
    }
  });

  // The full count for the default combination, a tenth for the others,
  // a fiftieth where the scheduler spins: with the storm and this client it
  // keeps both cores of a small machine busy, and every round trip waits
  // for a time slice.
  const bool spins = policy.find("/spin/") != std::string::npos;
  const int nops = policy == i2o2_test::policy_names().front() ? 20000 : spins ? 400 : 2000;
  i2o2_test::pipe_pair pipe;
  {
    auto handle = scheduler->take_handle();
    // One op parked in the ring the whole time: a parking scheduler sleeps
    // in io_uring_enter, where the signals hit it.
    char parked_buffer[4] = {};
    auto parked = handle->submit(i2o2::op::read{.file = pipe.read_end(), .buf = parked_buffer, .len = 4});
    // At least `nops` round trips, and on until a signal has landed: a
    // short run on a busy machine may end before the storm thread runs.
    int sent = 0;
    int completed = 0;
    for (; sent < nops || signals_seen.load() == seen_before; ++sent)
      completed += handle->submit(i2o2::op::nop{}).wait() == 0 ? 1 : 0;
    CHECK(completed == sent);
    pipe.feed("ping", 4);
    CHECK(parked.wait() == 4);
    storming = false;
    storm.join();
  }
  scheduler->join();
  CHECK(signals_seen.load() > seen_before);
  ::signal(SIGUSR1, SIG_DFL);
}

TEST_CASE("more parked ops than the CQ holds wait their turn and all complete", "[scheduler]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("tiny ring back-pressure");
  // ring_depth 1: one SQE, the minimum CQ; the queue holds the rest.
  auto scheduler = i2o2_test::spawn_policy(policy, {.queue_capacity = 64, .ring_depth = 1});
  auto& handle = scheduler->handle();
  i2o2_test::pipe_pair pipe;
  constexpr int ops = 40;
  std::vector<char> buffers(ops);
  std::vector<i2o2_test::pending> replies;
  for (int i = 0; i < ops; ++i)
    replies.push_back(handle.submit(i2o2::op::read{.file = pipe.read_end(), .buf = &buffers[i], .len = 1}));
  // Nothing can complete before the pipe has data.
  for (auto& reply : replies)
    CHECK_FALSE(reply.try_get().has_value());
  std::string data(ops, 'x');
  pipe.feed(data.data(), data.size());
  for (auto& reply : replies)
    CHECK(reply.wait() == 1);
  CHECK(std::string(buffers.begin(), buffers.end()) == data);
}

namespace {

// Holds the scheduler inside arm() — after its loop saw the gate open, before
// it announces the park — until the test lets it go. Only a re-arm with
// nothing left to submit is held: a re-arm right after pulling the test's
// nop (the nop pushed before the scheduler's first park) would hold the
// nop back, and the test waits for its reply.
std::atomic<int> hold_stage{0};  // 1: hold the next re-arm; 2: held; 3: released

struct holding_eventfd : i2o2::wait::eventfd {
  bool arm(i2o2::detail::ring& ring) noexcept {
    const bool was_armed = armed();
    const bool ok = i2o2::wait::eventfd::arm(ring);
    if (was_armed && ring.sq_pending() == 0 && hold_stage.load() == 1) {
      hold_stage.store(2);
      while (hold_stage.load() != 3)
        std::this_thread::yield();
    }
    return ok;
  }
};
static_assert(i2o2::wait_strategy<holding_eventfd>);

}  // namespace

// Default type only: it needs a wait strategy with a hook (holding_eventfd)
// built into a concrete scheduler type, which the harness cannot hold.
TEST_CASE("a close landing between the loop's check and its park is not lost", "[scheduler]") {
  // Without the gate re-check in announce_park(), close() finds nobody
  // parked and sends no wake, and the scheduler sleeps forever with nothing
  // in flight: the watchdog turns that into a failure.
  i2o2_test::watchdog dog("close before park");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, holding_eventfd, i2o2::reply::future, i2o2::any_guard>;
  // No idle or busy spin: the hold below relies on the scheduler submitting the nop
  // in the same enter that parks it, so the re-arm after it is the held one.
  scheduler_type sched(i2o2::config{.ring_depth = 8,
                                    .idle_spin = std::chrono::microseconds(0),
                                    .busy_spin = std::chrono::microseconds(0),
                                    .shutdown_deadline = std::nullopt});
  std::thread runner([&] { sched.run(); });
  {
    auto handle = sched.handle();
    hold_stage.store(1);
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    while (hold_stage.load() != 2)
      std::this_thread::yield();
    sched.request_stop();
  }  // and the last handle goes too
  hold_stage.store(3);
  runner.join();
  hold_stage.store(0);
}

namespace {

using callback_scheduler =
    i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
using i2o2::detail::submit_records;

/// Counts an op's completion, and whether its result was the expected one.
struct tally {
  std::atomic<int>* done;
  std::atomic<int>* wrong;
  int expected;
  void operator()(int result) const noexcept {
    if (result != expected) wrong->fetch_add(1);
    done->fetch_add(1);
  }
};

struct submit_sizes {
  unsigned largest;     // most SQEs one enter handed over
  unsigned largest_io;  // most IO SQEs (user ops but NOPs) one enter handed over
};

/// Holds the scheduler thread inside a callback while `send(handle, done,
/// wrong)` queues its ops, so the next pull finds them all at once; then
/// lets it go, waits for `ops` completions, and returns what the seam saw.
/// One write to `warm_up` goes first, so the budget has a cost learned:
/// with no idle or busy spin, by the enter the scheduler makes before parking
/// only while it has no cost yet.
template <class Send>
submit_sizes held_burst(std::chrono::nanoseconds budget, int warm_up, int ops, Send&& send) {
  auto running =
      i2o2::spawn_scheduler<callback_scheduler>(i2o2::config{.queue_capacity = 64,
                                                             .ring_depth = 32,
                                                             .submit_budget = budget,
                                                             .idle_spin = std::chrono::microseconds(0),
                                                             .busy_spin = std::chrono::microseconds(0)});
  auto& handle = running.handle;
  std::atomic<int> warmed{0};
  handle.submit(i2o2::op::write{.file = warm_up, .buf = "w", .len = 1, .offset = 0}, {},
                [&warmed](int result) noexcept { warmed.store(result == 1 ? 1 : -1); });
  REQUIRE(i2o2_test::eventually([&] { return warmed.load() != 0; }));
  REQUIRE(warmed.load() == 1);
  std::atomic<int> stage{0};  // 1: the scheduler thread is held; 2: released
  handle.submit(i2o2::op::nop{}, {}, [&stage](int) noexcept {
    stage.store(1);
    while (stage.load() != 2)
      std::this_thread::yield();
  });
  REQUIRE(i2o2_test::eventually([&] { return stage.load() == 1; }));
  std::atomic<int> done{0};
  std::atomic<int> wrong{0};
  send(handle, done, wrong);
  submit_records::get().reset();
  stage.store(2);
  REQUIRE(i2o2_test::eventually([&] { return done.load() == ops; }));
  CHECK(wrong.load() == 0);
  return {submit_records::get().largest(), submit_records::get().largest_io()};
}

}  // namespace

// Callback type only: holding the scheduler thread still needs a callback
// reply, which runs on it. A budget of 1 ns fits one op at any cost (the
// first of each pull always goes); an hour fits every op at any cost.
TEST_CASE("config::submit_budget caps the IO ops one enter hands over; a longer chain still goes whole",
          "[scheduler][submit_budget]") {
  i2o2_test::watchdog dog("submit_budget");
  i2o2_test::temp_file file;
  i2o2_test::temp_file warm_up;
  // 8 single writes, a soft chain of 4 writes, 8 more single writes.
  const auto send = [&](callback_scheduler::handle_type& handle, std::atomic<int>& done,
                        std::atomic<int>& wrong) {
    const auto writes = [&](int count, std::uint64_t first) {
      std::vector<i2o2::prepared_op> ops;
      std::vector<tally> tallies;
      for (int i = 0; i < count; ++i) {
        ops.push_back(i2o2::op::write{.file = file.fd(), .buf = "w", .len = 1, .offset = first + i});
        tallies.push_back(tally{&done, &wrong, 1});
      }
      return std::pair{ops, tallies};
    };
    auto [before, before_tallies] = writes(8, 0);
    handle.submit_many(before, {}, before_tallies);
    auto [chain, chain_tallies] = writes(4, 8);
    handle.submit_chain(chain, {}, i2o2::link_kind::soft, chain_tallies);
    auto [after, after_tallies] = writes(8, 12);
    handle.submit_many(after, {}, after_tallies);
  };
  SECTION("a budget that fits one op: one single write per enter, the chain of four alone in one") {
    const submit_sizes seen = held_burst(std::chrono::nanoseconds(1), warm_up.fd(), 20, send);
    CHECK(seen.largest_io == 4);
  }
  SECTION("a budget that fits them all: all twenty in one enter") {
    const submit_sizes seen = held_burst(std::chrono::hours(1), warm_up.fd(), 20, send);
    CHECK(seen.largest_io == 20);
  }
  SECTION("no budget: all twenty in one enter") {
    const submit_sizes seen = held_burst(std::chrono::nanoseconds(0), warm_up.fd(), 20, send);
    CHECK(seen.largest_io == 20);
  }
  CHECK(i2o2_test::size_of(file.fd()) == 20);
}

TEST_CASE("config::submit_budget leaves NOPs uncapped", "[scheduler][submit_budget]") {
  i2o2_test::watchdog dog("submit_budget nops");
  i2o2_test::temp_file warm_up;
  const submit_sizes seen = held_burst(
      std::chrono::nanoseconds(1), warm_up.fd(), 20,
      [](callback_scheduler::handle_type& handle, std::atomic<int>& done, std::atomic<int>& wrong) {
        const std::vector<i2o2::prepared_op> nops(20, i2o2::prepared_op(i2o2::op::nop{}));
        handle.submit_many(nops, {}, std::vector<tally>(20, tally{&done, &wrong, 0}));
      });
  CHECK(seen.largest >= 20);
  CHECK(seen.largest_io == 0);
}

// The learning itself, fed enters of known lengths.
namespace {
void timed_enter(i2o2::detail::submit_budget& budget, unsigned ops, std::chrono::nanoseconds took) {
  budget.placed(ops);
  budget.entered_after(took);
}
}  // namespace

TEST_CASE("submit_budget learns the least recent cost per op, and forgets it after two windows",
          "[scheduler][submit_budget]") {
  using std::chrono::microseconds;
  i2o2::detail::submit_budget budget(microseconds(100));
  CHECK(budget.cap() == 0);                  // nothing learned yet: no limit
  CHECK_FALSE(budget.start(0).has_value());  // no IO op placed: nothing to time
  CHECK_FALSE(budget.learning());
  budget.placed(1);
  CHECK(budget.learning());
  CHECK(budget.unsubmitted() == 1);
  CHECK_FALSE(budget.start(1).has_value());  // an enter that waits is not timed
  CHECK(budget.start(0).has_value());
  budget.entered(std::nullopt);
  CHECK(budget.unsubmitted() == 0);
  CHECK(budget.cap() == 0);

  timed_enter(budget, 2, microseconds(20));  // 10 us per op
  CHECK(budget.cap() == 10);
  timed_enter(budget, 1, microseconds(2000));  // preempted midway: ignored
  CHECK(budget.cap() == 10);
  timed_enter(budget, 4, microseconds(4));  // 1 us per op: the least wins
  CHECK(budget.cap() == 100);
  timed_enter(budget, 1, microseconds(500));  // costlier than the budget: one op
  CHECK(budget.cap() == 100);
  // Only 40 us enters from here: the cheap one is kept for the rest of its
  // window (64 enters), and forgotten within two.
  for (int i = 0; i < 58; ++i)
    timed_enter(budget, 1, microseconds(40));
  CHECK(budget.cap() == 100);
  for (int i = 0; i < 128; ++i)
    timed_enter(budget, 1, microseconds(40));
  CHECK(budget.cap() == 2);
  for (int i = 0; i < 128; ++i)
    timed_enter(budget, 1, microseconds(500));
  CHECK(budget.cap() == 1);  // never zero, which would mean no limit

  CHECK_FALSE(budget.learning());

  // A budget of a century at 1 ns per op: far past any ring, not wrapped.
  i2o2::detail::submit_budget century(std::chrono::hours(24 * 365 * 100));
  timed_enter(century, 1, std::chrono::nanoseconds(1));
  CHECK(century.cap() == 1U << 20);

  i2o2::detail::submit_budget unlimited(std::chrono::nanoseconds(0));
  unlimited.placed(4);
  CHECK_FALSE(unlimited.start(0).has_value());
  timed_enter(unlimited, 4, microseconds(40));
  CHECK(unlimited.cap() == 0);
}

TEST_CASE("ops submitted from the scheduler thread past a full queue keep their order", "[scheduler]") {
  i2o2_test::watchdog dog("overflow order");
  auto running =
      i2o2::spawn_scheduler<callback_scheduler>(i2o2::config{.queue_capacity = 4, .ring_depth = 32});
  auto& handle = running.handle;
  std::vector<int> order;  // appended on the scheduler thread only, read after `done`
  std::atomic<int> done{0};
  struct record {
    std::vector<int>* order;
    std::atomic<int>* done;
    int index;
    void operator()(int) const noexcept {
      order->push_back(index);
      done->fetch_add(1);
    }
  };
  auto* scheduler_handle = &handle;
  handle.submit(i2o2::op::nop{}, {}, [scheduler_handle, &order, &done](int) noexcept {
    // On the scheduler thread, the queue empty: three fit, a pair does not
    // (it goes to the overflow list), and the single op after it must not
    // overtake the pair.
    for (int i = 0; i < 3; ++i)
      scheduler_handle->submit(i2o2::op::nop{}, {}, record{&order, &done, i});
    const std::vector<i2o2::prepared_op> pair(2, i2o2::prepared_op(i2o2::op::nop{}));
    std::vector<record> pair_replies{record{&order, &done, 3}, record{&order, &done, 4}};
    scheduler_handle->submit_many(pair, {}, pair_replies);
    scheduler_handle->submit(i2o2::op::nop{}, {}, record{&order, &done, 5});
  });
  REQUIRE(i2o2_test::eventually([&] { return done.load() == 6; }));
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
}

namespace {

using i2o2_test::eventually;

/// A ring_depth 4 scheduler with callback replies, and everything its
/// callbacks touch. Those are declared first, so they outlive the
/// scheduler: a reply that comes while it shuts down still has somewhere
/// to go. On the way out every pipe is ended, so that a read a failed
/// check left parked reads 0 and the shutdown does not wait for it.
template <class Queue, std::size_t Results>
struct full_ring_rig {
  using scheduler_type = i2o2::basic_scheduler<Queue, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;

  i2o2_test::callback_results<Results> results;
  i2o2_test::pipe_pair trigger;
  i2o2_test::pipe_pair parked;
  i2o2_test::pipe_pair late;
  i2o2_test::pipe_pair registered;  // for a registered file's reads
  std::array<i2o2::callback_submitted, 6> reads;
  std::array<char, 16> sinks{};
  i2o2::spawned<scheduler_type> running;
  typename scheduler_type::handle_type* sender = &running.handle;

  explicit full_ring_rig(i2o2::config settings) : running(i2o2::spawn_scheduler<scheduler_type>(settings)) {}
  full_ring_rig(const full_ring_rig&) = delete;
  full_ring_rig& operator=(const full_ring_rig&) = delete;
  ~full_ring_rig() {
    for (auto* pipe : {&trigger, &parked, &late, &registered})
      pipe->close_writer();
  }

  /// Parks five reads on `parked` (reads 1-5) and one on `trigger` (read
  /// 0): every op slot of the ring (six). Feeding `trigger` then runs read
  /// 0's callback, `on_trigger`, on the scheduler thread with the ring full.
  template <class OnTrigger>
  void park_every_slot_then(OnTrigger on_trigger) {
    for (std::size_t i = 1; i < 6; ++i)
      reads[i] = sender->submit(pipe_read(parked, &sinks[i], 1), {}, results.into(i));
    std::atomic<bool> churned{false};
    sender->submit(i2o2::op::nop{}, {}, [&churned](int) noexcept { churned.store(true); });
    REQUIRE(eventually([&] { return churned.load(); }));  // the five reads are in the ring
    reads[0] = sender->submit(pipe_read(trigger, &sinks[0], 1), {}, [this, on_trigger](int result) noexcept {
      results.into(0)(result);
      on_trigger();
    });
    trigger.feed("t", 1);
  }

  /// Waits for reply `index` and checks it.
  void expect(std::size_t index, int result) {
    INFO("reply " << index);
    REQUIRE(eventually([&] { return results.arrived(index); }));
    CHECK(results[index] == result);
  }
};

/// The scheduler thread, in a callback with the ring full, queues reads on
/// `late` until the queue (2) is full, then cancels the last of them: the
/// cancel goes to the overflow lane while the read it names still waits in
/// the queue for room. It must find that read, not overtake it.
template <class Queue>
void check_overflow_cancel_finds_its_queued_read() {
  // Six parked reads, two late reads, the cancel.
  full_ring_rig<Queue, 9> rig(i2o2::config{.queue_capacity = 2, .ring_depth = 4});
  auto& results = rig.results;
  auto& sinks = rig.sinks;
  auto* sender = rig.sender;
  rig.park_every_slot_then([&] {
    sender->submit(pipe_read(rig.late, &sinks[6], 1), {}, results.into(6));
    const auto second = sender->submit(pipe_read(rig.late, &sinks[7], 1), {}, results.into(7));
    sender->cancel(second, results.into(8));  // the queue is full: the overflow lane
  });
  rig.expect(0, 1);
  // Room for both late reads, then the cancel of the second.
  rig.parked.feed("ab", 2);
  rig.expect(8, 0);  // -ENOENT: it went before the read it names
  const bool cancelled = results[8] == 0;
  rig.late.feed("ab", cancelled ? 1 : 2);  // the first late read, and the second if it was not cancelled
  REQUIRE(eventually([&] { return results.arrived(7); }));
  if (cancelled) CHECK(results[7] == -ECANCELED);
  rig.parked.feed("cde", 3);
  for (std::size_t i = 1; i < 7; ++i)
    rig.expect(i, 1);
}

/// As above, but the queue and the overflow lane hold reads waiting for
/// room, and the lane's cancel names a parked read: it must get past them,
/// since ending that read is what makes the room.
template <class Queue>
void check_overflow_cancel_passes_reads_waiting_for_room() {
  // Six parked reads, three late reads, the cancel.
  full_ring_rig<Queue, 10> rig(i2o2::config{.queue_capacity = 2, .ring_depth = 4});
  auto& results = rig.results;
  auto& sinks = rig.sinks;
  auto* sender = rig.sender;
  rig.park_every_slot_then([&] {
    for (std::size_t i = 6; i < 9; ++i)  // the third goes to the overflow lane
      sender->submit(pipe_read(rig.late, &sinks[i], 1), {}, results.into(i));
    sender->cancel(rig.reads[1], results.into(9));
  });
  if (!eventually([&] { return results.arrived(9); }, std::chrono::seconds(10))) {
    FAIL_CHECK("the cancel waited behind the reads waiting for room");
    rig.parked.feed("u", 1);
  }
  rig.expect(9, 0);
  rig.expect(1, -ECANCELED);
  rig.expect(0, 1);
  rig.parked.feed("bcde", 4);
  rig.late.feed("abc", 3);
  for (std::size_t i = 2; i < 9; ++i)
    rig.expect(i, 1);
}

/// The scheduler thread, in a callback with the ring full, queues a read on
/// `late` and one on a registered file (the queue, 2, is then full), and
/// unregisters that file: the unregister goes to the overflow lane while
/// the read using the file still waits in the queue for room. Sent after
/// the read, it must leave the file to it.
template <class Queue>
void check_overflow_unregister_waits_for_its_queued_read() {
  // Six parked reads, the late read, the fixed-file read, the unregister, the register.
  full_ring_rig<Queue, 10> rig(i2o2::config{.queue_capacity = 2, .ring_depth = 4, .registered_files = 1});
  auto& results = rig.results;
  auto& sinks = rig.sinks;
  auto* sender = rig.sender;
  sender->register_file(rig.registered.read_end(), {}, results.into(9));
  REQUIRE(eventually([&] { return results.arrived(9); }));
  REQUIRE(results[9] >= 0);
  const auto index = static_cast<unsigned>(results[9]);
  rig.park_every_slot_then([&] {
    sender->submit(pipe_read(rig.late, &sinks[6], 1), {}, results.into(6));
    sender->submit(i2o2::op::read{.file = i2o2::fixed_file(index),
                                  .buf = &sinks[7],
                                  .len = 1,
                                  .offset = i2o2::op::current_position},
                   {}, results.into(7));
    sender->unregister_file(index, results.into(8));  // the queue is full: the overflow lane
  });
  rig.expect(0, 1);
  rig.parked.feed("ab", 2);  // room for both reads
  rig.expect(8, 0);
  rig.registered.feed("r", 1);
  rig.expect(7, 1);  // -EBADF: the file was gone before the read went in
  rig.late.feed("a", 1);
  rig.parked.feed("cde", 3);
  for (std::size_t i = 1; i < 7; ++i)
    rig.expect(i, 1);
}

/// Adapted from a review's reproducer. A client's chain is set aside (a
/// cancel waits to get in) just as a lane entry's turn comes between its
/// head and its member: the lane entry must wait behind the whole chain.
/// (Set aside between them, it was placed as the next op of the head's
/// link, and the member's count wrapped: the loop spun for ever.)
template <class Queue>
void check_lane_entry_waits_behind_a_set_aside_chain() {
  // 0-5 parked reads, 6-7 cancels naming nothing, 8-9 late reads, 10-11 lane nops,
  // 12-13 the client's chain, 14 the client's cancel.
  full_ring_rig<Queue, 15> rig(i2o2::config{.queue_capacity = 4, .ring_depth = 4});
  auto& results = rig.results;
  auto& sinks = rig.sinks;
  auto* sender = rig.sender;
  rig.park_every_slot_then([&] {
    // The queue (4) from P: two cancels, two reads; the lane: a nop, its
    // turn at P + 4.
    sender->cancel(i2o2::callback_submitted{}, results.into(6));
    sender->cancel(i2o2::callback_submitted{}, [&results, sender](int result) noexcept {
      results.into(7)(result);
      // Run while the scheduler pulls, the lane not empty: a nop into it,
      // its turn a queue's worth on from here, at P + 5.
      sender->submit(i2o2::op::nop{}, {}, results.into(11));
    });
    sender->submit(pipe_read(rig.late, &sinks[8], 1), {}, results.into(8));
    sender->submit(pipe_read(rig.late, &sinks[9], 1), {}, results.into(9));
    sender->submit(i2o2::op::nop{}, {}, results.into(10));
  });
  REQUIRE(eventually([&] { return results.arrived(7); }));  // the late reads wait for room
  // The chain goes in at P + 4 and P + 5, around the second nop's turn.
  const std::array<i2o2::prepared_op, 2> chain{i2o2::prepare(i2o2::op::nop{}),
                                               i2o2::prepare(i2o2::op::nop{})};
  std::array<decltype(results.into(0)), 2> replies{results.into(12), results.into(13)};
  sender->submit_chain(chain, {}, i2o2::link_kind::soft, replies);
  sender->cancel(rig.reads[1], results.into(14));  // everything queued is set aside to reach it
  rig.expect(14, 0);
  rig.parked.feed("bcde", 4);  // room for everything set aside
  rig.late.feed("ab", 2);
  for (const std::size_t i : {10, 11, 12, 13})
    rig.expect(i, 0);
  rig.expect(1, -ECANCELED);
  for (const std::size_t i : {0, 2, 3, 4, 5, 8, 9})
    rig.expect(i, 1);
}

/// Holds the scheduler thread in a nop's callback while this thread queues
/// four cancels naming nothing (a queue of 4, an mpsc_ring), then lets it
/// pull them: each resolves -ENOENT at once, and the second's and third's
/// callbacks, `second` and `third`, run while the pull goes on, each with
/// the cell of the one before it free. `second` and `third` must outlive
/// the pull.
template <class Handle, class Second, class Third>
void run_mid_pull(Handle& handle, const Second& second, const Third& third) {
  std::atomic<int> stage{0};  // 1: the scheduler thread is held; 2: released; 3: let go of `stage`
  handle.submit(i2o2::op::nop{}, {}, [&stage](int) noexcept {
    stage.store(1);
    while (stage.load() != 2)
      std::this_thread::yield();
    stage.store(3);
  });
  REQUIRE(eventually([&] { return stage.load() == 1; }));
  handle.cancel(i2o2::callback_submitted{}, [](int) noexcept {});
  handle.cancel(i2o2::callback_submitted{}, [&second](int) noexcept { second(); });
  handle.cancel(i2o2::callback_submitted{}, [&third](int) noexcept { third(); });
  handle.cancel(i2o2::callback_submitted{}, [](int) noexcept {});
  stage.store(2);
  REQUIRE(eventually([&] { return stage.load() == 3; }));
}

using mid_pull_scheduler =
    i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;

/// Adapted from a review's reproducer. A callback run inside a pull (the
/// -ENOENT reply of a cancel naming nothing) sends a cancel of a parked read
/// into the lane: it waits for the next pull, which must come without the
/// scheduler sleeping first (the CQ is full of reads only that cancel can
/// end, and nobody else wakes it for its own lane).
template <class Queue>
void check_lane_cancel_sent_mid_pull_is_not_slept_on() {
  // 0-5 parked reads (0: the trigger), 6 and 8 late reads, 7 the cancel naming nothing, 9 the lane cancel.
  full_ring_rig<Queue, 10> rig(i2o2::config{.queue_capacity = 2, .ring_depth = 4});
  auto& results = rig.results;
  auto& sinks = rig.sinks;
  auto* sender = rig.sender;
  rig.park_every_slot_then([&] {
    sender->submit(pipe_read(rig.late, &sinks[6], 1), {}, results.into(6));  // takes the trigger's slot
    sender->cancel(i2o2::callback_submitted{}, [&rig](int result) noexcept {
      // Runs inside pull(), from control(), with the ring full again.
      rig.results.into(7)(result);
      rig.sender->submit(pipe_read(rig.late, &rig.sinks[8], 1), {},
                         rig.results.into(8));                // mpsc: the freed cell; mutex: the lane
      rig.sender->cancel(rig.reads[1], rig.results.into(9));  // the lane, after the pull's allowance
    });
  });
  rig.expect(7, -ENOENT);
  if (!eventually([&] { return results.arrived(9); }, std::chrono::seconds(10))) {
    FAIL_CHECK("the scheduler slept with a due cancel in its overflow lane");
    rig.parked.feed("u", 1);  // a completion wakes it; the next pull takes the lane
  }
  rig.expect(9, 0);
  rig.expect(1, -ECANCELED);
  rig.parked.feed("bcde", 4);
  rig.late.feed("ab", 2);
  for (const std::size_t i : {0, 2, 3, 4, 5, 6, 8})
    rig.expect(i, 1);
}

}  // namespace

// Concrete types: the cancels and the unregister are sent from a callback, on
// the scheduler thread.
TEST_CASE("a cancel the scheduler thread sends past a full queue finds the read it queued just before",
          "[cancel][full]") {
  i2o2_test::watchdog dog("overflow cancel behind its queued read");
  SECTION("mpsc_ring") { check_overflow_cancel_finds_its_queued_read<i2o2::queue::mpsc_ring>(); }
  SECTION("mutex_ring") { check_overflow_cancel_finds_its_queued_read<i2o2::queue::mutex_ring>(); }
}

TEST_CASE("a cancel the scheduler thread sends past a full queue gets past reads waiting for room",
          "[cancel][full]") {
  i2o2_test::watchdog dog("overflow cancel behind reads waiting for room");
  SECTION("mpsc_ring") { check_overflow_cancel_passes_reads_waiting_for_room<i2o2::queue::mpsc_ring>(); }
  SECTION("mutex_ring") { check_overflow_cancel_passes_reads_waiting_for_room<i2o2::queue::mutex_ring>(); }
}

TEST_CASE("an unregister the scheduler thread sends past a full queue leaves the file to the read it "
          "queued before",
          "[scheduler][resources]") {
  i2o2_test::watchdog dog("overflow unregister behind its queued read");
  SECTION("mpsc_ring") { check_overflow_unregister_waits_for_its_queued_read<i2o2::queue::mpsc_ring>(); }
  SECTION("mutex_ring") { check_overflow_unregister_waits_for_its_queued_read<i2o2::queue::mutex_ring>(); }
}

// Concrete types: the chain and the cancel are sent from callbacks, on the
// scheduler thread.
TEST_CASE("a chain the scheduler thread sends past a full queue goes in whole", "[scheduler]") {
  // Its head is taken from the overflow lane, and so must its members be.
  // (Taken from the queue instead, the loop waited for them there for ever.)
  i2o2_test::watchdog dog("chain in the overflow lane");
  const auto check = []<class Queue>(Queue) {
    using scheduler_type = i2o2::basic_scheduler<Queue, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
    i2o2_test::callback_results<4> results;  // two nops, then the chain's two
    auto running = i2o2::spawn_scheduler<scheduler_type>(i2o2::config{.queue_capacity = 2, .ring_depth = 4});
    auto& handle = running.handle;
    auto* sender = &handle;
    handle.submit(i2o2::op::nop{}, {}, [sender, &results](int) noexcept {
      sender->submit(i2o2::op::nop{}, {}, results.into(0));
      sender->submit(i2o2::op::nop{}, {}, results.into(1));  // the queue (2) is full
      const std::array<i2o2::prepared_op, 2> chain{i2o2::prepare(i2o2::op::nop{}),
                                                   i2o2::prepare(i2o2::op::nop{})};
      std::array<decltype(results.into(0)), 2> replies{results.into(2), results.into(3)};
      sender->submit_chain(chain, {}, i2o2::link_kind::soft, replies);  // the overflow lane
    });
    for (std::size_t i = 0; i < 4; ++i) {
      REQUIRE(eventually([&] { return results.arrived(i); }));
      CHECK(results[i] == 0);
    }
  };
  SECTION("mpsc_ring") { check(i2o2::queue::mpsc_ring{}); }
  SECTION("mutex_ring") { check(i2o2::queue::mutex_ring{}); }
}

TEST_CASE("a cancel the scheduler thread sends past a full queue while it pulls still finds its read",
          "[scheduler][cancel]") {
  // Four cancels naming nothing fill the queue (4); the second one's reply,
  // run while the scheduler pulls them, sends a read into the cell the
  // first freed (an mpsc_ring frees each as it is taken), then a cancel of
  // it into the overflow lane. The lane's turn must count the first as
  // popped already, or the cancel comes due before its read: -ENOENT.
  i2o2_test::watchdog dog("overflow turn counted mid-pull");
  const auto check = []<class Queue>(Queue) {
    using scheduler_type = i2o2::basic_scheduler<Queue, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
    i2o2_test::callback_results<6> results;  // four cancels, the read, its cancel
    i2o2_test::pipe_pair pipe;
    char sink = 0;
    auto running = i2o2::spawn_scheduler<scheduler_type>(i2o2::config{.queue_capacity = 4, .ring_depth = 4});
    auto& handle = running.handle;
    std::atomic<int> stage{0};  // 1: the scheduler thread is held; 2: released
    handle.submit(i2o2::op::nop{}, {}, [&stage](int) noexcept {
      stage.store(1);
      while (stage.load() != 2)
        std::this_thread::yield();
    });
    REQUIRE(eventually([&] { return stage.load() == 1; }));
    auto* sender = &handle;
    handle.cancel(i2o2::callback_submitted{}, results.into(0));
    handle.cancel(i2o2::callback_submitted{}, [&results, &pipe, &sink, sender](int result) noexcept {
      results.into(1)(result);
      const auto read = sender->submit(pipe_read(pipe, &sink, 1), {}, results.into(4));
      sender->cancel(read, results.into(5));
    });
    handle.cancel(i2o2::callback_submitted{}, results.into(2));
    handle.cancel(i2o2::callback_submitted{}, results.into(3));
    stage.store(2);
    REQUIRE(eventually([&] { return results.arrived(5); }));
    CHECK(results[5] == 0);
    if (results[5] != 0) pipe.feed("x", 1);
    REQUIRE(eventually([&] { return results.arrived(4); }));
    CHECK(results[4] == -ECANCELED);
    for (std::size_t i = 0; i < 4; ++i)
      CHECK(results[i] == -ENOENT);
  };
  SECTION("mpsc_ring") { check(i2o2::queue::mpsc_ring{}); }
  SECTION("mutex_ring") { check(i2o2::queue::mutex_ring{}); }
}

// Default policies but the queue (refusing, here holding a refused push
// in the gate) and the reply (callback), in a concrete scheduler type.
TEST_CASE("a scheduler whose overflow lane waits on a producer mid-push does not sleep on it",
          "[scheduler][cancel]") {
  // The lane's front (a cancel of a parked read, its only way to room)
  // waits for its turn; the queue is empty, but a try_submit refused as
  // full is still in the gate, so the scheduler cannot tell the queue is
  // drained. That producer leaves without pushing, which wakes nobody: a
  // scheduler asleep then (waiting for room) would sleep for ever.
  i2o2_test::watchdog dog("overflow lane waiting on a producer");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2_test::refusing, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  const std::string name = "i2o2-lane-gate";
  i2o2_test::callback_results<10> results;  // 0-3 parked, 4 and 5 triggers, 6-8 late reads, 9 the cancel
  i2o2_test::pipe_pair parked;
  i2o2_test::pipe_pair first_trigger;
  i2o2_test::pipe_pair second_trigger;
  i2o2_test::pipe_pair late;
  std::array<char, 16> sinks{};
  std::array<i2o2::callback_submitted, 4> reads;
  auto running = i2o2::spawn_scheduler<scheduler_type>(
      i2o2::config{.queue_capacity = 2, .ring_depth = 4, .thread_name = name});
  auto& handle = running.handle;
  for (std::size_t i = 0; i < 4; ++i)
    reads[i] = handle.submit(pipe_read(parked, &sinks[i], 1), {}, results.into(i));
  auto* sender = &handle;
  handle.submit(pipe_read(first_trigger, &sinks[4], 1), {}, [&, sender](int result) noexcept {
    sender->submit(pipe_read(late, &sinks[6], 1), {}, results.into(6));  // the trigger's slot
    sender->submit(pipe_read(late, &sinks[7], 1), {}, results.into(7));  // waits for room; the queue is full
    sender->submit(pipe_read(late, &sinks[8], 1), {}, results.into(8));  // the lane
    results.into(4)(result);
  });
  handle.submit(pipe_read(second_trigger, &sinks[5], 1), {}, [&, sender](int result) noexcept {
    sender->cancel(reads[0], results.into(9));  // the lane (not empty): a queue's worth of turn away
    results.into(5)(result);
  });
  const auto scheduler_tid = i2o2_test::thread_named(name);
  REQUIRE(scheduler_tid);
  const auto asleep = [&] { return i2o2_test::run_state(*scheduler_tid) == 'S'; };
  REQUIRE(eventually(asleep));  // every op slot taken by a read
  first_trigger.feed("a", 1);
  REQUIRE(eventually([&] { return results.arrived(4); }));
  REQUIRE(eventually(asleep));  // waiting for room for the second late read

  // A client's try_submit, refused as full and held in the gate.
  const int refused_before = i2o2_test::refusing_record::refused.load();
  i2o2_test::refusing_record::hold_refusal.store(true);
  i2o2_test::refusing_record::refuse_next.store(true);
  std::atomic<bool> refused_as_full{false};  // checked here: Catch is not thread-safe
  std::thread client([&] {
    typename scheduler_type::handle_type::guard_arg no_guard{};
    const auto refused = handle.try_submit(i2o2::op::nop{}, std::move(no_guard), [](int) noexcept {});
    refused_as_full.store(refused.error() == i2o2::errc::queue_full);
  });
  REQUIRE(eventually([&] { return i2o2_test::refusing_record::refused.load() == refused_before + 1; }));
  second_trigger.feed("b", 1);
  REQUIRE(eventually([&] { return results.arrived(5); }));
  // Still looking at the queue, not asleep:
  const int looks = i2o2_test::refusing_record::pop_batches.load();
  CHECK(eventually([&] { return i2o2_test::refusing_record::pop_batches.load() >= looks + 16; },
                   std::chrono::seconds(10)));
  i2o2_test::refusing_record::hold_refusal.store(false);
  client.join();
  CHECK(refused_as_full.load());
  if (!eventually([&] { return results.arrived(9); }, std::chrono::seconds(10))) {
    FAIL_CHECK("the scheduler slept with the cancel in its overflow lane");
    parked.feed("z", 1);
  }
  CHECK(results[9] == 0);
  REQUIRE(eventually([&] { return results.arrived(0); }));
  CHECK(results[0] == -ECANCELED);
  parked.feed("bcd", 3);
  late.feed("abc", 3);
  for (const std::size_t i : {1, 2, 3, 4, 5, 6, 7, 8}) {
    REQUIRE(eventually([&] { return results.arrived(i); }));
    CHECK(results[i] == 1);
  }
}

TEST_CASE("a lane entry whose turn comes inside a set-aside chain waits behind the whole chain",
          "[scheduler][cancel]") {
  i2o2_test::watchdog dog("lane entry inside a set-aside chain");
  SECTION("mpsc_ring") { check_lane_entry_waits_behind_a_set_aside_chain<i2o2::queue::mpsc_ring>(); }
  SECTION("mutex_ring") { check_lane_entry_waits_behind_a_set_aside_chain<i2o2::queue::mutex_ring>(); }
}

TEST_CASE("a lane cancel sent by a callback run mid-pull is not slept on", "[scheduler][cancel]") {
  i2o2_test::watchdog dog("lane cancel past the pull's allowance");
  SECTION("mpsc_ring") { check_lane_cancel_sent_mid_pull_is_not_slept_on<i2o2::queue::mpsc_ring>(); }
  SECTION("mutex_ring") { check_lane_cancel_sent_mid_pull_is_not_slept_on<i2o2::queue::mutex_ring>(); }
}

// mpsc_ring only: it frees each cell as it is taken (a mutex_ring frees
// the batch at its end), which gives the callbacks below room mid-pull.
TEST_CASE("a cancel naming an op still in the overflow lane waits for it", "[scheduler][cancel]") {
  // The lane's read goes in at its turn, a queue's worth on from when it
  // was sent (the lane was not empty): the client's cancel, sent after the
  // read but queued in a cell freed before that turn, is taken first. It
  // must wait for the read, not find nothing (-ENOENT).
  i2o2_test::watchdog dog("cancel of an op in the lane");
  i2o2_test::callback_results<4> results;  // a nop into the queue, a nop into the lane, the read, the cancel
  i2o2_test::pipe_pair pipe;
  char sink = 0;
  auto running =
      i2o2::spawn_scheduler<mid_pull_scheduler>(i2o2::config{.queue_capacity = 4, .ring_depth = 4});
  auto& handle = running.handle;
  std::atomic<std::uint64_t> read_key{0};
  std::atomic<bool> cancel_sent{false};
  auto* sender = &handle;
  i2o2::callback_submitted read;
  std::thread client([&] {
    // (No Catch assertion off the main thread: Catch is not thread-safe.)
    if (!eventually([&] { return read_key.load() != 0; })) return;
    handle.cancel(read, results.into(3));
    cancel_sent.store(true);
  });
  const auto second = [&results, sender] {
    sender->submit(i2o2::op::nop{}, {}, results.into(0));  // the queue, full again
    sender->submit(i2o2::op::nop{}, {}, results.into(1));  // the lane
  };
  const auto third = [&] {
    read = sender->submit(pipe_read(pipe, &sink, 1), {}, results.into(2));  // the lane, not empty
    read_key.store(1);
    // The client's cancel takes the cell the second cancel freed.
    while (!cancel_sent.load())
      std::this_thread::yield();
  };
  run_mid_pull(handle, second, third);
  client.join();
  REQUIRE(eventually([&] { return results.arrived(3); }));
  CHECK(results[3] == 0);
  if (results[3] != 0) pipe.feed("x", 1);
  REQUIRE(eventually([&] { return results.arrived(2); }));
  CHECK(results[2] == -ECANCELED);
  for (std::size_t i = 0; i < 2; ++i) {
    REQUIRE(eventually([&] { return results.arrived(i); }));
    CHECK(results[i] == 0);
  }
}

TEST_CASE("try_submit on the scheduler thread does not overtake what it sent into the overflow lane",
          "[scheduler]") {
  // With ops of its own still waiting in the lane, a try from the
  // scheduler thread is refused as full, even where the queue has a free
  // cell: taken into it, the op would go before them.
  i2o2_test::watchdog dog("try_submit behind the lane");
  i2o2_test::callback_results<4> results;  // a nop into the queue, two into the lane, the try
  auto running =
      i2o2::spawn_scheduler<mid_pull_scheduler>(i2o2::config{.queue_capacity = 4, .ring_depth = 4});
  auto& handle = running.handle;
  std::atomic<int> refused{0};             // 1: refused as full; 2: taken
  auto* sender = &handle;
  const auto second = [&results, sender] {
    sender->submit(i2o2::op::nop{}, {}, results.into(0));  // the queue, full again
    sender->submit(i2o2::op::nop{}, {}, results.into(1));  // the lane
  };
  const auto third = [&results, &refused, sender] {
    sender->submit(i2o2::op::nop{}, {}, results.into(2));  // the lane, not empty
    typename mid_pull_scheduler::handle_type::guard_arg no_guard{};
    const auto tried = sender->try_submit(i2o2::op::nop{}, std::move(no_guard), results.into(3));
    refused.store(tried.error() == i2o2::errc::queue_full ? 1 : 2);
  };
  run_mid_pull(handle, second, third);
  REQUIRE(eventually([&] { return refused.load() != 0; }));
  CHECK(refused.load() == 1);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(eventually([&] { return results.arrived(i); }));
    CHECK(results[i] == 0);
  }
}

TEST_CASE("callbacks that keep sending into the overflow lane do not starve the queue", "[scheduler]") {
  // Each lane cancel names nothing, resolves at once, and its callback
  // sends the next into the lane: taken in the same pull as they come, they
  // kept the pull from ever returning to the queue.
  i2o2_test::watchdog dog("lane refilled by callbacks");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  auto running = i2o2::spawn_scheduler<scheduler_type>(i2o2::config{.queue_capacity = 2, .ring_depth = 4});
  auto& handle = running.handle;
  std::atomic<bool> stop{false};
  std::atomic<bool> stopped{false};  // the last relay is in: nothing more is sent
  std::atomic<int> relayed{0};
  struct relay {
    scheduler_type::handle_type* sender;
    std::atomic<bool>* stop;
    std::atomic<bool>* stopped;
    std::atomic<int>* relayed;
    void operator()(int) const noexcept {
      relayed->fetch_add(1);
      if (stop->load())
        stopped->store(true);
      else
        sender->cancel(i2o2::callback_submitted{}, relay{*this});
    }
  };
  auto* sender = &handle;
  handle.submit(i2o2::op::nop{}, {}, [&, sender](int) noexcept {
    sender->submit(i2o2::op::nop{}, {}, [](int) noexcept {});
    sender->submit(i2o2::op::nop{}, {}, [](int) noexcept {});                    // the queue (2) is full
    sender->cancel(i2o2::callback_submitted{}, relay{sender, &stop, &stopped, &relayed});  // the lane
  });
  REQUIRE(eventually([&] { return relayed.load() > 100; }));
  std::atomic<int> client_nop{1000};
  handle.submit(i2o2::op::nop{}, {}, [&client_nop](int result) noexcept { client_nop.store(result); });
  const bool served = eventually([&] { return client_nop.load() != 1000; }, std::chrono::seconds(10));
  stop.store(true);
  CHECK(served);
  REQUIRE(eventually([&] { return client_nop.load() != 1000; }));
  CHECK(client_nop.load() == 0);
  // Before the scheduler closes: a relay sent after that would throw
  // scheduler_closed from its callback.
  REQUIRE(eventually([&] { return stopped.load(); }));
}

// Default policies but the queue (refusing: a push refused as full once, on
// request), which must be built into a concrete scheduler type.
TEST_CASE("a push refused as full that fits on its retry wakes the parked scheduler", "[scheduler]") {
  // A refused producer announces that it waits for space, then tries once
  // more before sleeping: the scheduler may have popped in between. When
  // that retry succeeds, the scheduler (parked, nothing in flight) learns
  // of the op only from the wake sent then: without it the nop's reply
  // never comes, and the watchdog fails the test. Without the retry, the
  // producer sleeps for space that no pop will announce.
  i2o2_test::watchdog dog("push retried after full");
  using scheduler_type =
      i2o2::basic_scheduler<i2o2_test::refusing, i2o2::wait::eventfd, i2o2::reply::future, i2o2::any_guard>;
  const std::string name = "i2o2-refusing";
  auto running = i2o2::spawn_scheduler<scheduler_type>(i2o2::config{.ring_depth = 8,
                                                                    .idle_spin = std::chrono::microseconds(0),
                                                                    .busy_spin = std::chrono::microseconds(0),
                                                                    .thread_name = name});
  auto& handle = running.handle;
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  const auto scheduler_tid = i2o2_test::thread_named(name);
  REQUIRE(scheduler_tid);
  // Asleep means parked: with nothing in flight it sleeps only there.
  REQUIRE(i2o2_test::eventually([&] { return i2o2_test::run_state(*scheduler_tid) == 'S'; }));

  const int refused_before = i2o2_test::refusing_record::refused.load();
  i2o2_test::refusing_record::refuse_next.store(true);
  CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(i2o2_test::refusing_record::refused.load() == refused_before + 1);  // the window was open
}
