#pragma once
/// The future reply: `submit` returns an `i2o2::future_reply` the client can
/// `wait()` on, poll with `try_get()`, bound with `wait_for()`, or
/// `co_await` from a C++20 coroutine.

#include "../detail/adaptive_spin.hpp"
#include "../detail/any_waiter.hpp"
#include "../detail/cpu_relax.hpp"
#include "../detail/futex.hpp"
#include "../detail/state_pool.hpp"
#include "../errors.hpp"
#include "concept.hpp"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>

namespace i2o2 {

namespace detail {

/// Shared by one sender and one receiver; freed by whichever lets go last.
struct future_state {
  static constexpr std::uint32_t ready = 1;    // result is published
  static constexpr std::uint32_t sleeper = 2;  // a thread sleeps on `flags`
  // `waiter` must be resumed: set by the awaiter as it suspends, taken back
  // by `detach` when the receiver goes first (its coroutine destroyed).
  static constexpr std::uint32_t continuation = 4;
  // A wait_any sleeps on `any` (among other replies): wake it there.
  static constexpr std::uint32_t any_sleeper = 8;

  // The futex word. Release on `ready` publishes `result`.
  std::atomic<std::uint32_t> flags{0};
  std::atomic<std::uint32_t> references{2};
  int result = 0;
  // Set by wait_any before it announces `any_sleeper`; read by the sender
  // only when its fetch_or(ready) saw that bit.
  any_waiter* any = nullptr;
  // Resumed on completion when `continuation` is set: inline, or through
  // `resumer(resumer_context)` when the awaiter names an executor.
  std::coroutine_handle<> waiter;
  void (*resumer)(void* context) noexcept = nullptr;
  void* resumer_context = nullptr;

  static future_state* make() { return state_pool<future_state>::make(); }

  void release() noexcept {
    // acq_rel: the last owner must see the other's writes before freeing.
    if (references.fetch_sub(1, std::memory_order_acq_rel) == 1) state_pool<future_state>::destroy(this);
  }

  /// Receiver side, as it lets go: takes back a continuation the result
  /// has not reached yet, so that the completion resumes nothing (the
  /// coroutine that set it, and the frame `waiter` and `resumer_context`
  /// point into, are being destroyed). The sender's fetch_or(ready) and
  /// this CAS modify the one word, so one of them comes first: if the CAS
  /// does, the sender finds no continuation and reads neither `waiter`
  /// nor the frame; if the sender does, the CAS sees `ready` and gives up,
  /// and the sender resumes the coroutine (destroying it meanwhile is then
  /// the caller's race with that resumption, as for any coroutine).
  void detach() noexcept {
    // Relaxed: who came first is decided by the word's modification order,
    // which every order respects. On success nothing is handed to the
    // sender (it reads nothing more of ours); on failure we read nothing
    // the sender wrote. release() orders the state's own lifetime.
    auto now = flags.load(std::memory_order_relaxed);
    while ((now & (continuation | ready)) == continuation &&
           !flags.compare_exchange_weak(now, now & ~continuation, std::memory_order_relaxed)) {
    }
  }

  void resume() noexcept {
    if (resumer != nullptr)
      resumer(resumer_context);
    else
      waiter.resume();
  }
};

/// Something a coroutine can be resumed on: `executor.execute(handle)` runs
/// `handle.resume()` now or later, on a thread of the executor's choosing.
template <class E>
concept coroutine_executor = std::copy_constructible<E> &&
    requires(E& executor, std::coroutine_handle<> handle) {
  executor.execute(handle);
};

/// Whether `E` says it resumes a coroutine right inside `execute`.
template <class E>
inline constexpr bool runs_inline = [] {
  if constexpr (requires { E::runs_inline; })
    return bool{E::runs_inline};
  else
    return false;
}();

}  // namespace detail

/// What a future-reply submit returns. Move-only. Any thread may wait on
/// it; one thread at a time.
class future_reply {
public:
  future_reply() noexcept = default;
  explicit future_reply(detail::future_state* state) noexcept : state_(state) {}
  future_reply(future_reply&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), key_(other.key_) {}
  future_reply& operator=(future_reply&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
      key_ = other.key_;
    }
    return *this;
  }
  /// Dropping a reply early cancels nothing: the op runs to completion and
  /// its guard is released on its CQE as usual (G6). A coroutine suspended
  /// on the reply is not resumed once the reply is gone (see co_await).
  ~future_reply() { reset(); }

  /// Names the op for `handle.cancel(reply)`; set by the handle.
  std::uint64_t cancel_key() const noexcept { return key_; }
  void set_cancel_key(std::uint64_t key) noexcept { key_ = key; }

  friend std::size_t wait_any(std::span<const future_reply> replies);

  /// False for a default-constructed or moved-from reply.
  bool valid() const noexcept { return state_ != nullptr; }

  /// The result if it is in, without waiting. Precondition (as for every
  /// call below but `valid()`): `valid()`.
  std::optional<int> try_get() const noexcept {
    if (!is_ready()) return std::nullopt;
    return state_->result;
  }

  bool is_ready() const noexcept {
    return (state_->flags.load(std::memory_order_acquire) & detail::future_state::ready) != 0;
  }

  /// Blocks until the op completes; returns the syscall-style result.
  /// Spins briefly (replies to fast ops arrive within microseconds), then
  /// sleeps on the futex word. Precondition: `valid()`.
  int wait() const noexcept {
    while (!wait_until_ready(nullptr)) {
    }
    return state_->result;
  }

  /// Like `wait()`, but gives up after `timeout` (empty result); a timeout
  /// past the clock's range waits as long as `wait()`.
  template <class Rep, class Period>
  std::optional<int> wait_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    const auto deadline = deadline_after(timeout);
    for (;;) {
      if (is_ready()) return state_->result;
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= left.zero()) return std::nullopt;
      const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      const timespec relative{static_cast<time_t>(nanos / 1'000'000'000),
                              static_cast<long>(nanos % 1'000'000'000)};
      if (wait_until_ready(&relative)) return state_->result;
    }
  }

  /// `co_await reply` suspends until the result is in. The coroutine is
  /// resumed on the scheduler thread: keep what follows short, or hop to
  /// your own executor, and never block on the scheduler from there.
  ///
  /// The reply must outlive the suspension. A suspended coroutine may be
  /// destroyed (a cancelled task, a runtime shutting down) while the reply
  /// it awaits lives in its frame, as the operand of
  /// `co_await handle.submit(op)` or a local does: destroying the reply
  /// takes the resumption back, and the op, which still runs to its end
  /// with its guard released on its CQE (G6), leaves the frame alone. A
  /// reply kept elsewhere must be destroyed with the frame, before its op
  /// can complete. Once the result is in, the coroutine is being resumed:
  /// destroying it then races with that, as with any coroutine.
  auto operator co_await() const noexcept {
    struct awaiter {
      detail::future_state* state;
      bool await_ready() const noexcept {
        return (state->flags.load(std::memory_order_acquire) & detail::future_state::ready) != 0;
      }
      bool await_suspend(std::coroutine_handle<> handle) noexcept {
        state->waiter = handle;
        // acq_rel: publishes `waiter` to the completer; if the result came
        // in meanwhile, acquire makes it visible and we do not suspend.
        const auto before =
            state->flags.fetch_or(detail::future_state::continuation, std::memory_order_acq_rel);
        return (before & detail::future_state::ready) == 0;
      }
      int await_resume() const noexcept { return state->result; }
    };
    return awaiter{state_};
  }

  /// `co_await reply.resume_on(executor)` suspends until the result is in,
  /// then resumes the coroutine through `executor.execute(handle)` instead
  /// of inline on the scheduler thread (also when the result was in
  /// already, so what follows always runs on the executor). An executor
  /// with `static constexpr bool runs_inline = true` (inline_executor) is
  /// not called when the result is in already: the coroutine just goes on,
  /// rather than nesting a stack frame per await. Destroying the suspended
  /// coroutine is as for `co_await reply`; `executor` is then not called.
  template <detail::coroutine_executor Executor>
  auto resume_on(Executor executor) const noexcept {
    struct awaiter {
      detail::future_state* state;
      Executor executor;
      std::coroutine_handle<> handle;

      // Otherwise always suspends, even when the result is in: the
      // coroutine then continues on the executor, never on the awaiting thread.
      bool await_ready() const noexcept {
        return detail::runs_inline<Executor> &&
               (state->flags.load(std::memory_order_acquire) & detail::future_state::ready) != 0;
      }
      bool await_suspend(std::coroutine_handle<> waiting) noexcept {
        handle = waiting;
        state->resumer_context = this;  // the awaiter lives in the suspended frame
        state->resumer = [](void* context) noexcept {
          // Copied out first: once execute() hands the coroutine on, another
          // thread may resume it and free the frame that holds the awaiter.
          auto* self = static_cast<awaiter*>(context);
          Executor target = self->executor;
          target.execute(self->handle);
        };
        const auto before =
            state->flags.fetch_or(detail::future_state::continuation, std::memory_order_acq_rel);
        if ((before & detail::future_state::ready) == 0) return true;
        if constexpr (detail::runs_inline<Executor>) return false;  // in already: go on here
        Executor target = executor;  // as above: the frame may be gone once handed on
        target.execute(waiting);
        return true;
      }
      int await_resume() const noexcept { return state->result; }
    };
    return awaiter{state_, std::move(executor), {}};
  }

private:
  /// Now + `timeout`, saturating: a timeout past the clock's range waits
  /// for ever instead of overflowing into the past.
  template <class Rep, class Period>
  static std::chrono::steady_clock::time_point
  deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
    const auto now = std::chrono::steady_clock::now();
    const auto left = std::chrono::steady_clock::time_point::max() - now;
    // Compared as floating point: converting a long timeout to the clock's
    // nanoseconds is itself what overflows.
    if (std::chrono::duration<double>(timeout) >= std::chrono::duration<double>(left))
      return std::chrono::steady_clock::time_point::max();
    return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  }

  /// One spin-then-sleep round; true once ready. The spin budget adapts
  /// per thread: it grows while spinning catches replies (one client, a
  /// fast op) and shrinks while it does not (many clients sharing few
  /// cores, where spinners would starve the scheduler thread itself).
  bool wait_until_ready(const timespec* timeout) const noexcept {
    if (detail::adaptive_spin::run([this] { return is_ready(); })) return true;
    // Oversubscribed (more clients than cores): hand the core over a few
    // times before sleeping; the scheduler thread usually runs and
    // completes us, sparing a futex sleep and wake.
    for (int round = 0; round < 12; ++round) {
      ::sched_yield();
      if (is_ready()) return true;
    }
    auto flags = state_->flags.fetch_or(detail::future_state::sleeper, std::memory_order_acq_rel);
    if (flags & detail::future_state::ready) return true;
    detail::futex_wait(state_->flags, flags | detail::future_state::sleeper, timeout);
    return is_ready();
  }

  /// Lets go of the state; withdraws first a coroutine suspended on it,
  /// whose frame (holding this reply) is being destroyed.
  void reset() noexcept {
    if (state_ == nullptr) return;
    detail::future_state* state = std::exchange(state_, nullptr);
    state->detach();
    state->release();
  }

  detail::future_state* state_ = nullptr;
  std::uint64_t key_ = 0;
};

namespace reply {

/// The future reply policy (the default).
struct future {
  class sender {
  public:
    explicit sender(detail::future_state* state) noexcept : state_(state) {}
    sender(sender&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    sender& operator=(sender&&) = delete;
    ~sender() {
      if (state_ != nullptr) std::move(*this).complete(result_of(errc::scheduler_closed));
    }

    /// Scheduler thread: publishes the result and wakes or resumes the waiter.
    void complete(int result) && noexcept {
      detail::future_state* state = std::exchange(state_, nullptr);
      state->result = result;
      const auto before = state->flags.fetch_or(detail::future_state::ready, std::memory_order_acq_rel);
      if (before & detail::future_state::sleeper) detail::futex_wake(state->flags);
      if (before & detail::future_state::any_sleeper) state->any->wake();
      if (before & detail::future_state::continuation) state->resume();
      state->release();
    }

  private:
    detail::future_state* state_;
  };

  using receiver = future_reply;

  static std::pair<sender, receiver> make() {
    auto* state = detail::future_state::make();
    return {sender(state), receiver(state)};
  }
};
static_assert(reply_factory<future>);

}  // namespace reply

/// Blocks until one of `replies` is ready and returns the index of the
/// first ready one: how a client with several ops in flight takes whichever
/// finishes first instead of waiting on the oldest. Spins briefly, then
/// sleeps on one futex word shared by all of them (detail/any_waiter.hpp):
/// any number of replies, on any kernel, and however many complete at
/// once, the scheduler makes one wake syscall. Preconditions: `replies` is
/// not empty, every reply is valid(), and no other thread waits on them.
/// Throws std::bad_alloc if it must sleep and cannot get a waiter (its pool
/// allocates only when empty, as on a thread's first sleep); nothing is
/// announced then, and the replies are as they were.
inline std::size_t wait_any(std::span<const future_reply> replies) {
  using state = detail::future_state;
  std::size_t found = 0;
  const auto any_ready = [&] {
    for (found = 0; found < replies.size(); ++found)
      if (replies[found].is_ready()) return true;
    return false;
  };
  if (any_ready() || detail::adaptive_spin::run(any_ready)) return found;
  // As wait() does: hand the core over a few times before sleeping.
  for (int round = 0; round < 12; ++round) {
    ::sched_yield();
    if (any_ready()) return found;
  }
  detail::any_waiter* waiter = detail::any_waiter::make();  // holding our own reference
  for (;;) {
    // References of this round's announcements that no sender saw: given
    // back each round, so that a wait interrupted again and again (signals)
    // cannot grow the count.
    std::uint32_t unused = 0;
    // Announce the waiter on each reply (a reference each, which the
    // sender takes over if it sees the announcement); stop at one that
    // is in already, whose sender never will.
    waiter->hold(static_cast<std::uint32_t>(replies.size()));
    std::size_t announced = 0;
    bool in_already = false;
    for (; announced < replies.size(); ++announced) {
      state& target = *replies[announced].state_;
      target.any = waiter;
      const auto before = target.flags.fetch_or(state::any_sleeper, std::memory_order_acq_rel);
      if (before & state::ready) {
        target.flags.fetch_and(~state::any_sleeper, std::memory_order_relaxed);
        in_already = true;
        break;
      }
    }
    unused += static_cast<std::uint32_t>(replies.size() - announced);
    if (!in_already) waiter->sleep();
    // Withdraw: a reply already in when its bit is cleared had a sender
    // that saw the announcement (its reference is the sender's to drop);
    // any other reply's sender will never see it.
    bool any_in = in_already;
    for (std::size_t i = 0; i < announced; ++i) {
      const auto before = replies[i].state_->flags.fetch_and(~state::any_sleeper, std::memory_order_acq_rel);
      if (before & state::ready)
        any_in = true;
      else
        ++unused;
    }
    if (any_in) {
      waiter->release(unused + 1);  // and ours: a sender that saw us may still hold it
      any_ready();
      return found;
    }
    // Nothing in: a signal or a spurious wake. No sender saw an
    // announcement, so the word is still clear: announce again.
    waiter->release(unused);  // never the last: ours remains
  }
}

}  // namespace i2o2
