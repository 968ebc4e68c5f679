// Policy-specific behaviour the matrix cannot show: creation errors and
// fallbacks of the wait strategies, callbacks when an op never runs, where
// awaitable replies resume, the Asio adaptor, and the queues' layout.
#include "coroutine_support.hpp"
#include "policy_matrix.hpp"

#include <i2o2/asio.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using i2o2_test::detached_task;

/// Undoes kernel_features::pretend_missing when the test ends.
struct pretend_older_kernel {
  pretend_older_kernel(std::uint32_t flags, std::vector<std::uint8_t> opcodes, bool no_sync_msg_ring = false) {
    i2o2::detail::kernel_features::pretend_missing(flags, std::move(opcodes), no_sync_msg_ring);
  }
  ~pretend_older_kernel() { i2o2::detail::kernel_features::stop_pretending(); }
};

template <class Wait>
using scheduler_with = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, Wait, i2o2::reply::future, i2o2::any_guard>;

/// A one-thread executor: coroutines resumed through it run on its thread.
class worker_executor_thread {
public:
  worker_executor_thread() : thread_([this] { serve(); }) {}
  ~worker_executor_thread() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    thread_.join();
  }
  struct executor {
    worker_executor_thread* owner;
    void execute(std::coroutine_handle<> handle) const { owner->post(handle); }
  };
  executor get() { return executor{this}; }
  std::thread::id id() const { return thread_.get_id(); }

private:
  void post(std::coroutine_handle<> handle) {
    {
      std::lock_guard lock(mutex_);
      work_.push_back(handle);
    }
    ready_.notify_one();
  }
  void serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ready_.wait(lock, [this] { return stopping_ || !work_.empty(); });
      if (work_.empty()) return;
      auto handle = work_.front();
      work_.pop_front();
      lock.unlock();
      handle.resume();
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::coroutine_handle<>> work_;
  bool stopping_ = false;
  std::thread thread_;
};

template <class Handle>
detached_task await_on(Handle& handle, worker_executor_thread::executor executor,
                       std::atomic<int>& result, std::atomic<bool>& on_worker, std::thread::id worker) {
  const int value = co_await handle.submit(i2o2::op::nop{}, {}, executor);
  on_worker = std::this_thread::get_id() == worker;
  result = value;
  result.notify_all();
}

/// Where the caller's stack ends: a frame of its own (not inlined) just below it.
[[gnu::noinline]] std::uintptr_t stack_position() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

/// Awaits `rounds` replies that are in already, noting how deep in the stack
/// it goes on after each: a resume nested per await would sink it further.
template <class Handle>
detached_task await_ready_replies(Handle& handle, int rounds, std::uintptr_t& lowest, std::uintptr_t& highest,
                                  int& completed) {
  for (int i = 0; i < rounds; ++i) {
    auto reply = handle.submit(i2o2::op::nop{});
    while (!reply.try_get())
      std::this_thread::yield();
    if (co_await reply != 0) co_return;
    const std::uintptr_t here = stack_position();
    lowest = std::min(lowest, here);
    highest = std::max(highest, here);
    ++completed;
  }
}

/// Like detached_task, but overwrites its frame as it frees it: whatever
/// still reads the frame afterwards reads garbage, not the old values,
/// with or without a sanitizer.
struct scribbling_task {
  struct promise_type {
    static void* operator new(std::size_t size) { return ::operator new(size); }
    static void operator delete(void* frame, std::size_t size) noexcept {
      std::memset(frame, 0xa5, size);
      ::operator delete(frame);
    }
    scribbling_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

/// A one-thread executor whose execute() hands the coroutine to its thread,
/// waits there until the coroutine has run to its end (its frame freed),
/// and only then looks at its own members: an executor object that lived
/// in that frame is gone by then, one execute() was called on a copy of is not.
class hand_over_worker {
public:
  hand_over_worker() : thread_([this] { serve(); }) {}
  hand_over_worker(const hand_over_worker&) = delete;
  hand_over_worker& operator=(const hand_over_worker&) = delete;
  ~hand_over_worker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    thread_.join();
  }

  struct executor {
    hand_over_worker* owner;
    void execute(std::coroutine_handle<> handle) const noexcept {
      hand_over_worker* const expected = owner;
      expected->run_to_end(handle);
      // Read again, through volatile so that it is not taken from `expected`.
      hand_over_worker* const now = *static_cast<hand_over_worker* const volatile*>(&owner);
      if (now == expected) expected->intact_.fetch_add(1);
      expected->executed_.fetch_add(1);  // last: the test reads `intact` after this
    }
  };
  executor get() { return executor{this}; }

  /// execute() calls that have returned.
  int executed() const { return executed_.load(); }
  /// ... of which found their executor object intact after the frame was freed.
  int intact() const { return intact_.load(); }

private:
  void run_to_end(std::coroutine_handle<> handle) noexcept {
    std::unique_lock lock(mutex_);
    work_ = handle;
    const int target = finished_ + 1;
    ready_.notify_all();
    ready_.wait(lock, [&] { return finished_ == target; });
  }
  void serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ready_.wait(lock, [this] { return stopping_ || work_; });
      if (!work_) return;
      const auto handle = std::exchange(work_, nullptr);
      lock.unlock();
      handle.resume();  // runs to the end: final_suspend never suspends, the frame is freed here
      lock.lock();
      ++finished_;
      ready_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::coroutine_handle<> work_;
  int finished_ = 0;
  bool stopping_ = false;
  std::atomic<int> executed_{0};
  std::atomic<int> intact_{0};
  std::thread thread_;
};

/// Awaits `reply` (its executor a hand_over_worker's), then frees the frame
/// on the worker thread.
template <class Reply>
scribbling_task await_then_end(Reply reply, std::atomic<int>& result) {
  result = co_await reply;
}

/// A coroutine the test destroys while it is suspended: it starts at once
/// and stops at its end rather than freeing itself, and its frame is
/// scribbled over when freed (as scribbling_task's), so that resuming it
/// or reading it later fails with or without a sanitizer.
struct destroyable_task {
  struct promise_type {
    static void* operator new(std::size_t size) { return ::operator new(size); }
    static void operator delete(void* frame, std::size_t size) noexcept {
      std::memset(frame, 0xa5, size);
      ::operator delete(frame);
    }
    destroyable_task get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> frame;
};

/// What happened to a destroyable_task's frame: whether the coroutine went
/// on past its co_await, and how often its locals were destroyed.
struct frame_record {
  std::atomic<int> resumed{0};
  std::atomic<int> destroyed{0};
};

/// A local of the coroutine: its destructor runs when the frame is destroyed.
struct frame_sentinel {
  frame_record& record;
  ~frame_sentinel() { record.destroyed.fetch_add(1); }
};

/// An executor that counts its execute() calls and resumes inline: a call
/// made through the object the awaiter kept in a freed (scribbled) frame
/// counts into nowhere, or faults.
struct counting_executor {
  std::atomic<int>* calls;
  void execute(std::coroutine_handle<> handle) const noexcept {
    calls->fetch_add(1);
    handle.resume();
  }
};

/// co_awaits a read of 4 bytes from `pipe` into `buffer`, its guard
/// recording into `guard`; `reply_args`: the executor of an awaitable reply.
template <class Handle, class... ReplyArgs>
destroyable_task await_parked_read(Handle& handle, const i2o2_test::pipe_pair& pipe, char* buffer,
                                   std::shared_ptr<i2o2_test::guard_record> guard, frame_record& record,
                                   ReplyArgs... reply_args) {
  frame_sentinel sentinel{record};
  co_await handle.submit(i2o2_test::pipe_read(pipe, buffer, 4), i2o2_test::counting_guard(std::move(guard)),
                         reply_args...);
  record.resumed.fetch_add(1);
}

/// Destroys a coroutine suspended on a read parked on an empty pipe, then
/// feeds the pipe: the op completes, its guard dies once, and the
/// completion leaves the destroyed frame alone.
template <class Scheduler, class... ReplyArgs>
void destroy_suspended_then_complete(ReplyArgs... reply_args) {
  i2o2_test::pipe_pair pipe;
  char buffer[4] = {};
  auto guard = std::make_shared<i2o2_test::guard_record>();
  frame_record record;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<Scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  const destroyable_task task = await_parked_read(handle, pipe, buffer, guard, record, reply_args...);
  // The read is parked on the empty pipe: the coroutine has suspended.
  REQUIRE_FALSE(task.frame.done());
  task.frame.destroy();  // a cancelled task: its frame goes, and the reply in it
  CHECK(record.destroyed == 1);
  CHECK(record.resumed == 0);
  CHECK(guard->destroyed == 0);  // G6: dropping the reply released nothing early
  pipe.feed("abcd", 4);
  // The guard dies on the scheduler thread just after the reply's
  // completion has returned (G2): the completion is over once it has.
  REQUIRE(i2o2_test::eventually([&] { return guard->destroyed.load() == 1; }));
  CHECK(std::memcmp(buffer, "abcd", 4) == 0);  // the op ran to its end
  CHECK(i2o2_test::bytes_left_in(pipe) == 0);
  CHECK(record.resumed == 0);
  CHECK(record.destroyed == 1);
  CHECK(guard->destroyed == 1);
}

/// What an Asio completion handler saw: how often it ran, with what.
struct asio_completions {
  int calls = 0;
  int seen = std::numeric_limits<int>::min();  // no result yet
};

/// async_submit of `op` with a handler that runs on `io`, listens to
/// `signal`'s slot and records into `into`.
template <class Op>
void submit_listening(i2o2::asio_scheduler::handle_type& handle, Op op, boost::asio::io_context& io,
                      boost::asio::cancellation_signal& signal, asio_completions& into) {
  namespace asio = boost::asio;
  i2o2::async_submit(handle, std::move(op),
                     asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, [&into](int result) {
                                                    ++into.calls;
                                                    into.seen = result;
                                                  })));
}

} // namespace

TEST_CASE("wait::futex needs Linux 6.7 and says so on older kernels", "[policies]") {
  pretend_older_kernel older(0, {i2o2::compat::op_futex_wait});
  try {
    scheduler_with<i2o2::wait::futex> scheduler;
    FAIL("a futex wait scheduler was created on a kernel without IORING_OP_FUTEX_WAIT");
  } catch (const std::system_error& error) {
    CHECK_THAT(error.what(), Catch::Contains("6.7"));
    CHECK_THAT(error.what(), Catch::Contains("FUTEX_WAIT"));
  }
}

TEST_CASE("wait::msg_ring needs Linux 5.18 and says so on older kernels", "[policies]") {
  pretend_older_kernel older(0, {i2o2::compat::op_msg_ring}, true);
  CHECK_THROWS_WITH(scheduler_with<i2o2::wait::msg_ring>(), Catch::Contains("5.18"));
}

TEST_CASE("wait::msg_ring falls back to a waker ring before Linux 6.13", "[policies]") {
  i2o2_test::watchdog dog("msg_ring fallback");
  pretend_older_kernel older(0, {}, true);
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<scheduler_with<i2o2::wait::msg_ring>>({.ring_depth = 4});
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  CHECK(owner.scheduler().settings().ring_depth == 4);
  int ok = 0;
  for (int i = 0; i < 2000; ++i) ok += handle.submit(i2o2::op::nop{}).wait() == 0 ? 1 : 0;
  CHECK(ok == 2000);
}

TEST_CASE("the sync msg_ring form is used where the kernel has it", "[policies]") {
  if (!i2o2::detail::kernel_features::get().has_sync_msg_ring()) {
    WARN("SKIP: this kernel lacks IORING_REGISTER_SEND_MSG_RING (Linux 6.13)");
    return;
  }
  i2o2::wait::msg_ring wait;
  CHECK_FALSE(wait.uses_fallback());
}

TEST_CASE("a callback reply runs exactly once with scheduler_closed when its op is refused", "[policies]") {
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  owner.stop();
  int calls = 0;
  int result = 0;
  CHECK_THROWS_AS(handle.submit(i2o2::op::nop{}, {}, [&](int r) noexcept { ++calls, result = r; }),
                  i2o2::scheduler_closed);
  CHECK(calls == 1);
  CHECK(result == i2o2::result_of(i2o2::errc::scheduler_closed));
}

TEMPLATE_TEST_CASE("a callback the scheduler runs while it pulls (a control request's reply) can submit more",
                   "[policies]", i2o2::queue::mpsc_ring, i2o2::queue::mutex_ring) {
  i2o2_test::watchdog dog("submit from a control reply's callback");
  using scheduler = i2o2::basic_scheduler<TestType, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  auto running = i2o2::spawn_scheduler<scheduler>({.registered_files = 1});
  auto& handle = running.handle;
  i2o2_test::pipe_pair pipe;
  std::atomic<int> registered{-1};
  std::atomic<int> inner{1};
  // A register runs, and resolves, in the middle of taking the queue; its
  // callback submits from the scheduler thread into that same queue (a
  // mutex_ring that held its lock across the whole batch deadlocked here).
  handle.register_file(pipe.read_end(), {}, [&](int index) noexcept {
    registered.store(index);
    handle.submit(i2o2::op::nop{}, {}, [&](int result) noexcept { inner.store(result); });
  });
  REQUIRE(i2o2_test::eventually([&] { return inner.load() != 1; }));
  CHECK(registered.load() == 0);
  CHECK(inner.load() == 0);
}

TEST_CASE("callback batches take one callable per op: each runs once with its op's result, and a count "
          "that does not match the ops throws and sends nothing",
          "[policies]") {
  i2o2_test::watchdog dog("callback batches");
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::callback<>, void>;
  auto running = i2o2::spawn_scheduler<scheduler>();
  auto& handle = running.handle;
  struct outcome {
    std::atomic<int> calls{0};
    std::atomic<int> result{0};
  };
  std::array<outcome, 3> outcomes;
  struct record {
    outcome* into;
    void operator()(int result) const noexcept {
      into->result.store(result);
      into->calls.fetch_add(1);  // after the result: the test reads calls first
    }
  };
  i2o2_test::temp_file file;
  const std::vector<i2o2::prepared_op> ops{
      i2o2::op::write{.file = file.fd(), .buf = "abcd", .len = 4, .offset = 0},
      i2o2::op::fsync{.file = file.fd()}, i2o2::op::nop{}};

  // Refused: they would write past the end and run callbacks a second time.
  const std::vector<i2o2::prepared_op> refused{i2o2::op::write{.file = file.fd(), .buf = "zzzz", .len = 4, .offset = 100},
                                               i2o2::op::nop{}, i2o2::op::nop{}};
  std::vector<record> too_few{record{&outcomes[0]}, record{&outcomes[1]}};
  CHECK_THROWS_AS(handle.submit_many(refused, {}, too_few), std::invalid_argument);
  CHECK_THROWS_AS(handle.submit_chain(refused, {}, i2o2::link_kind::soft, too_few), std::invalid_argument);

  std::vector<record> callbacks{record{&outcomes[0]}, record{&outcomes[1]}, record{&outcomes[2]}};
  const auto submitted = handle.submit_chain(ops, {}, i2o2::link_kind::soft, callbacks);
  CHECK(submitted.size() == 3);
  for (const auto& done : outcomes) REQUIRE(i2o2_test::eventually([&] { return done.calls.load() != 0; }));
  CHECK(outcomes[0].result.load() == 4);
  CHECK(outcomes[1].result.load() == 0);
  CHECK(outcomes[2].result.load() == 0);
  // Nothing of the refused batches was sent, and none of their callbacks ran.
  CHECK(i2o2_test::size_of(file.fd()) == 4);
  for (const auto& done : outcomes) CHECK(done.calls.load() == 1);
}

TEST_CASE("an awaitable reply resumes its coroutine on the executor it names", "[policies]") {
  i2o2_test::watchdog dog("awaitable executor");
  using executor = worker_executor_thread::executor;
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
                                          i2o2::reply::awaitable<executor>, i2o2::any_guard>;
  worker_executor_thread worker;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  std::atomic<int> result{1};
  std::atomic<bool> on_worker{false};
  await_on(handle, worker.get(), result, on_worker, worker.id());
  while (result.load() == 1) result.wait(1);
  CHECK(result == 0);
  CHECK(on_worker);
}

TEST_CASE("co_await of an inline-executor reply that is in already goes on without nesting a stack frame",
          "[policies]") {
  i2o2_test::watchdog dog("awaits of ready replies");
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
                                          i2o2::reply::awaitable<>, i2o2::any_guard>;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  constexpr int rounds = 4000;
  std::uintptr_t lowest = std::numeric_limits<std::uintptr_t>::max();
  std::uintptr_t highest = 0;
  int completed = 0;
  // Every reply is in when awaited, so the coroutine never waits: it has
  // run to its end on this thread when the call returns.
  await_ready_replies(handle, rounds, lowest, highest, completed);
  REQUIRE(completed == rounds);
  // Resumed from inside each await, it sank by a few hundred bytes a round.
  CHECK(highest - lowest < 64 * 1024);
}

TEST_CASE("an awaitable reply's executor is not touched once it hands on the coroutine, which may free the "
          "frame",
          "[policies]") {
  i2o2_test::watchdog dog("executor outliving the frame");
  using executor = hand_over_worker::executor;
  using scheduler = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
                                          i2o2::reply::awaitable<executor>, i2o2::any_guard>;
  hand_over_worker worker;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;

  SECTION("the result comes in after the coroutine suspended: execute() runs on the scheduler thread") {
    i2o2_test::pipe_pair pipe;
    char buffer[4] = {};
    std::atomic<int> result{-1};
    auto reply = handle.submit(i2o2_test::pipe_read(pipe, buffer, sizeof(buffer)), {}, worker.get());
    await_then_end(std::move(reply), result);
    // The read is parked on the empty pipe: the coroutine has suspended.
    CHECK(worker.executed() == 0);
    CHECK(result == -1);
    pipe.feed("abcd", 4);
    REQUIRE(i2o2_test::eventually([&] { return worker.executed() == 1; }));
    CHECK(result == 4);
    CHECK(worker.intact() == 1);
  }
  SECTION("the result is in when awaited: execute() runs on the awaiting thread") {
    auto reply = handle.submit(i2o2::op::nop{}, {}, worker.get());
    while (!reply.try_get())
      std::this_thread::yield();
    std::atomic<int> result{-1};
    await_then_end(std::move(reply), result);
    // execute() waited here until the worker had run the coroutine to its end.
    CHECK(worker.executed() == 1);
    CHECK(result == 0);
    CHECK(worker.intact() == 1);
  }
}

TEST_CASE("a coroutine destroyed while it awaits a parked op is not resumed when the op completes (G6)",
          "[policies][co_await]") {
  i2o2_test::watchdog dog("destroyed awaiting coroutine");
  SECTION("co_await of a future reply") {
    destroy_suspended_then_complete<scheduler_with<i2o2::wait::eventfd>>();
  }
  SECTION("an awaitable reply resumed inline") {
    destroy_suspended_then_complete<i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
                                                          i2o2::reply::awaitable<>, i2o2::any_guard>>();
  }
  SECTION("an awaitable reply resumed through an executor: the executor is not called") {
    std::atomic<int> calls{0};
    destroy_suspended_then_complete<
        i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
                              i2o2::reply::awaitable<counting_executor>, i2o2::any_guard>>(
        counting_executor{&calls});
    CHECK(calls == 0);
  }
}

TEST_CASE("async_submit completes plain callbacks, use_future and use_awaitable", "[policies][asio]") {
  i2o2_test::watchdog dog("asio adaptor");
  namespace asio = boost::asio;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  asio::io_context io;

  int callback_result = 1;
  std::thread::id callback_thread;
  i2o2::async_submit(handle, i2o2::op::nop{}, asio::bind_executor(io, [&](int result) {
                       callback_result = result;
                       callback_thread = std::this_thread::get_id();
                     }));
  io.run();  // the op counts as work: run() returns after the callback
  CHECK(callback_result == 0);
  CHECK(callback_thread == std::this_thread::get_id());

  auto future = i2o2::async_submit(handle, i2o2::op::nop{}, asio::use_future);
  CHECK(future.get() == 0);

  io.restart();
  auto awaited = asio::co_spawn(
      io, [&]() -> asio::awaitable<int> { co_return co_await i2o2::async_submit(handle, i2o2::op::nop{}, asio::use_awaitable); },
      asio::use_future);
  io.run();
  CHECK(awaited.get() == 0);
}

TEST_CASE("async_submit after shutdown completes once with scheduler_closed and throws nothing",
          "[policies][asio]") {
  i2o2_test::watchdog dog("asio after shutdown");
  namespace asio = boost::asio;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  auto& owner = running.owner;
  auto& handle = running.handle;
  owner.stop();
  asio::io_context io;
  const int closed = i2o2::result_of(i2o2::errc::scheduler_closed);

  int calls = 0;
  int callback_result = 0;
  CHECK_NOTHROW(i2o2::async_submit(handle, i2o2::op::nop{}, asio::bind_executor(io, [&](int result) {
                                     ++calls;
                                     callback_result = result;
                                   })));
  io.run();
  CHECK(calls == 1);
  CHECK(callback_result == closed);

  // A throw out of the initiation would escape the coroutine.
  io.restart();
  auto awaited = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<int> {
        co_return co_await i2o2::async_submit(handle, i2o2::op::nop{}, asio::use_awaitable);
      },
      asio::use_future);
  io.run();
  CHECK(awaited.get() == closed);
}

TEST_CASE("async_submit: a cancellation signal cancels a parked read; it completes once with -ECANCELED",
          "[policies][asio][cancel]") {
  i2o2_test::watchdog dog("asio cancellation signal", std::chrono::seconds(30));
  namespace asio = boost::asio;
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  asio::io_context io;

  // An op that cancels has no side effects, so every type is honoured.
  for (const auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                          asio::cancellation_type::total}) {
    INFO("cancellation type " << static_cast<unsigned>(type));
    asio::cancellation_signal signal;
    char buffer[1] = {};
    asio_completions read;
    // The pipe is never fed before the emit: the read only ends if cancelled.
    submit_listening(handle, i2o2_test::pipe_read(pipe, buffer, 1), io, signal, read);
    CHECK(signal.slot().has_handler());  // the op listens while in flight
    signal.emit(type);
    io.restart();
    io.run();  // the op is work: run() returns once its handler ran, or never
    CHECK(read.calls == 1);
    CHECK(read.seen == -ECANCELED);
    CHECK_FALSE(signal.slot().has_handler());  // emptied before the handler ran
    pipe.feed("x", 1);
    CHECK(i2o2_test::bytes_left_in(pipe) == 1);  // the cancelled read took nothing
  }
}

TEST_CASE("async_submit: a parked read raced against a timer with awaitable operators || ends when the timer "
          "fires",
          "[policies][asio][cancel]") {
  i2o2_test::watchdog dog("asio read || timer", std::chrono::seconds(30));
  namespace asio = boost::asio;
  using namespace asio::experimental::awaitable_operators;
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  asio::io_context io;

  char buffer[1] = {};
  // The pipe is never fed: the timer wins, and || then waits for the read
  // to end, which it does only if the cancellation reaches it.
  auto winner = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<std::size_t> {
        asio::steady_timer timer(io, std::chrono::milliseconds(1));
        const auto first = co_await (
            i2o2::async_submit(handle, i2o2_test::pipe_read(pipe, buffer, 1), asio::use_awaitable) ||
            timer.async_wait(asio::use_awaitable));
        co_return first.index();
      },
      asio::use_future);
  io.run();
  CHECK(winner.get() == 1);  // the timer's
  pipe.feed("x", 1);
  CHECK(i2o2_test::bytes_left_in(pipe) == 1);  // the cancelled read took nothing
}

TEST_CASE("async_submit: a cancellation signal after the op completed changes nothing",
          "[policies][asio][cancel]") {
  i2o2_test::watchdog dog("asio cancellation after completion", std::chrono::seconds(30));
  namespace asio = boost::asio;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  [[maybe_unused]] auto& owner = running.owner;
  auto& handle = running.handle;
  asio::io_context io;
  asio::cancellation_signal signal;

  asio_completions nop;
  submit_listening(handle, i2o2::op::nop{}, io, signal, nop);
  CHECK(signal.slot().has_handler());  // listening until the handler runs
  // A nop sent after it completes after it: once its callback ran, the
  // first nop is done and its handler posted, but io has not run it yet.
  std::atomic<bool> later_done{false};
  handle.submit(i2o2::op::nop{}, {}, [&later_done](int) noexcept { later_done = true; });
  REQUIRE(i2o2_test::eventually([&] { return later_done.load(); }));
  signal.emit(asio::cancellation_type::terminal);  // its cancel finds nothing
  io.run();
  CHECK(nop.calls == 1);
  CHECK(nop.seen == 0);  // the nop's own result
  CHECK_FALSE(signal.slot().has_handler());
  signal.emit(asio::cancellation_type::terminal);  // nothing listens any more
  io.restart();
  io.run();
  CHECK(nop.calls == 1);
}

TEST_CASE("async_submit: a cancellation signal while the scheduler shuts down throws nothing; the op ends by "
          "itself",
          "[policies][asio][cancel]") {
  i2o2_test::watchdog dog("asio cancellation while closing", std::chrono::seconds(30));
  namespace asio = boost::asio;
  i2o2_test::pipe_pair pipe;
  // Named members, not a structured binding: clang 14 lambdas cannot capture those.
  auto running = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  auto& owner = running.owner;
  auto& handle = running.handle;
  asio::io_context io;
  asio::cancellation_signal signal;

  char buffer[1] = {};
  asio_completions read;
  submit_listening(handle, i2o2_test::pipe_read(pipe, buffer, 1), io, signal, read);
  owner.scheduler().request_stop(std::nullopt);  // closed, waiting for the read without a deadline
  REQUIRE(handle.closed());
  CHECK_NOTHROW(signal.emit(asio::cancellation_type::terminal));  // its cancel is refused
  pipe.feed("x", 1);
  io.run();
  CHECK(read.calls == 1);
  CHECK(read.seen == 1);  // the read's own result
  CHECK(buffer[0] == 'x');
}

TEST_CASE("a scheduler_thread destroyed on its own thread stops the scheduler instead of joining itself, and "
          "stop() there throws std::logic_error",
          "[policies]") {
  i2o2_test::watchdog dog("owner destroyed on its scheduler thread");
  std::optional<i2o2::scheduler_thread<i2o2::asio_scheduler>> owner;
  owner.emplace(i2o2::config{});
  auto handle = owner->handle();  // kept: it outlives the owner
  struct outcome {
    std::optional<i2o2::scheduler_thread<i2o2::asio_scheduler>>* owner;
    std::atomic<int> result{1};
    std::atomic<bool> logic_error{false};
    std::atomic<bool> other_error{false};
    std::atomic<bool> done{false};
  } seen{&owner};
  // The callback runs on the scheduler thread; what it throws cannot leave it (noexcept).
  handle.submit(i2o2::op::nop{}, {}, [seen = &seen](int result) noexcept {
    seen->result = result;
    try {
      (*seen->owner)->stop();
    } catch (const std::logic_error&) {
      seen->logic_error = true;
    } catch (...) {
      seen->other_error = true;
    }
    seen->owner->reset();  // would join this very thread
    seen->done = true;
  });
  REQUIRE(i2o2_test::eventually([&] { return seen.done.load(); }));
  CHECK(seen.result == 0);
  CHECK(seen.logic_error);
  CHECK_FALSE(seen.other_error);
  CHECK(i2o2_test::eventually([&] { return handle.closed(); }));
  int refused = 0;
  CHECK_THROWS_AS(handle.submit(i2o2::op::nop{}, {}, [&refused](int result) noexcept { refused = result; }),
                  i2o2::scheduler_closed);
  CHECK(refused == i2o2::result_of(i2o2::errc::scheduler_closed));
}

TEST_CASE("each queue keeps what producers and the consumer write on separate lines", "[policies]") {
  // The layouts themselves are static_asserts in queue/mpsc_ring.hpp and
  // queue/mutex_ring.hpp; this
  // checks the queue objects are cache-line aligned as placed in memory.
  i2o2::mpsc_ring_queue<int> lock_free(8);
  CHECK(reinterpret_cast<std::uintptr_t>(&lock_free) % 64 == 0);
  i2o2::mutex_ring_queue<int> locked(8);
  CHECK(reinterpret_cast<std::uintptr_t>(&locked) % 64 == 0);
}

TEST_CASE("future_reply::wait_for with a timeout beyond the clock's range waits for the result",
          "[policies][future]") {
  using namespace std::chrono_literals;
  i2o2_test::watchdog dog("wait_for saturates");
  i2o2_test::pipe_pair pipe;
  auto running = i2o2::spawn();
  auto& handle = running.handle;
  // Reads that end by their own 20 ms timeout: -ECANCELED, never early.
  const auto timed_read = [&](char* sink) {
    return handle.submit(i2o2_test::pipe_read(pipe, sink, 1, {.timeout = 20ms}));
  };
  std::array<char, 4> sinks{};
  // Each of these overflowed now + timeout into the past: "timed out" at once.
  CHECK(timed_read(&sinks[0]).wait_for(std::chrono::hours::max()) == std::optional<int>(-ECANCELED));
  CHECK(timed_read(&sinks[1]).wait_for(std::chrono::years(1000)) == std::optional<int>(-ECANCELED));
  CHECK(timed_read(&sinks[2]).wait_for(std::chrono::seconds(INT64_MAX / 1000)) ==
        std::optional<int>(-ECANCELED));
  // A timeout already over returns at once, empty while the op runs.
  auto parked = timed_read(&sinks[3]);
  CHECK_FALSE(parked.wait_for(-1s).has_value());
  CHECK(parked.wait() == -ECANCELED);
}
