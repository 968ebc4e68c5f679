#pragma once
// A guard that watches its own op's reply, whatever the reply policy: how
// often it died, on which thread, and whether that was before the reply
// resolved (G1, G2).

#include "any_scheduler.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

namespace i2o2_test {

/// What one op's guard saw, whatever the reply policy (G1, G2): how often
/// it died, on which thread, and how often that was before the op's reply
/// had resolved. The client hands the reply over with `watch` as soon as
/// submit returns; a guard dying off the submitting thread (on the
/// scheduler thread, after a CQE) waits for that hand-over first, which
/// takes no longer than the rest of the client's submit call.
class guard_watch {
public:
  guard_watch() noexcept : submitter_(std::this_thread::get_id()) {}

  std::atomic<int> destroyed{0};
  std::atomic<int> before_reply{0};
  std::atomic<std::thread::id> destroyer{};

  /// The op's reply, or nothing when submit refused the op. Call once.
  void watch(std::optional<pending> reply) {
    reply_ = std::move(reply);
    published_.store(true, std::memory_order_release);  // publishes reply_
    published_.notify_all();
  }

  void guard_destroyed() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    if (self != submitter_) published_.wait(false, std::memory_order_acquire);
    // On the submitting thread before `watch`: inside submit, where the op
    // was refused or rejected; there is no reply to look at yet.
    if (published_.load(std::memory_order_acquire) && reply_ && !reply_->is_ready())
      before_reply.fetch_add(1);
    destroyer.store(self);
    destroyed.fetch_add(1);  // seq_cst, after `destroyer`: read this first
  }

private:
  const std::thread::id submitter_;
  std::atomic<bool> published_{false};
  std::optional<pending> reply_;
};

/// A guard (an i2o2::any_guard once passed) recording into a guard_watch.
using watch_guard = i2o2_test::recording_guard<guard_watch>;

/// An op submitted with a watch_guard, and its reply.
struct watched_op {
  std::shared_ptr<guard_watch> watch;
  pending reply;
};

template <class Op>
watched_op submit_watched(any_handle& handle, const Op& op) {
  auto watch = std::make_shared<guard_watch>();
  pending reply = handle.submit(op, watch_guard(watch));
  watch->watch(reply);
  return {std::move(watch), std::move(reply)};
}

}  // namespace i2o2_test
