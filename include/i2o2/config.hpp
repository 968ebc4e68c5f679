#pragma once
/// Runtime settings of a scheduler: a plain aggregate for designated
/// initializers, e.g. `i2o2::config{.ring_depth = 256, .registered_files = 64}`.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace i2o2 {

struct config {
  /// Envelopes the client->scheduler queue holds; rounded up to a power of
  /// two. `submit` waits and `try_submit` fails while it is full.
  std::uint32_t queue_capacity = 1024;

  /// SQ entries, a power of two in [1, 32768]. The CQ is twice as deep (at least 8), and
  /// the scheduler never has more ops in flight than the CQ holds.
  std::uint32_t ring_depth = 256;

  /// IORING_SETUP_IOPOLL: busy-poll completions (O_DIRECT on polled devices).
  bool iopoll = false;
  /// IORING_SETUP_SQPOLL: a kernel thread polls the SQ.
  bool sqpoll = false;
  /// Idle time before the SQPOLL thread sleeps: 1 ms to 2^32 - 1 ms (the
  /// kernel takes 0 for its default of a second).
  std::chrono::milliseconds sqpoll_idle{1000};
  /// IORING_SETUP_SQE128: 128-byte SQEs, needed by `op::uring_cmd`.
  bool sqe128 = false;
  /// IORING_SETUP_CQE32: 32-byte CQEs (NVMe passthrough results).
  bool cqe32 = false;
  /// IORING_SETUP_COOP_TASKRUN (Linux 5.19). Unneeded where DEFER_TASKRUN,
  /// which i2o2 turns on by itself wherever the kernel has it, is in use.
  bool coop_taskrun = false;
  /// Drop requested setup flags the kernel lacks instead of failing.
  bool skip_unsupported = false;

  /// Slots of the sparse registered-file table (0: none). At most
  /// `max_registered_files` (the kernel's limit), and the kernel also
  /// refuses more than RLIMIT_NOFILE (EMFILE from spawn / run).
  std::uint32_t registered_files = 0;
  /// Slots of the sparse registered-buffer table (0: none); at most
  /// `max_registered_buffers` (the kernel's limit).
  std::uint32_t registered_buffers = 0;

  /// How much submission work one io_uring_enter may carry; 0: no limit.
  /// Issuing an IO op (anything but a NOP) does its work inside the enter,
  /// and no completion is reaped meanwhile: an O_DIRECT read costs a few
  /// microseconds (page pinning, the block layer, a plug holding batches
  /// of more than two), a buffered write handed to an io-wq worker well
  /// under one. The scheduler learns the cost per op from its enters (one
  /// figure for all op kinds: the least per op over its recent enters) and
  /// takes as many ops as fit, at least one (or one whole chain). Under
  /// SQPOLL an enter only wakes the kernel thread: the cost learned is
  /// tiny, and the cap in effect none.
  std::chrono::nanoseconds submit_budget = std::chrono::microseconds(8);

  /// How long an idle scheduler polls its queue before parking. Catching a
  /// submit that arrives within it spares the client a wake syscall and
  /// the scheduler a wake-up; zero parks at once (no CPU burnt when idle),
  /// microseconds::max() never parks.
  std::chrono::microseconds idle_spin{10};

  /// How long a busy scheduler polls before parking, when longer than
  /// idle_spin: while most of its recent idle gaps (from running out of
  /// work to the next submit or completion) lasted no longer than this
  /// (detail/busy_spin.hpp has the rule); otherwise only idle_spin. Work
  /// that finds it parked must first wake it (15-20 us in a VM); polling
  /// takes it at once, for the CPU the poll burns (yielding to any thread
  /// that wants the core). 4 KiB O_DIRECT reads at QD 1 ran 1.2-1.6x faster
  /// with it (README, Benchmarks). Zero: only idle_spin. At most a second.
  std::chrono::microseconds busy_spin{200};

  /// Pin the scheduler thread to this CPU (`spawn` only).
  std::optional<unsigned> cpu_affinity{};
  /// Name of the scheduler thread (`spawn` only; at most 15 characters).
  std::string thread_name = "i2o2-scheduler";

  /// On shutdown, in-flight ops still running after this long are cancelled
  /// (each guard is still released on the op's own CQE); zero cancels them
  /// at once. Empty: wait for them however long they take.
  std::optional<std::chrono::milliseconds> shutdown_deadline = std::chrono::seconds(30);
};

namespace detail {
/// config::shutdown_deadline in nanoseconds, saturated: a deadline too far
/// off to count in nanoseconds (milliseconds::max(), say) means never.
inline std::optional<std::chrono::nanoseconds> shutdown_deadline_of(const config& cfg) noexcept {
  if (!cfg.shutdown_deadline) return std::nullopt;
  constexpr auto longest =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds::max());
  if (*cfg.shutdown_deadline >= longest) return std::chrono::nanoseconds::max();
  return std::chrono::nanoseconds(*cfg.shutdown_deadline);
}

/// When an idle spin begun at `started` ends (config::idle_spin),
/// saturated: a spin too long to count in nanoseconds never ends.
inline std::chrono::steady_clock::time_point
idle_spin_end(const config& cfg, std::chrono::steady_clock::time_point started) noexcept {
  using clock = std::chrono::steady_clock;
  const auto room = std::chrono::duration_cast<std::chrono::microseconds>(clock::time_point::max() - started);
  return cfg.idle_spin >= room ? clock::time_point::max() : started + cfg.idle_spin;
}
}  // namespace detail

/// Largest queue capacity accepted; larger is a configuration error.
inline constexpr std::uint32_t max_queue_capacity = 1U << 22;
/// Largest registered-file and registered-buffer tables the kernel takes
/// (IORING_MAX_FIXED_FILES, IORING_MAX_REG_BUFFERS); larger is a
/// configuration error, caught before the scheduler allocates its tables.
inline constexpr std::uint32_t max_registered_files = 1U << 20;
inline constexpr std::uint32_t max_registered_buffers = 1U << 14;

}  // namespace i2o2
