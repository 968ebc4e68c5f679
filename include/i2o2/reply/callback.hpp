#pragma once
/// The callback reply: the result is delivered by calling a callable on the
/// scheduler thread, right after the CQE and before the guard is released.
/// The callable is stored inline in the envelope: no allocation per op.
/// It must be cheap and must never wait on the scheduler; it is called with
/// `errc::scheduler_closed` if the op is dropped unsubmitted.
///
///     using sched = i2o2::basic_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd,
///                                         i2o2::reply::callback<>, void>;
///     auto submitted = handle.submit(op, {}, [](int result) noexcept { ... });
///     handle.cancel(submitted, [](int result) noexcept { ... });  // if need be
///     handle.submit_chain(ops, guards, i2o2::link_kind::soft, callbacks);  // one each

#include "../errors.hpp"
#include "concept.hpp"

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

namespace i2o2 {

/// What a callback-reply submit returns: nothing to wait on, only the key
/// `handle.cancel(submitted, callback)` finds the op by.
class callback_submitted {
public:
  std::uint64_t cancel_key() const noexcept { return key_; }
  void set_cancel_key(std::uint64_t key) noexcept { key_ = key; }

private:
  std::uint64_t key_ = 0;  // 0: no op to cancel (refused before sending)
};

namespace reply {

template <std::size_t InlineBytes = 48>
struct callback {
  class sender {
  public:
    template <class F>
    explicit sender(F&& function) noexcept(std::is_nothrow_constructible_v<std::decay_t<F>, F&&>) {
      using stored = std::decay_t<F>;
      static_assert(sizeof(stored) <= InlineBytes && alignof(stored) <= alignof(std::max_align_t),
                    "i2o2::reply::callback: the callable does not fit inline; capture less, or raise "
                    "the InlineBytes parameter of reply::callback");
      static_assert(std::is_nothrow_move_constructible_v<stored>,
                    "i2o2::reply::callback: the callable must be nothrow move constructible");
      ::new (static_cast<void*>(storage_)) stored(std::forward<F>(function));
      invoke_ = [](std::byte* storage, int result) noexcept {
        auto* target = std::launder(reinterpret_cast<stored*>(storage));
        (*target)(result);
        target->~stored();
      };
      move_ = [](std::byte* from, std::byte* to) noexcept {
        auto* source = std::launder(reinterpret_cast<stored*>(from));
        ::new (static_cast<void*>(to)) stored(std::move(*source));
        source->~stored();
      };
    }
    sender(sender&& other) noexcept : invoke_(std::exchange(other.invoke_, nullptr)), move_(other.move_) {
      if (invoke_ != nullptr) move_(other.storage_, storage_);
    }
    sender& operator=(sender&&) = delete;
    ~sender() {
      if (invoke_ != nullptr) std::move(*this).complete(result_of(errc::scheduler_closed));
    }

    /// Scheduler thread: calls the callable once, then destroys it.
    void complete(int result) && noexcept { std::exchange(invoke_, nullptr)(storage_, result); }

  private:
    alignas(std::max_align_t) std::byte storage_[InlineBytes];
    void (*invoke_)(std::byte*, int) noexcept = nullptr;  // calls, then destroys
    void (*move_)(std::byte*, std::byte*) noexcept = nullptr;
  };

  using receiver = callback_submitted;

  template <class F>
  requires std::invocable < std::decay_t<F>
  &, int > static std::pair<sender, receiver> make(F&& function) {
    return {sender(std::forward<F>(function)), receiver{}};
  }
};

namespace detail_check {
inline constexpr auto noop_callback = [](int) noexcept {};
}
static_assert(reply_factory<callback<>, decltype(detail_check::noop_callback)>);

}  // namespace reply
}  // namespace i2o2
