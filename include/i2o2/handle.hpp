#pragma once
/// The client's side of a scheduler: cheap to copy, usable from any thread.
/// The scheduler shuts down when its last handle is gone (or when its owner
/// stops it).

#include "detail/envelope.hpp"
#include "detail/kernel_features.hpp"
#include "detail/shared_state.hpp"
#include "errors.hpp"
#include "guard.hpp"
#include "op.hpp"
#include "reply/concept.hpp"
#include "submit_result.hpp"

#include <memory>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace i2o2 {

template <class Queue, class Wait, class Reply, class Guard>
class basic_handle {
public:
  using reply_type = typename Reply::receiver;
  /// What the guard parameter takes: `Guard`, or an empty tag for `void`.
  using guard_arg = detail::stored_guard_t<Guard>;
  using sender_type = typename Reply::sender;
  using envelope_type = detail::envelope<sender_type, Guard>;
  using state_type = detail::shared_state<typename Queue::template queue<envelope_type>, Wait>;

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

  /// Sends `op` to the scheduler, waiting while the queue is full, and
  /// returns its reply. `guard` is destroyed on the scheduler thread once
  /// the kernel is done with the op. An op this kernel or ring cannot run
  /// resolves at once with `errc::unsupported_op` / `errc::needs_sqe128`.
  /// Throws `i2o2::scheduler_closed` after shutdown (the guard is released).
  /// Any thread, except the scheduler thread itself (it could wait forever
  /// for room only it can make).
  template <operation Op, class... ReplyArgs>
    requires reply_factory<Reply, ReplyArgs...>
  reply_type submit(const Op& op, guard_arg guard = {}, ReplyArgs&&... reply_args) {
    auto [sender, receiver] = Reply::make(std::forward<ReplyArgs>(reply_args)...);
    envelope_type envelope{prepare(op), std::move(sender), std::move(guard)};
    if (reject_unrunnable(envelope)) return std::move(receiver);
    switch (state_->push(std::span<envelope_type>(&envelope, 1), true)) {
    case detail::push_result::accepted: return std::move(receiver);
    case detail::push_result::closed:
    case detail::push_result::full: break;
    }
    std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
    throw scheduler_closed();
  }

  /// Like `submit`, but never waits: fails with `errc::queue_full` or
  /// `errc::scheduler_closed`. On failure `guard` is left untouched, so the
  /// caller still owns it and nothing is lost.
  template <operation Op, class... ReplyArgs>
    requires reply_factory<Reply, ReplyArgs...>
  submit_result<reply_type> try_submit(const Op& op, guard_arg&& guard, ReplyArgs&&... reply_args) {
    auto [sender, receiver] = Reply::make(std::forward<ReplyArgs>(reply_args)...);
    envelope_type envelope{prepare(op), std::move(sender), guard_arg{}};
    if (reject_unrunnable(envelope)) return std::move(receiver);
    envelope.guard = std::move(guard);
    const auto pushed = state_->push(std::span<envelope_type>(&envelope, 1), false);
    if (pushed == detail::push_result::accepted) return std::move(receiver);
    guard = std::move(envelope.guard);  // hand the guard back
    std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
    return pushed == detail::push_result::full ? errc::queue_full : errc::scheduler_closed;
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
                                      std::span<guard_arg> guards = {})
    requires reply_factory<Reply>
  {
    if (!guards.empty() && guards.size() != ops.size())
      throw std::invalid_argument("i2o2: submit_many needs one guard per op, or none");
    std::vector<reply_type> replies;
    std::vector<envelope_type> batch;
    replies.reserve(ops.size());
    batch.reserve(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
      auto [sender, receiver] = Reply::make();
      envelope_type envelope{ops[i], std::move(sender),
                             guards.empty() ? guard_arg{} : std::move(guards[i])};
      replies.push_back(std::move(receiver));
      if (!reject_unrunnable(envelope)) batch.push_back(std::move(envelope));
    }
    if (batch.size() > state_->queue().capacity()) {
      for (auto& envelope : batch) std::move(envelope.sender).complete(result_of(errc::batch_too_large));
      throw std::system_error(make_error_code(errc::batch_too_large));
    }
    if (state_->push(std::span<envelope_type>(batch), true) != detail::push_result::accepted) {
      for (auto& envelope : batch) std::move(envelope.sender).complete(result_of(errc::scheduler_closed));
      throw scheduler_closed();
    }
    return replies;
  }

  /// True once the scheduler stopped taking ops.
  bool closed() const noexcept { return state_->closed(); }

private:
  /// Resolves an op the kernel or ring cannot run without sending it (G3);
  /// the guard is released here, since the kernel never saw the op.
  bool reject_unrunnable(envelope_type& envelope) noexcept {
    int error = 0;
    if (envelope.op.needs_sqe128 && !state_->sqe128())
      error = result_of(errc::needs_sqe128);
    else if (!detail::kernel_features::get().has_opcode(envelope.op.sqe().opcode))
      error = result_of(errc::unsupported_op);
    if (error == 0) return false;
    std::move(envelope.sender).complete(error);
    envelope.guard = guard_arg{};
    return true;
  }

  std::shared_ptr<state_type> state_;
};

} // namespace i2o2
