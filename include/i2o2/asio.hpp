#pragma once
/// Boost.Asio adaptor (optional; the only i2o2 header that includes Asio).
///
/// `i2o2::async_submit(handle, op, guard, token)` speaks Asio's completion
/// token protocol with signature `void(int)`: plain callbacks,
/// `asio::use_awaitable`, `asio::use_future`, `asio::deferred`... The
/// completion runs on the token's associated executor (posted there from
/// the scheduler thread), and the executor counts as having work until then.
///
/// Per-operation cancellation: when the handler has a connected cancellation
/// slot (`asio::bind_cancellation_slot`, awaitable operators, parallel_group),
/// the op installs a handler there that sends `handle.cancel` for it. The op
/// then completes once, as always, with -ECANCELED if the cancel won, or with
/// its own result if it finished first. Terminal, partial and total requests
/// are honoured alike: an op the kernel cancels ends -ECANCELED before it did
/// anything (what `total` asks), and nothing else is affected. The slot is
/// cleared on the handler's executor just before the handler runs; until
/// then its handler holds a copy of the handle (the caller's may be gone
/// when the signal comes), so dropping every other handle does not shut the
/// scheduler down before that (stopping its `scheduler_thread` still does).
///
/// The handle must come from a scheduler with the callback reply, such as
/// `i2o2::asio_scheduler`. Each op allocates its completion handler once
/// (through the handler's associated allocator is future work).

#include "guard.hpp"
#include "op.hpp"
#include "queue/mpsc_ring.hpp"
#include "reply/callback.hpp"
#include "scheduler.hpp"
#include "spawn.hpp"
#include "wait/eventfd.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace i2o2 {

/// The default policies, with the callback reply Asio completions need.
using asio_scheduler = basic_scheduler<queue::mpsc_ring, wait::eventfd, reply::callback<>, any_guard>;

namespace detail {

/// What an op installs in its handler's cancellation slot: sends
/// `handle.cancel` for the op. Runs on the thread that emits the signal.
template <class Handle>
struct asio_cancellation {
  explicit asio_cancellation(const Handle& handle) noexcept : handle(handle) {}

  void operator()(boost::asio::cancellation_type_t type) noexcept {
    namespace asio = boost::asio;
    // Every type alike: an op the kernel cancels ends -ECANCELED having
    // done nothing; one it cannot cancel ends with its own result.
    if (!(type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                  asio::cancellation_type::total)) ||
        key == 0)
      return;
    typename Handle::reply_type target;
    target.set_cancel_key(key);
    try {
      // The cancel's own result (0, -ENOENT, -EALREADY) says nothing the
      // op's result will not: the op still completes exactly once.
      handle.cancel(target, [](int) noexcept {});
    } catch (const scheduler_closed&) {
      // Shutting down: the op ends anyway, by itself or at the deadline.
    }
  }

  Handle handle;          // a copy: the caller's may be gone when the signal comes
  std::uint64_t key = 0;  // the op's, set before the initiation returns; 0: none
};

/// One op sent by async_submit: its Asio handler, until the result is posted
/// to the handler's executor.
template <class Handle, class Handler>
class asio_operation {
public:
  using slot_type = boost::asio::associated_cancellation_slot_t<Handler>;

  explicit asio_operation(Handler handler)
      : work_(boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                  boost::asio::execution::outstanding_work.tracked)),
        slot_(boost::asio::get_associated_cancellation_slot(handler)), handler_(std::move(handler)) {}

  /// Initiating thread, before submit: installs the slot's handler if the
  /// slot is connected. The initiation then becomes a second party that
  /// `arrive()`s, once it has given that handler the op's key.
  asio_cancellation<Handle>* listen(const Handle& handle) {
    if (!slot_.is_connected()) return nullptr;
    auto& installed = slot_.template emplace<asio_cancellation<Handle>>(handle);
    parties_.store(2, std::memory_order_relaxed);  // published by submit's push
    return &installed;
  }

  /// The op's callback (scheduler thread; the submitting thread for an op
  /// that never ran).
  void complete(int result) noexcept {
    result_ = result;
    arrive();
  }

  /// The last party to arrive posts the result: until the initiation has
  /// given the slot's handler its key, the slot must not be cleared.
  void arrive() noexcept {
    // acq_rel: the last party sees what the other wrote (result, key).
    if (parties_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    auto executor = work_;
    boost::asio::post(executor,
                      [self = std::unique_ptr<asio_operation>(this)]() mutable { deliver(std::move(self)); });
  }

private:
  /// On the handler's executor, which Asio's signals are emitted in step
  /// with: empties the slot (its handler holds a handle, and must not outlive
  /// the op), frees the op, then calls the handler with the work still held.
  static void deliver(std::unique_ptr<asio_operation> self) {
    if (self->slot_.is_connected()) self->slot_.clear();
    auto work = std::move(self->work_);
    Handler handler = std::move(self->handler_);
    const int result = self->result_;
    self.reset();
    std::move(handler)(result);
  }

  // Keeps the executor's context running until the op completes. Decayed:
  // `prefer` returns its argument by reference when the executor has no
  // outstanding-work property (use_future's), which must not dangle here.
  std::decay_t<decltype(boost::asio::prefer(boost::asio::get_associated_executor(std::declval<Handler&>()),
                                            boost::asio::execution::outstanding_work.tracked))>
      work_;
  slot_type slot_;  // the handler's cancellation slot, cleared before it runs
  Handler handler_;
  int result_ = 0;
  std::atomic<int> parties_{1};  // the callback, and the initiation under a slot
};

}  // namespace detail

/// Submits `op` and completes `token` with the op's result. Any thread.
/// After shutdown the completion gets `result_of(errc::scheduler_closed)`
/// (nothing is thrown: Asio's tokens expect errors through the completion).
/// A connected cancellation slot cancels the op (see the top of this file).
template <class Handle, operation Op, class CompletionToken>
auto async_submit(Handle& handle, const Op& op, typename Handle::guard_arg guard, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(int)>(
      [&handle, op](auto handler, typename Handle::guard_arg guard) {
        using pending_op = detail::asio_operation<Handle, decltype(handler)>;
        auto owned = std::make_unique<pending_op>(std::move(handler));
        auto* cancellation = owned->listen(handle);
        // One pointer fits any callback reply's inline storage.
        auto* pending = owned.release();
        typename Handle::reply_type submitted;
        try {
          submitted = handle.submit(op, std::move(guard),
                                    [pending](int result) noexcept { pending->complete(result); });
        } catch (const scheduler_closed&) {
          // The callback already ran with that error (submit throws nothing else).
        }
        if (cancellation == nullptr) return;
        cancellation->key = submitted.cancel_key();
        pending->arrive();
      },
      token, std::move(guard));
}

/// `async_submit` without a guard.
template <class Handle, operation Op, class CompletionToken>
auto async_submit(Handle& handle, const Op& op, CompletionToken&& token) {
  return async_submit(handle, op, typename Handle::guard_arg{}, std::forward<CompletionToken>(token));
}

}  // namespace i2o2
