#pragma once
/// The fault-injecting seam at the ring boundary, compiled only into test
/// builds (I2O2_TESTING): tests make the next io_uring_enter calls fail with
/// -EINTR, -EAGAIN or -EBUSY, or the next ring setup fail with -ENOMEM or
/// -EPERM, without submitting anything, as the kernel may. (Pretending an
/// older kernel is kernel_features::pretend_missing.) Without I2O2_TESTING
/// every hook is a constant 0 and compiles away.

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

private:
  std::atomic<int> enter_error_{0};
  std::atomic<int> enter_failures_{0};
  std::atomic<int> setup_error_{0};
  std::atomic<long> injected_{0};
};

inline int injected_enter_error() noexcept { return fault_injection::get().take_enter(); }
inline int injected_setup_error() noexcept { return fault_injection::get().take_setup(); }
#else
constexpr int injected_enter_error() noexcept { return 0; }
constexpr int injected_setup_error() noexcept { return 0; }
#endif

}  // namespace i2o2::detail
