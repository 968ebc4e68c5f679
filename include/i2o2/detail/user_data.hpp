#pragma once
/// How CQEs are told apart: an op's user_data is its slot index; internal
/// events (wake-ups, cancels, timeouts) set the top bit and never collide.

#include <cstdint>

namespace i2o2::detail {

inline constexpr std::uint64_t internal_bit = std::uint64_t{1} << 63;
/// The wait strategy's armed op.
inline constexpr std::uint64_t wake_user_data = internal_bit | 1;
/// An ASYNC_CANCEL issued by the scheduler (its own CQE is ignored).
inline constexpr std::uint64_t cancel_user_data = internal_bit | 2;

constexpr bool is_internal(std::uint64_t user_data) noexcept { return (user_data & internal_bit) != 0; }

} // namespace i2o2::detail
