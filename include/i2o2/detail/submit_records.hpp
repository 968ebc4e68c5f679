#pragma once
/// What the ring boundary handed the kernel, recorded only in test builds
/// (I2O2_TESTING): the most SQEs, and the most IO SQEs (user ops other
/// than NOPs), that one io_uring_enter carried, so tests can check
/// config::submit_budget. Without I2O2_TESTING nothing is recorded and the
/// ring does not even count.

#include <atomic>

namespace i2o2::detail {

#ifdef I2O2_TESTING
class submit_records {
public:
  static submit_records& get() noexcept {
    static submit_records instance;
    return instance;
  }

  /// One enter is about to hand over `sqes` SQEs, `io_sqes` of them IO ops.
  void note(unsigned sqes, unsigned io_sqes) noexcept {
    raise(largest_, sqes);
    raise(largest_io_, io_sqes);
  }
  /// The most SQEs / IO SQEs one enter handed over since the last reset.
  unsigned largest() const noexcept { return largest_.load(); }
  unsigned largest_io() const noexcept { return largest_io_.load(); }
  void reset() noexcept {
    largest_.store(0);
    largest_io_.store(0);
  }

private:
  static void raise(std::atomic<unsigned>& record, unsigned value) noexcept {
    unsigned seen = record.load(std::memory_order_relaxed);
    while (value > seen && !record.compare_exchange_weak(seen, value)) {
    }
  }

  std::atomic<unsigned> largest_{0};
  std::atomic<unsigned> largest_io_{0};
};

inline constexpr bool records_submits = true;
inline void note_submit(unsigned sqes, unsigned io_sqes) noexcept { submit_records::get().note(sqes, io_sqes); }
#else
inline constexpr bool records_submits = false;
constexpr void note_submit(unsigned, unsigned) noexcept {}
#endif

}  // namespace i2o2::detail
