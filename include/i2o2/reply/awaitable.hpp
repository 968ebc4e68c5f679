#pragma once
/// The awaitable reply: `co_await handle.submit(op)` resumes the coroutine
/// on an executor the caller names — inline on the scheduler thread, or
/// posted to a pool, an event loop, ... — instead of always inline.
///
///     using sched = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
///                                         i2o2::reply::awaitable<my_pool_executor>, i2o2::any_guard>;
///     int n = co_await handle.submit(op, guard, pool_executor);

#include "future.hpp"

#include <coroutine>
#include <optional>
#include <utility>

namespace i2o2 {

/// Resumes the coroutine right where the result arrives: on the scheduler
/// thread. Keep what follows short, and never block on the scheduler there.
struct inline_executor {
  /// A result already in when awaited: the coroutine goes on without a call.
  static constexpr bool runs_inline = true;
  void execute(std::coroutine_handle<> handle) const noexcept { handle.resume(); }
};

/// What an awaitable-reply submit returns. A coroutine suspended on it may
/// be destroyed while the reply lives in its frame (the operand of
/// `co_await handle.submit(op, guard, executor)` does): destroying the
/// reply takes the resumption back, so the op's completion neither calls
/// the executor nor reads the frame (future_reply's co_await says more).
template <detail::coroutine_executor Executor>
class awaitable_reply {
public:
  awaitable_reply(future_reply reply, Executor executor)
      : reply_(std::move(reply)), executor_(std::move(executor)) {}

  auto operator co_await() const noexcept { return reply_.resume_on(executor_); }

  std::uint64_t cancel_key() const noexcept { return reply_.cancel_key(); }
  void set_cancel_key(std::uint64_t key) noexcept { reply_.set_cancel_key(key); }

  /// Blocking and polling access, as for the future reply.
  int wait() const noexcept { return reply_.wait(); }
  std::optional<int> try_get() const noexcept { return reply_.try_get(); }

private:
  future_reply reply_;
  Executor executor_;
};

namespace reply {

template <detail::coroutine_executor Executor = inline_executor>
struct awaitable {
  using sender = future::sender;
  using receiver = awaitable_reply<Executor>;

  static std::pair<sender, receiver> make(Executor executor = Executor{}) {
    auto [sender_half, receiver_half] = future::make();
    return {std::move(sender_half), receiver(std::move(receiver_half), std::move(executor))};
  }
};
static_assert(reply_factory<awaitable<>>);

}  // namespace reply
}  // namespace i2o2
