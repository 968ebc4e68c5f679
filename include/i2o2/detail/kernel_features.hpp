#pragma once
/// What the running kernel's io_uring can do, probed with raw syscalls on a
/// throwaway ring: supported opcodes (IORING_REGISTER_PROBE) and setup flags
/// (by trial: a tiny ring is created with the flags). Kept for the process
/// once a probe is sure; a probe that a passing failure left unsure is
/// probed again by the next scheduler (kernel_features::probe_unless_sure).
///
/// Test builds (I2O2_TESTING) can pretend the kernel lacks features, so the
/// fallbacks and errors of older kernels are exercised on a new one, and
/// make the probe fail (fault_injection.hpp).

#include "compat.hpp"
#include "fault_injection.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <vector>

namespace i2o2::detail {

/// A setup flag, its name and the first kernel that has it.
struct setup_flag_info {
  std::uint32_t flag;
  const char* name;
  const char* since;
};

inline constexpr std::array<setup_flag_info, 10> known_setup_flags{{
    {IORING_SETUP_IOPOLL, "IORING_SETUP_IOPOLL", "Linux 5.1"},
    {IORING_SETUP_SQPOLL, "IORING_SETUP_SQPOLL", "Linux 5.1"},
    {IORING_SETUP_CQSIZE, "IORING_SETUP_CQSIZE", "Linux 5.5"},
    {IORING_SETUP_R_DISABLED, "IORING_SETUP_R_DISABLED", "Linux 5.10"},
    {IORING_SETUP_SUBMIT_ALL, "IORING_SETUP_SUBMIT_ALL", "Linux 5.18"},
    {IORING_SETUP_COOP_TASKRUN, "IORING_SETUP_COOP_TASKRUN", "Linux 5.19"},
    {IORING_SETUP_SQE128, "IORING_SETUP_SQE128", "Linux 5.19"},
    {IORING_SETUP_CQE32, "IORING_SETUP_CQE32", "Linux 5.19"},
    {IORING_SETUP_SINGLE_ISSUER, "IORING_SETUP_SINGLE_ISSUER", "Linux 6.0"},
    {IORING_SETUP_DEFER_TASKRUN, "IORING_SETUP_DEFER_TASKRUN", "Linux 6.1"},
}};

inline const setup_flag_info& describe_setup_flag(std::uint32_t flag) noexcept {
  for (const auto& info : known_setup_flags)
    if (info.flag == flag) return info;
  static constexpr setup_flag_info unknown{0, "an unknown IORING_SETUP flag", "an unknown kernel"};
  return unknown;
}

/// The first kernel with each opcode i2o2 exposes, for error messages.
inline const char* opcode_since(std::uint8_t opcode) noexcept {
  switch (opcode) {
  case IORING_OP_NOP:
  case IORING_OP_READV:
  case IORING_OP_WRITEV:
  case IORING_OP_FSYNC:
  case IORING_OP_READ_FIXED:
  case IORING_OP_WRITE_FIXED: return "Linux 5.1";
  case IORING_OP_FALLOCATE:
  case IORING_OP_OPENAT:
  case IORING_OP_CLOSE:
  case IORING_OP_STATX:
  case IORING_OP_READ:
  case IORING_OP_WRITE:
  case IORING_OP_FADVISE:
  case IORING_OP_MADVISE: return "Linux 5.6";
  case compat::op_msg_ring: return "Linux 5.18";
  case compat::op_uring_cmd: return "Linux 5.19";
  case compat::op_futex_wait:
  case compat::op_futex_wake: return "Linux 6.7";
  case compat::op_ftruncate: return "Linux 6.9";
  default: return "a newer kernel";
  }
}

class kernel_features {
public:
  /// The latest probe's result, probed on first use. Any thread; a result
  /// stays valid for the process. Once probed, one atomic load: this is
  /// the check made for every submitted op.
  static const kernel_features& get() {
    // Acquire: pairs with the release that published the result.
    if (const kernel_features* latest = latest_result().load(std::memory_order_acquire)) return *latest;
    return probe_unless_sure();
  }

  /// Probes again unless the latest result is sure, and returns what it
  /// found. The ring calls it as each scheduler is created.
  ///
  /// A probe that failed for a passing reason (ENOMEM: the locked memory
  /// limit used up for now; EMFILE; IORING_REGISTER_PROBE or a setup-flag
  /// trial refused by ENOMEM, EFAULT or a seccomp rule) is unsure: what it
  /// could not learn is presumed present. Opcodes it could not list are
  /// let through (an op the kernel lacks then fails with the kernel's
  /// -EINVAL instead of errc::unsupported_op); flags it could not try are
  /// used (`ring` falls back without the ones it adds by itself; one the
  /// config asks for fails ring setup with the kernel's errno). The next
  /// scheduler's creation probes again. A probe that could not create a
  /// ring at all is returned to the ring that asked, and not published
  /// over a result that has io_uring: the schedulers that exist go on.
  static const kernel_features& probe_unless_sure() {
    probe_results& results = probes();
    std::lock_guard lock(results.probing);
    // Relaxed: only written under the lock.
    const kernel_features* latest = latest_result().load(std::memory_order_relaxed);
    if (latest != nullptr && latest->sure_) return *latest;
    const kernel_features probed = probe();
    auto kept = std::find_if(results.kept.begin(), results.kept.end(),
                             [&](const kernel_features& result) { return result == probed; });
    if (kept == results.kept.end()) kept = results.kept.insert(results.kept.end(), probed);
    if (latest == nullptr || kept->available()) latest_result().store(&*kept, std::memory_order_release);
    return *kept;
  }

  /// Whether this result is kept for the process: no passing failure left
  /// any of it unknown.
  bool sure() const noexcept { return sure_; }

  bool has_opcode(std::uint8_t opcode) const noexcept {
    return opcodes_.test(opcode) && !(pretend_missing_opcodes().test(opcode));
  }
  bool has_setup_flag(std::uint32_t flag) const noexcept {
    return (setup_flags_ & flag) == flag && (pretend_missing_setup_flags().load() & flag) == 0;
  }
  /// IORING_REGISTER_SEND_MSG_RING: MSG_RING without a ring (Linux 6.13).
  bool has_sync_msg_ring() const noexcept { return sync_msg_ring_ && !pretend_no_sync_msg_ring().load(); }
  /// Whether a ring could be created: not where io_uring is missing
  /// (ENOSYS) or disabled (EPERM), nor, for now, out of locked memory (ENOMEM).
  bool available() const noexcept { return setup_errno_ == 0; }
  int setup_errno() const noexcept { return setup_errno_; }

#ifdef I2O2_TESTING
  /// Test builds only: behave as if the kernel lacked these features.
  static void pretend_missing(std::uint32_t setup_flags, std::vector<std::uint8_t> opcodes = {},
                              bool sync_msg_ring = false) {
    pretend_missing_setup_flags().store(setup_flags);
    pretend_no_sync_msg_ring().store(sync_msg_ring);
    pretend_missing_opcodes().reset();
    for (auto opcode : opcodes)
      pretend_missing_opcodes().set(opcode);
  }
  static void stop_pretending() { pretend_missing(0); }

  /// Test builds only: forget the latest result, so that the next get()
  /// probes as in a new process. Results handed out before stay valid.
  static void probe_again() {
    std::lock_guard lock(probes().probing);
    latest_result().store(nullptr);
  }
#endif

private:
  /// The result get() answers with. Constant-initialised: reading it costs
  /// get() no guard.
  static std::atomic<const kernel_features*>& latest_result() noexcept {
    static std::atomic<const kernel_features*> latest{nullptr};
    return latest;
  }

  struct probe_results {
    std::mutex probing;
    // Every distinct result handed out, at a stable address (callers hold
    // references): a few at most, however often a probe runs.
    std::list<kernel_features> kept;
  };
  static probe_results& probes() {
    static probe_results results;
    return results;
  }

  bool operator==(const kernel_features&) const = default;

  static std::atomic<std::uint32_t>& pretend_missing_setup_flags() {
    static std::atomic<std::uint32_t> flags{0};
    return flags;
  }
  static std::atomic<bool>& pretend_no_sync_msg_ring() {
    static std::atomic<bool> missing{false};
    return missing;
  }
  static std::bitset<256>& pretend_missing_opcodes() {
    static std::bitset<256> opcodes;
    return opcodes;
  }

  static int try_setup(std::uint32_t flags, int& fd) noexcept {
    io_uring_params params;
    std::memset(&params, 0, sizeof(params));
    params.flags = flags;
    if (flags & IORING_SETUP_CQSIZE) params.cq_entries = 4;
    if (flags & IORING_SETUP_DEFER_TASKRUN) params.flags |= IORING_SETUP_SINGLE_ISSUER;
    if (flags & IORING_SETUP_SQPOLL) params.sq_thread_idle = 1;
    fd = static_cast<int>(::syscall(__NR_io_uring_setup, 2U, &params));
    return fd < 0 ? errno : 0;
  }

  static kernel_features probe() {
    kernel_features features;
    features.opcodes_.set();  // unknown until the kernel lists them: let every op through
    int fd = -1;
    features.setup_errno_ = try_setup(0, fd);
    if (features.setup_errno_ != 0) {
      // ENOSYS: no io_uring; EPERM: disabled. Others (ENOMEM, EMFILE) pass.
      features.sure_ = features.setup_errno_ == ENOSYS || features.setup_errno_ == EPERM;
      return features;
    }

    // Opcodes: IORING_REGISTER_PROBE fills one entry per opcode it knows.
    constexpr unsigned entries = 256;
    std::vector<std::byte> buffer(sizeof(io_uring_probe) + entries * sizeof(io_uring_probe_op));
    auto* probe_result = reinterpret_cast<io_uring_probe*>(buffer.data());
    int probe_error = injected_opcode_probe_error();
    if (probe_error == 0 &&
        ::syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, probe_result, entries) != 0)
      probe_error = errno;
    if (probe_error == 0) {
      features.opcodes_.reset();
      for (unsigned i = 0; i < probe_result->ops_len && i < entries; ++i)
        if (probe_result->ops[i].flags & IO_URING_OP_SUPPORTED) features.opcodes_.set(i);
    } else if (probe_error != EINVAL) {  // EINVAL: no IORING_REGISTER_PROBE (before 5.6), for good
      features.sure_ = false;            // ENOMEM, EFAULT, a seccomp rule: nothing learnt, for now
    }
    features.sync_msg_ring_ = sends_sync_msg_ring(fd);
    ::close(fd);

    bool trials_sure = true;
    features.setup_flags_ = probe_setup_flags(trials_sure);
    features.sure_ = features.sure_ && trials_sure;
    return features;
  }

public:
  /// Whether a sync MSG_RING (no ring of our own) reaches the ring `target`:
  /// only success says so. (An error says nothing: older kernels look up
  /// the fd -1 before the register opcode, and answer EBADF whether or not
  /// they have it.) Posts one CQE to `target`.
  static bool sends_sync_msg_ring(int target) noexcept {
    io_uring_sqe message;
    std::memset(&message, 0, sizeof(message));
    message.opcode = compat::op_msg_ring;
    message.fd = target;
    return ::syscall(__NR_io_uring_register, -1, compat::register_send_msg_ring, &message, 1) == 0;
  }

private:
  /// Setup flags by trial. Every trial ring counts against RLIMIT_MEMLOCK
  /// (without CAP_IPC_LOCK) until the kernel frees it, some time after
  /// close: so try every flag in one ring first (SQPOLL in a second one:
  /// DEFER_TASKRUN refuses it), and one flag per ring only where a group
  /// is refused (older kernels). Only EINVAL says a flag is missing; any
  /// other refusal (ENOMEM: the limit is used up) says nothing about the
  /// flag, which is then presumed present, no more trial rings are made,
  /// and `sure` is cleared (the result is not kept). `ring` falls back
  /// without the flags it adds by itself if the kernel then refuses them.
  static std::uint32_t probe_setup_flags(bool& sure) noexcept {
    std::uint32_t all = 0;
    for (const auto& info : known_setup_flags)
      all |= info.flag;
    std::uint32_t found = 0;
    bool can_trial = true;
    for (const std::uint32_t group : {all & ~std::uint32_t{IORING_SETUP_SQPOLL}, std::uint32_t{IORING_SETUP_SQPOLL}}) {
      if (can_trial && trial(group, can_trial)) {
        found |= group;
        continue;
      }
      for (const auto& info : known_setup_flags)
        if ((group & info.flag) != 0 && (!can_trial || trial(info.flag, can_trial))) found |= info.flag;
    }
    sure = can_trial;
    return found;
  }

  /// Whether the kernel has `flags`: a ring with them can be created.
  static bool trial(std::uint32_t flags, bool& can_trial) noexcept {
    int fd = -1;
    int error = injected_flag_trial_error();
    if (error == 0) error = try_setup(flags, fd);
    if (error == 0) {
      ::close(fd);
      return true;
    }
    if (error == EINVAL) return false;  // the kernel lacks one of them
    can_trial = false;                  // ENOMEM, EPERM: nothing learnt
    return true;                        // presumed present
  }

  std::bitset<256> opcodes_;
  std::uint32_t setup_flags_ = 0;
  int setup_errno_ = 0;
  bool sync_msg_ring_ = false;
  bool sure_ = true;  // false: a passing failure left part unknown
};

}  // namespace i2o2::detail
