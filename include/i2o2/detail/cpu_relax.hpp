#pragma once
/// A spin-loop hint: lets the sibling hyper-thread run and saves power.

namespace i2o2::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace i2o2::detail
