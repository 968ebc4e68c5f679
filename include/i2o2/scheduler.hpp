#pragma once
/// `basic_scheduler`: one ring, one scheduler thread, assembled from
/// policies. The whole hot path lives in this file: pull envelopes into
/// SQEs, submit, park, reap CQEs into replies and guard releases.

#include "config.hpp"
#include "detail/busy_spin.hpp"
#include "detail/resource_table.hpp"
#include "detail/ring.hpp"
#include "detail/slot_table.hpp"
#include "detail/submit_budget.hpp"
#include "detail/user_data.hpp"
#include "guard.hpp"
#include "handle.hpp"
#include "queue/concept.hpp"
#include "reply/concept.hpp"
#include "wait/concept.hpp"

#include <sched.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
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
  if (cfg.registered_files > max_registered_files)
    fail("registered_files " + std::to_string(cfg.registered_files) + " exceeds the kernel maximum of " +
         std::to_string(max_registered_files));
  if (cfg.registered_buffers > max_registered_buffers)
    fail("registered_buffers " + std::to_string(cfg.registered_buffers) + " exceeds the kernel maximum of " +
         std::to_string(max_registered_buffers));
  if (cfg.thread_name.size() > 15) fail("thread_name must be at most 15 characters");
  if (cfg.submit_budget.count() < 0) fail("submit_budget must not be negative (0: no limit)");
  if (cfg.idle_spin.count() < 0) fail("idle_spin must not be negative (0: park at once)");
  if (cfg.busy_spin.count() < 0 || cfg.busy_spin > std::chrono::seconds(1))
    fail("busy_spin must be between 0 and 1 s (0: only the idle spin), got " +
         std::to_string(cfg.busy_spin.count()) + " us");
  if (cfg.shutdown_deadline && cfg.shutdown_deadline->count() < 0)
    fail("shutdown_deadline must not be negative (0: cancel at once; empty: never)");
  if (cfg.sqpoll && (cfg.sqpoll_idle.count() < 1 || cfg.sqpoll_idle.count() > 0xffffffffLL))
    fail("sqpoll_idle must be between 1 and 4294967295 ms (the kernel takes 0 for a second), got " +
         std::to_string(cfg.sqpoll_idle.count()));
  if (cfg.sqpoll && cfg.coop_taskrun)
    fail("sqpoll and coop_taskrun cannot be combined: the kernel refuses COOP_TASKRUN on SQPOLL rings");
}
}  // namespace detail

template <queue_family Queue, wait_strategy Wait, reply_policy Reply, guard_type Guard>
class basic_scheduler {
public:
  using handle_type = basic_handle<Queue, Wait, Reply, Guard>;
  using reply_type = typename handle_type::reply_type;

  /// Validates `cfg` and creates the ring (disabled until `run`). Throws
  /// std::invalid_argument for a nonsense config and std::system_error when
  /// the kernel refuses (naming a missing flag and the kernel that has it).
  explicit basic_scheduler(config cfg = {})
      : config_((detail::validate(cfg), std::move(cfg))), ring_(config_),
        state_(std::make_shared<state_type>(
            config_.queue_capacity, ring_.flags(),
            std::min(ring_.sq_entries(), ring_.cq_entries() - internal_reserve), deadline_of(config_))),
        slots_(ring_.cq_entries() - 1), files_(config_.registered_files),
        buffers_(config_.registered_buffers) {}

  basic_scheduler(const basic_scheduler&) = delete;
  basic_scheduler& operator=(const basic_scheduler&) = delete;

  /// If `run` never ran, ops already queued resolve with scheduler_closed.
  ~basic_scheduler() { refuse_queued(); }

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
      refuse_queued();
      on_started(std::current_exception());
      throw;
    }
    try {
      on_started(std::exception_ptr{});
    } catch (...) {
      refuse_queued();  // nothing will run them
      throw;
    }
    state_->mark_scheduler_thread(true);
    loop();
    disarm_wait();
    state_->mark_scheduler_thread(false);
  }
  void run() {
    run([](std::exception_ptr) noexcept {});
  }

  /// Stops taking ops; `run` returns once every accepted op has completed.
  /// Ops still in flight after `deadline` are cancelled (each guard still
  /// released on its own CQE). Any thread.
  void request_stop(std::optional<std::chrono::nanoseconds> deadline) noexcept { state_->close(deadline); }
  void request_stop() noexcept { state_->close(deadline_of(config_)); }

  const config& settings() const noexcept { return config_; }
  /// Whether the scheduler polls for config::busy_spin before parking now
  /// (its recent idle gaps were short). Any thread; a snapshot.
  bool busy_spinning() const noexcept { return busy_spin_.polling(); }
  /// The IORING_SETUP_* flags the ring was created with.
  std::uint32_t ring_flags() const noexcept { return ring_.flags(); }

private:
  using envelope_type = typename handle_type::envelope_type;
  using state_type = typename handle_type::state_type;
  using sender_type = typename handle_type::sender_type;
  using resources_type = detail::resource_table<Guard>;

  /// CQ entries user ops leave free: one always kept for the armed wake,
  /// the other for a cancel (a user's, or the shutdown's), so that a ring
  /// full of ops that never finish can still be cancelled.
  static constexpr unsigned internal_reserve = 2;

  /// Closes, and resolves what was queued with scheduler_closed: for a
  /// scheduler that will not run (or run no more).
  void refuse_queued() noexcept {
    state_->close(std::nullopt);
    while (!state_->closed_and_quiet())
      detail::cpu_relax();
    state_->queue().pop_batch(state_->queue().capacity(), [](envelope_type& envelope) noexcept {
      std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
      return true;
    });
  }

  static std::optional<std::chrono::nanoseconds> deadline_of(const config& cfg) {
    return detail::shutdown_deadline_of(cfg);
  }

  // ---- the loop ---------------------------------------------------------

  void loop() {
    for (;;) {
      pull();
      if (chain_members_missing_ != 0) {
        // A chain's producer is still publishing its ops: submitting now
        // would split the chain. It is mid-push, so this is brief.
        detail::cpu_relax();
        continue;
      }
      // Read before the gate and the deadline: a sleep below is announced
      // with it, so a stop after this point always wakes us.
      const std::uint32_t stops_seen = state_->stop_requests();
      const bool closing = state_->closed();
      if (closing) {
        if (drained()) {
          release_resources();
          if (finished()) return;
        }
        cancel_after_deadline();
      }
      submit_or_wait(closing, stops_seen);
      reap();
    }
  }

  /// Moves queued envelopes into SQEs while the SQ has room and the CQ can
  /// take their completions; a chain goes in whole or waits at the front.
  /// Stops once the IO ops taken (NOPs are free) fill config::submit_budget,
  /// so that the loop enters the kernel with those and reaps before pulling
  /// more.
  void pull() noexcept {
    head_waits_for_room_ = false;
    cancel_waits_for_sqe_ = false;
    lane_deferred_ = false;
    // Members of a chain whose head an earlier pull took were budgeted then:
    // their SQEs are not free for anything else.
    const unsigned free_now = std::min(ring_.sq_space_left(), cq_room());
    unsigned budget = free_now > chain_members_missing_ ? free_now - chain_members_missing_ : 0U;
    // Counted per enter: IO ops still unsubmitted (a failed enter, a chain
    // waiting for its members) are already in the coming one.
    const unsigned cap = submit_budget_.cap();
    unsigned io_placed = submit_budget_.unsubmitted();
    const unsigned io_before = io_placed;
    run_due_unregisters(budget);
    const auto consume = [&](envelope_type& envelope) noexcept {
      if (envelope.kind != detail::envelope_kind::op) return control(envelope, budget);
      if (envelope.chain_length == 0) {  // a chain member: budgeted with its head
        --chain_members_missing_;
        place(envelope, false);
        return true;
      }
      const bool timed = envelope.op.timeout_ns != 0 && envelope.chain_length == 1;
      const unsigned needed = envelope.chain_length + (timed ? 1U : 0U);
      if (needed > budget) {
        head_waits_for_room_ = true;
        return false;
      }
      if (envelope.op.sqe().opcode != IORING_OP_NOP) {
        // The first always goes, however long its chain: each pull progresses.
        if (cap != 0 && io_placed != 0 && io_placed + envelope.chain_length > cap) return false;
        io_placed += envelope.chain_length;
      }
      budget -= needed;
      chain_members_missing_ = envelope.chain_length - 1U;
      place(envelope, timed);
      return true;
    };
    // Cancels whose op has gone into the ring since they came (never
    // between a chain's ops: the cancel's SQE would join the chain); first,
    // before ops take the SQEs.
    const auto run_held_cancels = [&] {
      if (chain_members_missing_ != 0) return;
      for (auto cancel = held_cancels_.begin(); cancel != held_cancels_.end();) {
        if (names_waiting_op(cancel->key)) {
          ++cancel;
        } else if (consume(*cancel)) {
          cancel = held_cancels_.erase(cancel);
        } else {
          break;  // no SQE or CQ entry for it yet
        }
      }
    };
    run_held_cancels();
    // Set aside earlier behind an op that waited for room: their turn next.
    while (!held_.empty() && consume(held_.front()))
      held_.pop_front();
    run_held_cancels();
    // Then the queue, in order; but when the op in front waits for room
    // and a cancel is queued behind it, or waits to get into a full queue,
    // the ops in between are set aside (in order) to reach the cancel: it
    // may name an op in flight, and that op's end is what makes the room.
    // They are what producers sent meanwhile, held here instead of queued.
    const auto take_queued = [&](envelope_type& envelope) noexcept {
      const bool cancel = envelope.kind == detail::envelope_kind::cancel;
      if (cancel && names_waiting_op(envelope.key)) {
        // Its op is set aside or in the overflow lane: it waits apart
        // until that op is in the ring (held_cancels_), as it would have
        // behind it in the queue.
        held_cancels_.push_back(std::move(envelope));
        state_->cancel_taken();
        return true;
      }
      if (held_.empty() || cancel) {
        // Any other cancel goes now, past what is set aside.
        if (consume(envelope)) {
          if (cancel) state_->cancel_taken();
          return true;
        }
        if (cancel || !head_waits_for_room_ || !state_->cancel_queued()) return false;
      } else if (!state_->cancel_queued()) {
        return false;  // no cancel left to reach: the rest stays queued
      }
      held_.push_back(std::move(envelope));
      return true;
    };
    // A chain goes whole, also when set aside: what is taken after its
    // head must be its members (chain_members_missing_ counts only those
    // of a head placed in the ring).
    const auto take_whole = [&](envelope_type& envelope) noexcept {
      const bool op = envelope.kind == detail::envelope_kind::op;
      const std::uint32_t length = envelope.chain_length;
      if (!take_queued(envelope)) return false;
      if (op && length > 1) members_to_take_ = length - 1U;
      if (op && length == 0 && members_to_take_ != 0) --members_to_take_;
      return true;
    };
    // What the scheduler thread itself submitted past a full queue (the
    // overflow lane) is taken at its turn among the queue's envelopes,
    // like them; never between a chain's head and its members, but a
    // chain in the lane has its members right behind its head there.
    auto& overflow = state_->overflow();
    const auto lane_member_missing = [&] {
      const envelope_type& front = overflow.front();
      return front.kind == detail::envelope_kind::op && front.chain_length == 0;
    };
    // Counted as each is taken, not after the batch: a callback run while
    // taking one may submit into a cell freed by those before, and then
    // into the lane, whose turn counts from here.
    const auto take_counted = [&](envelope_type& envelope) noexcept {
      if (!take_whole(envelope)) return false;
      overflow.popped(1);
      return true;
    };
    // What callbacks run meanwhile add to the lane waits for the next pull
    // (lane_deferred_: which comes without sleeping first).
    std::size_t lane_allowance = overflow.size();
    std::size_t pulled = 0;
    for (;;) {
      if (overflow.front_due() && (members_to_take_ == 0 || lane_member_missing())) {
        if (lane_allowance == 0) {
          lane_deferred_ = true;
          break;
        }
        if (!take_whole(overflow.front())) break;  // it waits, and so does all that came after it
        overflow.pop_front();
        --lane_allowance;
        continue;
      }
      // Up to the lane's turn; the members of a chain whose head came from
      // the queue (sent after the lane's front, or they would be before
      // its turn) regardless.
      const std::size_t turn =
          std::max<std::size_t>(overflow.pops_before_front(state_->queue().capacity()), members_to_take_);
      const std::size_t popped = state_->queue().pop_batch(turn, take_counted);
      pulled += popped;
      if (overflow.empty()) break;
      if (popped == turn) continue;
      if (!state_->queue_drained()) break;  // the queue's front waits, or a producer is mid-push
      overflow.queue_drained();
      if (members_to_take_ != 0) break;  // its members are still being published
    }
    if (pulled != 0) state_->signal_space();
    run_held_cancels();           // their ops may have been placed just now
    run_due_unregisters(budget);  // those just pulled, if no op of this pull could need their slot
    submit_budget_.placed(io_placed - io_before);
  }

  /// Nothing waiting to be pulled (a claimed but unpublished envelope counts
  /// as nothing: its producer wakes us after publishing it).
  bool nothing_queued() noexcept {
    return state_->queue().empty() && state_->overflow().empty() && held_.empty() && held_cancels_.empty();
  }

  /// Whether `key` names an op set aside (held_) or still in the overflow
  /// lane: sent, but not in the ring yet.
  bool names_waiting_op(std::uint64_t key) noexcept {
    const auto named = [key](const envelope_type& envelope) {
      return envelope.kind == detail::envelope_kind::op && envelope.key == key;
    };
    return key != 0 && (std::ranges::any_of(held_, named) || state_->overflow().any_of(named));
  }

  /// One op into the ring; with `timed`, a LINK_TIMEOUT right behind it.
  void place(envelope_type& envelope, bool timed) noexcept {
    const detail::direct_file_use direct = detail::direct_file_use_of(envelope.op.sqe());
    if (direct.names_slot()) [[unlikely]]
      files_.direct_op_placed(direct.file_index - 1);
    const std::uint64_t user_data = slots_.insert(
        std::move(envelope.sender), std::move(envelope.guard), envelope.key, envelope.op.extra_out,
        detail::late_table_use(envelope.op.sqe(), envelope.chain_length == 0), direct);
    if (timed) envelope.op.sqe().flags |= IOSQE_IO_LINK;
    ring_.push(envelope.op, user_data);  // cannot fail: the budget counted free SQEs
    if (!timed) return;
    __kernel_timespec& timeout = slots_.timeout_of(user_data);
    timeout.tv_sec = envelope.op.timeout_ns / 1'000'000'000;
    timeout.tv_nsec = envelope.op.timeout_ns % 1'000'000'000;
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) [[unlikely]]
      std::abort();  // the budget counted this SQE: a broken invariant, not a runtime condition
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_LINK_TIMEOUT;
    sqe->fd = -1;
    sqe->addr = reinterpret_cast<std::uintptr_t>(&timeout);
    sqe->len = 1;
    sqe->user_data = detail::link_timeout_user_data;
    ++link_timeouts_in_flight_;
  }

  /// A control request. Registration runs here on the scheduler thread,
  /// which SINGLE_ISSUER rings need; a cancel becomes an ASYNC_CANCEL op.
  /// Returns false to leave it queued (no room for a cancel yet).
  bool control(envelope_type& envelope, unsigned& budget) noexcept {
    using kind = detail::envelope_kind;
    switch (envelope.kind) {
    case kind::cancel: {
      const auto target = slots_.find_key(envelope.key);
      if (!target) {
        std::move(envelope.sender).complete(-ENOENT);  // done already, or never sent
        return true;
      }
      // A cancel may take the CQ entry user ops leave free.
      if (cq_room_for_cancel() == 0) return false;
      if (ring_.sq_space_left() == 0) {
        cancel_waits_for_sqe_ = true;  // the coming enter frees the SQ: no sleeping before it
        return false;
      }
      if (budget != 0) --budget;
      envelope.op.sqe().opcode = IORING_OP_ASYNC_CANCEL;
      envelope.op.sqe().fd = -1;
      envelope.op.sqe().addr = *target;
      envelope.key = 0;
      place(envelope, false);
      return true;
    }
    case kind::register_file:
      return register_resource(
          files_, envelope,
          [&](std::uint32_t index, std::uint64_t tag) {
            return ring_.update_file(index, envelope.op.sqe().fd, tag);
          },
          detail::internal_kind::file_tag);
    case kind::register_buffer:
      return register_resource(
          buffers_, envelope,
          [&](std::uint32_t index, std::uint64_t tag) {
            const iovec buffer{reinterpret_cast<void*>(envelope.op.sqe().addr),
                               static_cast<std::size_t>(envelope.op.sqe().off)};
            return ring_.update_buffer(index, buffer, tag);
          },
          detail::internal_kind::buffer_tag);
    case kind::unregister_file:
    case kind::unregister_buffer: {
      const auto& table = envelope.kind == kind::unregister_file ? files_ : buffers_;
      const auto index = static_cast<std::uint32_t>(envelope.key);
      if (!table.registered(index)) {
        std::move(envelope.sender).complete(result_of(errc::not_registered));
        return true;
      }
      // Ops placed before it may not have looked the slot up yet.
      unregisters_.push_back({std::move(envelope), slots_.placed_count(), table.registration(index)});
      run_due_unregisters(budget);
      return true;
    }
    case kind::op: break;
    }
    return true;
  }

  /// Returns false to leave the request queued: the table is full, but an
  /// unregister sent before it will free a slot.
  template <class Update>
  bool register_resource(resources_type& table, envelope_type& envelope, Update&& update,
                         detail::internal_kind tag_kind) noexcept {
    auto index = table.acquire();
    if (!index && table.awaiting_tag() != 0) {
      // A slot no op holds posts its tag CQE within the unregister (Linux
      // 6.13+): take it now rather than refuse.
      reap();
      index = table.acquire();
    }
    if (!index && unregister_due(tag_kind == detail::internal_kind::file_tag)) {
      head_waits_for_room_ = true;  // it runs after the coming enter, or once the CQ has room
      return false;
    }
    if (!index) {
      std::move(envelope.sender).complete(result_of(errc::resource_table_full));
      return true;  // the guard is released with the envelope
    }
    const int result = update(*index, detail::internal_user_data(tag_kind, *index));
    if (result < 0) {
      table.abort(*index);
      std::move(envelope.sender).complete(result);
      return true;
    }
    table.commit(*index, std::move(envelope.guard));
    std::move(envelope.sender).complete(static_cast<int>(*index));
    return true;
  }

  /// Whether an unregister of the file (or buffer) table is pending that
  /// no op holds back: only unsubmitted SQEs or CQ room, both soon had.
  /// (One that waits for an op to complete could wait for anything,
  /// an op queued behind the register among them: that register is
  /// refused instead.)
  bool unregister_due(bool file) const noexcept {
    return std::ranges::any_of(unregisters_, [&](const pending_unregister& request) {
      const bool of_files = request.envelope.kind == detail::envelope_kind::unregister_file;
      return of_files == file && !slots_.may_look_up(file, static_cast<std::uint32_t>(request.envelope.key),
                                                     request.placed_before);
    });
  }

  /// Runs the unregisters whose slot no op placed before them can still
  /// look up: none of those waits unsubmitted in the SQ, and none that the
  /// kernel issues after submission (a chain's later op, an IOSQE_ASYNC op,
  /// an fsync: detail/table_use.hpp) names it and is still in flight.
  /// Each needs CQ room for the tag CQE the kernel posts once the slot is
  /// unused.
  void run_due_unregisters(unsigned& budget) noexcept {
    if (unregisters_.empty() || ring_.sq_pending() != 0) return;
    for (auto request = unregisters_.begin(); request != unregisters_.end() && budget != 0;) {
      envelope_type& envelope = request->envelope;
      const bool file = envelope.kind == detail::envelope_kind::unregister_file;
      const auto index = static_cast<std::uint32_t>(envelope.key);
      if (slots_.may_look_up(file, index, request->placed_before)) {
        ++request;
        continue;
      }
      // Emptied meanwhile (op::close of the fixed file) and registered
      // again: that newer registration is not this request's to end.
      const auto& table = file ? files_ : buffers_;
      const bool same = table.registered(index) && table.registration(index) == request->registration;
      const int result = !same  ? result_of(errc::not_registered)
                         : file ? unregister_file(index)
                                : unregister_buffer(index);
      if (result == 0) --budget;
      std::move(envelope.sender).complete(result);
      request = unregisters_.erase(request);
    }
  }

  /// Empties a slot. Its guard waits for the tag CQE (G4).
  int unregister_file(std::uint32_t index) noexcept {
    if (!files_.registered(index)) return result_of(errc::not_registered);
    const int result = ring_.update_file(index, -1, 0);
    if (result < 0) return result;
    files_.release(index);
    return 0;
  }
  int unregister_buffer(std::uint32_t index) noexcept {
    if (!buffers_.registered(index)) return result_of(errc::not_registered);
    const int result = ring_.update_buffer(index, iovec{nullptr, 0}, 0);
    if (result < 0) return result;
    buffers_.release(index);
    return 0;
  }

  void submit_or_wait(bool closing, std::uint32_t stops_seen) noexcept {
    if (!unregisters_.empty() && ring_.sq_pending() != 0) {
      enter(0);  // an unregister waits for these to be submitted, not for a completion
      return;
    }
    if (!nothing_queued()) {
      // More to pull: don't sleep, unless what is at the front cannot fit
      // yet and only a completion can make room: the CQ budget is spent, or
      // the SQ is already handed to the kernel (were SQEs still pending,
      // submitting them would free SQ room without waiting for anything).
      // (A cancel that found no SQE goes once the SQ is submitted: the op
      // it ends may be what the CQ waits for. Lane entries left for the
      // next pull go then too.)
      const bool cq_bound = !lane_deferred_ && ((cq_room() == 0 && !cancel_waits_for_sqe_) ||
                                                (head_waits_for_room_ && ring_.sq_pending() == 0));
      if (cq_bound && completions_expected())
        wait_for_completion(closing, stops_seen);
      else
        enter(0);
      return;
    }
    if (closing) {
      // Registered resources are not waited for here: the loop unregisters
      // them once drained, and then waits for their tag CQEs.
      const bool awaiting_cqes = completions_expected();
      if (!state_->closed_and_quiet() || !awaiting_cqes) {
        enter(0);  // a producer is mid-push, or nothing left to wait for
        if (!state_->closed_and_quiet()) ::sched_yield();
        return;
      }
      wait_for_completion(true, stops_seen);
      return;
    }
    if constexpr (!Wait::can_park) {
      enter(0);
    } else if (ring_.iopoll()) {
      // IOPOLL rings only complete by polling, and cannot hold the armed
      // wake op: poll while ops are in flight, sleep outside when idle.
      if (slots_.in_use() == 0 && ring_.sq_pending() == 0 && unregisters_.empty() &&
          state_->announce_park()) {
        state_->wait().block();
        state_->end_park();
      } else {
        enter(0);
      }
    } else if (ring_.sq_pending() != 0 && (spins_before_parking() || submit_budget_.learning())) {
      // Submit what was pulled first; the loop reaps and comes back idle.
      // Without an idle spin, only until the budget has a cost: an enter
      // that also parks cannot tell submitting from waiting.
      enter(0);
    } else if (const spin_outcome spun = spin_for_work(); spun.news != idle_news::none) {
      // A producer pushed while we spun: pull it without a wake. Or
      // completions wait: as deferred task work, which an enter posts, or
      // as CQEs already posted, which the loop reaps.
      if (spun.news == idle_news::completions) enter(0);
    } else if (state_->wait().arm(ring_) && state_->announce_park()) {
      // Armed before announcing: a producer may wake us the moment it sees
      // the announcement, and the wake must find everything in place.
      enter(1);
      state_->end_park();
      if (spun.idle_since) busy_spin_.gap(std::chrono::steady_clock::now() - *spun.idle_since);
    } else {
      enter(0);
    }
  }

  /// Before parking, polls the queue for config::idle_spin: a client that
  /// got its reply usually submits again within a microsecond, and catching
  /// that submit costs nothing, while parking costs it a wake syscall and
  /// us a wake-up (15-20 us in a VM). While its idle gaps have mostly been
  /// short, for config::busy_spin instead (detail/busy_spin.hpp), which
  /// also spares completions that wake-up. It stops for a close, and for
  /// completions: waiting as deferred task work (DEFER_TASKRUN posts CQEs
  /// only when we enter the kernel), or posted by the kernel itself (rings
  /// without it).
  ///
  /// Past the first `selfish_spin`, each round yields the CPU: with more
  /// runnable threads than cores, the thread waiting for this one is often
  /// the very client we just replied to, or the io-wq worker running our
  /// buffered writes, and a plain spin would keep it waiting for the rest
  /// of our time slice. With nobody waiting, sched_yield returns at once.
  static constexpr std::chrono::nanoseconds selfish_spin{1000};
  enum class idle_news { none, queued, completions };
  struct spin_outcome {
    idle_news news;
    /// When the scheduler ran out of work, if the spin caught nothing: the
    /// start of a gap for the busy spin to learn from once work wakes us.
    std::optional<std::chrono::steady_clock::time_point> idle_since;
  };
  bool spins_before_parking() const noexcept {
    return config_.idle_spin.count() > 0 || busy_spin_.next().count() > 0;
  }
  spin_outcome spin_for_work() noexcept {
    if (config_.idle_spin.count() <= 0 && !busy_spin_.enabled()) return {idle_news::none, std::nullopt};
    const auto started = std::chrono::steady_clock::now();
    const auto until = std::max(detail::idle_spin_end(config_, started), started + busy_spin_.next());
    const idle_news news = poll_until(started, until);
    // Not a gap when SQEs are still to be submitted (no spin to submit them
    // first): the park's own enter submits them, and an op that completes
    // inline would end its own "gap" at once.
    if (!busy_spin_.enabled() || ring_.sq_pending() != 0) return {news, std::nullopt};
    if (news == idle_news::none) return {news, started};
    busy_spin_.gap(std::chrono::steady_clock::now() - started);
    return {news, std::nullopt};
  }
  idle_news poll_until(std::chrono::steady_clock::time_point started,
                       std::chrono::steady_clock::time_point until) const noexcept {
    const auto polite_from = started + selfish_spin;
    for (;;) {
      for (int pause = 0; pause < 16; ++pause) {
        if (!state_->queue().empty()) return idle_news::queued;
        if (ring_.task_work_pending() || ring_.cqes_ready()) return idle_news::completions;
        detail::cpu_relax();
      }
      // Between rounds: the gate is written on every push, so reading it
      // in the inner loop would bounce its cache line against producers.
      if (state_->closed()) return idle_news::queued;
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return idle_news::none;
      if (now >= polite_from) ::sched_yield();
    }
  }

  /// Submits queued SQEs; with `wait_for`, sleeps until a CQE is ready.
  /// Every error is transient here: -EINTR (a signal), -EAGAIN (the kernel
  /// is short of memory), -EBUSY (the CQ overflowed): reap and go round
  /// again. Unsubmitted SQEs stay queued; nothing is dropped.
  void enter(unsigned wait_for) noexcept {
    const auto started = submit_budget_.start(wait_for);
    const int result = wait_for == 0 ? ring_.submit_and_get_events() : ring_.submit(wait_for);
    // A partial submit leaves SQEs for the next enter: no sample then.
    if (result >= 0) submit_budget_.entered(ring_.sq_pending() == 0 ? started : std::nullopt);
    if (result == -EAGAIN || result == -EBUSY) ::sched_yield();
  }

  /// Sleeps in the kernel until a completion arrives, for work queued
  /// behind a full CQ or, while closing, for the ops still in flight; then
  /// no later than the stop deadline. Unlike a park, the queue need not be
  /// empty, but the sleep is announced the same way (wake op armed first),
  /// so that a push, a stop or an earlier deadline cuts it short.
  void wait_for_completion(bool closing, std::uint32_t stops_seen) noexcept {
    bool announced = false;
    std::optional<std::chrono::nanoseconds> limit;
    if constexpr (!Wait::can_park) {
      if (!closing) {
        enter(0);  // never sleeps while open: polls for the completion
        return;
      }
      // Nothing can wake it: it drains in slices, looking for a stop
      // with an earlier deadline between them.
      limit = unwakeable_drain_slice;
    } else if (!ring_.iopoll()) {
      // (IOPOLL rings cannot hold the wake op; their waits poll instead.)
      announced = state_->wait().arm(ring_) && state_->announce_wait(stops_seen);
      if (!announced) {
        enter(0);  // a stop came in meanwhile, or no SQE for the wake op: look again
        // Or the lane waits on a producer mid-push: let it run.
        if (state_->lane_waits_for_a_producer()) ::sched_yield();
        return;
      }
    }
    if (const auto deadline = closing ? state_->stop_deadline() : std::nullopt) {
      const auto left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() > 0) {
        limit = std::min(left, limit.value_or(left));
      } else if (ring_.sq_pending() != 0) {
        // Past it, the cancels go out; but those that found the SQ full of
        // ops still to submit have no SQE yet. Submit without sleeping, so
        // that the next pass can send them.
        if (announced) state_->end_park();
        enter(0);
        return;
      } else if (slots_.cancels_missed()) {
        // An op a cancel missed may post nothing until it is asked again.
        const auto retry = std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        next_cancel_retry_ - std::chrono::steady_clock::now()),
                                    std::chrono::nanoseconds(0));
        limit = std::min(retry, limit.value_or(retry));
      }
    }
    if (!limit) {
      enter(1);
    } else {
      const auto nanos = limit->count();
      // Not sampled by the submit budget; what was submitted is taken even
      // when the wait itself times out.
      ring_.submit_and_wait_timeout(__kernel_timespec{nanos / 1'000'000'000, nanos % 1'000'000'000});
      submit_budget_.entered(std::nullopt);
    }
    if (announced) state_->end_park();
  }
  static constexpr std::chrono::nanoseconds unwakeable_drain_slice = std::chrono::milliseconds(1);

  void reap() noexcept {
    ring_.reap([this](std::uint64_t user_data, int result, std::uint32_t flags, const __u64* extra) noexcept {
      if (!detail::is_internal(user_data)) {
        const bool more = (flags & IORING_CQE_F_MORE) != 0;
        const auto direct = slots_.complete(user_data, result, more, extra);
        if (direct.what != detail::direct_file_use::kind::none) [[unlikely]]
          direct_file_op_done(direct, result, more);
        return;
      }
      switch (detail::kind_of(user_data)) {
      case detail::internal_kind::wake: state_->wait().on_wake(result); break;
      case detail::internal_kind::cancel:
        --cancels_in_flight_;
        // (-EINVAL: an IOPOLL ring, which cancels nothing; its ops end soon.)
        if (result < 0 && result != -EINVAL) slots_.cancel_missed(detail::index_of(user_data));
        break;
      case detail::internal_kind::link_timeout: --link_timeouts_in_flight_; break;
      case detail::internal_kind::file_tag: files_.on_tag(detail::index_of(user_data)); break;
      case detail::internal_kind::buffer_tag: buffers_.on_tag(detail::index_of(user_data)); break;
      }
    });
  }

  /// A CQE of an op that installs a direct descriptor or closes one: the
  /// file table learns which slot it took or emptied (direct_files.hpp).
  void direct_file_op_done(const detail::direct_file_use& direct, int result, bool more) noexcept {
    const bool installed = direct.what == detail::direct_file_use::kind::install;
    if (direct.names_slot()) {
      if (!more) files_.direct_op_done(direct.file_index - 1, true, installed, result >= 0);
    } else if (const auto slot = direct.slot(result)) {
      files_.direct_op_done(*slot, false, installed, true);
    }
  }

  // ---- shutdown ---------------------------------------------------------

  /// Closed, nobody mid-push, nothing queued, no op in flight.
  bool drained() noexcept {
    return state_->closed_and_quiet() && nothing_queued() && slots_.in_use() == 0 &&
           link_timeouts_in_flight_ == 0 && ring_.sq_pending() == 0 && unregisters_.empty();
  }

  /// Drained, and every registered resource's tag CQE is in (G4, G5).
  bool finished() noexcept { return drained() && files_.live() == 0 && buffers_.live() == 0; }

  /// At shutdown, once no op can use them: unregister every resource; each
  /// guard goes with its tag CQE. As many as the CQ has room for tags; the
  /// loop comes back for the rest once those are in.
  void release_resources() noexcept {
    files_.for_each_registered(
        [this](std::uint32_t index) { return cq_room() != 0 && unregister_file(index) == 0; });
    buffers_.for_each_registered(
        [this](std::uint32_t index) { return cq_room() != 0 && unregister_buffer(index) == 0; });
  }

  /// After the stop deadline, asks the kernel to cancel every op in flight;
  /// an op whose cancel missed it is asked again, once per
  /// cancel_retry_interval, until it ends.
  void cancel_after_deadline() noexcept {
    const auto deadline = state_->stop_deadline();
    if (!deadline) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < *deadline) return;
    if (slots_.cancels_missed() && now >= next_cancel_retry_) {
      slots_.rearm_missed_cancels();
      next_cancel_retry_ = now + cancel_retry_interval;
    }
    slots_.request_cancels([this](std::uint64_t user_data, std::uint32_t slot) noexcept {
      return push_cancel(user_data, slot);
    });
  }
  static constexpr std::chrono::milliseconds cancel_retry_interval{1};

  /// An ASYNC_CANCEL of `target`, the op in slot `slot` (or detail::no_slot).
  bool push_cancel(std::uint64_t target, std::uint32_t slot) noexcept {
    if (cq_room_for_cancel() == 0) return false;
    io_uring_sqe* sqe = ring_.get_sqe();
    if (sqe == nullptr) return false;
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = target;
    sqe->user_data = detail::cancel_user_data(slot);
    ++cancels_in_flight_;
    return true;
  }

  /// The armed wake op must complete before the ring closes: the kernel
  /// would otherwise write into the wait strategy after we are gone.
  void disarm_wait() noexcept {
    bool cancel_sent = false;
    while (state_->wait().armed() || cancels_in_flight_ != 0) {
      if (state_->wait().armed() && !cancel_sent)
        cancel_sent = push_cancel(detail::wake_user_data, detail::no_slot);
      enter(1);
      reap();
    }
  }

  /// Whether any completion is still to come that would free room.
  bool completions_expected() const noexcept {
    return slots_.in_use() != 0 || cancels_in_flight_ != 0 || link_timeouts_in_flight_ != 0 ||
           files_.awaiting_tag() != 0 || buffers_.awaiting_tag() != 0;
  }

  /// Completions still to come, but for the armed wake's: ops (user
  /// cancels among them), linked timeouts, tags, shutdown cancels. An op
  /// that posts several CQEs (multishot) counts once: its extra CQEs, like
  /// a late msg_ring wake-up, may overflow the CQ into the kernel's
  /// overflow list, which keeps them (Linux 5.5+, IORING_FEAT_NODROP).
  unsigned cq_in_flight() const noexcept {
    return slots_.in_use() + cancels_in_flight_ + link_timeouts_in_flight_ + files_.awaiting_tag() +
           buffers_.awaiting_tag();
  }

  /// Completions a cancel may still add: all of the CQ but the wake's entry.
  unsigned cq_room_for_cancel() const noexcept {
    const unsigned limit = ring_.cq_entries() - 1;
    return cq_in_flight() >= limit ? 0U : limit - cq_in_flight();
  }

  /// Completions user ops may still add: all of the CQ but internal_reserve.
  unsigned cq_room() const noexcept {
    const unsigned limit = ring_.cq_entries() - internal_reserve;
    return cq_in_flight() >= limit ? 0U : limit - cq_in_flight();
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
  // Registered files and buffers, and their guards until their tag CQEs.
  resources_type files_;
  resources_type buffers_;
  // Shutdown ASYNC_CANCELs whose own CQE has not arrived yet.
  unsigned cancels_in_flight_ = 0;
  // When ops whose shutdown cancel missed them are asked again.
  std::chrono::steady_clock::time_point next_cancel_retry_{};
  // LINK_TIMEOUTs whose own CQE has not arrived yet.
  unsigned link_timeouts_in_flight_ = 0;
  // Ops of the chain being pulled that producers have not published yet.
  unsigned chain_members_missing_ = 0;
  // Members of the chain whose head pull() took last (into the ring or
  // set aside) still to be taken: nothing else may come between.
  unsigned members_to_take_ = 0;
  // Envelopes taken from the queue, in order, behind an op that waits for
  // room, so that a cancel queued behind them could be reached (pull()).
  std::deque<envelope_type> held_;
  // Cancels that came while the op they name was in held_ or the overflow lane.
  std::list<envelope_type> held_cancels_;
  // The last pull stopped at an envelope that needs more room than is free.
  bool head_waits_for_room_ = false;
  // The last pull left a cancel that found the SQ full (until the next pull).
  bool cancel_waits_for_sqe_ = false;
  // The last pull left lane entries that callbacks sent during it, for the
  // next pull: no sleeping before it (nobody else would wake us for them).
  bool lane_deferred_ = false;
  // Unregisters pulled but not run yet (run_due_unregisters), in order,
  // each with the slot table's placed_count() when it was pulled.
  struct pending_unregister {
    envelope_type envelope;
    std::uint64_t placed_before;
    std::uint32_t registration;  // the table's registration() of the slot
  };
  std::list<pending_unregister> unregisters_;  // a list: senders cannot be move-assigned
  // What submitting an IO op costs lately, and so how many one enter takes.
  detail::submit_budget submit_budget_{config_.submit_budget};
  detail::busy_spin busy_spin_{config_.busy_spin, config_.idle_spin};
};

}  // namespace i2o2
