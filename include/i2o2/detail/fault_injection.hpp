#pragma once
/// The fault-injecting seam at the kernel boundary, compiled only into test
/// builds (I2O2_TESTING): tests make the next io_uring_enter calls fail with
/// -EINTR, -EAGAIN or -EBUSY, or the next ring setup fail with -ENOMEM or
/// -EPERM, without submitting anything, as the kernel may; or the next
/// MSG_RING wake-ups fail (the wait::msg_ring strategy) without posting
/// anything; or sparse table registration be refused, as before Linux 5.19;
/// or the feature probe's next IORING_REGISTER_PROBE or setup-flag trial
/// fail. (Pretending an older kernel's io_uring is
/// kernel_features::pretend_missing.) Without I2O2_TESTING every hook is a
/// constant and compiles away.

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
  /// The feature probe's next IORING_REGISTER_PROBE fails with -error.
  void fail_opcode_probe(int error) noexcept { opcode_probe_error_.store(error); }
  /// The feature probe's next setup-flag trial fails with -error.
  void fail_flag_trial(int error) noexcept { flag_trial_error_.store(error); }
  /// The next `count` MSG_RING wake-ups fail with -error without posting.
  void fail_msg_rings(int error, int count) noexcept {
    msg_ring_error_.store(error);
    msg_ring_failures_.store(count);
  }
  /// The next `count` enters of the waker ring (wait::msg_ring before
  /// Linux 6.13) return -error without submitting its MSG_RING.
  void fail_waker_enters(int error, int count) noexcept {
    waker_enter_error_.store(error);
    waker_enter_failures_.store(count);
  }
  /// Whether registering sparse tables fails with -EINVAL from now on.
  void refuse_sparse_tables(bool refused) noexcept { sparse_refused_.store(refused); }
  void clear() noexcept {
    sparse_refused_.store(false);
    msg_ring_failures_.store(0);
    waker_enter_failures_.store(0);
    enter_failures_.store(0);
    setup_error_.store(0);
    opcode_probe_error_.store(0);
    flag_trial_error_.store(0);
  }
  /// How many enters failed by injection so far.
  long injected_enters() const noexcept { return injected_.load(); }

  int take_enter() noexcept { return take(enter_failures_, enter_error_, injected_); }
  int take_waker_enter() noexcept {
    return take(waker_enter_failures_, waker_enter_error_, injected_waker_enters_);
  }
  /// How many waker-ring enters failed by injection so far.
  long injected_waker_enters() const noexcept { return injected_waker_enters_.load(); }
  int take_msg_ring() noexcept { return take(msg_ring_failures_, msg_ring_error_, injected_msg_rings_); }
  /// How many MSG_RING wake-ups failed by injection so far.
  long injected_msg_rings() const noexcept { return injected_msg_rings_.load(); }
  int take_setup() noexcept { return setup_error_.exchange(0); }
  int take_opcode_probe() noexcept { return opcode_probe_error_.exchange(0); }
  int take_flag_trial() noexcept { return flag_trial_error_.exchange(0); }
  bool take_sparse_refusal() noexcept { return sparse_refused_.load(std::memory_order_relaxed); }

private:
  static int take(std::atomic<int>& failures, const std::atomic<int>& error,
                  std::atomic<long>& injected) noexcept {
    int left = failures.load(std::memory_order_relaxed);
    while (left > 0) {
      if (failures.compare_exchange_weak(left, left - 1)) {
        injected.fetch_add(1);
        return error.load();
      }
    }
    return 0;
  }

  std::atomic<int> enter_error_{0};
  std::atomic<int> enter_failures_{0};
  std::atomic<int> setup_error_{0};
  std::atomic<long> injected_{0};
  std::atomic<int> opcode_probe_error_{0};
  std::atomic<int> flag_trial_error_{0};
  std::atomic<int> msg_ring_error_{0};
  std::atomic<int> msg_ring_failures_{0};
  std::atomic<long> injected_msg_rings_{0};
  std::atomic<int> waker_enter_error_{0};
  std::atomic<int> waker_enter_failures_{0};
  std::atomic<long> injected_waker_enters_{0};
  std::atomic<bool> sparse_refused_{false};
};

inline int injected_enter_error() noexcept { return fault_injection::get().take_enter(); }
inline int injected_setup_error() noexcept { return fault_injection::get().take_setup(); }
inline int injected_opcode_probe_error() noexcept { return fault_injection::get().take_opcode_probe(); }
inline int injected_flag_trial_error() noexcept { return fault_injection::get().take_flag_trial(); }
inline int injected_msg_ring_error() noexcept { return fault_injection::get().take_msg_ring(); }
inline int injected_waker_enter_error() noexcept { return fault_injection::get().take_waker_enter(); }
inline bool injected_sparse_refusal() noexcept { return fault_injection::get().take_sparse_refusal(); }
#else
constexpr int injected_enter_error() noexcept { return 0; }
constexpr int injected_setup_error() noexcept { return 0; }
constexpr int injected_opcode_probe_error() noexcept { return 0; }
constexpr int injected_flag_trial_error() noexcept { return 0; }
constexpr int injected_msg_ring_error() noexcept { return 0; }
constexpr int injected_waker_enter_error() noexcept { return 0; }
constexpr bool injected_sparse_refusal() noexcept { return false; }
#endif

}  // namespace i2o2::detail
