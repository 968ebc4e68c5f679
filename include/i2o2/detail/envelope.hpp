#pragma once
/// One op on its way from a client to the scheduler: the SQE image, the
/// reply's sending half, and the guard.

#include "../guard.hpp"
#include "../op.hpp"

namespace i2o2::detail {

template <class Sender, class Guard>
struct envelope {
  prepared_op op;
  Sender sender;
  [[no_unique_address]] stored_guard_t<Guard> guard;
};

} // namespace i2o2::detail
