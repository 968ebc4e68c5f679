#pragma once
/// The op set. Each op is an aggregate for designated initializers:
///
///     i2o2::op::read{.file = fd, .buf = page, .len = 4096, .offset = 0}
///
/// and resolves with what the equivalent syscall returns (`pread(2)` for
/// `read`, `fsync(2)` for `fsync`, ...), or `-errno`. Every op takes a raw fd
/// or `i2o2::fixed_file(index)`, and `.options` for IO priority and
/// IOSQE_ASYNC. Pointers in an op must stay valid until the op completes:
/// hand their owner to `submit` as the guard.

#include "op.hpp"

#include <fcntl.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

struct statx;

namespace i2o2::op {

/// Offset meaning "the file's current position", as read(2)/write(2) use.
inline constexpr std::uint64_t current_position = ~std::uint64_t{0};

/// Does nothing; resolves with 0. Measures the scheduler itself.
struct nop {
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    image.sqe().opcode = IORING_OP_NOP;
    image.sqe().fd = -1;
    detail::apply_options(image, options);
  }
};

/// pread(2) into `buf`.
struct read {
  file_ref file{};
  void* buf = nullptr;
  std::uint32_t len = 0;
  std::uint64_t offset = 0;
  int rw_flags = 0;  ///< RWF_* flags, as preadv2(2).
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_READ, file, detail::address_of(buf), len, offset, options);
    image.sqe().rw_flags = rw_flags;
  }
};

/// pwrite(2) from `buf`.
struct write {
  file_ref file{};
  const void* buf = nullptr;
  std::uint32_t len = 0;
  std::uint64_t offset = 0;
  int rw_flags = 0;  ///< RWF_* flags, as pwritev2(2).
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_WRITE, file, detail::address_of(buf), len, offset, options);
    image.sqe().rw_flags = rw_flags;
  }
};

/// preadv2(2). The iovec array must outlive the op, like the buffers.
struct readv {
  file_ref file{};
  const iovec* iov = nullptr;
  std::uint32_t iov_count = 0;
  std::uint64_t offset = 0;
  int rw_flags = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_READV, file, detail::address_of(iov), iov_count, offset, options);
    image.sqe().rw_flags = rw_flags;
  }
};

/// pwritev2(2). The iovec array must outlive the op, like the buffers.
struct writev {
  file_ref file{};
  const iovec* iov = nullptr;
  std::uint32_t iov_count = 0;
  std::uint64_t offset = 0;
  int rw_flags = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_WRITEV, file, detail::address_of(iov), iov_count, offset, options);
    image.sqe().rw_flags = rw_flags;
  }
};

/// pread(2) into registered buffer `buf_index`; `buf` must lie inside it.
struct read_fixed {
  file_ref file{};
  void* buf = nullptr;
  std::uint32_t len = 0;
  std::uint64_t offset = 0;
  std::uint16_t buf_index = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_READ_FIXED, file, detail::address_of(buf), len, offset, options);
    image.sqe().buf_index = buf_index;
  }
};

/// pwrite(2) from registered buffer `buf_index`; `buf` must lie inside it.
struct write_fixed {
  file_ref file{};
  const void* buf = nullptr;
  std::uint32_t len = 0;
  std::uint64_t offset = 0;
  std::uint16_t buf_index = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_WRITE_FIXED, file, detail::address_of(buf), len, offset, options);
    image.sqe().buf_index = buf_index;
  }
};

/// fsync(2), or fdatasync(2) with `data_only`.
struct fsync {
  file_ref file{};
  bool data_only = false;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_FSYNC, file, 0, 0, 0, options);
    image.sqe().fsync_flags = data_only ? IORING_FSYNC_DATASYNC : 0U;
  }
};

/// fallocate(2): `mode` as FALLOC_FL_*.
struct fallocate {
  file_ref file{};
  int mode = 0;
  std::uint64_t offset = 0;
  std::uint64_t len = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    // The kernel keeps the length in `addr` and the mode in `len`.
    detail::fill_rw(image, IORING_OP_FALLOCATE, file, len, static_cast<std::uint32_t>(mode), offset, options);
  }
};

/// ftruncate(2). Linux 6.9+; older kernels resolve with errc::unsupported_op.
struct ftruncate {
  file_ref file{};
  std::uint64_t length = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, compat::op_ftruncate, file, 0, 0, length, options);
  }
};

/// posix_fadvise(2): `advice` as POSIX_FADV_*; `len` 0: to the end of the
/// file. A `len` of 4 GiB or more needs Linux 6.11 (-EINVAL before).
struct fadvise {
  file_ref file{};
  std::uint64_t offset = 0;
  std::uint64_t len = 0;
  int advice = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    const detail::advice_length length(len);
    // The 64-bit length goes in `addr`, where kernels before 6.11 want 0.
    detail::fill_rw(image, IORING_OP_FADVISE, file, length.wide, length.narrow, offset, options);
    image.sqe().fadvise_advice = static_cast<std::uint32_t>(advice);
  }
};

/// madvise(2) on `[addr, addr + len)`: `advice` as MADV_*. A `len` of 4 GiB
/// or more needs Linux 6.11 (-EINVAL before).
struct madvise {
  void* addr = nullptr;
  std::uint64_t len = 0;
  int advice = 0;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    const detail::advice_length length(len);
    // The 64-bit length goes in `off`, where kernels before 6.11 want 0.
    detail::fill_rw(image, IORING_OP_MADVISE, file_ref(-1), detail::address_of(addr), length.narrow,
                    length.wide, options);
    image.sqe().fadvise_advice = static_cast<std::uint32_t>(advice);
  }
};

/// openat(2); resolves with the new fd. With `fixed_slot`, the file is
/// opened straight into that registered-file slot (a direct descriptor)
/// and resolves with 0; a slot outside the table resolves -EINVAL. The
/// scheduler notes each direct descriptor installed: `register_file`
/// never hands out its slot until an `op::close` of that `fixed_file`
/// empties it. Opened over a file `register_file` put there, it ends that
/// registration (`unregister_file` then answers `not_registered`; the
/// file's guard goes once the kernel lets go of it, as after an
/// unregister). `register_file` hands out slots from 0 upward (those
/// freed again first): direct descriptors at the top of the table leave
/// it the most room.
struct openat {
  static constexpr unsigned max_fixed_slot = 0xfffffffdU;
  int dir_fd = AT_FDCWD;
  const char* path = nullptr;
  int flags = 0;
  mode_t mode = 0;
  std::optional<unsigned> fixed_slot{};
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_OPENAT, file_ref(dir_fd), detail::address_of(path), mode, 0, options);
    image.sqe().open_flags = static_cast<std::uint32_t>(flags);
    // The kernel names the slot + 1; 0 would mean "not a direct descriptor"
    // and ~0 "any free slot", so an index past the largest possible table
    // is kept one that the kernel refuses (-EINVAL) instead of wrapping.
    if (fixed_slot) image.sqe().file_index = std::min(*fixed_slot, max_fixed_slot) + 1;
  }
};

/// close(2); with a registered file, empties its slot instead.
struct close {
  file_ref file{};
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    image.sqe().opcode = IORING_OP_CLOSE;
    // The kernel names a registered file to close by slot + 1, not by flag;
    // kept short of wrapping to 0, which would close the plain fd 0.
    if (file.registered) {
      image.sqe().fd = 0;
      image.sqe().file_index = std::min(static_cast<std::uint32_t>(file.value), openat::max_fixed_slot) + 1;
    } else {
      image.sqe().fd = file.value;
    }
    detail::apply_options(image, options);
  }
};

/// statx(2) of `path` relative to `dir_fd` into `result`.
struct statx {
  int dir_fd = AT_FDCWD;
  const char* path = nullptr;
  int flags = 0;
  unsigned mask = 0;
  struct ::statx* result = nullptr;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, IORING_OP_STATX, file_ref(dir_fd), detail::address_of(path), mask,
                    detail::address_of(result), options);
    image.sqe().statx_flags = static_cast<std::uint32_t>(flags);
  }
};

/// A driver command (NVMe passthrough and friends): `command` is the
/// 80-byte payload of an SQE128 entry. Needs `config::sqe128`; on a ring
/// without it the reply resolves with errc::needs_sqe128. NVMe passthrough
/// also needs `config::cqe32` (the driver refuses the command otherwise)
/// and returns the command's result in the CQE's extra words: point
/// `extra_out` at a `cqe_extra` to receive them.
struct uring_cmd {
  file_ref file{};
  std::uint32_t cmd_op = 0;
  std::array<std::byte, compat::uring_cmd_bytes> command{};
  cqe_extra* extra_out = nullptr;
  op_options options{};
  void prepare(prepared_op& image) const noexcept {
    detail::fill_rw(image, compat::op_uring_cmd, file, 0, 0, 0, options);
    image.sqe().cmd_op = cmd_op;
    image.needs_sqe128 = true;
    image.extra_out = extra_out;
    // The payload starts at byte 48 of the SQE and runs into the second half.
    constexpr std::size_t in_first_half = sizeof(io_uring_sqe) - 48;
    std::memcpy(reinterpret_cast<std::byte*>(&image.sqe()) + 48, command.data(), in_first_half);
    std::memcpy(image.ext(), command.data() + in_first_half, command.size() - in_first_half);
  }
};

/// Any SQE the caller fills by hand (user_data is overwritten).
struct raw {
  prepared_op image = prepared_op::with_opcode(IORING_OP_NOP);
  void prepare(prepared_op& out) const noexcept { out = image; }
};

}  // namespace i2o2::op
