// Fuzz target: a byte string decodes into a scheduler type, a small config
// and a sequence of ops run against the real kernel on one scheduler of that
// type (i2o2::spawn_scheduler), from one client thread. The scheduler types
// are every queue x wait combination with the future reply (the records
// below keep future_replys) and the default's guard; see `choose` for how an
// input picks one. The guarantees of DESIGN.md are the oracles:
//  G1  every guard is destroyed exactly once (a counting guard);
//  G2  never while its op's reply is unresolved, and never before the kernel
//      is done: one parked pipe read goes into an mmap'd page whose guard
//      revokes the page (PROT_NONE) when it dies, so an early release makes
//      the read fail with -EFAULT;
//  G3  an unsupported opcode resolves at once with errc::unsupported_op;
//  G5/R1 every reply resolves (bounded wait: a hang is a finding), with the
//      predicted result; after stop every guard is gone;
//  G6  dropping a reply frees nothing early: a read parked on an empty pipe
//      is marked in_kernel until the pipe is fed or the read cancelled, and
//      its guard may not die while the mark stands, reply kept or not;
//  G5  some runs stop with no deadline while reads are parked and only then
//      feed them: each must complete with what it read, never -ECANCELED.
// Each op is predictable because reads parked on a pipe are waited for
// (through their guard) as soon as the pipe is fed.
#include "fuzz_common.hpp"

#include <i2o2/i2o2.hpp>
#include <i2o2/queue/mutex_ring.hpp>
#include <i2o2/wait/futex.hpp>
#include <i2o2/wait/msg_ring.hpp>
#include <i2o2/wait/spin.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Under ci/fuzz's -timeout=10, so that a hang is reported by the oracle
// that names it rather than by libFuzzer's timeout.
constexpr auto resolve_bound = 5s;
constexpr long long resolve_bound_s = std::chrono::duration_cast<std::chrono::seconds>(resolve_bound).count();
// chain() writes past write_read_back's offsets ([0, 2^16 + 64)) and never
// waits for its write, so the two never overlap.
constexpr std::uint64_t chain_offset_base = 1U << 17;
constexpr std::size_t page_size = 4096;

/// The scheduler types an input can choose from.
template <class Queue, class Wait>
using future_scheduler = i2o2::basic_scheduler<Queue, Wait, i2o2::reply::future, i2o2::any_guard>;
static_assert(
    std::is_same_v<future_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd>, i2o2::default_scheduler>,
    "choice 0 must be the default scheduler: inputs that choose nothing run on it");

/// Whether this kernel lacks what wait strategy `Wait` needs beyond the
/// ring itself (futex: IORING_OP_FUTEX_WAIT, Linux 6.7; msg_ring:
/// IORING_OP_MSG_RING, 5.18): the same tests their constructors make.
/// Inputs that choose it are skipped then; any spawn failure on a kernel
/// that has it is a finding, as it always was for the default.
template <class Wait>
bool kernel_lacks() {
  const auto& kernel = i2o2::detail::kernel_features::get();
  if constexpr (std::is_same_v<Wait, i2o2::wait::futex>)
    return !kernel.has_opcode(i2o2::compat::op_futex_wait);
  else if constexpr (std::is_same_v<Wait, i2o2::wait::msg_ring>)
    return !kernel.has_sync_msg_ring() && !kernel.has_opcode(i2o2::compat::op_msg_ring);
  else
    return false;
}

/// What the fuzzer knows about one submitted op.
struct op_record {
  std::atomic<int> destroyed{0};
  /// Set once submit returned and the reply is stored; read by the guard.
  std::atomic<const i2o2::future_reply*> published{nullptr};
  std::optional<i2o2::future_reply> reply;
  std::optional<int> expected;  ///< the predicted result, if predictable now
  bool cancel_ok = false;       ///< unresolved at stop: the 5 ms deadline may cancel it
  /// Parked on an empty pipe: nothing can complete the op until the
  /// fuzzer feeds the pipe or sends a cancel (it clears this first), so its
  /// guard dying meanwhile is an early release (G6, G5).
  std::atomic<bool> in_kernel{false};
  const char* what = "op";
  std::array<char, 64> buffer{};
};

/// Counts its destruction in its record; when it holds the page, revokes it.
class counting_guard {
public:
  counting_guard(op_record* record, void* page) noexcept : record_(record), page_(page) {}
  counting_guard(counting_guard&& other) noexcept
      : record_(std::exchange(other.record_, nullptr)), page_(std::exchange(other.page_, nullptr)) {}
  counting_guard& operator=(counting_guard&& other) noexcept {
    std::swap(record_, other.record_);
    std::swap(page_, other.page_);
    return *this;
  }
  ~counting_guard() {
    if (record_ == nullptr) return;
    const auto* reply = record_->published.load(std::memory_order_acquire);
    if (reply != nullptr && !reply->is_ready())
      fuzz_fail("G2: the guard of a %s was destroyed before its reply resolved", record_->what);
    if (record_->in_kernel.load(std::memory_order_acquire))
      fuzz_fail("G6/G5: the guard of a %s (reply %s) was destroyed while the op was parked on an empty pipe, "
                "neither fed nor cancelled",
                record_->what, reply != nullptr ? "kept" : "dropped");
    if (page_ != nullptr) ::mprotect(page_, page_size, PROT_NONE);
    if (record_->destroyed.fetch_add(1, std::memory_order_acq_rel) != 0)
      fuzz_fail("G1: the guard of a %s was destroyed twice", record_->what);
  }

private:
  op_record* record_;
  void* page_;
};

char* detector_page() {
  static void* page = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) fuzz_fail("mmap failed: %s", std::strerror(errno));
  return static_cast<char*>(page);
}

int temp_file() {
  static int fd = [] {
    char path[] = "/tmp/i2o2-fuzz-XXXXXX";
    const int created = ::mkstemp(path);
    if (created < 0) fuzz_fail("mkstemp failed: %s", std::strerror(errno));
    ::unlink(path);
    return created;
  }();
  return fd;
}

/// I2O2_FUZZ_TRACE=1: print the decoded config and steps (for reproducers).
bool trace() {
  static const bool enabled = std::getenv("I2O2_FUZZ_TRACE") != nullptr;
  return enabled;
}

bool wait_destroyed(const op_record& record) {
  const auto deadline = std::chrono::steady_clock::now() + resolve_bound;
  while (record.destroyed.load(std::memory_order_acquire) == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50us);
  }
  return true;
}

int wait_reply(const i2o2::future_reply& reply, const char* what) {
  const auto result = reply.wait_for(resolve_bound);
  if (!result) fuzz_fail("R1: a %s did not resolve within %lld s", what, resolve_bound_s);
  return *result;
}

struct pipe_state {
  int read_end = -1;
  int write_end = -1;
  std::deque<char> buffered;    ///< bytes fed and not read yet
  op_record* parked = nullptr;  ///< the read waiting on the pipe, if any
  std::uint32_t parked_len = 0;
  bool parked_on_page = false;
};

template <class Queue, class Wait>
class run {
  using scheduler = future_scheduler<Queue, Wait>;
  using handle_type = typename scheduler::handle_type;
  using owner_type = i2o2::scheduler_thread<scheduler>;
  static_assert(std::is_same_v<typename scheduler::reply_type, i2o2::future_reply>);

public:
  run(FuzzedDataProvider& input, const char* name) : input_(input), name_(name) {}
  run(const run&) = delete;
  run& operator=(const run&) = delete;
  ~run() {
    for (auto* p : {&pipes_[0], &pipes_[1], &crowd_}) {
      if (p->read_end >= 0) ::close(p->read_end);
      if (p->write_end >= 0) ::close(p->write_end);
    }
  }

  void go() {
    const i2o2::config cfg = decode_config();
    open_pipes();
    auto spawned = spawn(cfg);
    if (!spawned) return;
    play(spawned->owner, spawned->handle);
    // The (stopped) owner and the handle go before the final check.
    spawned.reset();
    check_all();
  }

private:
  i2o2::config decode_config() {
    i2o2::config cfg;
    cfg.ring_depth = 1U << input_.ConsumeIntegralInRange<unsigned>(0, 4);
    cfg.queue_capacity = input_.ConsumeIntegralInRange<std::uint32_t>(1, 64);
    cfg.idle_spin = std::chrono::microseconds(input_.ConsumeBool() ? 0 : 10);
    // The busy spin on or off, derived (as the budget below) so that the
    // corpus keeps its meaning: off parks at once between ops.
    cfg.busy_spin = cfg.queue_capacity % 3 == 0 ? std::chrono::microseconds(0) : i2o2::config{}.busy_spin;
    cfg.shutdown_deadline = 2s;
    // The submit budget: none, one op per enter (1 ns), the default, or
    // every op at once. Derived rather than read from the input, so the
    // corpus keeps its meaning.
    const std::chrono::nanoseconds budgets[] = {0ns, 1ns, i2o2::config{}.submit_budget, 1h};
    cfg.submit_budget = budgets[cfg.queue_capacity % 4];
    ring_depth_ = cfg.ring_depth;
    // A chain of 2 is one queue message of 2: mpsc_ring rounds its
    // capacity up to at least 2, mutex_ring keeps it exact.
    queue_takes_chain_ = !std::is_same_v<Queue, i2o2::queue::mutex_ring> || cfg.queue_capacity >= 2;
    if (trace())
      std::fprintf(
          stderr, "op_sequence: scheduler %s, ring_depth %u, queue_capacity %u, submit_budget %lld ns\n",
          name_, cfg.ring_depth, cfg.queue_capacity, static_cast<long long>(cfg.submit_budget.count()));
    return cfg;
  }

  void open_pipes() {
    for (auto* p : {&pipes_[0], &pipes_[1], &crowd_}) {
      int fds[2];
      if (::pipe(fds) != 0) fuzz_fail("pipe failed: %s", std::strerror(errno));
      p->read_end = fds[0];
      p->write_end = fds[1];
    }
  }

  /// The running scheduler, or nothing when this kernel lacks what its
  /// wait strategy needs (said once per process, so a skipped type is seen).
  std::optional<i2o2::spawned<scheduler>> spawn(const i2o2::config& cfg) {
    if (kernel_lacks<Wait>()) {
      static bool said = false;
      if (!std::exchange(said, true))
        std::fprintf(stderr, "op_sequence: skipping inputs that choose %s: this kernel lacks its opcode\n",
                     name_);
      return std::nullopt;
    }
    return i2o2::spawn_scheduler<scheduler>(cfg);
  }

  void play(owner_type& owner, handle_type& handle) {
    const int ops = input_.ConsumeIntegralInRange(0, 64);
    // Derived, so the corpus keeps its meaning: whether a run that feeds
    // its parked reads at the end stops first, with no deadline.
    stop_before_feeding_ = ops % 2 == 1;
    for (int i = 0; i < ops && input_.remaining_bytes() > 0; ++i)
      step(handle);
    finish(owner, handle);
  }

  op_record& record(const char* what) {
    auto& r = records_.emplace_back();
    r.what = what;
    return r;
  }
  static void publish(op_record& r, i2o2::future_reply reply) {
    r.reply.emplace(std::move(reply));
    r.published.store(&*r.reply, std::memory_order_release);
  }
  static void expect_now(op_record& r, int expected) {
    const int got = wait_reply(*r.reply, r.what);
    if (got != expected) fuzz_fail("%s resolved with %d, expected %d", r.what, got, expected);
  }

  void step(handle_type& handle) {
    const int kind = input_.ConsumeIntegralInRange(0, 9);
    if (trace()) std::fprintf(stderr, "op_sequence: step %d\n", kind);
    switch (kind) {
    case 0: {  // guarded nop, reply kept and checked at the end
      auto& r = record("guarded nop");
      r.expected = 0;
      publish(r, handle.submit(i2o2::op::nop{}, counting_guard(&r, nullptr)));
      break;
    }
    case 1: read_pipe(handle); break;
    case 2: feed_pipe(); break;
    case 3: write_read_back(handle); break;
    case 4: {  // a dropped reply frees nothing early (G6)
      auto& r = record("nop with dropped reply");
      (void)handle.submit(i2o2::op::nop{}, counting_guard(&r, nullptr));
      break;
    }
    case 5: cancel_parked(handle); break;
    case 6: timed(handle); break;
    case 7: chain(handle); break;
    case 8: {  // an opcode the kernel lacks resolves at once, guard released (G3)
      auto& r = record("unsupported op");
      i2o2::op::raw raw;
      raw.image = i2o2::prepared_op::with_opcode(250);
      publish(r, handle.submit(raw, counting_guard(&r, nullptr)));
      if (!r.reply->is_ready()) fuzz_fail("G3: an unsupported op did not resolve at once");
      expect_now(r, i2o2::result_of(i2o2::errc::unsupported_op));
      if (r.destroyed.load() != 1) fuzz_fail("G3: the guard of an unsupported op was not released");
      break;
    }
    case 9: crowd(handle); break;
    }
  }

  void read_pipe(handle_type& handle) {
    auto& p = pipes_[input_.ConsumeIntegralInRange(0, 1)];
    const auto len = input_.ConsumeIntegralInRange<std::uint32_t>(1, 32);
    const bool keep_reply = input_.ConsumeBool();
    if (p.parked != nullptr) return;  // at most one parked read per pipe
    const bool on_page = !page_busy_ && input_.ConsumeBool();
    auto& r = record(on_page ? "pipe read into the detector page" : "pipe read");
    // Nothing else writes the pipe: with nothing buffered the read parks.
    r.in_kernel.store(p.buffered.empty(), std::memory_order_release);
    char* target = r.buffer.data();
    if (on_page) {
      if (::mprotect(detector_page(), page_size, PROT_READ | PROT_WRITE) != 0) fuzz_fail("mprotect failed");
      target = detector_page();
      page_busy_ = true;
    }
    auto reply = handle.submit(i2o2::op::read{.file = p.read_end, .buf = target, .len = len},
                               counting_guard(&r, on_page ? detector_page() : nullptr));
    if (keep_reply) publish(r, std::move(reply));  // else it is dropped (G6)
    if (!p.buffered.empty()) {
      // Data is waiting: the read completes at once with what is there.
      const std::uint32_t n = std::min<std::size_t>(len, p.buffered.size());
      if (!wait_destroyed(r)) fuzz_fail("R1: a read of a non-empty pipe did not complete");
      if (r.reply) expect_now(r, static_cast<int>(n));
      check_data(p, target, n, on_page, r.what);
      if (on_page) page_busy_ = false;
      r.expected = static_cast<int>(n);
      return;
    }
    p.parked = &r;
    p.parked_len = len;
    p.parked_on_page = on_page;
  }

  void check_data(pipe_state& p, const char* target, std::uint32_t n, bool on_page, const char* what) {
    if (on_page && ::mprotect(detector_page(), page_size, PROT_READ | PROT_WRITE) != 0) fuzz_fail("mprotect");
    for (std::uint32_t i = 0; i < n; ++i) {
      if (target[i] != p.buffered.front()) fuzz_fail("%s: byte %u differs from what was fed", what, i);
      p.buffered.pop_front();
    }
  }

  void feed_pipe() {
    auto& p = pipes_[input_.ConsumeIntegralInRange(0, 1)];
    const auto n = input_.ConsumeIntegralInRange<std::uint32_t>(1, 32);
    if (p.buffered.size() + n > 2048) return;
    std::array<char, 32> bytes{};
    for (std::uint32_t i = 0; i < n; ++i)
      bytes[i] = static_cast<char>(next_byte_++);
    if (p.parked != nullptr) p.parked->in_kernel.store(false, std::memory_order_release);
    if (::write(p.write_end, bytes.data(), n) != static_cast<ssize_t>(n)) fuzz_fail("feeding a pipe failed");
    p.buffered.insert(p.buffered.end(), bytes.begin(), bytes.begin() + n);
    if (p.parked == nullptr) return;
    // The parked read completes now; wait for it (through its guard, so a
    // dropped reply works too) to keep the pipe's contents predictable.
    op_record& r = *p.parked;
    if (!wait_destroyed(r)) fuzz_fail("R1: a parked read was not completed by feeding its pipe");
    const std::uint32_t got = std::min<std::size_t>(p.parked_len, p.buffered.size());
    if (r.reply) {
      const int result = wait_reply(*r.reply, r.what);
      if (result == -EFAULT) fuzz_fail("G2: %s failed with -EFAULT: its guard died early", r.what);
      if (result != static_cast<int>(got)) fuzz_fail("%s resolved with %d, expected %u", r.what, result, got);
    }
    check_data(p, p.parked_on_page ? detector_page() : r.buffer.data(), got, p.parked_on_page, r.what);
    r.expected = static_cast<int>(got);
    if (p.parked_on_page) page_busy_ = false;
    p.parked = nullptr;
  }

  void write_read_back(handle_type& handle) {
    const auto offset = input_.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 16);
    const auto len = input_.ConsumeIntegralInRange<std::uint32_t>(1, 64);
    auto& w = record("file write");
    for (std::uint32_t i = 0; i < len; ++i)
      w.buffer[i] = static_cast<char>(next_byte_++);
    publish(w, handle.submit(
                   i2o2::op::write{.file = temp_file(), .buf = w.buffer.data(), .len = len, .offset = offset},
                   counting_guard(&w, nullptr)));
    expect_now(w, static_cast<int>(len));
    w.expected = static_cast<int>(len);
    auto& r = record("file read-back");
    publish(r, handle.submit(
                   i2o2::op::read{.file = temp_file(), .buf = r.buffer.data(), .len = len, .offset = offset},
                   counting_guard(&r, nullptr)));
    expect_now(r, static_cast<int>(len));
    r.expected = static_cast<int>(len);
    if (std::memcmp(r.buffer.data(), w.buffer.data(), len) != 0) fuzz_fail("read-back differs from write");
  }

  void cancel_parked(handle_type& handle) {
    auto& p = pipes_[input_.ConsumeIntegralInRange(0, 1)];
    if (p.parked == nullptr || !p.parked->reply) return;
    op_record& r = *p.parked;
    r.in_kernel.store(false, std::memory_order_release);
    auto cancel = handle.cancel(*r.reply);
    const int cancel_result = wait_reply(cancel, "cancel");
    if (cancel_result != 0) fuzz_fail("cancel of a parked read resolved with %d, expected 0", cancel_result);
    expect_now(r, -ECANCELED);
    r.expected = -ECANCELED;
    if (!wait_destroyed(r)) fuzz_fail("G1: the guard of a cancelled read was not released");
    if (p.parked_on_page) page_busy_ = false;
    p.parked = nullptr;
  }

  /// More reads parked on a pipe of their own than the ring has room for:
  /// the rest wait in the queue (try_submit, until it is full too). Then
  /// each is cancelled in turn, waited for: the first while later ones
  /// wait for room at the queue's front, so its cancel must get past them,
  /// and each cancelled read frees the room the next one needs.
  void crowd(handle_type& handle) {
    // Room for a crowd beside the two pipes' parked reads: at depth 4 the
    // ring has 6 op slots.
    if (ring_depth_ < 4) return;
    const int count = input_.ConsumeIntegralInRange(1, 48);
    std::vector<op_record*> sent;
    for (int i = 0; i < count; ++i) {
      auto& r = record("crowded pipe read");
      r.in_kernel.store(true, std::memory_order_release);  // its pipe is never fed
      i2o2::any_guard guard{counting_guard(&r, nullptr)};
      auto attempt = handle.try_submit(
          i2o2::op::read{.file = crowd_.read_end, .buf = r.buffer.data(), .len = 1}, std::move(guard));
      if (!attempt) {
        if (attempt.error() != i2o2::errc::queue_full)
          fuzz_fail("try_submit of a crowded read failed: %s", attempt.error().message().c_str());
        if (!guard.has_value()) fuzz_fail("a refused try_submit did not hand its guard back");
        r.in_kernel.store(false, std::memory_order_release);
        break;  // the guard dies here, once; the rest would be refused too
      }
      publish(r, std::move(*attempt));
      sent.push_back(&r);
    }
    for (op_record* r : sent) {
      r->in_kernel.store(false, std::memory_order_release);
      auto cancel = handle.cancel(*r->reply);
      const int result = wait_reply(cancel, "cancel of a crowded read");
      if (result != 0) fuzz_fail("cancel of a crowded read resolved with %d, expected 0", result);
      expect_now(*r, -ECANCELED);
      r->expected = -ECANCELED;
      if (!wait_destroyed(*r)) fuzz_fail("G1: the guard of a cancelled crowded read was not released");
    }
  }

  void timed(handle_type& handle) {
    auto& p = pipes_[input_.ConsumeIntegralInRange(0, 1)];
    const auto ms = input_.ConsumeIntegralInRange(1, 3);
    if (ring_depth_ == 1) {
      // An op and its LINK_TIMEOUT need two SQEs; a one-SQE ring refuses it.
      auto& r = record("timed nop on a one-SQE ring");
      publish(r, handle.submit(i2o2::op::nop{.options = {.timeout = 1s}}, counting_guard(&r, nullptr)));
      const int refused = i2o2::result_of(i2o2::errc::batch_too_large);
      expect_now(r, refused);
      r.expected = refused;
      return;
    }
    if (p.parked == nullptr && p.buffered.empty()) {
      // Nothing will come: the deadline cancels the read.
      auto& r = record("timed pipe read");
      publish(r, handle.submit(i2o2::op::read{.file = p.read_end,
                                              .buf = r.buffer.data(),
                                              .len = 8,
                                              .options = {.timeout = std::chrono::milliseconds(ms)}},
                               counting_guard(&r, nullptr)));
      expect_now(r, -ECANCELED);
      r.expected = -ECANCELED;
    } else {
      auto& r = record("timed nop");
      r.expected = 0;
      publish(r, handle.submit(i2o2::op::nop{.options = {.timeout = 1s}}, counting_guard(&r, nullptr)));
    }
  }

  void chain(handle_type& handle) {
    const auto offset = chain_offset_base + input_.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 16);
    const auto len = input_.ConsumeIntegralInRange<std::uint32_t>(1, 64);
    auto& w = record("chained write");
    auto& f = record("chained fsync");
    for (std::uint32_t i = 0; i < len; ++i)
      w.buffer[i] = static_cast<char>(next_byte_++);
    // 1 or 2: that op of the chain is one the kernel lacks (G3: nothing of
    // the chain is sent).
    const int lacking = input_.ConsumeIntegralInRange(0, 2);
    std::array<i2o2::prepared_op, 2> ops{
        i2o2::op::write{.file = temp_file(), .buf = w.buffer.data(), .len = len, .offset = offset},
        i2o2::op::fsync{.file = temp_file(), .data_only = true}};
    if (lacking != 0) ops[lacking - 1] = i2o2::prepared_op::with_opcode(250);
    std::array<i2o2::any_guard, 2> guards{counting_guard(&w, nullptr), counting_guard(&f, nullptr)};
    std::vector<i2o2::future_reply> replies;
    try {
      replies = handle.submit_chain(ops, guards);
    } catch (const std::system_error& error) {
      // A ring of depth 1, or a queue of 1, cannot take a chain of 2; the
      // guards stay here.
      if (error.code() != i2o2::errc::batch_too_large || (ring_depth_ >= 2 && queue_takes_chain_))
        fuzz_fail("submit_chain threw unexpectedly: %s", error.what());
      for (auto& guard : guards)
        if (!guard.has_value()) fuzz_fail("a refused chain took a guard");
      return;  // the guards die with the array, once each
    }
    publish(w, std::move(replies[0]));
    publish(f, std::move(replies[1]));
    if (lacking != 0) {
      // Resolved at once: the op the kernel lacks says why, the other is
      // cancelled; both guards are released.
      const int unsupported = i2o2::result_of(i2o2::errc::unsupported_op);
      w.expected = lacking == 1 ? unsupported : -ECANCELED;
      f.expected = lacking == 2 ? unsupported : -ECANCELED;
      expect_now(w, *w.expected);
      expect_now(f, *f.expected);
      if (w.destroyed.load() != 1 || f.destroyed.load() != 1)
        fuzz_fail("G3: a guard of a chain holding an op the kernel lacks was not released");
      return;
    }
    w.expected = static_cast<int>(len);
    f.expected = 0;
  }

  void finish(owner_type& owner, handle_type& handle) {
    if (input_.ConsumeBool()) {
      if (stop_before_feeding_) {
        // G5: a stop with no deadline cancels nothing. Stop while reads
        // are parked (still in_kernel: a guard that dies now fails), give
        // a library that cancels at stop time to do so, then feed them:
        // each must read what it was fed.
        bool parked = false;
        for (auto& p : pipes_)
          parked = parked || p.parked != nullptr;
        if (trace()) std::fprintf(stderr, "op_sequence: stop with no deadline, then feed\n");
        owner.scheduler().request_stop(std::nullopt);
        if (parked) std::this_thread::sleep_for(2ms);
        feed_parked();
        owner.stop(std::nullopt);
      } else {
        feed_parked();
        stop_with_deadline(owner);
      }
    } else {
      // Parked reads are cancelled by the shutdown deadline.
      for (auto& p : pipes_) {
        if (p.parked == nullptr) continue;
        p.parked->in_kernel.store(false, std::memory_order_release);
        p.parked->expected = -ECANCELED;
      }
      stop_with_deadline(owner);
    }
    if (!handle.closed()) fuzz_fail("G5: the handle is not closed after stop");
    auto& late = record("nop after stop");
    try {
      (void)handle.submit(i2o2::op::nop{}, counting_guard(&late, nullptr));
      fuzz_fail("G5: submit after stop did not throw scheduler_closed");
    } catch (const i2o2::scheduler_closed&) {
    }
  }

  /// Feeds every parked read exactly what it asks for and waits for it.
  void feed_parked() {
    for (auto& p : pipes_) {
      if (p.parked == nullptr) continue;
      op_record& r = *p.parked;
      std::vector<char> bytes(p.parked_len, 'x');
      r.in_kernel.store(false, std::memory_order_release);
      if (::write(p.write_end, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        fuzz_fail("feeding a pipe failed");
      if (!wait_destroyed(r)) fuzz_fail("R1: a parked read was not completed by feeding its pipe");
      r.expected = static_cast<int>(p.parked_len);
      p.parked = nullptr;
    }
  }

  /// Stops with a 5 ms deadline: whatever is unresolved by then may be
  /// cancelled.
  void stop_with_deadline(owner_type& owner) {
    for (auto& r : records_)
      if (r.reply && !r.reply->is_ready()) r.cancel_ok = true;
    owner.stop(std::chrono::milliseconds(5));
  }

  void check_all() {
    for (const auto& r : records_) {
      const int destroyed = r.destroyed.load();
      if (destroyed != 1) fuzz_fail("G1: the guard of a %s was destroyed %d times", r.what, destroyed);
      if (!r.reply) continue;
      if (!r.reply->is_ready()) fuzz_fail("R1/G5: a %s is unresolved after stop", r.what);
      const int got = r.reply->wait();
      if (got == -EFAULT) fuzz_fail("G2: %s failed with -EFAULT: its guard died early", r.what);
      if (r.expected && got != *r.expected && !(r.cancel_ok && got == -ECANCELED))
        fuzz_fail("%s resolved with %d, expected %d", r.what, got, *r.expected);
    }
  }

  FuzzedDataProvider& input_;
  const char* name_;  ///< the scheduler type, for the trace
  std::deque<op_record> records_;
  std::array<pipe_state, 2> pipes_;
  pipe_state crowd_;  ///< crowd(): never fed, every read on it is cancelled
  std::uint32_t ring_depth_ = 0;
  bool queue_takes_chain_ = true;
  bool page_busy_ = false;
  bool stop_before_feeding_ = false;  ///< finish(): see go()
  unsigned char next_byte_ = 1;
};

template <class Queue, class Wait>
void run_on(FuzzedDataProvider& input, const char* name) {
  run<Queue, Wait>(input, name).go();
}

struct scheduler_choice {
  const char* name;
  void (*go)(FuzzedDataProvider&, const char*);
};

namespace q = i2o2::queue;
namespace w = i2o2::wait;

/// Indexed by the low 3 bits of a tagged input's first byte (see `choose`).
constexpr std::array<scheduler_choice, 8> choices{{
    {"mpsc_ring+eventfd (default)", &run_on<q::mpsc_ring, w::eventfd>},
    {"mpsc_ring+futex", &run_on<q::mpsc_ring, w::futex>},
    {"mpsc_ring+msg_ring", &run_on<q::mpsc_ring, w::msg_ring>},
    {"mpsc_ring+spin", &run_on<q::mpsc_ring, w::spin>},
    {"mutex_ring+eventfd", &run_on<q::mutex_ring, w::eventfd>},
    {"mutex_ring+futex", &run_on<q::mutex_ring, w::futex>},
    {"mutex_ring+msg_ring", &run_on<q::mutex_ring, w::msg_ring>},
    {"mutex_ring+spin", &run_on<q::mutex_ring, w::spin>},
}};

/// An input whose first byte is 0xF0-0xFF (a "tagged" input) chooses its
/// scheduler with that byte's low 3 bits; the rest of it decodes as any
/// input does. Every other input runs, whole, on the default scheduler.
/// Why a tag rather than spare bits of the config: the corpus and the
/// regressions predate the choice and must keep their meaning, and their
/// spare bits are random (most were found by libFuzzer), while none of
/// them starts with 0xF0-0xFF. One random input in 16 is tagged, and the
/// hand-g5-* seeds are, so the fuzzer sets off on four types at once.
const scheduler_choice& choose(const std::uint8_t*& data, std::size_t& size) {
  constexpr std::uint8_t tag = 0xF0;
  if (size == 0 || (data[0] & tag) != tag) return choices[0];
  const auto& chosen = choices[data[0] & 7U];
  ++data;
  --size;
  return chosen;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const scheduler_choice& chosen = choose(data, size);
  FuzzedDataProvider input(data, size);
  chosen.go(input, chosen.name);
  return 0;
}
