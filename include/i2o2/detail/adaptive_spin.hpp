#pragma once
/// Spin-before-sleep with a per-thread budget that follows what works: it
/// doubles when a spin catches the event and halves when it does not, and
/// every 32nd wait tries the full budget again so a thread whose budget
/// shrank under load finds out when spinning pays again.

#include "cpu_relax.hpp"

#include <algorithm>

namespace i2o2::detail {

struct adaptive_spin {
  static constexpr unsigned min_spins = 16;
  static constexpr unsigned max_spins = 4096;

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
    }
    budget = std::max(min_spins, budget / 2);
    return false;
  }
};

}  // namespace i2o2::detail
