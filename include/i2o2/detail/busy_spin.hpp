#pragma once
/// Whether a scheduler that runs out of work polls before it parks, beyond
/// its fixed idle spin (config::busy_spin). Work that finds the scheduler
/// parked must wake it first (15-20 us from wake to run in a VM): a
/// completion then waits for that before its reply goes out, a client's
/// submit before its op goes in. Work that finds it polling is taken at
/// once. Polling costs CPU, so it is done only while it pays: it stops
/// when fewer than a quarter of the scheduler's recent idle gaps (from
/// running out of work to the next submit or completion, about the last
/// 8) were no longer than the limit, and starts again once half were.
/// Gaps are measured whether the scheduler polled or parked, so a
/// workload that speeds up is noticed while parking; one that stops (or
/// ops that take long: a socket poll, a timeout, a slow disk) leaves the
/// scheduler parking after its idle spin alone within a dozen gaps.
///
/// All or nothing on purpose: a budget fitted to a typical gap would miss
/// the gaps that matter. At QD 32 on a disk that completes in bursts, the
/// gaps inside a burst are tiny and the one before a burst is long, and it
/// is that one's wake-up that delays the burst.
///
/// Scheduler thread only.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace i2o2::detail {

class busy_spin {
public:
  /// A limit of zero: never polls. (config validation rejects a negative
  /// one, or one over a second; here a negative one counts as zero.)
  explicit busy_spin(std::chrono::nanoseconds limit) noexcept
      : limit_(std::max(limit, std::chrono::nanoseconds::zero())) {}

  /// Whether gaps are measured at all (a nonzero limit).
  bool enabled() const noexcept { return limit_.count() > 0; }

  /// How long to poll when running out of work now: the limit, or zero.
  std::chrono::nanoseconds next() const noexcept {
    return polling_ ? limit_ : std::chrono::nanoseconds::zero();
  }

  /// An idle gap ended after `elapsed`: work was caught by polling, or
  /// woke the parked scheduler.
  void gap(std::chrono::nanoseconds elapsed) noexcept {
    const std::int32_t hit = enabled() && elapsed <= limit_ ? one : 0;
    hits_ += (hit - hits_) / weight;  // an average over about `weight` gaps
    // Apart, so that a workload near the line does not flip every gap.
    if (polling_ && hits_ < off_below) polling_ = false;
    if (!polling_ && hits_ >= on_from) polling_ = true;
  }

private:
  static constexpr std::int32_t one = 1024;  // hits_ is a share in 1/1024ths
  static constexpr std::int32_t weight = 8;
  static constexpr std::int32_t off_below = one / 4;
  static constexpr std::int32_t on_from = one / 2;

  std::chrono::nanoseconds limit_;
  std::int32_t hits_ = one;  // optimistic: poll until gaps say otherwise
  bool polling_ = true;
};

}  // namespace i2o2::detail
