#pragma once
/// How CQEs are told apart. An op's user_data is its slot index with the
/// slot's generation above it, so a stale reference (a late cancel) can
/// never hit the slot's next op. Internal events set the top bit and carry
/// a kind, and for resource tags the table index.

#include <cstdint>

namespace i2o2::detail {

inline constexpr std::uint64_t internal_bit = std::uint64_t{1} << 63;

enum class internal_kind : std::uint64_t {
  wake = 1,          // the wait strategy's armed op
  cancel = 2,        // an ASYNC_CANCEL issued at the shutdown deadline
  link_timeout = 3,  // the LINK_TIMEOUT behind an op with a deadline
  file_tag = 4,      // a registered file's slot is no longer used
  buffer_tag = 5,    // a registered buffer's slot is no longer used
};

constexpr std::uint64_t internal_user_data(internal_kind kind, std::uint32_t index = 0) noexcept {
  return internal_bit | static_cast<std::uint64_t>(kind) << 32 | index;
}
constexpr bool is_internal(std::uint64_t user_data) noexcept { return (user_data & internal_bit) != 0; }
constexpr internal_kind kind_of(std::uint64_t user_data) noexcept {
  return static_cast<internal_kind>((user_data & ~internal_bit) >> 32);
}
constexpr std::uint32_t index_of(std::uint64_t user_data) noexcept {
  return static_cast<std::uint32_t>(user_data);
}

inline constexpr std::uint64_t wake_user_data = internal_user_data(internal_kind::wake);
/// A shutdown ASYNC_CANCEL of the op in slot `slot`; the wake op's cancel
/// names no slot.
inline constexpr std::uint32_t no_slot = 0xffffffffU;
constexpr std::uint64_t cancel_user_data(std::uint32_t slot) noexcept {
  return internal_user_data(internal_kind::cancel, slot);
}
inline constexpr std::uint64_t link_timeout_user_data = internal_user_data(internal_kind::link_timeout);

}  // namespace i2o2::detail
