#pragma once
/// The store-load fence of the park and space protocols (Dekker: each side
/// stores its flag, fences, then reads the other's). Normally a seq_cst
/// fence. ThreadSanitizer does not model standalone fences (and GCC refuses
/// them under -fsanitize=thread), so TSan builds use a seq_cst
/// read-modify-write on the shared flag instead: both sides' RMWs on one
/// variable are totally ordered, which gives the same guarantee in a form
/// TSan understands. Only sanitizer builds pay for the RMW.

#include <atomic>

#if defined(__SANITIZE_THREAD__)
#define I2O2_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define I2O2_TSAN 1
#endif
#endif

namespace i2o2::detail {

template <class T>
inline void dekker_fence([[maybe_unused]] std::atomic<T>& flag) noexcept {
#ifdef I2O2_TSAN
  flag.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace i2o2::detail
