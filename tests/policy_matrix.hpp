#pragma once
// Every queue x wait x reply combination, and a uniform way to submit and
// wait whatever the reply policy, so one test body covers them all.

#include "support.hpp"

#include <i2o2/queue/mutex_ring.hpp>
#include <i2o2/reply/awaitable.hpp>
#include <i2o2/reply/callback.hpp>
#include <i2o2/wait/futex.hpp>
#include <i2o2/wait/msg_ring.hpp>
#include <i2o2/wait/spin.hpp>

#include <stdexcept>
#include <tuple>

namespace i2o2_test {

template <class Queue, class Wait, class Reply, class Guard = i2o2::any_guard>
struct policies {
  using scheduler = i2o2::basic_scheduler<Queue, Wait, Reply, Guard>;
  using wait = Wait;
};

template <class Queue, class Wait>
using each_reply = std::tuple<policies<Queue, Wait, i2o2::reply::future>,
                              policies<Queue, Wait, i2o2::reply::callback<>>,
                              policies<Queue, Wait, i2o2::reply::awaitable<>>>;

template <class... Tuples>
using concat = decltype(std::tuple_cat(std::declval<Tuples>()...));

template <class Queue>
using each_wait = concat<each_reply<Queue, i2o2::wait::eventfd>, each_reply<Queue, i2o2::wait::futex>,
                         each_reply<Queue, i2o2::wait::msg_ring>, each_reply<Queue, i2o2::wait::spin>>;

/// 2 queues x 4 waits x 3 replies.
using all_policies = concat<each_wait<i2o2::queue::mpsc_ring>, each_wait<i2o2::queue::mutex_ring>>;

/// The 6 combinations that wait with `Wait`: 2 queues x 3 replies.
template <class Wait>
using waiting_with =
    concat<each_reply<i2o2::queue::mpsc_ring, Wait>, each_reply<i2o2::queue::mutex_ring, Wait>>;

/// The result of one submit, whichever reply policy delivered it.
class pending {
public:
  struct slot {
    std::atomic<std::uint32_t> done{0};
    std::atomic<int> calls{0};  // R1: a callback runs exactly once
    int result = 0;
    std::uint64_t cancel_key = 0;
  };

  explicit pending(std::shared_ptr<slot> state) : state_(std::move(state)) {}
  template <class Reply>
  explicit pending(Reply reply) : reply_(std::make_shared<holder<Reply>>(std::move(reply))) {}

  int wait() const {
    if (reply_) return reply_->wait();
    while (state_->done.load(std::memory_order_acquire) == 0) state_->done.wait(0);
    return state_->result;
  }
  /// How often the callback ran (callback replies), or -1 where the reply
  /// policy offers no way to count.
  int completions() const { return state_ ? state_->calls.load() : -1; }

  /// The key `handle.cancel` finds the op by (0: none).
  std::uint64_t cancel_key() const { return reply_ ? reply_->cancel_key() : state_->cancel_key; }

  /// The reply itself, for `handle.cancel` (future and awaitable replies).
  template <class Reply>
  const Reply* get() const {
    auto* held = dynamic_cast<holder<Reply>*>(reply_.get());
    return held ? &held->reply : nullptr;
  }

  bool is_ready() const { return try_get().has_value(); }

  std::optional<int> try_get() const {
    if (reply_) return reply_->try_get();
    if (state_->done.load(std::memory_order_acquire) == 0) return std::nullopt;
    return state_->result;
  }

private:
  struct any_reply {
    virtual ~any_reply() = default;
    virtual int wait() = 0;
    virtual std::optional<int> try_get() = 0;
    virtual std::uint64_t cancel_key() const = 0;
  };
  template <class Reply>
  struct holder final : any_reply {
    explicit holder(Reply r) : reply(std::move(r)) {}
    int wait() override { return reply.wait(); }
    std::optional<int> try_get() override { return reply.try_get(); }
    std::uint64_t cancel_key() const override {
      if constexpr (requires { reply.cancel_key(); })
        return reply.cancel_key();
      else
        return 0;
    }
    Reply reply;
  };
  std::shared_ptr<slot> state_;
  std::shared_ptr<any_reply> reply_;
};

/// A callback (for the callback reply) that records its result in `state`.
inline auto record_into(std::shared_ptr<pending::slot> state) {
  return [state = std::move(state)](int result) noexcept {
    state->calls.fetch_add(1);
    state->result = result;
    state->done.store(1, std::memory_order_release);
    state->done.notify_all();
  };
}

/// Calls `call(reply_args...)` — a handle call such as submit or
/// register_file — with whatever its reply policy needs (a callback for the
/// callback reply, nothing otherwise) and returns something to wait on.
template <class Handle, class Call>
pending request(Call&& call) {
  using reply = typename Handle::reply_type;
  if constexpr (std::is_same_v<reply, i2o2::callback_submitted>) {
    auto state = std::make_shared<pending::slot>();
    const i2o2::callback_submitted submitted = call(record_into(state));
    state->cancel_key = submitted.cancel_key();
    return pending(state);
  } else {
    return pending(call());
  }
}

/// Asks `handle` to cancel the op behind `target` (a `pending` of the same
/// handle type) and returns the cancel's own result to wait on.
template <class Handle>
pending cancel(Handle& handle, const pending& target) {
  using reply = typename Handle::reply_type;
  if constexpr (std::is_same_v<reply, i2o2::callback_submitted>) {
    i2o2::callback_submitted named;
    named.set_cancel_key(target.cancel_key());
    return request<Handle>([&](auto&&... reply_args) {
      return handle.cancel(named, std::forward<decltype(reply_args)>(reply_args)...);
    });
  } else {
    const reply* typed = target.template get<reply>();
    if (typed == nullptr) throw std::logic_error("cancel: the target came from another reply type");
    return pending(handle.cancel(*typed));
  }
}

/// Submits `op` through `handle` and returns something to wait on.
template <class Handle, class Op>
pending submit(Handle& handle, const Op& op, typename Handle::guard_arg guard = {}) {
  return request<Handle>(
      [&](auto&&... reply_args) { return handle.submit(op, std::move(guard), std::forward<decltype(reply_args)>(reply_args)...); });
}

} // namespace i2o2_test
