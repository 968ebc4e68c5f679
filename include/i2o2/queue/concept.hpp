#pragma once
/// The Queue policy: how envelopes travel from client threads to the
/// scheduler thread.
///
/// A queue family `Q` provides `Q::queue<T>`, a bounded queue of `T` with:
///  1. construction from a capacity (rounded up as the queue needs);
///  2. `try_push(T&)`: from any thread; moves from the value only on
///     success, returns false when full;
///  3. `try_push_many(std::span<T>)`: all or nothing, the values land
///     contiguously (no other producer's value in between);
///  4. `pop_batch(max, consume)`: scheduler thread only; offers up to `max`
///     values in push order to `bool consume(T&)`, which moves what it needs
///     out of the value and returns true to take it, or false to leave it
///     at the front and stop (a chain that does not fit yet); returns the
///     number taken. Taken values are destroyed by the queue. `consume` may
///     push itself (it runs reply callbacks, which may submit): hold no
///     lock a push takes while calling it;
///  5. `empty()`: scheduler thread only;
///  6. `capacity()`.
/// A queue loses nothing, duplicates nothing and keeps each producer's order.

#include <concepts>
#include <cstddef>
#include <span>

namespace i2o2 {

namespace detail {
/// A stand-in element used to check queue families against the concept.
struct queue_probe_value {
  int value = 0;
};
struct queue_probe_consumer {
  bool operator()(queue_probe_value&) const noexcept { return true; }
};
}  // namespace detail

template <class Q, class T>
concept bounded_queue_of = std::constructible_from<Q, std::size_t> &&
    requires(Q& queue, const Q& const_queue, T& value, std::span<T> values,
             detail::queue_probe_consumer consume) {
  { queue.try_push(value) } -> std::same_as<bool>;
  { queue.try_push_many(values) } -> std::same_as<bool>;
  { queue.pop_batch(std::size_t{1}, consume) } -> std::same_as<std::size_t>;
  { const_queue.empty() } -> std::same_as<bool>;
  { const_queue.capacity() } -> std::same_as<std::size_t>;
};

/// A queue family: `Q::template queue<T>` is a bounded queue for any `T`.
template <class Q>
concept queue_family =
    bounded_queue_of<typename Q::template queue<detail::queue_probe_value>, detail::queue_probe_value>;

}  // namespace i2o2
