// The early-release detector of DESIGN.md ("Kernel behaviour"): the op's
// buffer is an mmap'd page and its guard's destructor mprotect()s that page
// PROT_NONE. If the guard died before the kernel was done (G2 broken), the
// kernel's copy into the page fails and the op completes with -EFAULT
// instead of its byte count. Sanitizers cannot see this; the kernel can.
//
// The op is kept in flight by parking it on an empty pipe (then the pipe is
// fed) or by linking it behind a timeout; and around the moments a broken
// scheduler would be tempted to let go early: when the op is placed, when
// its reply is dropped, when a linked timeout is attached, and when the
// last handle goes away while it is parked.
//
// To show the detector bites, build this file against a copy of include/
// whose slot_table destroys the guard when the op is placed: every case
// here then fails with -EFAULT (see the report of the task that added it).
//
// Every case runs over all 24 queue x wait x reply combinations
// (tests/any_scheduler.hpp).
#include "any_scheduler.hpp"
#include "proc_support.hpp"
#include "support.hpp"

#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::eventually;
using i2o2_test::run_state;
using i2o2_test::settle;
using i2o2_test::thread_named;

constexpr std::size_t page_size = 4096;

/// One page of private anonymous memory, readable and writable until a
/// revoking_guard dies; unmapped on destruction.
class page {
public:
  page() {
    data_ = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(data_ != MAP_FAILED);
  }
  page(const page&) = delete;
  page& operator=(const page&) = delete;
  ~page() { ::munmap(data_, page_size); }
  char* data() const { return static_cast<char*>(data_); }
  /// Readable again (after the guard revoked it) so the test can look.
  std::string contents(std::size_t count) const {
    REQUIRE(::mprotect(data_, page_size, PROT_READ) == 0);
    return std::string(data(), count);
  }

private:
  void* data_;
};

struct revoke_record {
  std::atomic<int> destroyed{0};
  std::atomic<std::thread::id> destroyer{};
};

/// The detector: when destroyed, makes its page inaccessible. Fits
/// any_guard's inline storage (a pointer and a shared_ptr).
class revoking_guard {
public:
  revoking_guard(const page& target, std::shared_ptr<revoke_record> record) noexcept
      : page_(target.data()), record_(std::move(record)) {}
  revoking_guard(revoking_guard&& other) noexcept
      : page_(std::exchange(other.page_, nullptr)), record_(std::move(other.record_)) {}
  revoking_guard& operator=(revoking_guard&& other) noexcept {
    std::swap(page_, other.page_);
    std::swap(record_, other.record_);
    return *this;
  }
  ~revoking_guard() {
    if (page_ == nullptr) return;
    ::mprotect(page_, page_size, PROT_NONE);
    record_->destroyer.store(std::this_thread::get_id());
    record_->destroyed.fetch_add(1);
  }

private:
  void* page_;
  std::shared_ptr<revoke_record> record_;
};

/// After the op resolved: its guard died exactly once, on the scheduler thread.
void check_released_once(i2o2_test::any_handle& handle, const revoke_record& record) {
  REQUIRE(settle(handle, [&] { return record.destroyed.load() != 0; }));
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(record.destroyed.load() == 1);
  CHECK(record.destroyer.load() != std::this_thread::get_id());
}

// ---- watching the scheduler thread sleep (Linux /proc) -----------------------------------

long voluntary_switches(pid_t tid) {
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(line.find(':') + 1));
  return -1;
}

/// Waits until thread `tid` sleeps (state S) in a sleep that began after
/// it had made more than `after` voluntary context switches; returns the
/// count during that sleep. Read twice around the state so that the count
/// and the state belong to the same sleep.
std::optional<long> sleeping_after(pid_t tid, long after) {
  std::optional<long> seen;
  const bool got = eventually([&] {
    const long before = voluntary_switches(tid);
    const char state = run_state(tid);
    const long again = voluntary_switches(tid);
    if (state == 'S' && before == again && before > after) seen = before;
    return seen.has_value();
  });
  return got ? seen : std::nullopt;
}

}  // namespace

TEST_CASE("early release: a read parked on a pipe into a page its guard revokes completes with "
          "the byte count",
          "[early_release]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("early release parked read");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();

  for (int round = 0; round < 8; ++round) {
    INFO("round " << round);
    page target;
    auto record = std::make_shared<revoke_record>();
    auto read = handle.submit(pipe_read(pipe, target.data(), 6), revoking_guard(target, record));
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked in the kernel
    REQUIRE_FALSE(read.is_ready());
    CHECK(record->destroyed.load() == 0);

    pipe.feed("kernel", 6);
    CHECK(read.wait() == 6);  // -EFAULT: the guard revoked the page before the kernel wrote
    check_released_once(handle, *record);
    CHECK(target.contents(6) == "kernel");
  }
}

TEST_CASE("early release: a read hard-linked behind a timeout reads into the page after the "
          "timeout expired",
          "[early_release][link]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("early release behind a timeout");
  i2o2_test::temp_file file;
  REQUIRE(::pwrite(file.fd(), "behind a timeout", 16, 0) == 16);
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 8});
  auto& handle = scheduler->handle();

  // IORING_OP_TIMEOUT by hand: 20 ms, then the read runs. A timeout ends
  // with -ETIME, which breaks a soft link, hence the hard link.
  const __kernel_timespec wait_a_bit{0, 20'000'000};
  i2o2::prepared_op timeout = i2o2::prepared_op::with_opcode(IORING_OP_TIMEOUT);
  timeout.sqe().fd = -1;
  timeout.sqe().addr = reinterpret_cast<std::uintptr_t>(&wait_a_bit);
  timeout.sqe().len = 1;

  page target;
  auto record = std::make_shared<revoke_record>();
  const std::array<i2o2::prepared_op, 2> chain{
      i2o2::op::raw{.image = timeout},
      i2o2::op::read{.file = file.fd(), .buf = target.data(), .len = 16, .offset = 0}};
  std::vector<i2o2::any_guard> guards;
  guards.emplace_back();
  guards.emplace_back(revoking_guard(target, record));
  auto replies = handle.submit_chain(chain, guards, i2o2::link_kind::hard);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].wait() == -ETIME);
  CHECK(replies[1].wait() == 16);  // -EFAULT: the guard died when the read was placed
  check_released_once(handle, *record);
  CHECK(target.contents(16) == "behind a timeout");
}

TEST_CASE("early release: a parked read with a per-op timeout (a linked timeout behind it) "
          "completes with the byte count",
          "[early_release][timeout]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("early release with linked timeout");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 8});
  auto& handle = scheduler->handle();

  page target;
  auto record = std::make_shared<revoke_record>();
  auto read =
      handle.submit(pipe_read(pipe, target.data(), 5, {.timeout = 60s}), revoking_guard(target, record));
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  REQUIRE_FALSE(read.is_ready());
  CHECK(record->destroyed.load() == 0);
  pipe.feed("timed", 5);
  CHECK(read.wait() == 5);
  check_released_once(handle, *record);
  CHECK(target.contents(5) == "timed");
}

TEST_CASE("early release: a dropped reply leaves the page to the kernel until its CQE",
          "[early_release][G6]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("early release dropped reply");
  i2o2_test::pipe_pair pipe;
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16, .ring_depth = 4});
  auto& handle = scheduler->handle();

  page target;
  auto record = std::make_shared<revoke_record>();
  {
    auto read = handle.submit(pipe_read(pipe, target.data(), 7), revoking_guard(target, record));
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  }  // reply dropped while the read is parked
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
  CHECK(record->destroyed.load() == 0);
  pipe.feed("dropped", 7);
  check_released_once(handle, *record);
  // Had the page been revoked first, the kernel's copy would have failed
  // (and left the bytes in the pipe).
  CHECK(target.contents(7) == "dropped");
}

TEST_CASE("early release: a read parked when the last handle is dropped completes with the "
          "byte count while the scheduler shuts down",
          "[early_release][shutdown]") {
  const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
  CAPTURE(policy);
  i2o2_test::watchdog dog("early release last handle");
  i2o2_test::pipe_pair pipe;
  const std::string name = "i2o2-early";
  // No deadline: shutdown waits for the parked read however long it takes.
  auto scheduler = i2o2_test::spawn_policy(policy, i2o2::config{.queue_capacity = 16,
                                                                 .ring_depth = 4,
                                                                 .thread_name = name,
                                                                 .shutdown_deadline = std::nullopt});
  const auto scheduler_tid = thread_named(name);
  REQUIRE(scheduler_tid.has_value());
  auto handle = scheduler->take_handle();

  page target;
  auto record = std::make_shared<revoke_record>();
  auto read = handle->submit(pipe_read(pipe, target.data(), 8), revoking_guard(target, record));
  REQUIRE(handle->submit(i2o2::op::nop{}).wait() == 0);
  REQUIRE_FALSE(read.is_ready());

  // Where the scheduler sleeps before the close: the sleep the test then
  // waits to see end. A parking scheduler parks after the nop; note that
  // sleep. The spin wait never sleeps while open (its first sleep is the
  // one waiting for the read once closed): note its count of sleeps so far.
  const bool parks = policy.find("/spin/") == std::string::npos;
  const auto before_close = [&]() -> std::optional<long> {
    if (parks) return sleeping_after(*scheduler_tid, -1);
    return voluntary_switches(*scheduler_tid);
  };

  SECTION("last handle dropped") {
    const auto parked = before_close();
    REQUIRE(parked.has_value());
    handle.reset();  // closes the scheduler; the read is still parked
    // Let the scheduler see the close and go back to sleep (now waiting
    // for the read): a scheduler that lets guards go at shutdown has done
    // so by then. Then feed the pipe.
    REQUIRE(sleeping_after(*scheduler_tid, *parked).has_value());
    CHECK_FALSE(read.is_ready());
    CHECK(record->destroyed.load() == 0);
    pipe.feed("shutdown", 8);
    CHECK(read.wait() == 8);  // -EFAULT: the guard went before the read did
    scheduler->join();
  }
  SECTION("explicit stop without a deadline") {
    const auto parked = before_close();
    REQUIRE(parked.has_value());
    auto& stopping = *scheduler;
    std::thread stopper([&stopping] { stopping.stop(std::nullopt); });
    REQUIRE(sleeping_after(*scheduler_tid, *parked).has_value());
    CHECK_FALSE(read.is_ready());
    CHECK(record->destroyed.load() == 0);
    pipe.feed("shutdown", 8);
    CHECK(read.wait() == 8);
    stopper.join();
  }
  // The scheduler thread has exited: the guard went with the read's CQE.
  CHECK(record->destroyed.load() == 1);
  CHECK(target.contents(8) == "shutdown");
}
