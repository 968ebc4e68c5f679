#pragma once
/// Boost.Asio adaptor (optional; the only i2o2 header that includes Asio).
///
/// `i2o2::async_submit(handle, op, guard, token)` speaks Asio's completion
/// token protocol with signature `void(int)`: plain callbacks,
/// `asio::use_awaitable`, `asio::use_future`, `asio::deferred`... The
/// completion runs on the token's associated executor (posted there from
/// the scheduler thread), and the executor counts as having work until then.
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

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace i2o2 {

/// The default policies, with the callback reply Asio completions need.
using asio_scheduler = basic_scheduler<queue::mpsc_ring, wait::eventfd, reply::callback<>, any_guard>;

namespace detail {

/// Moves an Asio completion handler to its executor with the result.
template <class Handler>
struct asio_completion {
  explicit asio_completion(Handler handler)
      : work(boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                 boost::asio::execution::outstanding_work.tracked)),
        handler(std::move(handler)) {}

  void complete(int result) {
    auto executor = work;
    boost::asio::post(executor,
                      [self = std::move(*this), result]() mutable { std::move(self.handler)(result); });
  }

  // Keeps the executor's context running until the op completes. Decayed:
  // `prefer` returns its argument by reference when the executor has no
  // outstanding-work property (use_future's), which must not dangle here.
  std::decay_t<decltype(boost::asio::prefer(boost::asio::get_associated_executor(std::declval<Handler&>()),
                                            boost::asio::execution::outstanding_work.tracked))>
      work;
  Handler handler;
};

}  // namespace detail

/// Submits `op` and completes `token` with the op's result. Any thread.
/// After shutdown the completion gets `result_of(errc::scheduler_closed)`
/// (nothing is thrown: Asio's tokens expect errors through the completion).
template <class Handle, operation Op, class CompletionToken>
auto async_submit(Handle& handle, const Op& op, typename Handle::guard_arg guard, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(int)>(
      [&handle, op](auto handler, typename Handle::guard_arg guard) {
        using completion = detail::asio_completion<decltype(handler)>;
        // One pointer fits any callback reply's inline storage.
        auto pending = std::make_unique<completion>(std::move(handler));
        try {
          handle.submit(op, std::move(guard), [pending = pending.release()](int result) noexcept {
            std::unique_ptr<completion> owned(pending);
            owned->complete(result);
          });
        } catch (const scheduler_closed&) {
          // The callback already ran with that error and posted the handler.
        }
      },
      token, std::move(guard));
}

/// `async_submit` without a guard.
template <class Handle, operation Op, class CompletionToken>
auto async_submit(Handle& handle, const Op& op, CompletionToken&& token) {
  return async_submit(handle, op, typename Handle::guard_arg{}, std::forward<CompletionToken>(token));
}

}  // namespace i2o2
