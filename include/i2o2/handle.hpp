#pragma once
/// The client's side of a scheduler: cheap to copy, usable from any thread.
/// The scheduler shuts down when its last handle is gone (or when its owner
/// stops it).

#include "detail/envelope.hpp"
#include "detail/kernel_features.hpp"
#include "detail/op_key.hpp"
#include "detail/shared_state.hpp"
#include "errors.hpp"
#include "guard.hpp"
#include "op.hpp"
#include "reply/concept.hpp"
#include "submit_result.hpp"

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace i2o2 {

/// A sized random-access range with one reply argument per op of a batch
/// (for example a vector of callables), each moved into its op's reply.
template <class Args, class Reply>
concept per_op_reply_args =
    std::ranges::random_access_range<Args> && std::ranges::sized_range<Args> &&
    reply_factory<Reply, std::ranges::range_rvalue_reference_t<Args>>;

/// How the ops of a chain are linked.
enum class link_kind {
  /// IOSQE_IO_LINK: an op that fails (or reads short) cancels the rest.
  soft,
  /// IOSQE_IO_HARDLINK: the rest run whatever each op returns.
  hard,
};

template <class Queue, class Wait, class Reply, class Guard>
class basic_handle {
public:
  using reply_type = typename Reply::receiver;
  /// What the guard parameter takes: `Guard`, or an empty tag for `void`.
  using guard_arg = detail::stored_guard_t<Guard>;
  using sender_type = typename Reply::sender;
  using envelope_type = detail::envelope<sender_type, Guard>;
  using state_type = detail::shared_state<typename Queue::template queue<envelope_type>, Wait, envelope_type>;

  explicit basic_handle(std::shared_ptr<state_type> state) noexcept : state_(std::move(state)) {
    state_->add_handle();
  }
  basic_handle(const basic_handle& other) noexcept : state_(other.state_) { state_->add_handle(); }
  basic_handle(basic_handle&& other) noexcept = default;
  basic_handle& operator=(basic_handle other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~basic_handle() {
    if (state_) state_->drop_handle();
  }

  // ---- ops ----------------------------------------------------------------

  /// Sends `op` to the scheduler, waiting while the queue is full, and
  /// returns its reply. `guard` is destroyed on the scheduler thread once
  /// the kernel is done with the op. An op this kernel or ring cannot run
  /// resolves at once with `errc::unsupported_op` / `errc::needs_sqe128`,
  /// one setting SQE flags the scheduler owns with `errc::reserved_flags`,
  /// one with a negative `op_options::timeout` with -EINVAL.
  /// Throws `i2o2::scheduler_closed` after shutdown (the guard is released;
  /// a callback reply has been called with that error too, as for every op
  /// that never reached the kernel: on the submitting thread).
  /// Any thread. On the scheduler thread itself (a callback, a coroutine
  /// resumed there) it never waits: what does not fit the queue is kept, in
  /// order, in the scheduler's overflow lane, and pulled after everything
  /// queued before it.
  template <operation Op, class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> reply_type submit(const Op& op, guard_arg guard = {},
                                                                ReplyArgs&&... reply_args) {
    auto [sender, receiver] = Reply::make(std::forward<ReplyArgs>(reply_args)...);
    envelope_type envelope{prepare(op), std::move(sender), std::move(guard)};
    if (reject_unrunnable(envelope)) return std::move(receiver);
    name_for_cancel(envelope, receiver);
    send_or_throw(envelope);
    return std::move(receiver);
  }

  /// Like `submit`, but never waits: fails with `errc::queue_full` or
  /// `errc::scheduler_closed`. (On the scheduler thread the queue counts
  /// as full while ops it sent past a full queue still wait to go in.)
  /// Whenever the op is not taken — those
  /// failures, or an op resolved at once with `unsupported_op` /
  /// `needs_sqe128` / `reserved_flags` — `guard` is left untouched: the
  /// caller still owns it. The reply is resolved either way: a callback
  /// reply's callable has been called with the failure (on this thread).
  template <operation Op, class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> submit_result<reply_type>
  try_submit(const Op& op, guard_arg&& guard, ReplyArgs&&... reply_args) {
    auto [sender, receiver] = Reply::make(std::forward<ReplyArgs>(reply_args)...);
    envelope_type envelope{prepare(op), std::move(sender), guard_arg{}};
    if (reject_unrunnable(envelope)) return std::move(receiver);
    name_for_cancel(envelope, receiver);
    envelope.guard = std::move(guard);
    const auto pushed = state_->push(std::span<envelope_type>(&envelope, 1), false);
    if (pushed == detail::push_result::accepted) return std::move(receiver);
    guard = std::move(envelope.guard);  // hand the guard back
    const errc refusal = pushed == detail::push_result::full ? errc::queue_full : errc::scheduler_closed;
    std::move(envelope.sender).complete(result_of(refusal));
    return refusal;
  }

  /// `try_submit` without a guard.
  template <operation Op>
  submit_result<reply_type> try_submit(const Op& op) {
    guard_arg none{};
    return try_submit(op, std::move(none));
  }

  /// Sends several ops as one queue message: they reach the ring together,
  /// in order, with one wake-up. Waits while the queue lacks room for all of
  /// them. `guards` is empty or holds one guard per op (moved from).
  /// Throws `scheduler_closed` after shutdown, and `std::system_error`
  /// (`errc::batch_too_large`) for a batch larger than the queue.
  std::vector<reply_type> submit_many(std::span<const prepared_op> ops,
                                      std::span<guard_arg> guards = {}) requires reply_factory<Reply> {
    return send_batch(ops, guards, std::nullopt, [](std::size_t) { return Reply::make(); });
  }

  /// `submit_many` for replies that take arguments (a callback reply's
  /// callable): `reply_args[i]` is moved into the reply of `ops[i]`.
  template <per_op_reply_args<Reply> ReplyArgs>
  std::vector<reply_type> submit_many(std::span<const prepared_op> ops, std::span<guard_arg> guards,
                                      ReplyArgs&& reply_args) {
    check_one_each(ops, reply_args);
    return send_batch(ops, guards, std::nullopt, [&](std::size_t i) { return Reply::make(std::move(reply_args[i])); });
  }

  /// Sends `ops` as a linked chain (IOSQE_IO_LINK, or IOSQE_IO_HARDLINK):
  /// they land contiguously in one submission and run one after another,
  /// e.g. write then fsync, or open, read, close. Each op has its own
  /// reply; after a soft link fails, the rest resolve with -ECANCELED.
  /// Waits while the queue is full; a chain is never split or partly sent.
  /// Throws `std::system_error` (`errc::batch_too_large`) for a chain longer
  /// than the ring can submit at once, and std::invalid_argument for an op
  /// with a timeout inside a chain.
  std::vector<reply_type> submit_chain(std::span<const prepared_op> ops, std::span<guard_arg> guards = {},
                                       link_kind link = link_kind::soft) requires reply_factory<Reply> {
    return send_batch(ops, guards, link, [](std::size_t) { return Reply::make(); });
  }

  /// `submit_chain` for replies that take arguments (a callback reply's
  /// callable): `reply_args[i]` is moved into the reply of `ops[i]`.
  template <per_op_reply_args<Reply> ReplyArgs>
  std::vector<reply_type> submit_chain(std::span<const prepared_op> ops, std::span<guard_arg> guards,
                                       link_kind link, ReplyArgs&& reply_args) {
    check_one_each(ops, reply_args);
    return send_batch(ops, guards, link, [&](std::size_t i) { return Reply::make(std::move(reply_args[i])); });
  }

  /// `submit_chain(op, op, ...)`: a soft-linked chain of the given ops.
  template <operation... Ops>
  requires reply_factory<Reply> &&
      (sizeof...(Ops) > 0) std::array<reply_type, sizeof...(Ops)> submit_chain(const Ops&... ops) {
    const std::array<prepared_op, sizeof...(Ops)> images{prepare(ops)...};
    auto replies = send_batch(images, {}, link_kind::soft, [](std::size_t) { return Reply::make(); });
    return move_into_array<sizeof...(Ops)>(replies);
  }

  // ---- cancellation -----------------------------------------------------

  /// Asks the kernel to cancel the op behind `target` (IORING_OP_ASYNC_CANCEL).
  /// The target's own reply then carries the kernel's result: -ECANCELED,
  /// or its real result if it finished first; its guard is still released
  /// only on its own CQE. The returned reply carries the cancel's result:
  /// 0 (cancelled), -ENOENT (not in flight: already done, or not yet
  /// sent; a chain's later op also until the op before it completes:
  /// cancel the chain's first op, and the rest fail with it), -EALREADY
  /// (running; it may still complete). A cancel gets
  /// through even when ops that never finish fill every slot (the CQ keeps
  /// an entry for it), also past ops queued ahead of it that wait for room
  /// (the scheduler sets them aside, in order, to reach it), and into a
  /// full queue. One naming an op still waiting for room goes as soon as
  /// that op is in the ring, and then finds it. Throws
  /// `scheduler_closed` after shutdown, as submit.
  template <class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> && requires(const reply_type& reply) {
    { reply.cancel_key() } -> std::convertible_to<std::uint64_t>;
  }
  reply_type cancel(const reply_type& target, ReplyArgs&&... reply_args) {
    return control(detail::envelope_kind::cancel, target.cancel_key(), prepared_op{}, guard_arg{},
                   std::forward<ReplyArgs>(reply_args)...);
  }

  // ---- registered resources ---------------------------------------------

  /// Registers `fd` in the first free slot of the registered-file table
  /// (config::registered_files); resolves with the slot index, for
  /// `i2o2::fixed_file(index)`. `guard` lives until the file is
  /// unregistered and no op uses it any more (G4). A full table resolves
  /// with `errc::resource_table_full`, unless an unregister sent before
  /// this request is about to run (it waits only for the ops before it to
  /// be submitted): then it waits for that, and takes the slot if the
  /// kernel has posted its tag CQE by then (at once from Linux 6.13 for a
  /// slot no op holds). A kernel refusal resolves with its
  /// -errno (the guard is then released at once). The kernel takes `fd`
  /// when the scheduler runs the request: keep it open until this resolves.
  template <class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> reply_type register_file(int fd, guard_arg guard = {},
                                                                       ReplyArgs&&... reply_args) {
    prepared_op request;
    request.sqe().fd = fd;
    return control(detail::envelope_kind::register_file, 0, request, std::move(guard),
                   std::forward<ReplyArgs>(reply_args)...);
  }

  /// Empties registered-file slot `index`; resolves with 0, or with
  /// `errc::not_registered`. Every op sent before it finds the file: the
  /// slot empties once they are submitted and those the kernel issues
  /// later (a chain's later ops, `will_block` ops, fsync, fallocate and
  /// others it always hands to a worker) have completed; ops already
  /// holding the file finish normally. Ops sent after it may find the file
  /// until this reply resolves.
  template <class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> reply_type unregister_file(unsigned index,
                                                                         ReplyArgs&&... reply_args) {
    return control(detail::envelope_kind::unregister_file, index, prepared_op{}, guard_arg{},
                   std::forward<ReplyArgs>(reply_args)...);
  }

  /// Registers `[base, base + length)` as a fixed buffer in the first free
  /// slot of the buffer table (config::registered_buffers); resolves with
  /// the slot index, for `op::read_fixed` / `op::write_fixed`. The memory is
  /// pinned (counted against RLIMIT_MEMLOCK: past it, -ENOMEM). `guard`
  /// lives until the buffer is unregistered and no op uses it any more. A
  /// full table is handled as by `register_file`.
  template <class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> reply_type register_buffer(void* base, std::size_t length,
                                                                         guard_arg guard = {},
                                                                         ReplyArgs&&... reply_args) {
    prepared_op request;
    request.sqe().addr = reinterpret_cast<std::uintptr_t>(base);
    request.sqe().off = length;
    return control(detail::envelope_kind::register_buffer, 0, request, std::move(guard),
                   std::forward<ReplyArgs>(reply_args)...);
  }

  /// Empties registered-buffer slot `index`; resolves with 0, or with
  /// `errc::not_registered`. Ordered like `unregister_file`.
  template <class... ReplyArgs>
  requires reply_factory<Reply, ReplyArgs...> reply_type unregister_buffer(unsigned index,
                                                                           ReplyArgs&&... reply_args) {
    return control(detail::envelope_kind::unregister_buffer, index, prepared_op{}, guard_arg{},
                   std::forward<ReplyArgs>(reply_args)...);
  }

  /// True once the scheduler stopped taking ops.
  bool closed() const noexcept { return state_->closed(); }

private:
  template <class ReplyArgs>
  static void check_one_each(std::span<const prepared_op> ops, const ReplyArgs& reply_args) {
    if (std::ranges::size(reply_args) != ops.size())
      throw std::invalid_argument("i2o2: one set of reply arguments per op");
  }

  /// Resolves an op the kernel or ring cannot run without sending it (G3);
  /// the guard is released here, since the kernel never saw the op.
  bool reject_unrunnable(envelope_type& envelope) noexcept {
    // Links would tie the op to whatever the scheduler submits next (its
    // own wake-up read, say); a skipped CQE would leave the reply unresolved;
    // a drain would wait for the armed wake-up op, which may stay pending.
    constexpr unsigned scheduler_owned_flags =
        IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_DRAIN;
    int error = 0;
    if ((envelope.op.sqe().flags & scheduler_owned_flags) != 0)
      error = result_of(errc::reserved_flags);
    else if (envelope.op.needs_sqe128 && !state_->sqe128())
      error = result_of(errc::needs_sqe128);
    else if (envelope.op.extra_out != nullptr && !state_->cqe32())
      error = result_of(errc::needs_cqe32);
    else if (envelope.op.timeout_ns < 0)
      error = -EINVAL;  // as the kernel answers its LINK_TIMEOUT, but without failing the op as -ECANCELED
    else if (envelope.op.timeout_ns != 0 && state_->max_chain_length() < 2)
      error = result_of(errc::batch_too_large);  // op + LINK_TIMEOUT: two SQEs on a one-SQE ring
    else if (envelope.op.timeout_ns != 0 && state_->iopoll())
      error = result_of(errc::unsupported_op);  // IOPOLL rings refuse LINK_TIMEOUT (the op: -ECANCELED)
    else if (!detail::kernel_features::get().has_opcode(envelope.op.sqe().opcode))
      error = result_of(errc::unsupported_op);
    if (error == 0) return false;
    std::move(envelope.sender).complete(error);
    envelope.guard = guard_arg{};
    return true;
  }

  /// Gives the op a key `cancel` can find it by, if the reply can carry it.
  static void name_for_cancel(envelope_type& envelope, reply_type& receiver) noexcept {
    if constexpr (requires { receiver.set_cancel_key(std::uint64_t{}); }) {
      envelope.key = detail::next_op_key();
      receiver.set_cancel_key(envelope.key);
    }
  }

  void send_or_throw(envelope_type& envelope) {
    if (state_->push(std::span<envelope_type>(&envelope, 1), true) == detail::push_result::accepted) return;
    std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
    throw scheduler_closed();
  }

  template <class... ReplyArgs>
  reply_type control(detail::envelope_kind kind, std::uint64_t key, const prepared_op& request,
                     guard_arg guard, ReplyArgs&&... reply_args) {
    auto [sender, receiver] = Reply::make(std::forward<ReplyArgs>(reply_args)...);
    envelope_type envelope{request, std::move(sender), std::move(guard), key, 1, kind};
    send_or_throw(envelope);
    return std::move(receiver);
  }

  /// submit_many (no link) and submit_chain (a link kind).
  /// `make_reply(i)` makes the sender/receiver pair of `ops[i]`.
  template <class MakeReply>
  std::vector<reply_type> send_batch(std::span<const prepared_op> ops, std::span<guard_arg> guards,
                                     std::optional<link_kind> link, MakeReply&& make_reply) {
    if (!guards.empty() && guards.size() != ops.size())
      throw std::invalid_argument("i2o2: one guard per op, or none");
    if (link && ops.size() > state_->max_chain_length())
      throw std::system_error(make_error_code(errc::batch_too_large),
                              "i2o2: a chain longer than the ring can submit at once");
    // Checked before any guard or reply argument is taken, so a refused
    // batch leaves them all with the caller.
    if (link)
      for (const auto& op : ops)
        if (op.timeout_ns != 0) throw std::invalid_argument("i2o2: ops inside a chain cannot have a timeout");
    if (ops.size() > state_->queue().capacity())
      throw std::system_error(make_error_code(errc::batch_too_large),
                              "i2o2: a batch larger than the queue (config::queue_capacity)");
    std::vector<reply_type> replies;
    std::vector<envelope_type> batch;
    replies.reserve(ops.size());
    batch.reserve(ops.size());
    bool rejected = false;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      auto [sender, receiver] = make_reply(i);
      envelope_type envelope{ops[i], std::move(sender), guards.empty() ? guard_arg{} : std::move(guards[i])};
      name_for_cancel(envelope, receiver);
      replies.push_back(std::move(receiver));
      // An op that cannot run resolves at once with its error; in a chain,
      // the ops after it resolve -ECANCELED (those before it, below).
      if (rejected) {
        std::move(envelope.sender).complete(-ECANCELED);
        continue;
      }
      if (reject_unrunnable(envelope)) {
        rejected = link.has_value();
        continue;
      }
      if (link && i + 1 < ops.size())
        envelope.op.sqe().flags |= (*link == link_kind::hard ? IOSQE_IO_HARDLINK : IOSQE_IO_LINK);
      batch.push_back(std::move(envelope));
    }
    if (link && rejected) {
      // Never send part of a chain: resolve what was kept as cancelled.
      for (auto& envelope : batch)
        std::move(envelope.sender).complete(-ECANCELED);
      return replies;
    }
    if (batch.empty()) return replies;
    if (link) {
      batch.front().chain_length = static_cast<std::uint16_t>(batch.size());
      for (std::size_t i = 1; i < batch.size(); ++i)
        batch[i].chain_length = 0;
    }
    if (state_->push(std::span<envelope_type>(batch), true) != detail::push_result::accepted) {
      for (auto& envelope : batch)
        std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
      throw scheduler_closed();
    }
    return replies;
  }

  template <std::size_t N>
  static std::array<reply_type, N> move_into_array(std::vector<reply_type>& replies) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::array<reply_type, N>{std::move(replies[I])...};
    }
    (std::make_index_sequence<N>{});
  }

  std::shared_ptr<state_type> state_;
};

}  // namespace i2o2
