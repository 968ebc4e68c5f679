#pragma once
/// What the scheduler thread submits while the queue is full (a coroutine
/// resumed there, a callback): it cannot wait for room that only it can
/// make, so those envelopes wait here, in order, and the scheduler pulls
/// each at its turn in the queue: after everything queued before it.
///
/// Not first: it would overtake the thread's own earlier ops still queued
/// (an unregister before the op that uses its slot, a cancel before the op
/// it names, which then finds nothing). Not only once the queue is empty:
/// clients refilling it could keep the lane waiting for ever. A queue holds
/// at most its capacity, so an envelope's turn comes, at the latest, once
/// that many more have been popped, or as soon as the queue is seen empty
/// with no producer mid-push.
///
/// Scheduler thread only.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>

namespace i2o2::detail {

template <class Envelope>
class overflow_lane {
public:
  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  /// Whether `predicate` holds for any envelope in the lane.
  template <class Predicate>
  bool any_of(Predicate predicate) const noexcept {
    for (const entry& waiting : entries_)
      if (predicate(waiting.envelope)) return true;
    return false;
  }

  /// Queues `envelope` behind at most `queue_capacity` envelopes still in the queue.
  void push(Envelope&& envelope, std::size_t queue_capacity) {
    entries_.push_back({std::move(envelope), popped_ + queue_capacity});
  }

  /// Whether the front's turn has come. False when the lane is empty.
  bool front_due() const noexcept {
    return !entries_.empty() && (seen_drained_ != 0 || entries_.front().turn <= popped_);
  }
  Envelope& front() noexcept { return entries_.front().envelope; }
  void pop_front() noexcept {
    entries_.pop_front();
    if (seen_drained_ != 0) --seen_drained_;
  }

  /// How many may be popped from the queue before the front's turn: at
  /// most `max`, and `max` with the lane empty.
  std::size_t pops_before_front(std::size_t max) const noexcept {
    if (entries_.empty()) return max;
    if (front_due()) return 0;
    const std::uint64_t left = entries_.front().turn - popped_;
    return left < max ? static_cast<std::size_t>(left) : max;
  }

  /// `count` envelopes were popped from the queue.
  void popped(std::size_t count) noexcept { popped_ += count; }
  /// The queue was seen empty with no producer mid-push: every envelope
  /// here came after what was queued before it.
  void queue_drained() noexcept { seen_drained_ = entries_.size(); }

private:
  struct entry {
    Envelope envelope;
    // The count of pops by which everything queued before it has gone.
    std::uint64_t turn;
  };

  std::deque<entry> entries_;
  // Envelopes popped from the queue so far.
  std::uint64_t popped_ = 0;
  // How many at the front were pushed before the queue was last seen empty.
  std::size_t seen_drained_ = 0;
};

}  // namespace i2o2::detail
