#pragma once
// Model-based property test of the scheduler against the real kernel, for
// every queue x wait x reply combination (one property_scheduler_<wait>.cpp
// per wait strategy: one file for all 24 took over three minutes to compile
// under ASan, the longest step of the build). rapidcheck generates sequences of
// commands (guarded nops, reads parked on pipes, feeding them, file writes
// read back, dropped replies, handle copies, registered files, a fixed-file
// read parked across its file's unregistration, cancels); the model predicts
// every result and every guard's state, and after each command the real
// scheduler must agree:
//   G1 every guard is destroyed at most once (a second destructor run
//      counts), and exactly once in the end;
//   G2 never while its op is unresolved: a parked read's guard stays alive,
//      and seals the page the read writes into when it dies (a guard
//      released early makes the read fail with -EFAULT); each guard sees,
//      as it dies, that its reply is already complete, and dies on the
//      scheduler thread;
//   G4 a registered file's guard lives while the file is registered, and
//      after its unregistration until the last op using it has completed;
//   G5 shutdown lets reads in flight finish with their own result (no
//      deadline, or a long one: the stop waits for them), or cancels them
//      (a short deadline), and releases every guard;
//   G6 a dropped reply frees nothing early; R1 each reply resolves once.
#include "policy_matrix.hpp"

#include <rapidcheck/catch.h>
#include <rapidcheck/state.h>

#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>

namespace {

using i2o2_test::pending;
constexpr int pipe_count = 3;                        // the model's pipes
constexpr int stop_pipes = 3;                        // reads parked across the stop (G5)
constexpr int fixed_pipe = pipe_count + stop_pipes;  // a read on a registered pipe (G4)
constexpr int all_pipes = fixed_pipe + 1;
constexpr std::uint64_t file_slots = 64;

/// Fails the property, naming the cause on stderr first: rapidcheck re-runs
/// the shrunk case to print it, and a timing-dependent failure (a lost
/// wake-up) may pass then, leaving "Falsifiable" with no reason.
#define I2O2_PROPERTY_FAIL(message)                                                                          \
  do {                                                                                                       \
    std::fprintf(stderr, "property_scheduler: %s\n", message);                                               \
    RC_FAIL(message);                                                                                        \
  } while (false)

/// RC_ASSERT with a message on stderr (see I2O2_PROPERTY_FAIL).
#define I2O2_PROPERTY_ASSERT(condition, message)                                                             \
  do {                                                                                                       \
    if (!(condition)) I2O2_PROPERTY_FAIL(message);                                                           \
  } while (false)

/// Waits for a reply, turning a hang into a failure rapidcheck can shrink.
int wait_bounded(const pending& reply) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    if (const auto result = reply.try_get()) return *result;
    if (std::chrono::steady_clock::now() > deadline) I2O2_PROPERTY_FAIL("a reply did not resolve within 5 s");
    std::this_thread::yield();
  }
}

/// Waits until `done()` holds, failing with `message` after 5 s.
template <class Predicate>
void await_bounded(Predicate done, const char* message) {
  if (!i2o2_test::eventually(done, std::chrono::seconds(5))) I2O2_PROPERTY_FAIL(message);
}

/// What one guard saw as it died (G1, G2, G4): how often it died, on which
/// thread, and whether the reply it must outlive had resolved by then. The
/// client hands that reply over with `watch` right after submit returns; a
/// guard dying on another thread (the scheduler's, after a CQE) first waits
/// for the hand-over, which takes no longer than the rest of the submit call.
class op_record {
public:
  op_record() noexcept : client_(std::this_thread::get_id()) {}

  std::atomic<int> destroyed{0};
  std::atomic<int> before_reply{0};  // died while the watched reply was unresolved
  std::atomic<int> unwatched{0};     // died before the client could hand its reply over
  std::atomic<std::thread::id> destroyer{};

  /// The reply this guard must not die before (empty: none). The record
  /// does not keep it alive, so a dropped reply stays dropped (G6).
  void watch(std::weak_ptr<const pending> reply) {
    {
      std::lock_guard lock(mutex_);
      watched_ = std::move(reply);
    }
    published_.store(true, std::memory_order_release);
  }

  void guard_destroyed() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    if (self != client_)
      (void)i2o2_test::eventually([this] { return published_.load(std::memory_order_acquire); },
                                  std::chrono::seconds(5));
    {
      std::lock_guard lock(mutex_);
      if (!published_.load(std::memory_order_acquire)) {
        unwatched.fetch_add(1);
      } else if (const auto reply = watched_.lock(); reply && !reply->is_ready()) {
        before_reply.fetch_add(1);
      }
    }
    destroyer.store(self);
    destroyed.fetch_add(1);  // seq_cst, after `destroyer`: read this first
  }

private:
  const std::thread::id client_;
  std::atomic<bool> published_{false};
  std::mutex mutex_;
  std::weak_ptr<const pending> watched_;
};

using op_guard = i2o2_test::recording_guard<op_record>;

/// A page a parked read writes into. The read's guard seals it (PROT_NONE)
/// as it dies, so a guard released while the kernel still holds the read
/// makes the read fail with -EFAULT (DESIGN.md, "an early guard release can
/// be caught"). Unmapped with the test's state, after the scheduler stopped.
class detector_page {
public:
  detector_page() {
    void* const mapped = ::mmap(nullptr, size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    data_ = static_cast<char*>(mapped);
  }
  detector_page(const detector_page&) = delete;
  detector_page& operator=(const detector_page&) = delete;
  ~detector_page() { ::munmap(data_, size()); }

  char* data() const noexcept { return data_; }
  void seal() const noexcept { ::mprotect(data_, size(), PROT_NONE); }
  /// The byte the read left (its guard has died: the page is sealed).
  char byte() const {
    if (::mprotect(data_, size(), PROT_READ) != 0)
      throw std::system_error(errno, std::generic_category(), "mprotect");
    return data_[0];
  }

private:
  static std::size_t size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }
  char* data_ = nullptr;
};

/// A parked read's guard: records its death and seals the read's page.
class read_guard {
public:
  read_guard(std::shared_ptr<op_record> record, const detector_page& page)
      : counter_(std::move(record)), page_(&page) {}
  read_guard(read_guard&& other) noexcept
      : counter_(std::move(other.counter_)), page_(std::exchange(other.page_, nullptr)) {}
  read_guard& operator=(read_guard&& other) noexcept {
    if (this != &other) {
      if (page_ != nullptr) page_->seal();
      counter_ = std::move(other.counter_);
      page_ = std::exchange(other.page_, nullptr);
    }
    return *this;
  }
  ~read_guard() {
    if (page_ != nullptr) page_->seal();  // before counter_ reports the death
  }

private:
  op_guard counter_;
  const detector_page* page_;
};

struct model {
  std::array<int, pipe_count> parked{};  // unresolved reads per pipe
  int extra_handles = 0;
  bool file_registered = false;
  bool fixed_read_done = false;  // once per sequence: it costs several round trips
};

template <class Policies>
struct system_under_test {
  using scheduler = typename Policies::scheduler;
  using handle_type = typename scheduler::handle_type;
  static constexpr bool cancellable = requires(const typename handle_type::reply_type& reply) {
    reply.cancel_key();
  };

  struct tracked {
    std::shared_ptr<op_record> record = std::make_shared<op_record>();
    std::shared_ptr<const pending> reply;  // empty once dropped
    std::unique_ptr<detector_page> page;   // a read's, sealed by its guard
    int pipe = -1;                         // a read parked on this pipe, or -1
    int expected = INT_MIN;                // the result the model predicts, once known
    char expected_byte = 0;                // what a fed read must leave in its page
    bool resolved_seen = false;
  };

  /// The scheduler's settings, drawn per sequence: a queue from 1 slot (so
  /// that submits wait for room) to 16, with and without the busy spin.
  /// The ring stays at 8 or 16 entries: the model keeps up to 6 ops in
  /// flight (6 reads parked at the stop, or 4 reads, a cancel and a
  /// settling nop), and a smaller ring would hold some of them back outside
  /// the kernel, where a cancel does not find them and a nop waits.
  static i2o2::config drawn_config() {
    i2o2::config settings;
    settings.queue_capacity = *rc::gen::inRange<std::uint32_t>(1, 17);
    settings.ring_depth = *rc::gen::element<std::uint32_t>(8, 16);
    settings.busy_spin = *rc::gen::element(std::chrono::microseconds(0), settings.busy_spin);
    settings.registered_files = 2;
    // A failed sequence unwinds through the owner's destructor: cancel what
    // is parked at once rather than after the default 30 s.
    settings.shutdown_deadline = std::chrono::milliseconds(1);
    return settings;
  }

  system_under_test() : spawned(i2o2::spawn_scheduler<scheduler>(drawn_config())) {
    // The scheduler thread is where a guard is released after a CQE (G2):
    // learn it from the first one.
    auto& probe = add();
    probe.expected = 0;
    submit(probe, i2o2::op::nop{}, op_guard(probe.record));
    RC_ASSERT(wait_bounded(*probe.reply) == 0);
    await_bounded([&] { return probe.record->destroyed.load() == 1; }, "a nop's guard was not released");
    scheduler_thread = probe.record->destroyer.load();
    I2O2_PROPERTY_ASSERT(scheduler_thread != std::this_thread::get_id(),
                         "G2: a guard was released on the client's thread, not the scheduler's");
  }

  handle_type& handle() { return spawned.handle; }

  /// Waits until everything already resolved has been fully processed
  /// (reply completed, then guard released) on the scheduler thread.
  void settle() { RC_ASSERT(wait_bounded(i2o2_test::submit(handle(), i2o2::op::nop{})) == 0); }

  tracked& add(int pipe = -1) {
    ops.push_back(std::make_unique<tracked>());
    ops.back()->pipe = pipe;
    return *ops.back();
  }

  /// Submits `io` for `op` and hands its reply to the guard's record.
  template <class Op>
  void submit(tracked& op, const Op& io, typename handle_type::guard_arg guard) {
    op.reply = std::make_shared<const pending>(i2o2_test::submit(handle(), io, std::move(guard)));
    op.record->watch(op.reply);
  }

  /// Parks a one-byte read on `pipe` (empty), into a detector page.
  tracked& park(int pipe, i2o2::file_ref file) {
    auto& op = add(pipe);
    op.page = std::make_unique<detector_page>();
    submit(
        op,
        i2o2::op::read{.file = file, .buf = op.page->data(), .len = 1, .offset = i2o2::op::current_position},
        read_guard(op.record, *op.page));
    return op;
  }

  /// The one read parked on `pipe` whose guard is alive, or null.
  tracked* parked_on(int pipe) {
    tracked* found = nullptr;
    for (auto& op : ops)
      if (op->pipe == pipe && !op->resolved_seen && op->record->destroyed.load() == 0) {
        RC_ASSERT(found == nullptr);
        found = op.get();
      }
    return found;
  }

  /// A guard that died died once, on the scheduler thread, after the reply
  /// it watches (G1, G2, G4).
  void check_release(const op_record& record) const {
    I2O2_PROPERTY_ASSERT(record.destroyed.load() <= 1, "G1: a guard was destroyed twice");
    if (record.destroyed.load() == 0) return;
    I2O2_PROPERTY_ASSERT(record.before_reply.load() == 0,
                         "G2/G4: a guard died before the reply it must outlive was complete");
    I2O2_PROPERTY_ASSERT(record.unwatched.load() == 0, "a guard died before its submit returned");
    I2O2_PROPERTY_ASSERT(record.destroyer.load() == scheduler_thread,
                         "G2: a guard died off the scheduler thread");
  }

  /// A read that completed left its byte in its page (its guard lived on).
  void check_byte(const tracked& op) const {
    if (op.page && op.expected_byte != 0)
      I2O2_PROPERTY_ASSERT(op.page->byte() == op.expected_byte,
                           "G2: a completed read's byte is not in its page (its guard died early?)");
  }

  /// Refreshes which ops resolved, checking G1/G2/G4/G6/R1 on the way.
  void check(const model& m) {
    settle();
    std::array<int, pipe_count> unresolved{};
    for (auto& op : ops) {
      check_release(*op->record);
      const int destroyed = op->record->destroyed.load();
      std::optional<int> result;
      if (op->reply) result = op->reply->try_get();
      if (result) {
        if (op->pipe >= 0 && op->expected == INT_MIN)
          I2O2_PROPERTY_FAIL("a parked read resolved though its pipe was not fed nor the read cancelled");
        if (op->expected != INT_MIN) RC_ASSERT(*result == op->expected);
        RC_ASSERT(op->reply->completions() == -1 || op->reply->completions() == 1);  // R1
        I2O2_PROPERTY_ASSERT(destroyed == 1, "a resolved op's guard was not released after its reply");
        if (!op->resolved_seen && *result == 1) check_byte(*op);
        op->resolved_seen = true;
      } else if (op->pipe >= 0 && !op->resolved_seen) {
        // A parked read: still in the kernel, so its guard must be alive
        // (G2), whether or not its reply was dropped (G6).
        if (destroyed == 1) {
          // A dropped reply's read, done: it must have been fed.
          I2O2_PROPERTY_ASSERT(!op->reply && op->expected_byte != 0, "G2: a parked read's guard died");
          check_byte(*op);
          op->resolved_seen = true;
        } else {
          ++unresolved[op->pipe];
        }
      } else if (!op->reply) {
        RC_ASSERT(destroyed == 1);
      }
      if (destroyed == 1 && op->reply) RC_ASSERT(op->reply->try_get().has_value());  // G2
    }
    for (int pipe = 0; pipe < pipe_count; ++pipe)
      RC_ASSERT(unresolved[pipe] == m.parked[pipe]);
    // G4: a registered file's guard lives until it is unregistered.
    if (m.file_registered)
      I2O2_PROPERTY_ASSERT(file_guard && file_guard->destroyed.load() == 0,
                           "G4: a registered file's guard died while the file was registered");
  }

  // Destroyed after the scheduler (below): the kernel may still use the
  // pipes and pages of a failed sequence's reads until the owner stopped.
  std::array<std::unique_ptr<i2o2_test::pipe_pair>, all_pipes> pipes = [] {
    std::array<std::unique_ptr<i2o2_test::pipe_pair>, all_pipes> made;
    for (auto& pipe : made)
      pipe = std::make_unique<i2o2_test::pipe_pair>();
    return made;
  }();
  i2o2_test::temp_file file;
  std::vector<std::unique_ptr<tracked>> ops;
  std::optional<int> file_index;
  std::shared_ptr<op_record> file_guard;
  std::vector<std::shared_ptr<op_record>> pipe_guards;  // the fixed pipe's registrations
  std::thread::id scheduler_thread;
  i2o2::spawned<scheduler> spawned;
  std::vector<handle_type> extra_handles;
};

template <class Policies>
using command = rc::state::Command<model, system_under_test<Policies>>;

template <class Policies>
struct submit_nop final : command<Policies> {
  void run(const model& m, system_under_test<Policies>& sut) const override {
    auto& op = sut.add();
    op.expected = 0;
    sut.submit(op, i2o2::op::nop{}, op_guard(op.record));
    RC_ASSERT(wait_bounded(*op.reply) == 0);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "submit_nop"; }
};

// At most one read is parked per pipe: with several readers on one pipe the
// kernel may move some to io-wq workers and which reader a byte goes to is
// the kernel's choice, which would make the model guess.
template <class Policies>
struct park_read final : command<Policies> {
  int pipe = *rc::gen::inRange(0, pipe_count);
  void checkPreconditions(const model& m) const override { RC_PRE(m.parked[pipe] == 0); }
  void apply(model& m) const override { ++m.parked[pipe]; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    sut.park(pipe, sut.pipes[pipe]->read_end());
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "park_read(" << pipe << ")"; }
};

template <class Policies>
struct feed_pipe final : command<Policies> {
  int pipe = *rc::gen::inRange(0, pipe_count);
  char byte = *rc::gen::inRange('a', 'z');
  void checkPreconditions(const model& m) const override { RC_PRE(m.parked[pipe] > 0); }
  void apply(model& m) const override { --m.parked[pipe]; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    auto* op = sut.parked_on(pipe);
    I2O2_PROPERTY_ASSERT(op != nullptr, "the model has a parked read on this pipe, the system none");
    op->expected = 1;
    op->expected_byte = byte;
    sut.pipes[pipe]->feed(&byte, 1);
    // The parked read takes the byte; wait until the scheduler released
    // its guard (after completing its reply, if it still has one).
    await_bounded([&] { return op->record->destroyed.load() != 0; },
                  "a fed read did not complete within 5 s");
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "feed_pipe(" << pipe << ", " << byte << ")"; }
};

template <class Policies>
struct write_then_read final : command<Policies> {
  std::uint64_t offset = *rc::gen::inRange<std::uint64_t>(0, file_slots);
  char byte = *rc::gen::inRange('a', 'z');
  void run(const model& m, system_under_test<Policies>& sut) const override {
    auto& write = sut.add();
    write.expected = 1;
    const i2o2::file_ref target = sut.file_index ? i2o2::fixed_file(static_cast<unsigned>(*sut.file_index))
                                                 : i2o2::file_ref(sut.file.fd());
    sut.submit(write, i2o2::op::write{.file = target, .buf = &byte, .len = 1, .offset = offset},
               op_guard(write.record));
    RC_ASSERT(wait_bounded(*write.reply) == 1);
    char back = 0;
    auto& read = sut.add();
    read.expected = 1;
    sut.submit(read, i2o2::op::read{.file = target, .buf = &back, .len = 1, .offset = offset},
               op_guard(read.record));
    RC_ASSERT(wait_bounded(*read.reply) == 1);
    RC_ASSERT(back == byte);
    char on_disk = 0;
    RC_ASSERT(::pread(sut.file.fd(), &on_disk, 1, static_cast<off_t>(offset)) == 1);
    RC_ASSERT(on_disk == byte);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "write_then_read(" << offset << ", " << byte << ")"; }
};

// Replies are dropped only on the last pipe and cancels go only to the
// others, so every read a cancel looks for still has its reply.
constexpr int drop_pipe = pipe_count - 1;

template <class Policies>
struct drop_reply final : command<Policies> {
  int pipe = drop_pipe;
  void checkPreconditions(const model& m) const override { RC_PRE(m.parked[pipe] > 0); }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    for (auto& op : sut.ops)
      if (op->pipe == pipe && op->reply && !op->reply->try_get()) {
        op->reply.reset();  // G6: the read stays in the kernel, its guard alive
        break;
      }
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "drop_reply(" << pipe << ")"; }
};

template <class Policies>
struct cancel_read final : command<Policies> {
  int pipe = *rc::gen::inRange(0, drop_pipe);
  void checkPreconditions(const model& m) const override {
    RC_PRE(system_under_test<Policies>::cancellable);
    RC_PRE(m.parked[pipe] > 0);
  }
  void apply(model& m) const override { --m.parked[pipe]; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    if constexpr (system_under_test<Policies>::cancellable) {
      auto* op = sut.parked_on(pipe);
      I2O2_PROPERTY_ASSERT(op != nullptr && op->reply,
                           "the model has a parked read on this pipe, the system none");
      // The pipe is empty, so the read is truly parked: the cancel finds it.
      op->expected = -ECANCELED;
      RC_ASSERT(wait_bounded(i2o2_test::cancel(sut.handle(), *op->reply)) == 0);
      RC_ASSERT(wait_bounded(*op->reply) == -ECANCELED);
      sut.check(this->nextState(m));
    }
  }
  void show(std::ostream& out) const override { out << "cancel_read(" << pipe << ")"; }
};

template <class Policies>
struct copy_handle final : command<Policies> {
  void apply(model& m) const override { ++m.extra_handles; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    sut.extra_handles.push_back(sut.handle());
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "copy_handle"; }
};

template <class Policies>
struct drop_handle final : command<Policies> {
  void checkPreconditions(const model& m) const override { RC_PRE(m.extra_handles > 0); }
  void apply(model& m) const override { --m.extra_handles; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    sut.extra_handles.pop_back();
    RC_ASSERT(!sut.handle().closed());  // one handle is always left
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "drop_handle"; }
};

/// Registers `fd` with a guard recording into `record` (which watches no
/// reply yet); returns the slot.
template <class Policies>
int register_guarded(system_under_test<Policies>& sut, int fd, const std::shared_ptr<op_record>& record) {
  record->watch({});
  using handle_type = typename system_under_test<Policies>::handle_type;
  const int index = wait_bounded(i2o2_test::request<handle_type>([&](auto&&... reply_args) {
    return sut.handle().register_file(fd, op_guard(record),
                                      std::forward<decltype(reply_args)>(reply_args)...);
  }));
  RC_ASSERT(index >= 0);
  RC_ASSERT(index < 2);
  return index;
}

template <class Policies>
void unregister(system_under_test<Policies>& sut, int index) {
  using handle_type = typename system_under_test<Policies>::handle_type;
  RC_ASSERT(wait_bounded(i2o2_test::request<handle_type>([&](auto&&... reply_args) {
              return sut.handle().unregister_file(static_cast<unsigned>(index),
                                                  std::forward<decltype(reply_args)>(reply_args)...);
            })) == 0);
}

template <class Policies>
struct register_file final : command<Policies> {
  void checkPreconditions(const model& m) const override { RC_PRE(!m.file_registered); }
  void apply(model& m) const override { m.file_registered = true; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    sut.file_guard = std::make_shared<op_record>();
    sut.file_index = register_guarded(sut, sut.file.fd(), sut.file_guard);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "register_file"; }
};

template <class Policies>
struct unregister_file final : command<Policies> {
  void checkPreconditions(const model& m) const override { RC_PRE(m.file_registered); }
  void apply(model& m) const override { m.file_registered = false; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    unregister(sut, *sut.file_index);
    sut.file_index.reset();
    // G4: the guard goes with the tag CQE, which follows promptly when no
    // op uses the file.
    await_bounded([&] { return sut.file_guard->destroyed.load() != 0; },
                  "the file's tag CQE did not come within 5 s");
    sut.check_release(*sut.file_guard);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "unregister_file"; }
};

/// G4 with an op in flight: a read parked on a registered pipe keeps the
/// pipe's registration guard alive across the unregistration, until the
/// read has completed (the kernel's tag CQE follows the read's CQE).
template <class Policies>
struct fixed_read_across_unregister final : command<Policies> {
  char byte = *rc::gen::inRange('a', 'z');
  void checkPreconditions(const model& m) const override { RC_PRE(!m.fixed_read_done); }
  void apply(model& m) const override { m.fixed_read_done = true; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    auto& pipe = *sut.pipes[fixed_pipe];
    auto registration = sut.pipe_guards.emplace_back(std::make_shared<op_record>());
    const int index = register_guarded(sut, pipe.read_end(), registration);
    RC_ASSERT(!sut.file_index || index != *sut.file_index);
    auto& read = sut.park(-1, i2o2::fixed_file(static_cast<unsigned>(index)));
    registration->watch(read.reply);  // G4: the guard outlives the read
    unregister(sut, index);
    sut.settle();
    I2O2_PROPERTY_ASSERT(
        registration->destroyed.load() == 0,
        "G4: a registered file's guard died at its unregistration, with a read still using it");
    I2O2_PROPERTY_ASSERT(!read.reply->is_ready() && read.record->destroyed.load() == 0,
                         "a read parked on an empty registered pipe resolved");
    read.expected = 1;
    read.expected_byte = byte;
    pipe.feed(&byte, 1);
    RC_ASSERT(wait_bounded(*read.reply) == 1);
    await_bounded([&] { return registration->destroyed.load() != 0; },
                  "the registered pipe's tag CQE did not come within 5 s of its last read");
    sut.check_release(*registration);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "fixed_read_across_unregister(" << byte << ")"; }
};

/// G5 without a deadline (or with one that does not expire): the stop waits
/// for every read in flight, whose guard lives on and whose reply stays
/// unresolved until its pipe is fed; then each completes with its own result.
/// The reads are fed one at a time, each only once the one before it has
/// completed: a completion proves the scheduler went round its loop since
/// the stop was asked for, so the later reads are looked at after several
/// rounds in which a scheduler that cancels or releases at the stop would
/// have done so. No wall-clock wait: nothing else resolves them.
template <class Policies>
void stop_with_reads_in_flight(system_under_test<Policies>& sut,
                               std::optional<std::chrono::nanoseconds> deadline) {
  using tracked = typename system_under_test<Policies>::tracked;
  std::vector<tracked*> in_flight;
  for (int pipe = pipe_count; pipe < pipe_count + stop_pipes; ++pipe)
    in_flight.push_back(&sut.park(pipe, sut.pipes[pipe]->read_end()));
  for (int pipe = 0; pipe < pipe_count; ++pipe)
    if (auto* op = sut.parked_on(pipe)) in_flight.push_back(op);

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    sut.spawned.owner.stop(deadline);
    stopped = true;
  });
  while (!sut.handle().closed())  // the stop was asked for
    std::this_thread::yield();
  const char* broken = nullptr;
  char byte = 'a';
  for (std::size_t next = 0; next < in_flight.size() && broken == nullptr; ++next) {
    for (std::size_t i = next; i < in_flight.size(); ++i) {
      const auto* op = in_flight[i];
      if (op->reply && op->reply->is_ready()) broken = "G5: a read in flight resolved at the stop";
      if (op->record->destroyed.load() != 0) broken = "G5: a read in flight lost its guard at the stop";
    }
    if (stopped.load()) broken = "G5: the stop returned with reads still in flight";
    if (broken != nullptr) break;
    auto* op = in_flight[next];
    op->expected = 1;
    op->expected_byte = byte;
    sut.pipes[op->pipe]->feed(&byte, 1);
    byte = byte == 'z' ? 'a' : static_cast<char>(byte + 1);
    if (!i2o2_test::eventually([&] { return op->record->destroyed.load() != 0; }, std::chrono::seconds(5)))
      broken = "G5: a read fed during the stop did not complete within 5 s";
    else if (op->reply && !op->reply->is_ready())
      broken = "G2: a read's guard died before its reply was complete";
    else if (op->reply && op->reply->try_get() != 1)
      broken = "G5: a read in flight at a stop without deadline did not complete with its own result";
  }
  const bool joined =
      broken == nullptr && i2o2_test::eventually([&] { return stopped.load(); }, std::chrono::seconds(5));
  if (!joined) sut.spawned.owner.scheduler().request_stop(std::chrono::nanoseconds(0));  // so that it joins
  stopper.join();
  if (broken != nullptr) I2O2_PROPERTY_FAIL(broken);
  I2O2_PROPERTY_ASSERT(joined, "G5: the stop did not return within 5 s of its last read completing");
  for (auto* op : in_flight) {
    sut.check_byte(*op);
    op->resolved_seen = true;
  }
}

template <class Policies>
void run_model() {
  using sut_type = system_under_test<Policies>;
  model initial;
  sut_type sut;
  rc::state::check(
      initial, sut,
      rc::state::gen::execOneOfWithArgs<
          submit_nop<Policies>, park_read<Policies>, feed_pipe<Policies>, write_then_read<Policies>,
          drop_reply<Policies>, cancel_read<Policies>, copy_handle<Policies>, drop_handle<Policies>,
          register_file<Policies>, unregister_file<Policies>, fixed_read_across_unregister<Policies>>());

  // Shutdown (G5): with a short deadline the parked reads are cancelled;
  // without one, or with a long one, they stay in flight until fed.
  // Either way every reply resolves, every guard is released exactly once
  // on the scheduler thread, the thread joins.
  const bool short_deadline = *rc::gen::arbitrary<bool>();
  if (std::getenv("I2O2_MODEL_TRACE")) {
    std::fprintf(stderr, "shutdown, short deadline=%d\n", short_deadline);
    for (auto& op : sut.ops)
      if (op->pipe >= 0)
        std::fprintf(stderr, "  read pipe=%d seen=%d destroyed=%d reply=%d resolved=%d\n", op->pipe,
                     op->resolved_seen, op->record->destroyed.load(), op->reply != nullptr,
                     op->reply && op->reply->try_get().has_value());
  }
  if (short_deadline) {
    std::vector<typename sut_type::tracked*> parked;
    for (int pipe = 0; pipe < pipe_count; ++pipe)
      if (auto* op = sut.parked_on(pipe)) parked.push_back(op);
    sut.spawned.owner.stop(std::chrono::milliseconds(5));
    for (auto* op : parked)
      if (op->reply)
        I2O2_PROPERTY_ASSERT(op->reply->try_get() == -ECANCELED,
                             "G5: a parked read was not cancelled after the stop's deadline");
  } else {
    std::optional<std::chrono::nanoseconds> long_deadline;  // none, or one that never expires here
    if (*rc::gen::arbitrary<bool>()) long_deadline = std::chrono::seconds(60);
    stop_with_reads_in_flight(sut, long_deadline);
  }
  for (auto& op : sut.ops) {
    I2O2_PROPERTY_ASSERT(op->record->destroyed.load() == 1, "G5: a guard was not released at shutdown");
    sut.check_release(*op->record);
    if (op->reply) {
      RC_ASSERT(op->reply->try_get().has_value());
      RC_ASSERT(op->reply->completions() == -1 || op->reply->completions() == 1);  // R1
    }
  }
  if (sut.file_guard) {
    I2O2_PROPERTY_ASSERT(sut.file_guard->destroyed.load() == 1,
                         "G5: a registered file's guard was not released");
    sut.check_release(*sut.file_guard);
  }
  for (const auto& registration : sut.pipe_guards)
    sut.check_release(*registration);
}

}  // namespace
