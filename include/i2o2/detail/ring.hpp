#pragma once
/// The ring boundary: the only code in i2o2 that calls liburing.
///
/// Owns one io_uring instance. Created disabled (IORING_SETUP_R_DISABLED) on
/// any thread, then `enable()`d on the scheduler thread, which makes that
/// thread the single issuer SINGLE_ISSUER/DEFER_TASKRUN require. After
/// `enable()` only the scheduler thread may call anything here.

#include "../config.hpp"
#include "../op.hpp"
#include "fault_injection.hpp"
#include "kernel_features.hpp"
#include "submit_records.hpp"
#include "user_data.hpp"

#include <liburing.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace i2o2::detail {

/// Setup flags i2o2 turns on by itself wherever the kernel has them.
inline constexpr std::uint32_t automatic_setup_flags =
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;

/// Setup flags a config asks for explicitly.
inline std::uint32_t requested_setup_flags(const config& cfg) noexcept {
  std::uint32_t flags = 0;
  if (cfg.iopoll) flags |= IORING_SETUP_IOPOLL;
  if (cfg.sqpoll) flags |= IORING_SETUP_SQPOLL;
  if (cfg.sqe128) flags |= IORING_SETUP_SQE128;
  if (cfg.cqe32) flags |= IORING_SETUP_CQE32;
  if (cfg.coop_taskrun) flags |= IORING_SETUP_COOP_TASKRUN;
  return flags;
}

class ring {
public:
  static constexpr std::uint32_t min_cq_entries = 8;

  /// Creates the ring. Throws `std::system_error` naming the flag and the
  /// kernel that has it when a requested flag is missing (unless
  /// `skip_unsupported`), or with the kernel's errno when setup fails.
  explicit ring(const config& cfg) {
    // Each new ring probes again what a passing failure left unknown.
    const kernel_features& kernel = kernel_features::probe_unless_sure();
    if (!kernel.available()) throw setup_failure(kernel.setup_errno());

    std::uint32_t flags = IORING_SETUP_CQSIZE;
    for (const auto& info : known_setup_flags) {
      if ((requested_setup_flags(cfg) & info.flag) == 0) continue;
      if (kernel.has_setup_flag(info.flag)) {
        flags |= info.flag;
      } else if (!cfg.skip_unsupported) {
        throw std::system_error(EINVAL, std::system_category(),
                                std::string("i2o2: config asks for ") + info.name + ", which needs " +
                                    info.since +
                                    "; this kernel lacks it (set skip_unsupported "
                                    "to run without it)");
      }
    }
    // Created disabled so the scheduler thread can become the single issuer.
    const bool can_defer_enable = kernel.has_setup_flag(IORING_SETUP_R_DISABLED);
    std::uint32_t automatic = 0;
    if (can_defer_enable) {
      automatic |= IORING_SETUP_R_DISABLED;
      for (std::uint32_t flag :
           {std::uint32_t{IORING_SETUP_SUBMIT_ALL}, std::uint32_t{IORING_SETUP_SINGLE_ISSUER},
            std::uint32_t{IORING_SETUP_DEFER_TASKRUN}})
        if (kernel.has_setup_flag(flag)) automatic |= flag;
      // DEFER_TASKRUN needs SINGLE_ISSUER and cannot be combined with SQPOLL.
      if (!(automatic & IORING_SETUP_SINGLE_ISSUER) || (flags & IORING_SETUP_SQPOLL))
        automatic &= ~std::uint32_t{IORING_SETUP_DEFER_TASKRUN};
      // With DEFER_TASKRUN, completions wait as task work until we enter the
      // kernel; TASKRUN_FLAG (5.19) raises IORING_SQ_TASKRUN when some are
      // waiting, so the idle spin can notice them instead of sitting on them.
      if ((automatic & IORING_SETUP_DEFER_TASKRUN) && kernel.has_setup_flag(IORING_SETUP_COOP_TASKRUN))
        automatic |= IORING_SETUP_TASKRUN_FLAG;
    }

    int result = init(cfg, flags | automatic);
    if (result == -EINVAL && automatic != 0) {
      // Some kernels refuse particular combinations: fall back to the
      // flags that were asked for.
      result = init(cfg, flags | (automatic & IORING_SETUP_R_DISABLED));
      if (result == -EINVAL) result = init(cfg, flags);
    }
    if (result == -EINVAL)
      throw std::system_error(-result, std::system_category(),
                              "i2o2: io_uring_queue_init failed for the setup flags " +
                                  describe_flags(flags) + " (the kernel may refuse this combination)");
    if (result < 0)  // ENOMEM (locked memory), EMFILE, ...: not the flags' fault
      throw std::system_error(-result, std::system_category(), "i2o2: io_uring_queue_init failed");
  }

  /// Why no ring could be created at all, by the probe's errno.
  static std::system_error setup_failure(int error) {
    const char* why = "i2o2: creating an io_uring failed";
    if (error == ENOSYS || error == EPERM)
      why = "i2o2: io_uring is not available on this kernel (needs Linux 5.15+ with io_uring enabled)";
    else if (error == ENOMEM)
      why = "i2o2: creating an io_uring failed: out of locked memory (RLIMIT_MEMLOCK counts rings and "
            "registered buffers)";
    return std::system_error(error, std::system_category(), why);
  }

  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  /// The scheduler must have drained every op first: the kernel keeps
  /// using buffers of in-flight ops after the ring is closed.
  ~ring() { io_uring_queue_exit(&ring_); }

  /// Scheduler thread: enables a ring created disabled, making this thread
  /// its submitter. liburing 2.3 does not export io_uring_enable_rings.
  void enable() {
    if ((flags_ & IORING_SETUP_R_DISABLED) == 0) return;
    const long result =
        ::syscall(__NR_io_uring_register, ring_.ring_fd, compat::register_enable_rings, nullptr, 0);
    if (result < 0) throw std::system_error(errno, std::system_category(), "i2o2: enabling the ring failed");
  }

  /// Registers empty file and buffer tables. Sparse registration is Linux
  /// 5.19; before it, the kernel refuses its flag (EINVAL) but takes a table
  /// of -1 fds or empty iovecs (5.13+), which is the same thing.
  void register_sparse_tables(unsigned files, unsigned buffers) {
    if (files > 0) {
      int result = injected_sparse_refusal() ? -EINVAL : io_uring_register_files_sparse(&ring_, files);
      if (result == -EINVAL) {
        const std::vector<int> none(files, -1);
        const std::vector<__u64> no_tags(files, 0);
        result = io_uring_register_files_tags(&ring_, none.data(), no_tags.data(), files);
      }
      if (result < 0)
        throw std::system_error(-result, std::system_category(),
                                "i2o2: registering the sparse file table failed");
    }
    if (buffers > 0) {
      int result = injected_sparse_refusal() ? -EINVAL : io_uring_register_buffers_sparse(&ring_, buffers);
      if (result == -EINVAL) {
        const std::vector<iovec> none(buffers, iovec{nullptr, 0});
        const std::vector<__u64> no_tags(buffers, 0);
        result = io_uring_register_buffers_tags(&ring_, none.data(), no_tags.data(), buffers);
      }
      if (result < 0)
        throw std::system_error(-result, std::system_category(),
                                "i2o2: registering the sparse buffer table failed");
    }
  }

  /// Puts `fd` (-1: none) into registered-file slot `index`, tagged so the
  /// kernel posts a CQE with user_data `tag` once the slot's previous file
  /// is no longer in use (tag 0: no CQE). Returns 1 or -errno.
  int update_file(unsigned index, int fd, std::uint64_t tag) noexcept {
    __u64 tags[1] = {tag};
    return io_uring_register_files_update_tag(&ring_, index, &fd, tags, 1);
  }

  /// Puts `buffer` (an empty iovec: none) into registered-buffer slot
  /// `index`, tagged like update_file. Returns 1 or -errno.
  int update_buffer(unsigned index, iovec buffer, std::uint64_t tag) noexcept {
    __u64 tags[1] = {tag};
    return io_uring_register_buffers_update_tag(&ring_, index, &buffer, tags, 1);
  }

  /// A free SQE, or null when the SQ is full.
  io_uring_sqe* get_sqe() noexcept { return io_uring_get_sqe(&ring_); }

  /// Copies a prepared image into a free SQE; false when the SQ is full.
  bool push(const prepared_op& image, std::uint64_t user_data) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
    std::memcpy(sqe, image.bytes, sizeof(io_uring_sqe));
    if (sqe128()) std::memcpy(reinterpret_cast<std::byte*>(sqe) + 64, image.ext(), 64);
    sqe->user_data = user_data;
    return true;
  }

  /// Completions are waiting as deferred task work: entering the kernel
  /// would post their CQEs (IORING_SQ_TASKRUN; always false without
  /// TASKRUN_FLAG).
  bool task_work_pending() const noexcept {
    return (flags_ & IORING_SETUP_TASKRUN_FLAG) != 0 &&
           (__atomic_load_n(ring_.sq.kflags, __ATOMIC_RELAXED) & IORING_SQ_TASKRUN) != 0;
  }

  /// CQEs are posted, waiting to be reaped: where completions are not
  /// deferred (no DEFER_TASKRUN: SQPOLL, kernels before 6.1), the kernel
  /// posts them as ops complete, without our entering.
  bool cqes_ready() const noexcept { return io_uring_cq_ready(&ring_) != 0; }

  unsigned sq_space_left() noexcept { return io_uring_sq_space_left(&ring_); }
  unsigned sq_pending() noexcept { return io_uring_sq_ready(&ring_); }

  /// Hands queued SQEs to the kernel and, with `wait_for > 0`, waits until
  /// at least one CQE is ready. Returns the kernel's result: the number of
  /// SQEs consumed, or -errno. -EINTR, -EAGAIN and -EBUSY are transient:
  /// the caller reaps and tries again; SQEs not consumed stay queued.
  int submit(unsigned wait_for) noexcept {
    if (const int error = injected_enter_error()) return -error;
    record_submit();
    if (wait_for == 0) return io_uring_submit(&ring_);
    return io_uring_submit_and_wait(&ring_, wait_for);
  }

  /// Submits and collects completions without waiting. Always enters the
  /// kernel, which DEFER_TASKRUN rings need before completions show up.
  int submit_and_get_events() noexcept {
    if (const int error = injected_enter_error()) return -error;
    record_submit();
    return io_uring_submit_and_get_events(&ring_);
  }

  /// Like `submit(1)`, but gives up after `timeout` (returns -ETIME).
  int submit_and_wait_timeout(__kernel_timespec timeout) noexcept {
    if (const int error = injected_enter_error()) return -error;
    record_submit();
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &timeout, nullptr);
  }

  /// Calls `on_cqe(user_data, res, flags, extra)` for every ready CQE;
  /// `extra` is its two extra words on a CQE32 ring, null otherwise.
  /// Returns how many.
  template <class OnCqe>
  unsigned reap(OnCqe&& on_cqe) noexcept {
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    const bool big = cqe32();
    io_uring_for_each_cqe(&ring_, head, cqe) {
      on_cqe(cqe->user_data, cqe->res, cqe->flags, big ? cqe->big_cqe : nullptr);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    return seen;
  }

  bool sqe128() const noexcept { return (flags_ & IORING_SETUP_SQE128) != 0; }
  bool cqe32() const noexcept { return (flags_ & IORING_SETUP_CQE32) != 0; }
  bool iopoll() const noexcept { return (flags_ & IORING_SETUP_IOPOLL) != 0; }
  std::uint32_t flags() const noexcept { return flags_; }
  unsigned sq_entries() const noexcept { return sq_entries_; }
  unsigned cq_entries() const noexcept { return cq_entries_; }
  int fd() const noexcept { return ring_.ring_fd; }

private:
  /// Test builds: records how many SQEs, and IO SQEs (user ops other than
  /// NOPs), the coming enter hands over (submit_records.hpp).
  void record_submit() noexcept {
    if constexpr (records_submits) {
      unsigned sqes = 0;
      unsigned io_sqes = 0;
      for (unsigned at = ring_.sq.sqe_head; at != ring_.sq.sqe_tail; ++at, ++sqes) {
        const io_uring_sqe& sqe = ring_.sq.sqes[(at & *ring_.sq.kring_mask) << (sqe128() ? 1 : 0)];
        if (!is_internal(sqe.user_data) && sqe.opcode != IORING_OP_NOP) ++io_sqes;
      }
      note_submit(sqes, io_sqes);
    }
  }

  static std::string describe_flags(std::uint32_t flags) {
    std::string names;
    for (const auto& info : known_setup_flags) {
      if ((flags & info.flag) == 0 || info.flag == IORING_SETUP_CQSIZE) continue;
      // Appended piecewise: `"|" + std::string(...)` trips g++ 12's false
      // -Wrestrict at -O2 and above.
      if (!names.empty()) names += '|';
      names += info.name;
    }
    return names.empty() ? "(none)" : names;
  }

  int init(const config& cfg, std::uint32_t flags) noexcept {
    if (const int error = injected_setup_error()) return -error;
    io_uring_params params;
    std::memset(&params, 0, sizeof(params));
    params.flags = flags;
    // Twice the SQ, and never so small that the CQ entries the scheduler
    // keeps for its own ops (wake, cancels) leave no room for user ops.
    params.cq_entries = std::max(cfg.ring_depth * 2, min_cq_entries);
    if (flags & IORING_SETUP_SQPOLL) params.sq_thread_idle = static_cast<unsigned>(cfg.sqpoll_idle.count());
    const int result = io_uring_queue_init_params(cfg.ring_depth, &ring_, &params);
    if (result == 0) {
      flags_ = flags;
      sq_entries_ = params.sq_entries;
      cq_entries_ = params.cq_entries;
    }
    return result;
  }

  io_uring ring_{};
  std::uint32_t flags_ = 0;
  unsigned sq_entries_ = 0;
  unsigned cq_entries_ = 0;
};

/// Failures of a MSG_RING worth another try: a signal, or the kernel short
/// of memory for the posted CQE (or the task work that carries it).
inline bool transient_errno(int error) noexcept {
  return error == EINTR || error == EAGAIN || error == ENOMEM || error == EOVERFLOW;
}

/// Posts wake-up CQEs into another ring with IORING_OP_MSG_RING, for
/// kernels without the ring-less sync form (Linux 5.18 to 6.12). Any thread;
/// calls are serialised, since one tiny ring serves every producer.
class waker_ring {
public:
  waker_ring() {
    const int result = io_uring_queue_init(2, &ring_, 0);
    if (result < 0)
      throw std::system_error(-result, std::system_category(), "i2o2: creating the waker ring failed");
  }
  waker_ring(const waker_ring&) = delete;
  waker_ring& operator=(const waker_ring&) = delete;
  ~waker_ring() { io_uring_queue_exit(&ring_); }

  /// Posts a CQE with `user_data` and res 0 into ring `target_fd`; waits
  /// for the MSG_RING's own completion so nothing stays in flight here, and
  /// posts again after a transient failure: this may be a park's only wake.
  void post(int target_fd, std::uint64_t user_data) noexcept {
    std::lock_guard lock(mutex_);
    for (;;) {
      if (const int error = injected_msg_ring_error()) {
        if (!transient_errno(error)) return;
        ::sched_yield();
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return;  // cannot happen: one op at a time, 2 entries
      io_uring_prep_msg_ring(sqe, target_fd, 0, user_data, 0);
      const std::optional<int> result = submit_and_reap();
      if (!result || *result >= 0 || !transient_errno(-*result)) return;
      ::sched_yield();
    }
  }

private:
  /// Submits what is pending and waits for the MSG_RING's CQE: its result,
  /// or nothing after a lasting enter failure. A signal or a transient
  /// refusal (-EAGAIN, -EBUSY) leaves the SQE pending or the CQE to come:
  /// the wait is repeated, never taken for a sent wake.
  std::optional<int> submit_and_reap() noexcept {
    for (;;) {
      const int injected = injected_waker_enter_error();
      const int entered = injected != 0 ? -injected : io_uring_submit_and_wait(&ring_, 1);
      std::optional<int> result;
      io_uring_cqe* cqe = nullptr;
      while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
        result = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
      }
      if (result) return result;
      if (entered < 0 && entered != -EINTR && entered != -EBUSY && !transient_errno(-entered))
        return std::nullopt;
      if (entered < 0) ::sched_yield();
    }
  }

  std::mutex mutex_;
  io_uring ring_{};
};

}  // namespace i2o2::detail
