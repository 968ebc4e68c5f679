#pragma once
/// Which registered-file and registered-buffer slots an op may still look
/// up after the enter that submits it. The kernel finds a fixed file or
/// buffer when it issues an op: for most ops inside that enter, but for a
/// chain's later ops when the op before them completes, and for IOSQE_ASYNC
/// ops and those the kernel always hands to an io-wq worker (fsync,
/// fallocate, ...) when a worker takes them. An unregister must wait for
/// those, or they find the slot empty (-EBADF, -EFAULT). Not tracked: the
/// second file of splice/tee (SPLICE_F_FD_IN_FIXED), which only op::raw
/// can name.

#include "compat.hpp"

#include <cstdint>

namespace i2o2::detail {

struct table_use {
  static constexpr std::uint32_t none = ~std::uint32_t{0};
  std::uint32_t file = none;
  std::uint32_t buffer = none;
};

/// Ops whose prep sets REQ_F_FORCE_ASYNC: they never run inline.
inline bool always_punted(std::uint8_t opcode) noexcept {
  switch (opcode) {
  case IORING_OP_FSYNC:
  case IORING_OP_SYNC_FILE_RANGE:
  case IORING_OP_FALLOCATE:
  case IORING_OP_FADVISE:
  case IORING_OP_SPLICE:
  case IORING_OP_TEE:
  case compat::op_ftruncate: return true;
  default: return false;
  }
}

/// The slots `sqe` names that the kernel may look up after submission;
/// `chain_member`: a chain's op after its first.
inline table_use late_table_use(const io_uring_sqe& sqe, bool chain_member) noexcept {
  table_use use;
  if (!chain_member && (sqe.flags & IOSQE_ASYNC) == 0 && !always_punted(sqe.opcode)) return use;
  if ((sqe.flags & IOSQE_FIXED_FILE) != 0) use.file = static_cast<std::uint32_t>(sqe.fd);
  bool fixed_buffer = false;
  switch (sqe.opcode) {
  case IORING_OP_READ_FIXED:
  case IORING_OP_WRITE_FIXED:
  case compat::op_readv_fixed:
  case compat::op_writev_fixed: fixed_buffer = true; break;
  case compat::op_uring_cmd: fixed_buffer = (sqe.uring_cmd_flags & IORING_URING_CMD_FIXED) != 0; break;
  case IORING_OP_SEND_ZC:
  case IORING_OP_SENDMSG_ZC: fixed_buffer = (sqe.ioprio & IORING_RECVSEND_FIXED_BUF) != 0; break;
  default: break;
  }
  if (fixed_buffer) use.buffer = sqe.buf_index;
  return use;
}

}  // namespace i2o2::detail
