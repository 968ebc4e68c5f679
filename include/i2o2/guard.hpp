#pragma once
/// Guards: whatever the caller hands over to be kept alive until the kernel
/// is done with the op. The guard is destroyed on the scheduler thread right
/// after the op's reply is completed, so its destructor must be cheap and
/// must never wait on the scheduler (no blocking submit, no reply.wait()).

#include <concepts>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace i2o2 {

/// A guard type: `void` for none, or any movable type whose move and
/// destruction cannot throw (wrap anything else in `any_guard`, which moves
/// it to the heap). It must be default-constructible: a default-constructed
/// guard is the empty guard of ops given none, and of control requests.
template <class G>
concept guard_type = std::is_void_v<G> ||
    (std::movable<G>&& std::default_initializable<G>&& std::is_nothrow_move_constructible_v<G>&&
         std::is_nothrow_destructible_v<G>);

/// A type-erased guard. Holds any movable value; values of up to 24 bytes
/// that move without throwing (a `shared_ptr`, a `unique_ptr`, a
/// `std::vector`) are stored inline, larger ones on the heap. Empty by default.
class any_guard {
public:
  static constexpr std::size_t inline_size = 24;

  any_guard() noexcept = default;

  template <class T>
  requires(!std::same_as<std::decay_t<T>, any_guard> && std::movable<std::decay_t<T>>)
      any_guard(T&& value) {  // NOLINT: implicit so `submit(op, ptr)` reads naturally
    using V = std::decay_t<T>;
    if constexpr (fits_inline<V>) {
      ::new (static_cast<void*>(storage_)) V(std::forward<T>(value));
      ops_ = &inline_ops<V>;
    } else {
      *reinterpret_cast<V**>(storage_) = new V(std::forward<T>(value));
      ops_ = &heap_ops<V>;
    }
  }

  any_guard(any_guard&& other) noexcept : ops_(other.ops_) {
    if (ops_) ops_->move(other.storage_, storage_);
    other.ops_ = nullptr;
  }

  any_guard& operator=(any_guard&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = other.ops_;
      if (ops_) ops_->move(other.storage_, storage_);
      other.ops_ = nullptr;
    }
    return *this;
  }

  ~any_guard() { reset(); }

  /// Destroys the held value now.
  void reset() noexcept {
    if (ops_) {
      const operations* ops = std::exchange(ops_, nullptr);
      ops->destroy(storage_);
    }
  }

  bool has_value() const noexcept { return ops_ != nullptr; }

private:
  struct operations {
    void (*move)(std::byte* from, std::byte* to) noexcept;  // leaves `from` destroyed
    void (*destroy)(std::byte* storage) noexcept;
  };

  template <class V>
  static constexpr bool
      fits_inline = sizeof(V) <= inline_size &&
                    alignof(V) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<V>;

  template <class V>
  static constexpr operations inline_ops{
      [](std::byte* from, std::byte* to) noexcept {
        V* source = std::launder(reinterpret_cast<V*>(from));
        ::new (static_cast<void*>(to)) V(std::move(*source));
        source->~V();
      },
      [](std::byte* storage) noexcept { std::launder(reinterpret_cast<V*>(storage))->~V(); }};

  template <class V>
  static constexpr operations heap_ops{
      [](std::byte* from, std::byte* to) noexcept {
        *reinterpret_cast<V**>(to) = *reinterpret_cast<V**>(from);
      },
      [](std::byte* storage) noexcept { delete *reinterpret_cast<V**>(storage); }};

  alignas(std::max_align_t) std::byte storage_[inline_size];
  const operations* ops_ = nullptr;
};

static_assert(guard_type<any_guard>);
static_assert(guard_type<void>);

namespace detail {

/// What an envelope and a slot store for guard type `G`; nothing for `void`.
template <class G>
struct guard_holder {
  using type = G;
};
struct no_guard {};
template <>
struct guard_holder<void> {
  using type = no_guard;
};
template <class G>
using stored_guard_t = typename guard_holder<G>::type;

}  // namespace detail
}  // namespace i2o2
