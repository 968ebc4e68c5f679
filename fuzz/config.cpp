// Fuzz target: random configs, setup-flag sets and pretended-missing kernel
// features. Oracles:
//  - a config the documented rules (config.hpp, detail::validate) call
//    invalid makes spawn throw std::invalid_argument, and a valid one never
//    does;
//  - a sane config (valid sizes, no SQPOLL/IOPOLL/SQE128, flags the kernel
//    has, an allowed CPU, nothing pretended missing) spawns, unless the
//    machine is short of something (ENOMEM, EMFILE, ...); any other valid
//    config spawns or throws std::system_error;
//  - a running scheduler's nop resolves within a bounded wait with 0, or
//    with errc::unsupported_op when NOP is pretended missing (G3);
//  - a nop asking for a CQE's extra words gets the kernel's zeros on a
//    CQE32 ring and errc::needs_cqe32 (words untouched) on any other.
// Never a crash, a hang or another exception type.
#include "fuzz_common.hpp"

#include <i2o2/i2o2.hpp>

#include <sched.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::uint32_t pick_ring_depth(FuzzedDataProvider& input) {
  switch (input.ConsumeIntegralInRange(0, 4)) {
  case 0: return 1U << input.ConsumeIntegralInRange(0, 10);   // sane
  case 1: return 1U << input.ConsumeIntegralInRange(11, 15);  // large, still valid
  case 2: return 0;
  case 3: return input.ConsumeIntegralInRange<std::uint32_t>(3, 100);  // mostly not a power of two
  default: return input.ConsumeIntegral<std::uint32_t>();              // anything
  }
}

std::uint32_t pick_queue_capacity(FuzzedDataProvider& input) {
  switch (input.ConsumeIntegralInRange(0, 3)) {
  case 0: return input.ConsumeIntegralInRange<std::uint32_t>(1, 4096);
  case 1: return 0;
  // Past the maximum (the maximum itself is valid but allocates ~1 GB).
  case 2: return i2o2::max_queue_capacity + input.ConsumeIntegralInRange<std::uint32_t>(1, 1000);
  default: return input.ConsumeIntegralInRange<std::uint32_t>(1, 1U << 16);
  }
}

constexpr std::uint32_t flag_bits[] = {
    IORING_SETUP_IOPOLL,        IORING_SETUP_SQPOLL,       IORING_SETUP_CQSIZE, IORING_SETUP_R_DISABLED,
    IORING_SETUP_SUBMIT_ALL,    IORING_SETUP_COOP_TASKRUN, IORING_SETUP_SQE128, IORING_SETUP_CQE32,
    IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_DEFER_TASKRUN};

/// Whether detail::validate must refuse `cfg`: the rules config.hpp states.
bool invalid_per_documentation(const i2o2::config& cfg) {
  const auto depth = cfg.ring_depth;
  if (depth == 0 || (depth & (depth - 1)) != 0 || depth > 32768) return true;
  if (cfg.queue_capacity == 0 || cfg.queue_capacity > i2o2::max_queue_capacity) return true;
  if (cfg.registered_files > i2o2::max_registered_files) return true;
  if (cfg.registered_buffers > i2o2::max_registered_buffers) return true;
  if (cfg.thread_name.size() > 15) return true;
  if (cfg.submit_budget.count() < 0 || cfg.idle_spin.count() < 0) return true;
  if (cfg.busy_spin.count() < 0 || cfg.busy_spin > std::chrono::seconds(1)) return true;
  if (cfg.shutdown_deadline && cfg.shutdown_deadline->count() < 0) return true;
  if (cfg.sqpoll && (cfg.sqpoll_idle.count() < 1 || cfg.sqpoll_idle.count() > 0xffffffffLL)) return true;
  return cfg.sqpoll && cfg.coop_taskrun;
}

/// Whether a valid `cfg` must spawn on this machine: nothing that needs a
/// privilege, a device or a kernel feature this kernel may lack, a CPU the
/// process may use, no more registered files than RLIMIT_NOFILE, and no
/// kernel feature pretended missing.
bool sane(const i2o2::config& cfg, bool pretending) {
  if (pretending || cfg.sqpoll || cfg.iopoll || cfg.sqe128) return false;
  const auto& kernel = i2o2::detail::kernel_features::get();
  if (!kernel.available()) return false;
  if (cfg.cqe32 && !kernel.has_setup_flag(IORING_SETUP_CQE32)) return false;
  if (cfg.coop_taskrun && !kernel.has_setup_flag(IORING_SETUP_COOP_TASKRUN)) return false;
  if (cfg.cpu_affinity) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return false;
    if (*cfg.cpu_affinity >= CPU_SETSIZE || !CPU_ISSET(*cfg.cpu_affinity, &allowed)) return false;
  }
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || cfg.registered_files > files.rlim_cur) return false;
  return true;
}

/// A refusal by the machine rather than the config: out of memory, of file
/// descriptors or of threads, or no io_uring for this process at all.
bool machine_refused(const std::system_error& error) {
  if (error.code().category() != std::system_category() && error.code().category() != std::generic_category())
    return false;
  switch (error.code().value()) {
  case ENOMEM:
  case EMFILE:
  case ENFILE:
  case EAGAIN:
  case ENOSYS:
  case EPERM: return true;
  default: return false;
  }
}

struct stop_pretending_at_exit {
  ~stop_pretending_at_exit() { i2o2::detail::kernel_features::stop_pretending(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  static const bool trace = std::getenv("I2O2_FUZZ_TRACE") != nullptr;  // print outcomes
  i2o2::config cfg;
  cfg.ring_depth = pick_ring_depth(input);
  cfg.queue_capacity = pick_queue_capacity(input);
  cfg.iopoll = input.ConsumeBool();
  cfg.sqpoll = input.ConsumeBool();
  cfg.sqpoll_idle = std::chrono::milliseconds(input.ConsumeIntegralInRange(0, 50));
  cfg.sqe128 = input.ConsumeBool();
  cfg.cqe32 = input.ConsumeBool();
  cfg.coop_taskrun = input.ConsumeBool();
  cfg.skip_unsupported = input.ConsumeBool();
  cfg.registered_files = input.ConsumeBool() ? 0 : input.ConsumeIntegralInRange<std::uint32_t>(0, 4096);
  cfg.registered_buffers = input.ConsumeBool() ? 0 : input.ConsumeIntegralInRange<std::uint32_t>(0, 4096);
  cfg.idle_spin = std::chrono::microseconds(input.ConsumeIntegralInRange(0, 200));
  // Derived, so that the corpus keeps its meaning; now and then out of
  // range (negative, or over a second), which must be refused.
  const auto idle_us = cfg.idle_spin.count();
  cfg.busy_spin = idle_us % 13 == 5   ? std::chrono::microseconds(-1 - idle_us)
                  : idle_us % 13 == 6 ? std::chrono::seconds(1) + cfg.idle_spin
                                      : cfg.idle_spin * 5;
  if (input.ConsumeBool()) cfg.cpu_affinity = input.ConsumeIntegralInRange<unsigned>(0, 2047);
  cfg.thread_name = std::string(input.ConsumeIntegralInRange<std::size_t>(0, 20), 'n');
  if (input.ConsumeBool())
    cfg.shutdown_deadline = std::nullopt;
  else
    cfg.shutdown_deadline = std::chrono::milliseconds(input.ConsumeIntegralInRange(0, 100));

  std::uint32_t missing_flags = 0;
  std::vector<std::uint8_t> missing_opcodes;
  bool nop_missing = false;
  bool pretending = false;
  stop_pretending_at_exit restore;
  if (input.ConsumeBool()) {
    for (std::uint32_t flag : flag_bits)
      if (input.ConsumeBool()) missing_flags |= flag;
    const auto count = input.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < count; ++i)
      missing_opcodes.push_back(input.ConsumeIntegralInRange<std::uint8_t>(0, 60));
    for (auto opcode : missing_opcodes)
      nop_missing = nop_missing || opcode == IORING_OP_NOP;
    const bool no_sync_msg_ring = input.ConsumeBool();
    pretending = missing_flags != 0 || !missing_opcodes.empty() || no_sync_msg_ring;
    i2o2::detail::kernel_features::pretend_missing(missing_flags, missing_opcodes, no_sync_msg_ring);
  }
  const bool invalid = invalid_per_documentation(cfg);
  const bool must_spawn = !invalid && sane(cfg, pretending);

  std::optional<i2o2::spawned<i2o2::default_scheduler>> running;
  try {
    running.emplace(i2o2::spawn(cfg));
  } catch (const std::invalid_argument& error) {
    if (trace) std::fprintf(stderr, "config: invalid_argument: %s\n", error.what());
    if (!invalid) fuzz_fail("spawn refused a config the documented rules allow: %s", error.what());
    return 0;  // a nonsense config, named
  } catch (const std::system_error& error) {
    if (trace) std::fprintf(stderr, "config: system_error: %s\n", error.what());
    if (invalid)
      fuzz_fail("an invalid config reached the kernel (system_error, not invalid_argument): %s",
                error.what());
    if (must_spawn && !machine_refused(error))
      fuzz_fail(
          "spawn failed for a sane config (ring_depth %u, queue_capacity %u, cqe32=%d, coop_taskrun=%d, "
          "registered files %u buffers %u): %s",
          cfg.ring_depth, cfg.queue_capacity, cfg.cqe32, cfg.coop_taskrun, cfg.registered_files,
          cfg.registered_buffers, error.what());
    return 0;  // the kernel or the machine refused, named
  } catch (const std::exception& error) {
    fuzz_fail("spawn threw an unexpected exception type: %s", error.what());
  } catch (...) {
    fuzz_fail("spawn threw something that is not a std::exception");
  }
  if (invalid)
    fuzz_fail("spawn accepted a config the documented rules call invalid (ring_depth %u, queue_capacity "
              "%u, thread_name of %zu, sqpoll=%d sqpoll_idle %lld ms coop_taskrun=%d)",
              cfg.ring_depth, cfg.queue_capacity, cfg.thread_name.size(), cfg.sqpoll,
              static_cast<long long>(cfg.sqpoll_idle.count()), cfg.coop_taskrun);

  auto& [owner, handle] = *running;
  // NOP is never sent when pretended missing (G3); otherwise the kernel's 0.
  const int unsupported = i2o2::result_of(i2o2::errc::unsupported_op);
  const int expected = nop_missing ? unsupported : 0;
  const auto reply = handle.submit(i2o2::op::nop{});
  const auto result = reply.wait_for(5s);
  if (!result)
    fuzz_fail("a nop did not resolve within 5 s (ring_depth %u, flags iopoll=%d sqpoll=%d)", cfg.ring_depth,
              cfg.iopoll, cfg.sqpoll);
  const int got = *result;
  if (trace)
    std::fprintf(stderr, "config: ring flags 0x%x, nop resolved with %d\n", owner.scheduler().ring_flags(),
                 got);
  if (got != expected)
    fuzz_fail("a nop resolved with %d, expected %d (NOP %s; ring flags 0x%x)", got, expected,
              nop_missing ? "pretended missing" : "present", owner.scheduler().ring_flags());

  // Asking for a CQE's extra words: written (a NOP's are zero) on a ring
  // that really has 32-byte CQEs, refused untouched on any other (and
  // untouched when the nop itself is refused).
  const bool big_cqes = (owner.scheduler().ring_flags() & IORING_SETUP_CQE32) != 0;
  i2o2::cqe_extra extra{{1, 2}};
  i2o2::prepared_op nop = i2o2::op::nop{};
  nop.extra_out = &extra;
  const auto with_extra = handle.submit(i2o2::op::raw{nop}).wait_for(5s);
  if (!with_extra) fuzz_fail("a nop with extra_out did not resolve within 5 s");
  const int expected_extra = big_cqes ? expected : i2o2::result_of(i2o2::errc::needs_cqe32);
  const bool written = big_cqes && expected == 0;
  if (*with_extra != expected_extra)
    fuzz_fail("a nop with extra_out resolved with %d, expected %d (CQE32 ring: %d)", *with_extra,
              expected_extra, big_cqes);
  if (written && (extra.words[0] != 0 || extra.words[1] != 0))
    fuzz_fail("a nop's extra words on a CQE32 ring were not the kernel's zeros");
  if (!written && (extra.words[0] != 1 || extra.words[1] != 2))
    fuzz_fail("the extra words of a nop that never reached a CQE32 ring were touched: %llu %llu",
              static_cast<unsigned long long>(extra.words[0]),
              static_cast<unsigned long long>(extra.words[1]));
  owner.stop(std::chrono::milliseconds(5));
  running.reset();
  return 0;
}
