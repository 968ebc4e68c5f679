#pragma once
/// Ops that change the registered-file table behind register_file's back:
/// a direct descriptor installed into a slot (openat, openat2, accept or
/// socket with a file_index), or a slot emptied (close with a file_index).
/// The file table keeps a named slot from register_file from the op's
/// placing (the kernel may install before the CQE is reaped) and, if it
/// succeeds, for as long as the descriptor lives there. A slot the kernel
/// allocates (IORING_FILE_INDEX_ALLOC, op::raw only) is known only from
/// the CQE: a register_file pulled before it may take the same slot.

#include <liburing.h>

#include <cstdint>
#include <optional>

namespace i2o2::detail {

struct direct_file_use {
  enum class kind : std::uint8_t { none, install, remove };
  kind what = kind::none;
  std::uint32_t file_index = 0;  // the SQE's: the slot + 1, or IORING_FILE_INDEX_ALLOC

  /// Whether the SQE names its slot (not left for the kernel to allocate).
  bool names_slot() const noexcept { return what != kind::none && file_index != IORING_FILE_INDEX_ALLOC; }

  /// The slot a CQE with `result` installed into or emptied, if it succeeded.
  std::optional<std::uint32_t> slot(int result) const noexcept {
    if (what == kind::none || result < 0) return std::nullopt;
    // An allocated slot is the result; a named one resolves 0.
    if (file_index == IORING_FILE_INDEX_ALLOC) return static_cast<std::uint32_t>(result);
    return file_index - 1;
  }
};

inline direct_file_use direct_file_use_of(const io_uring_sqe& sqe) noexcept {
  if (sqe.file_index == 0) return {};
  switch (sqe.opcode) {
  case IORING_OP_OPENAT:
  case IORING_OP_OPENAT2:
  case IORING_OP_ACCEPT:
  case IORING_OP_SOCKET: return {direct_file_use::kind::install, sqe.file_index};
  case IORING_OP_CLOSE: return {direct_file_use::kind::remove, sqe.file_index};
  default: return {};
  }
}

}  // namespace i2o2::detail
