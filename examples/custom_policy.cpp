// A user-written policy plugged into basic_scheduler: a wait strategy that
// wraps the eventfd strategy and counts how often producers had to wake the
// scheduler. Any type satisfying i2o2::wait_strategy works the same way.
#include <i2o2/i2o2.hpp>

#include <atomic>
#include <cstdio>

/// Counts wakes; everything else is the shipped eventfd strategy.
class counting_wait {
public:
  static constexpr bool can_park = true;

  void notify() noexcept {
    wakes_.fetch_add(1, std::memory_order_relaxed);
    inner_.notify();
  }
  bool arm(i2o2::detail::ring& ring) noexcept { return inner_.arm(ring); }
  void on_wake(int result) noexcept { inner_.on_wake(result); }
  bool armed() const noexcept { return inner_.armed(); }
  void block() noexcept { inner_.block(); }

  static long wakes() noexcept { return wakes_.load(); }

private:
  i2o2::wait::eventfd inner_;
  static inline std::atomic<long> wakes_{0};
};
static_assert(i2o2::wait_strategy<counting_wait>);

using counting_scheduler =
    i2o2::basic_scheduler<i2o2::queue::mpsc_ring, counting_wait, i2o2::reply::future, i2o2::any_guard>;

int main() {
  // No idle or busy spin: the scheduler parks as soon as it has nothing to
  // do, rather than catching the next submit in its spin.
  auto [owner, handle] =
      i2o2::spawn_scheduler<counting_scheduler>(i2o2::config{.idle_spin = {}, .busy_spin = {}});
  constexpr int round_trips = 1000;
  int ok = 0;
  for (int i = 0; i < round_trips; ++i) ok += handle.submit(i2o2::op::nop{}).wait() == 0 ? 1 : 0;
  // One client waiting for each reply lets the scheduler park between ops,
  // so submits find it parked and wake it; a batch needs only one wake.
  std::vector<i2o2::prepared_op> batch(64, i2o2::op::nop{});
  const long before_batch = counting_wait::wakes();
  for (auto& reply : handle.submit_many(batch)) ok += reply.wait() == 0 ? 1 : 0;
  const long batch_wakes = counting_wait::wakes() - before_batch;
  std::printf("%d of %d ops succeeded; %ld wakes for %d round trips, %ld for a batch of 64\n", ok,
              round_trips + 64, before_batch, round_trips, batch_wakes);
  const bool right = ok == round_trips + 64 && before_batch > 0 && before_batch <= round_trips && batch_wakes <= 1;
  return right ? 0 : 1;
}
