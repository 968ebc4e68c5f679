#pragma once
/// Spin-before-sleep with a per-thread budget that follows what works: it
/// doubles when a spin catches the event and halves when it does not, and
/// every 32nd wait tries the full budget again so a thread whose budget
/// shrank under load finds out when spinning pays again.
///
/// Past the first `selfish_spins` pauses (about 1.6 us on a 25 ns pause),
/// the spin yields the CPU every `yield_every` pauses. A spin catches the
/// event either way; the yields matter when the machine has more runnable
/// threads than cores. A client spinning on the oldest of 16 buffered
/// writes otherwise holds a core that the io-wq worker running those
/// writes needs: seqwrite 4 KiB went from 0.63-0.75x raw_liburing to
/// 0.73-0.97x (median 0.86x) on 2 cores, while replies that come within
/// the selfish part (a NOP round trip) never pay a yield.

#include "cpu_relax.hpp"

#include <sched.h>

#include <algorithm>

namespace i2o2::detail {

struct adaptive_spin {
  static constexpr unsigned min_spins = 16;
  static constexpr unsigned max_spins = 4096;
  static constexpr unsigned selfish_spins = 64;
  static constexpr unsigned yield_every = 64;

  /// Spins until `done()` or the budget runs out; true if `done()`.
  template <class Done>
  static bool run(Done&& done) noexcept {
    thread_local unsigned budget = 256;
    thread_local unsigned waits = 0;
    const unsigned limit = (++waits % 32 == 0) ? max_spins : budget;
    for (unsigned spin = 0; spin < limit; ++spin) {
      if (done()) {
        budget = std::min(max_spins, std::max(budget, spin * 2 + min_spins));
        return true;
      }
      cpu_relax();
      if (spin >= selfish_spins && spin % yield_every == 0) ::sched_yield();
    }
    budget = std::max(min_spins, budget / 2);
    return false;
  }
};

}  // namespace i2o2::detail
