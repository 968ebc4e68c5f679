#pragma once
/// What the running kernel can do for an op, asked before sending it: an
/// op whose opcode the kernel lacks resolves `errc::unsupported_op`, so a
/// caller with a fallback (ftruncate before Linux 6.9, say) picks it here.

#include "detail/kernel_features.hpp"
#include "op.hpp"

namespace i2o2 {

/// Whether the running kernel has io_uring and `op`'s opcode, from the
/// probe submit checks (kept for the process once sure; a probe a passing
/// failure, ENOMEM say, left unsure lets every opcode through, as submit
/// does, until a later scheduler's creation probes again).
template <operation Op>
bool kernel_supports(const Op& op) {
  const auto& kernel = detail::kernel_features::get();
  return kernel.available() && kernel.has_opcode(prepared_op(op).sqe().opcode);
}

/// The first Linux release with `op`'s opcode ("Linux 6.9"), for messages.
template <operation Op>
const char* kernel_needed_for(const Op& op) noexcept {
  return detail::opcode_since(prepared_op(op).sqe().opcode);
}

}  // namespace i2o2
