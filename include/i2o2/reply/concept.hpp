#pragma once
/// The Reply policy: how an op's result gets back to the client.
///
/// A reply policy `R` provides:
///  1. `R::sender`: travels with the op and lives in the scheduler's slot
///     table; `std::move(sender).complete(result)` is noexcept and is called
///     exactly once, on the scheduler thread, before the guard is destroyed;
///     a sender destroyed without completing must resolve its receiver
///     with `errc::scheduler_closed` (nothing ever hangs);
///  2. `R::receiver`: what `submit` returns to the client;
///  3. `R::make(args...)`: a fresh `std::pair<sender, receiver>`; `args`
///     are whatever the caller passes after the guard (a callback, an
///     executor), none for the future.

#include <concepts>
#include <type_traits>
#include <utility>

namespace i2o2 {

template <class S>
concept completion_sender = std::is_nothrow_move_constructible_v<S> && std::is_nothrow_destructible_v<S> &&
    requires(S&& sender, int result) {
  { std::move(sender).complete(result) }
  noexcept;
};

template <class R>
concept reply_policy = requires {
  typename R::sender;
  typename R::receiver;
}
&&completion_sender<typename R::sender>&& std::movable<typename R::receiver>;

/// `R::make(args...)` builds a sender/receiver pair.
template <class R, class... Args>
concept reply_factory = reply_policy<R> && requires(Args&&... args) {
  {
    R::make(std::forward<Args>(args)...)
    } -> std::same_as<std::pair<typename R::sender, typename R::receiver>>;
};

}  // namespace i2o2
