#pragma once
/// The fault-injecting seam at the ring boundary, compiled only into test
/// builds (I2O2_TESTING): tests make the next io_uring_enter calls fail with
/// -EINTR, -EAGAIN or -EBUSY, or the next ring setup fail with -ENOMEM or
/// -EPERM, without submitting anything, as the kernel may. (Pretending an
/// older kernel is kernel_features::pretend_missing.) It also records the
/// most SQEs, and the most IO SQEs, one enter handed over. Without
/// I2O2_TESTING every hook is a constant and compiles away.

#include <atomic>

namespace i2o2::detail {

#ifdef I2O2_TESTING
class fault_injection {
public:
  static fault_injection& get() noexcept {
    static fault_injection instance;
    return instance;
  }

  /// The next `count` enters return -error without doing anything.
  void fail_enters(int error, int count) noexcept {
    enter_error_.store(error);
    enter_failures_.store(count);
  }
  /// The next ring setup returns -error.
  void fail_setup(int error) noexcept { setup_error_.store(error); }
  void clear() noexcept {
    enter_failures_.store(0);
    setup_error_.store(0);
  }
  /// How many enters failed by injection so far.
  long injected_enters() const noexcept { return injected_.load(); }

  int take_enter() noexcept {
    int left = enter_failures_.load(std::memory_order_relaxed);
    while (left > 0) {
      if (enter_failures_.compare_exchange_weak(left, left - 1)) {
        injected_.fetch_add(1);
        return enter_error_.load();
      }
    }
    return 0;
  }
  int take_setup() noexcept { return setup_error_.exchange(0); }

  /// One enter is about to hand over `sqes` SQEs, `io_sqes` of them IO ops.
  void note_submit(unsigned sqes, unsigned io_sqes) noexcept {
    raise(largest_submit_, sqes);
    raise(largest_io_submit_, io_sqes);
  }
  /// The most SQEs / IO SQEs one enter handed over since the last reset.
  unsigned largest_submit() const noexcept { return largest_submit_.load(); }
  unsigned largest_io_submit() const noexcept { return largest_io_submit_.load(); }
  void reset_submit_records() noexcept {
    largest_submit_.store(0);
    largest_io_submit_.store(0);
  }

private:
  static void raise(std::atomic<unsigned>& record, unsigned value) noexcept {
    unsigned seen = record.load(std::memory_order_relaxed);
    while (value > seen && !record.compare_exchange_weak(seen, value)) {
    }
  }

  std::atomic<unsigned> largest_submit_{0};
  std::atomic<unsigned> largest_io_submit_{0};
  std::atomic<int> enter_error_{0};
  std::atomic<int> enter_failures_{0};
  std::atomic<int> setup_error_{0};
  std::atomic<long> injected_{0};
};

inline int injected_enter_error() noexcept { return fault_injection::get().take_enter(); }
inline constexpr bool records_submits = true;
inline void note_submit(unsigned sqes, unsigned io_sqes) noexcept {
  fault_injection::get().note_submit(sqes, io_sqes);
}
inline int injected_setup_error() noexcept { return fault_injection::get().take_setup(); }
#else
constexpr int injected_enter_error() noexcept { return 0; }
inline constexpr bool records_submits = false;
constexpr void note_submit(unsigned, unsigned) noexcept {}
constexpr int injected_setup_error() noexcept { return 0; }
#endif

}  // namespace i2o2::detail
