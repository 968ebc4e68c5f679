#pragma once
/// `basic_scheduler`: one ring, one scheduler thread, assembled from
/// policies. The whole hot path lives in this file: pull envelopes into
/// SQEs, submit, park, reap CQEs into replies and guard releases.

#include "config.hpp"
#include "detail/ring.hpp"
#include "detail/slot_table.hpp"
#include "detail/user_data.hpp"
#include "guard.hpp"
#include "handle.hpp"
#include "queue/concept.hpp"
#include "reply/concept.hpp"
#include "wait/concept.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace i2o2 {

namespace detail {
/// Checks a config before any kernel call; throws std::invalid_argument.
inline void validate(const config& cfg) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument("i2o2 config: " + what); };
  if (cfg.ring_depth == 0) fail("ring_depth must be at least 1");
  if ((cfg.ring_depth & (cfg.ring_depth - 1)) != 0)
    fail("ring_depth must be a power of two, got " + std::to_string(cfg.ring_depth));
  if (cfg.ring_depth > compat::max_ring_entries)
    fail("ring_depth " + std::to_string(cfg.ring_depth) + " exceeds the kernel maximum of " +
         std::to_string(compat::max_ring_entries));
  if (cfg.queue_capacity == 0) fail("queue_capacity must be at least 1");
  if (cfg.queue_capacity > max_queue_capacity)
    fail("queue_capacity " + std::to_string(cfg.queue_capacity) + " exceeds the maximum of " +
         std::to_string(max_queue_capacity));
  if (cfg.thread_name.size() > 15) fail("thread_name must be at most 15 characters");
}
} // namespace detail

template <queue_family Queue, wait_strategy Wait, reply_policy Reply, guard_type Guard>
class basic_scheduler {
public:
  using handle_type = basic_handle<Queue, Wait, Reply, Guard>;
  using reply_type = typename handle_type::reply_type;

  /// Validates `cfg` and creates the ring (disabled until `run`). Throws
  /// std::invalid_argument for a nonsense config and std::system_error when
  /// the kernel refuses (naming a missing flag and the kernel that has it).
  explicit basic_scheduler(config cfg = {})
      : config_((detail::validate(cfg), std::move(cfg))),
        ring_(config_),
        state_(std::make_shared<state_type>(config_.queue_capacity, ring_.sqe128(), deadline_of(config_))),
        slots_(ring_.cq_entries() - internal_reserve) {}

  basic_scheduler(const basic_scheduler&) = delete;
  basic_scheduler& operator=(const basic_scheduler&) = delete;

  /// If `run` never ran, ops already queued resolve with scheduler_closed.
  ~basic_scheduler() {
    state_->close(std::nullopt);
    while (!state_->closed_and_quiet()) detail::cpu_relax();
    state_->queue().pop_batch(state_->queue().capacity(), [](envelope_type&& envelope) noexcept {
      std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
    });
  }

  /// A new handle. Any thread.
  handle_type handle() { return handle_type(state_); }

  /// Runs the scheduler on the calling thread until it shuts down and every
  /// accepted op has completed. Call once. `on_started(error)` is called
  /// when the ring is ready (null) or failed to start (then run throws).
  template <class OnStarted>
  void run(OnStarted&& on_started) {
    try {
      ring_.enable();
      ring_.register_sparse_tables(config_.registered_files, config_.registered_buffers);
    } catch (...) {
      state_->close(std::nullopt);
      on_started(std::current_exception());
      throw;
    }
    on_started(std::exception_ptr{});
    loop();
    disarm_wait();
  }
  void run() {
    run([](std::exception_ptr) noexcept {});
  }

  /// Stops taking ops; `run` returns once every accepted op has completed.
  /// Ops still in flight after `deadline` are cancelled (each guard still
  /// released on its own CQE). Any thread.
  void request_stop(std::optional<std::chrono::nanoseconds> deadline) noexcept {
    state_->close(deadline);
  }
  void request_stop() noexcept { state_->close(deadline_of(config_)); }

  const config& settings() const noexcept { return config_; }
  /// The IORING_SETUP_* flags the ring was created with.
  std::uint32_t ring_flags() const noexcept { return ring_.flags(); }

private:
  using envelope_type = typename handle_type::envelope_type;
  using state_type = typename handle_type::state_type;
  using sender_type = typename handle_type::sender_type;

  /// CQ entries kept back for internal ops (the armed wake, cancels).
  static constexpr unsigned internal_reserve = 2;

  static std::optional<std::chrono::nanoseconds> deadline_of(const config& cfg) {
    if (!cfg.shutdown_deadline) return std::nullopt;
    return std::chrono::nanoseconds(*cfg.shutdown_deadline);
  }

  // ---- the loop ---------------------------------------------------------

  void loop() {
    for (;;) {
      pull();
      const bool closing = state_->closed();
      if (closing) {
        if (finished()) return;
        cancel_after_deadline();
      }
      submit_or_wait(closing);
      reap();
    }
  }

  /// Moves queued envelopes into SQEs while the SQ has room and the CQ can
  /// take their completions.
  void pull() noexcept {
    const unsigned budget = std::min(ring_.sq_space_left(), cq_room());
    if (budget == 0) return;
    const std::size_t pulled = state_->queue().pop_batch(budget, [this](envelope_type&& envelope) noexcept {
      const std::uint32_t id = slots_.insert(std::move(envelope.sender), std::move(envelope.guard));
      ring_.push(envelope.op, id);  // cannot fail: the budget counted free SQEs
    });
    if (pulled != 0) state_->signal_space();
  }

  void submit_or_wait(bool closing) noexcept {
    const bool queue_empty = state_->queue().empty();
    if (!queue_empty) {
      // More to pull: don't sleep unless the CQ budget is spent, in which
      // case only a completion can make room.
      enter(cq_room() == 0 ? 1U : 0U);
      return;
    }
    if (closing) {
      if (!state_->closed_and_quiet() || slots_.in_use() == 0) {
        enter(0);  // a producer is mid-push, or nothing left to wait for
        if (!state_->closed_and_quiet()) ::sched_yield();
        return;
      }
      wait_for_completion_until_deadline();
      return;
    }
    if constexpr (!Wait::can_park) {
      enter(0);
    } else if (ring_.iopoll()) {
      // IOPOLL rings only complete by polling, and cannot hold the armed
      // wake op: poll while ops are in flight, sleep outside when idle.
      if (slots_.in_use() == 0 && ring_.sq_pending() == 0 && state_->announce_park()) {
        state_->wait().block();
        state_->end_park();
      } else {
        enter(0);
      }
    } else if (state_->wait().arm(ring_) && state_->announce_park()) {
      // Armed before announcing: a producer may wake us the moment it sees
      // the announcement, and the wake must find everything in place.
      enter(1);
      state_->end_park();
    } else {
      enter(0);
    }
  }

  /// Submits queued SQEs; with `wait_for`, sleeps until a CQE is ready.
  /// Every error is transient here: -EINTR (a signal), -EAGAIN (the kernel
  /// is short of memory), -EBUSY (the CQ overflowed): reap and go round
  /// again. Unsubmitted SQEs stay queued; nothing is dropped.
  void enter(unsigned wait_for) noexcept {
    const int result = wait_for == 0 ? ring_.submit_and_get_events() : ring_.submit(wait_for);
    if (result == -EAGAIN || result == -EBUSY) ::sched_yield();
  }

  void wait_for_completion_until_deadline() noexcept {
    const auto deadline = state_->stop_deadline();
    if (!deadline || std::chrono::steady_clock::now() >= *deadline) {
      enter(1);
      return;
    }
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        *deadline - std::chrono::steady_clock::now());
    const auto nanos = std::max<std::int64_t>(left.count(), 0);
    ring_.submit_and_wait_timeout(__kernel_timespec{nanos / 1'000'000'000, nanos % 1'000'000'000});
  }

  void reap() noexcept {
    ring_.reap([this](std::uint64_t user_data, int result) noexcept {
      if (!detail::is_internal(user_data)) {
        slots_.complete(static_cast<std::uint32_t>(user_data), result);
      } else if (user_data == detail::wake_user_data) {
        state_->wait().on_wake(result);
      } else if (user_data == detail::cancel_user_data) {
        --cancels_in_flight_;
      }
    });
  }

  // ---- shutdown ---------------------------------------------------------

  /// Closed, nobody mid-push, nothing queued, nothing in flight (G5).
  bool finished() noexcept {
    return state_->closed_and_quiet() && state_->queue().empty() && slots_.in_use() == 0 &&
           ring_.sq_pending() == 0;
  }

  /// After the stop deadline, asks the kernel to cancel every op in flight.
  void cancel_after_deadline() noexcept {
    const auto deadline = state_->stop_deadline();
    if (!deadline || std::chrono::steady_clock::now() < *deadline) return;
    slots_.request_cancels([this](std::uint32_t id) noexcept { return push_cancel(id); });
  }

  bool push_cancel(std::uint64_t target) noexcept {
    if (cq_room() == 0) return false;
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) return false;
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = detail::cancel_user_data;
    ++cancels_in_flight_;
    return true;
  }

  /// The armed wake op must complete before the ring closes: the kernel
  /// would otherwise write into the wait strategy after we are gone.
  void disarm_wait() noexcept {
    bool cancel_sent = false;
    while (state_->wait().armed() || cancels_in_flight_ != 0) {
      if (state_->wait().armed() && !cancel_sent) cancel_sent = push_cancel(detail::wake_user_data);
      enter(1);
      reap();
    }
  }

  /// Completions the CQ can still take beyond what is in flight.
  unsigned cq_room() const noexcept {
    const unsigned in_flight = slots_.in_use() + cancels_in_flight_ + (state_->wait().armed() ? 1U : 0U);
    const unsigned limit = ring_.cq_entries();
    return in_flight >= limit - internal_reserve ? 0U : limit - internal_reserve - in_flight;
  }

  // ---- members ----------------------------------------------------------

  // The settings, validated.
  const config config_;
  // The io_uring; scheduler thread only once running.
  detail::ring ring_;
  // Queue, wait strategy and gate, shared with every handle.
  std::shared_ptr<state_type> state_;
  // Sender and guard of every op in flight, indexed by user_data.
  detail::slot_table<sender_type, Guard> slots_;
  // ASYNC_CANCELs whose own CQE has not arrived yet.
  unsigned cancels_in_flight_ = 0;
};

} // namespace i2o2
