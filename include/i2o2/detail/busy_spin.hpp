#pragma once
/// Whether a scheduler that runs out of work polls before it parks, beyond
/// its fixed idle spin (config::busy_spin). Work that finds the scheduler
/// parked must wake it first (15-20 us from wake to run in a VM): a
/// completion then waits for that before its reply goes out, a client's
/// submit before its op goes in. Work that finds it polling is taken at
/// once. Polling costs CPU, so it is done only while it pays: it stops
/// when fewer than half of the scheduler's recent idle gaps (from running
/// out of work to the next submit or completion, about the last 8, those
/// longer than the idle spin) were no longer than the limit, and starts
/// again once three quarters were. A miss burns the whole limit, so a
/// workload that catches only every other gap (a 50 us op after a 1 ms
/// think time) is not worth it. Gaps are measured whether the scheduler polled or parked, so a
/// workload that speeds up is noticed while parking; one that stops (or
/// ops that take long: a socket poll, a timeout, a slow disk) leaves the
/// scheduler parking after its idle spin alone within about six gaps.
///
/// All or nothing on purpose: a budget fitted to a typical gap would miss
/// the gaps that matter. At QD 32 on a disk that completes in bursts, the
/// gaps inside a burst are tiny and the one before a burst is long, and it
/// is that one's wake-up that delays the burst.
///
/// Scheduler thread only, but for polling().

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace i2o2::detail {

class busy_spin {
public:
  /// A limit of zero: never polls. Gaps up to `idle_spin` are the idle
  /// spin's to catch: they say nothing about whether the longer poll pays.
  /// (config validation rejects a negative limit, or one over a second;
  /// here a negative one counts as zero.)
  busy_spin(std::chrono::nanoseconds limit, std::chrono::microseconds idle_spin) noexcept
      : limit_(std::max(limit, std::chrono::nanoseconds::zero())),
        // Clamped: microseconds::max() (never park) overflows nanoseconds.
        idle_spin_(std::min(idle_spin, std::chrono::microseconds(std::chrono::hours(1)))) {}

  /// Whether gaps are measured at all (a nonzero limit).
  bool enabled() const noexcept { return limit_.count() > 0; }

  /// Whether the scheduler polls for the limit now. Any thread (a
  /// snapshot, for diagnostics); the scheduler's own reads are its writes.
  bool polling() const noexcept { return enabled() && polling_.load(std::memory_order_relaxed); }

  /// How long to poll when running out of work now: the limit, or zero.
  std::chrono::nanoseconds next() const noexcept {
    return polling() ? limit_ : std::chrono::nanoseconds::zero();
  }

  /// An idle gap ended after `elapsed`: work was caught by polling, or
  /// woke the parked scheduler.
  void gap(std::chrono::nanoseconds elapsed) noexcept {
    if (!enabled() || elapsed <= idle_spin_) return;
    const std::int32_t hit = elapsed <= limit_ ? one : 0;
    hits_ += (hit - hits_) / weight;  // an average over about `weight` gaps
    // Apart, so that a workload near the line does not flip every gap.
    if (hits_ < off_below) polling_.store(false, std::memory_order_relaxed);
    if (hits_ >= on_from) polling_.store(true, std::memory_order_relaxed);
  }

private:
  static constexpr std::int32_t one = 1024;  // hits_ is a share in 1/1024ths
  static constexpr std::int32_t weight = 8;
  static constexpr std::int32_t off_below = one / 2;
  static constexpr std::int32_t on_from = one * 3 / 4;

  std::chrono::nanoseconds limit_;
  std::chrono::nanoseconds idle_spin_;
  std::int32_t hits_ = one;  // optimistic: poll until gaps say otherwise
  std::atomic<bool> polling_{true};
};

}  // namespace i2o2::detail
