#pragma once
// Model-based property test of the scheduler against the real kernel, for
// every queue x wait x reply combination (one property_scheduler_<wait>.cpp
// per wait strategy: one file for all 24 took over three minutes to compile
// under ASan, the longest step of the build). rapidcheck generates sequences of
// commands (guarded nops, reads parked on pipes, feeding them, file writes
// read back, dropped replies, handle copies, registered files, cancels);
// the model predicts every result and every guard's state, and after each
// command the real scheduler must agree:
//   G1 every guard is destroyed at most once, and exactly once in the end;
//   G2 never while its op is unresolved (a parked read's guard stays alive);
//   G5 shutdown resolves everything and releases every guard;
//   G6 a dropped reply frees nothing early; R1 each reply resolves once.
#include "policy_matrix.hpp"

#include <rapidcheck/catch.h>
#include <rapidcheck/state.h>

#include <array>
#include <climits>
#include <cstdio>
#include <memory>

namespace {

using i2o2_test::guard_record;
constexpr int pipe_count = 3;
constexpr std::uint64_t file_slots = 64;

/// Fails the property, naming the cause on stderr first: rapidcheck re-runs
/// the shrunk case to print it, and a timing-dependent failure (a lost
/// wake-up) may pass then, leaving "Falsifiable" with no reason.
#define I2O2_PROPERTY_FAIL(message)                                                                          \
  do {                                                                                                       \
    std::fprintf(stderr, "property_scheduler: %s\n", message);                                               \
    RC_FAIL(message);                                                                                        \
  } while (false)

/// Waits for a reply, turning a hang into a failure rapidcheck can shrink.
int wait_bounded(const i2o2_test::pending& reply) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    if (const auto result = reply.try_get()) return *result;
    if (std::chrono::steady_clock::now() > deadline) I2O2_PROPERTY_FAIL("a reply did not resolve within 5 s");
    std::this_thread::yield();
  }
}

struct model {
  std::array<int, pipe_count> parked{};  // unresolved reads per pipe
  int extra_handles = 0;
  bool file_registered = false;
};

template <class Policies>
struct system_under_test {
  using scheduler = typename Policies::scheduler;
  using handle_type = typename scheduler::handle_type;
  static constexpr bool cancellable = requires(const typename handle_type::reply_type& reply) {
    reply.cancel_key();
  };

  struct tracked {
    std::shared_ptr<guard_record> guard = std::make_shared<guard_record>();
    std::optional<i2o2_test::pending> reply;
    int pipe = -1;           // a read parked on this pipe, or -1
    int expected = INT_MIN;  // the result the model predicts, once known
    bool resolved_seen = false;
  };

  system_under_test()
      // A failed sequence unwinds through the owner's destructor: cancel what
      // is parked at once rather than after the default 30 s.
      : spawned(i2o2::spawn_scheduler<scheduler>({.queue_capacity = 16,
                                                  .ring_depth = 8,
                                                  .registered_files = 2,
                                                  .shutdown_deadline = std::chrono::milliseconds(1)})) {
    for (auto& pipe : pipes)
      pipe = std::make_unique<i2o2_test::pipe_pair>();
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

  int resolved_reads_on(int pipe) const {
    int resolved = 0;
    for (const auto& op : ops)
      if (op->pipe == pipe && op->resolved_seen) ++resolved;
    return resolved;
  }

  /// Refreshes which ops resolved, checking G1/G2/G6/R1 on the way.
  void check(const model& m) {
    settle();
    std::array<int, pipe_count> unresolved{};
    for (auto& op : ops) {
      const int destroyed = op->guard->destroyed.load();
      RC_ASSERT(destroyed <= 1);  // G1
      std::optional<int> result;
      if (op->reply) result = op->reply->try_get();
      if (result) {
        op->resolved_seen = true;
        if (op->expected != INT_MIN) RC_ASSERT(*result == op->expected);
        if (op->pipe >= 0) RC_ASSERT(*result == 1 || *result == -ECANCELED);
        RC_ASSERT(op->reply->completions() == -1 || op->reply->completions() == 1);  // R1
        RC_ASSERT(destroyed == 1);  // settled: the guard went right after the reply
      } else if (op->pipe >= 0 && !op->resolved_seen) {
        // A parked read: still in the kernel, so its guard must be alive
        // (G2), whether or not its reply was dropped (G6).
        if (op->guard->destroyed.load() == 1) {
          op->resolved_seen = true;  // a dropped reply's read that completed
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
  }

  i2o2::spawned<scheduler> spawned;
  std::vector<handle_type> extra_handles;
  std::array<std::unique_ptr<i2o2_test::pipe_pair>, pipe_count> pipes;
  i2o2_test::temp_file file;
  std::vector<std::unique_ptr<tracked>> ops;
  std::optional<int> file_index;
  std::shared_ptr<guard_record> file_guard;
};

template <class Policies>
using command = rc::state::Command<model, system_under_test<Policies>>;

template <class Policies>
struct submit_nop final : command<Policies> {
  void run(const model& m, system_under_test<Policies>& sut) const override {
    auto& op = sut.add();
    op.expected = 0;
    op.reply.emplace(i2o2_test::submit(sut.handle(), i2o2::op::nop{}, i2o2_test::counting_guard(op.guard)));
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
    auto& op = sut.add(pipe);
    auto buffer = std::make_shared<char>('\0');
    // The guard owns the buffer and records its own death.
    struct owning_guard {
      i2o2_test::counting_guard counter;
      std::shared_ptr<char> buffer;
    };
    op.reply.emplace(i2o2_test::submit(
        sut.handle(), i2o2::op::read{.file = sut.pipes[pipe]->read_end(), .buf = buffer.get(), .len = 1},
        owning_guard{i2o2_test::counting_guard(op.guard), buffer}));
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "park_read(" << pipe << ")"; }
};

template <class Policies>
struct feed_pipe final : command<Policies> {
  int pipe = *rc::gen::inRange(0, pipe_count);
  void checkPreconditions(const model& m) const override { RC_PRE(m.parked[pipe] > 0); }
  void apply(model& m) const override { --m.parked[pipe]; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    const int before = sut.resolved_reads_on(pipe);
    sut.pipes[pipe]->feed("x", 1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    // One parked read takes the byte; wait until the scheduler has it.
    for (;;) {
      int resolved = 0;
      for (auto& op : sut.ops) {
        if (op->pipe != pipe) continue;
        if (op->resolved_seen || (op->reply && op->reply->try_get()) || op->guard->destroyed.load() == 1)
          ++resolved;
      }
      if (resolved > before) break;
      if (std::chrono::steady_clock::now() > deadline)
        I2O2_PROPERTY_FAIL("a fed read did not complete within 5 s");
      std::this_thread::yield();
    }
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "feed_pipe(" << pipe << ")"; }
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
    write.reply.emplace(i2o2_test::submit(
        sut.handle(), i2o2::op::write{.file = target, .buf = &byte, .len = 1, .offset = offset},
        i2o2_test::counting_guard(write.guard)));
    RC_ASSERT(wait_bounded(*write.reply) == 1);
    char back = 0;
    auto& read = sut.add();
    read.expected = 1;
    read.reply.emplace(i2o2_test::submit(
        sut.handle(), i2o2::op::read{.file = target, .buf = &back, .len = 1, .offset = offset},
        i2o2_test::counting_guard(read.guard)));
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
      for (auto& op : sut.ops) {
        if (op->pipe != pipe || !op->reply || op->reply->try_get()) continue;
        // The pipe is empty, so the read is truly parked: the cancel finds it.
        RC_ASSERT(wait_bounded(i2o2_test::cancel(sut.handle(), *op->reply)) == 0);
        RC_ASSERT(wait_bounded(*op->reply) == -ECANCELED);
        op->expected = -ECANCELED;
        sut.check(this->nextState(m));
        return;
      }
      RC_FAIL("the model has a parked read on this pipe, the system none");
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

template <class Policies>
struct register_file final : command<Policies> {
  void checkPreconditions(const model& m) const override { RC_PRE(!m.file_registered); }
  void apply(model& m) const override { m.file_registered = true; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    sut.file_guard = std::make_shared<guard_record>();
    using handle_type = typename system_under_test<Policies>::handle_type;
    const auto registered = i2o2_test::request<handle_type>([&](auto&&... reply_args) {
      return sut.handle().register_file(sut.file.fd(), i2o2_test::counting_guard(sut.file_guard),
                                        std::forward<decltype(reply_args)>(reply_args)...);
    });
    const int index = wait_bounded(registered);
    RC_ASSERT(index >= 0);
    RC_ASSERT(index < 2);
    sut.file_index = index;
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "register_file"; }
};

template <class Policies>
struct unregister_file final : command<Policies> {
  void checkPreconditions(const model& m) const override { RC_PRE(m.file_registered); }
  void apply(model& m) const override { m.file_registered = false; }
  void run(const model& m, system_under_test<Policies>& sut) const override {
    using handle_type = typename system_under_test<Policies>::handle_type;
    const unsigned index = static_cast<unsigned>(*sut.file_index);
    RC_ASSERT(wait_bounded(i2o2_test::request<handle_type>([&](auto&&... reply_args) {
                return sut.handle().unregister_file(index, std::forward<decltype(reply_args)>(reply_args)...);
              })) == 0);
    sut.file_index.reset();
    // G4: the guard goes with the tag CQE, which follows promptly when no
    // op uses the file.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (sut.file_guard->destroyed.load() == 0) {
      if (std::chrono::steady_clock::now() > deadline)
        I2O2_PROPERTY_FAIL("the file's tag CQE did not come within 5 s");
      std::this_thread::yield();
    }
    RC_ASSERT(sut.file_guard->destroyed.load() == 1);
    sut.check(this->nextState(m));
  }
  void show(std::ostream& out) const override { out << "unregister_file"; }
};

template <class Policies>
void run_model() {
  using sut_type = system_under_test<Policies>;
  model initial;
  sut_type sut;
  rc::state::check(
      initial, sut,
      rc::state::gen::execOneOfWithArgs<submit_nop<Policies>, park_read<Policies>, feed_pipe<Policies>,
                                        write_then_read<Policies>, drop_reply<Policies>,
                                        cancel_read<Policies>, copy_handle<Policies>, drop_handle<Policies>,
                                        register_file<Policies>, unregister_file<Policies>>());

  // Shutdown (G5), with or without a deadline: every reply resolves, every
  // guard is released exactly once, the thread joins.
  const bool with_deadline = *rc::gen::arbitrary<bool>();
  if (std::getenv("I2O2_MODEL_TRACE")) {
    std::fprintf(stderr, "shutdown, deadline=%d\n", with_deadline);
    for (auto& op : sut.ops)
      if (op->pipe >= 0)
        std::fprintf(stderr, "  read pipe=%d seen=%d destroyed=%d reply=%d resolved=%d\n", op->pipe,
                     op->resolved_seen, op->guard->destroyed.load(), op->reply.has_value(),
                     op->reply && op->reply->try_get().has_value());
  }
  if (with_deadline) {
    sut.spawned.owner.stop(std::chrono::milliseconds(5));
  } else {
    for (int pipe = 0; pipe < pipe_count; ++pipe) {
      int waiting = 0;
      for (auto& op : sut.ops)
        if (op->pipe == pipe && !op->resolved_seen && op->guard->destroyed.load() == 0) ++waiting;
      const std::string bytes(static_cast<std::size_t>(waiting), 'y');
      if (waiting > 0) sut.pipes[pipe]->feed(bytes.data(), bytes.size());
    }
    // Every fed read completes (bounded, so a lost one is a failure that
    // rapidcheck can shrink), and only then does the scheduler stop.
    for (auto& op : sut.ops) {
      if (op->pipe < 0 || op->resolved_seen) continue;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (op->guard->destroyed.load() == 0) {
        if (std::chrono::steady_clock::now() > deadline)
          I2O2_PROPERTY_FAIL("a read fed at shutdown did not complete");
        std::this_thread::yield();
      }
    }
    sut.spawned.owner.stop(std::nullopt);
  }
  for (auto& op : sut.ops) {
    RC_ASSERT(op->guard->destroyed.load() == 1);
    if (op->reply) {
      const auto result = op->reply->try_get();
      RC_ASSERT(result.has_value());
      if (op->pipe >= 0 && !with_deadline) RC_ASSERT(*result == 1 || *result == -ECANCELED);
    }
  }
  if (sut.file_guard) RC_ASSERT(sut.file_guard->destroyed.load() == 1);
}

}  // namespace
