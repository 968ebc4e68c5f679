#pragma once
/// The SQE image an op becomes, and what every op has in common.
///
/// An op is a plain value that knows how to fill an SQE. The client thread
/// fills the image; the scheduler only copies it into the ring, so its
/// per-op work is a copy, a slot and a CQE.

#include "detail/compat.hpp"

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

namespace i2o2 {

/// The two extra words of a 32-byte CQE (`config::cqe32`). NVMe passthrough
/// puts a command's result there (`words[0]`: dwords 0-1 of the NVMe CQE),
/// the only way to get, say, a zone append's LBA. An op that points
/// `extra_out` at one has them stored before its reply resolves: read it
/// once the reply is in.
struct cqe_extra {
  std::uint64_t words[2] = {0, 0};
};

/// A filled SQE, ready for the ring. 128 bytes so that SQE128 commands
/// (`op::uring_cmd`) travel the same way as every other op.
struct prepared_op {
  /// Bytes 0-63: the SQE; bytes 64-127: the second half of an SQE128 entry.
  /// (A byte array rather than an `io_uring_sqe` member: the kernel struct
  /// ends in a zero-length array, which -Wpedantic rejects as a member.)
  alignas(8) std::byte bytes[128];
  bool needs_sqe128 = false;    ///< Rejected on rings without SQE128.
  std::int64_t timeout_ns = 0;  ///< op_options::timeout, for the scheduler.
  /// Receives the extra words of the op's (first) CQE; must outlive the op.
  /// On a ring without `config::cqe32` the reply resolves with
  /// errc::needs_cqe32 and the op is not sent. An op resolved without a CQE
  /// (never sent: closed, refused, a chain cut short) leaves it untouched.
  cqe_extra* extra_out = nullptr;

  /// A zeroed image (opcode 0 is IORING_OP_NOP).
  prepared_op() noexcept {
    std::memset(bytes, 0, sizeof(bytes));
    ::new (static_cast<void*>(bytes)) io_uring_sqe;
  }

  io_uring_sqe& sqe() noexcept { return *std::launder(reinterpret_cast<io_uring_sqe*>(bytes)); }
  const io_uring_sqe& sqe() const noexcept {
    return *std::launder(reinterpret_cast<const io_uring_sqe*>(bytes));
  }
  std::byte* ext() noexcept { return bytes + sizeof(io_uring_sqe); }
  const std::byte* ext() const noexcept { return bytes + sizeof(io_uring_sqe); }
  /// The image of any op, so batches of different ops fit in one container:
  /// `std::vector<prepared_op> batch{op::write{...}, op::fsync{...}}`.
  template <class Op>
  requires requires(const Op& op, prepared_op& image) {
    { op.prepare(image) }
    noexcept;
  }
  prepared_op(const Op& op) noexcept : prepared_op() {  // NOLINT: implicit on purpose
    op.prepare(*this);
  }

  /// A zeroed image with the opcode set.
  static prepared_op with_opcode(std::uint8_t opcode) noexcept {
    prepared_op image;
    image.sqe().opcode = opcode;
    return image;
  }
};
static_assert(sizeof(io_uring_sqe) == 64, "the kernel ABI SQE is 64 bytes");

/// Which file an op targets: a plain descriptor or an index into the
/// scheduler's registered-file table. Converts implicitly from an `int` fd.
struct file_ref {
  int value = -1;
  bool registered = false;

  constexpr file_ref() = default;
  constexpr file_ref(int fd) noexcept : value(fd) {}  // NOLINT: implicit on purpose
  static constexpr file_ref fixed(unsigned index) noexcept {
    file_ref ref;
    ref.value = static_cast<int>(index);
    ref.registered = true;
    return ref;
  }
};

/// A registered-file index, for any op that takes a file.
constexpr file_ref fixed_file(unsigned index) noexcept { return file_ref::fixed(index); }

/// Options every op accepts.
struct op_options {
  /// IO priority (ioprio_set(2) encoding); 0 keeps the default. The kernel
  /// honours it on reads and writes; other ops resolve -EINVAL with it set.
  std::uint16_t ioprio = 0;
  /// IOSQE_ASYNC: the op will block, so go straight to an io-wq worker
  /// instead of trying a non-blocking attempt first.
  bool will_block = false;
  /// A deadline (a linked timeout): an op still running after this long is
  /// cancelled and resolves with -ECANCELED. Zero: none. Negative: the op
  /// resolves with -EINVAL without being sent. Not within chains.
  /// Op and timeout take two SQEs: on a ring_depth 1 ring such an op
  /// resolves with errc::batch_too_large. IOPOLL rings refuse linked
  /// timeouts: there it resolves with errc::unsupported_op.
  std::chrono::nanoseconds timeout{0};
};

/// Requirements on an op type:
///  1. `op.prepare(image)` fills a zeroed `prepared_op` and is noexcept;
///  2. it is copyable, so it can be sent from any thread.
template <class T>
concept operation = std::copy_constructible<T> && requires(const T& op, prepared_op& image) {
  { op.prepare(image) }
  noexcept->std::same_as<void>;
};

/// Builds the SQE image for `op`.
template <operation Op>
prepared_op prepare(const Op& op) noexcept {
  prepared_op image;
  op.prepare(image);
  return image;
}

namespace detail {

inline void apply_target(io_uring_sqe& sqe, file_ref file) noexcept {
  sqe.fd = file.value;
  if (file.registered) sqe.flags |= IOSQE_FIXED_FILE;
}

inline void apply_options(prepared_op& image, const op_options& options) noexcept {
  image.sqe().ioprio = options.ioprio;
  if (options.will_block) image.sqe().flags |= IOSQE_ASYNC;
  image.timeout_ns = options.timeout.count();
}

/// The read/write shaped fields shared by most ops.
inline void fill_rw(prepared_op& image, std::uint8_t opcode, file_ref file, std::uint64_t addr,
                    std::uint32_t len, std::uint64_t offset, const op_options& options) noexcept {
  image.sqe().opcode = opcode;
  apply_target(image.sqe(), file);
  image.sqe().addr = addr;
  image.sqe().len = len;
  image.sqe().off = offset;
  apply_options(image, options);
}

/// An fadvise/madvise length as the SQE carries it: in the 32-bit `len`
/// every kernel reads when it fits, else in the 64-bit field Linux 6.11
/// added (read first, when not 0).
struct advice_length {
  std::uint32_t narrow = 0;
  std::uint64_t wide = 0;
  explicit advice_length(std::uint64_t len) noexcept {
    if (len <= UINT32_MAX)
      narrow = static_cast<std::uint32_t>(len);
    else
      wide = len;
  }
};

template <class T>
std::uint64_t address_of(T* pointer) noexcept {
  return reinterpret_cast<std::uintptr_t>(pointer);
}

}  // namespace detail
}  // namespace i2o2
