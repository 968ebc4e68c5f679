#pragma once
/// How many IO ops one io_uring_enter may hand the kernel
/// (config::submit_budget). Issuing an op does its work inside the enter,
/// and no completion is reaped meanwhile: an O_DIRECT read costs a few
/// microseconds of page pinning and block-layer work, and the kernel holds
/// a batch of more than two in a plug until all of it is issued; a
/// buffered write handed on to an io-wq worker costs well under one. A
/// fixed count fits one and not the other (a cap of two writes per enter
/// cost seqwrite 4 KiB about 10% on 2 cores: more enters, more scheduler
/// CPU beside the io-wq worker), so the cap is a time: the scheduler learns
/// what one IO op has cost to submit lately and takes as many as fit.
///
/// Scheduler thread only. The caller lets the first IO op of each enter
/// (and the rest of its chain) go in regardless, so every enter progresses.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace i2o2::detail {

class submit_budget {
public:
  using clock = std::chrono::steady_clock;

  /// A budget of zero: no limit, and nothing is timed. (config validation
  /// rejects a negative one; here it counts as zero.)
  explicit submit_budget(std::chrono::nanoseconds budget) noexcept
      : budget_ns_(std::max<std::int64_t>(0, budget.count())) {}

  /// IO ops the next enter may carry; 0 means no limit (no budget, or no
  /// cost learned yet).
  unsigned cap() const noexcept {
    if (budget_ns_ == 0 || cost_ns_ == 0) return 0;
    return static_cast<unsigned>(std::clamp<std::int64_t>(budget_ns_ / cost_ns_, 1, max_cap));
  }

  /// IO ops placed that no enter has taken yet.
  unsigned unsubmitted() const noexcept { return unsubmitted_; }

  /// A budget with no cost learned yet, and IO ops waiting to teach it.
  bool learning() const noexcept { return budget_ns_ != 0 && cost_ns_ == 0 && unsubmitted_ != 0; }

  /// `count` more IO ops wait in the SQ for the next enter.
  void placed(unsigned count) noexcept { unsubmitted_ += count; }

  /// The start of an enter worth timing: one that waits for nothing (a
  /// wait would count as cost) and carries IO ops. Otherwise empty.
  std::optional<clock::time_point> start(unsigned wait_for) const noexcept {
    if (budget_ns_ == 0 || wait_for != 0 || unsubmitted_ == 0) return std::nullopt;
    return clock::now();
  }

  /// An enter succeeded (it took the SQ); `started` is what `start` gave.
  void entered(std::optional<clock::time_point> started) noexcept {
    entered_after(started ? std::optional(clock::now() - *started) : std::nullopt);
  }
  /// The same, told how long the enter took (tests feed it known lengths).
  void entered_after(std::optional<std::chrono::nanoseconds> took) noexcept {
    if (took && unsubmitted_ != 0) learn(took->count() / unsubmitted_);
    unsubmitted_ = 0;
  }

  /// The learned cost of submitting one IO op, in nanoseconds (0: none yet).
  std::int64_t cost_ns() const noexcept { return cost_ns_; }

private:
  /// Keeps the least cost per op seen over the last one to two windows of
  /// `window` timed enters. Preemption inside an enter only ever adds to
  /// its time, and it strikes exactly when the CPUs are busiest; an
  /// average would then shrink the cap, costing more enters and more CPU.
  void learn(std::int64_t sample_ns) noexcept {
    sample_ns = std::max<std::int64_t>(sample_ns, 1);
    current_min_ = current_min_ == 0 ? sample_ns : std::min(current_min_, sample_ns);
    if (++samples_ == window) {
      cost_ns_ = current_min_;
      previous_min_ = current_min_;
      current_min_ = 0;
      samples_ = 0;
    } else {
      cost_ns_ = previous_min_ == 0 ? current_min_ : std::min(previous_min_, current_min_);
    }
  }

  static constexpr unsigned window = 64;
  // More than any ring holds (32768 SQEs): no limit in effect, and no
  // wrap-around to 0 (which would read as "no limit" too, but by accident).
  static constexpr std::int64_t max_cap = 1 << 20;
  std::int64_t budget_ns_;
  std::int64_t cost_ns_ = 0;
  std::int64_t current_min_ = 0;
  std::int64_t previous_min_ = 0;
  unsigned samples_ = 0;
  unsigned unsubmitted_ = 0;
};

}  // namespace i2o2::detail
