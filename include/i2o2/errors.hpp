#pragma once
/// Errors of i2o2 itself, as opposed to the kernel's.
///
/// A reply carries the syscall-style result: `>= 0` on success, `-errno` from
/// the kernel on failure. An op that never reached the kernel resolves with
/// `-static_cast<int>(errc::...)` instead; those values lie below -4095, the
/// most negative errno the kernel returns, so they can never be confused.
/// `i2o2::to_error_code(result)` maps either kind to a `std::error_code`.

#include <string>
#include <system_error>

namespace i2o2 {

enum class errc : int {
  /// The scheduler shut down before the op was accepted.
  scheduler_closed = 10001,
  /// The running kernel does not support this op (probed at creation), or
  /// this ring cannot run it (a timed op on an IOPOLL ring).
  unsupported_op = 10002,
  /// The op needs a ring created with `config::sqe128`.
  needs_sqe128 = 10003,
  /// `try_submit`: the queue is full right now; nothing was taken.
  queue_full = 10004,
  /// The batch or chain can never fit: larger than the queue, or a chain
  /// longer than the ring can take in one submission.
  batch_too_large = 10005,
  /// `register_file` / `register_buffer`: every slot of the table is taken
  /// (its size is config::registered_files / registered_buffers).
  resource_table_full = 10006,
  /// `unregister_*`: nothing is registered at that index.
  not_registered = 10007,
  /// The op's SQE sets flags the scheduler owns: IOSQE_IO_LINK or
  /// IOSQE_IO_HARDLINK (chains go through `submit_chain`),
  /// IOSQE_CQE_SKIP_SUCCESS (every op needs its CQE to resolve its reply),
  /// or IOSQE_IO_DRAIN (it would wait for the scheduler's own armed wake-up
  /// op; wait for the replies of the ops it should follow instead).
  reserved_flags = 10008,
  /// The op asks for its CQE's extra words (`prepared_op::extra_out`) on a
  /// ring without `config::cqe32`.
  needs_cqe32 = 10009,
};

/// Largest errno value the kernel returns as a negative result (MAX_ERRNO).
inline constexpr int max_kernel_errno = 4095;

/// The reply value an op resolves with when it never reached the kernel.
constexpr int result_of(errc e) noexcept { return -static_cast<int>(e); }

/// True when `result` is one of i2o2's own errors rather than the kernel's.
constexpr bool is_i2o2_error(int result) noexcept { return result < -max_kernel_errno; }

class error_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "i2o2"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::scheduler_closed: return "the i2o2 scheduler is closed";
    case errc::unsupported_op:
      return "the running kernel, or this ring (a timeout on an IOPOLL ring), does not support this io_uring "
             "op";
    case errc::needs_sqe128: return "the op needs a ring created with config::sqe128";
    case errc::queue_full: return "the i2o2 submission queue is full";
    case errc::batch_too_large: return "the batch or chain can never fit the i2o2 queue or ring";
    case errc::resource_table_full:
      return "the registered file or buffer table is full (config::registered_files / registered_buffers, "
             "0 by default)";
    case errc::not_registered: return "nothing is registered at that index";
    case errc::reserved_flags:
      return "the op sets SQE flags i2o2 owns (IO_LINK/IO_HARDLINK: use submit_chain; CQE_SKIP_SUCCESS; "
             "IO_DRAIN)";
    case errc::needs_cqe32:
      return "the op wants its CQE's extra words: it needs a ring created with config::cqe32";
    }
    return "unknown i2o2 error";
  }
};

inline const std::error_category& error_category() noexcept {
  static const error_category_impl category;
  return category;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Maps a reply result to an error code: empty for `result >= 0`, the i2o2
/// category for i2o2's own errors, `std::system_category()` otherwise.
inline std::error_code to_error_code(int result) noexcept {
  if (result >= 0) return {};
  if (is_i2o2_error(result)) return make_error_code(static_cast<errc>(-result));
  return {-result, std::system_category()};
}

/// Thrown by `handle::submit` once the scheduler has shut down.
class scheduler_closed : public std::system_error {
public:
  scheduler_closed() : std::system_error(make_error_code(errc::scheduler_closed)) {}
};

}  // namespace i2o2

template <>
struct std::is_error_code_enum<i2o2::errc> : std::true_type {};
