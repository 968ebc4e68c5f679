// Fuzz target: random configs, setup-flag sets and pretended-missing kernel
// features. Oracle: spawn either throws a clear error (std::invalid_argument
// for a nonsense config, std::system_error when the kernel or the machine
// refuses), or yields a working scheduler whose nop resolves within a
// bounded wait (0, a kernel -errno, or unsupported_op when NOP is pretended
// missing). Never a crash, a hang or another exception type.
#include "fuzz_common.hpp"

#include <i2o2/i2o2.hpp>

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
  case 0: return 1U << input.ConsumeIntegralInRange(0, 10);  // sane
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

constexpr std::uint32_t flag_bits[] = {IORING_SETUP_IOPOLL,        IORING_SETUP_SQPOLL,
                                       IORING_SETUP_CQSIZE,        IORING_SETUP_R_DISABLED,
                                       IORING_SETUP_SUBMIT_ALL,    IORING_SETUP_COOP_TASKRUN,
                                       IORING_SETUP_SQE128,        IORING_SETUP_CQE32,
                                       IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_DEFER_TASKRUN};

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
  cfg.busy_spin = cfg.idle_spin * 5;  // derived: the corpus keeps its meaning
  if (input.ConsumeBool()) cfg.cpu_affinity = input.ConsumeIntegralInRange<unsigned>(0, 2047);
  cfg.thread_name = std::string(input.ConsumeIntegralInRange<std::size_t>(0, 20), 'n');
  if (input.ConsumeBool())
    cfg.shutdown_deadline = std::nullopt;
  else
    cfg.shutdown_deadline = std::chrono::milliseconds(input.ConsumeIntegralInRange(0, 100));

  std::uint32_t missing_flags = 0;
  std::vector<std::uint8_t> missing_opcodes;
  bool nop_missing = false;
  stop_pretending_at_exit restore;
  if (input.ConsumeBool()) {
    for (std::uint32_t flag : flag_bits)
      if (input.ConsumeBool()) missing_flags |= flag;
    const auto count = input.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < count; ++i)
      missing_opcodes.push_back(input.ConsumeIntegralInRange<std::uint8_t>(0, 60));
    for (auto opcode : missing_opcodes)
      nop_missing = nop_missing || opcode == IORING_OP_NOP;
    i2o2::detail::kernel_features::pretend_missing(missing_flags, missing_opcodes, input.ConsumeBool());
  }

  std::optional<i2o2::spawned<i2o2::default_scheduler>> running;
  try {
    running.emplace(i2o2::spawn(cfg));
  } catch (const std::invalid_argument& error) {
    if (trace) std::fprintf(stderr, "config: invalid_argument: %s\n", error.what());
    return 0;  // a nonsense config, named
  } catch (const std::system_error& error) {
    if (trace) std::fprintf(stderr, "config: system_error: %s\n", error.what());
    return 0;  // the kernel or the machine refused, named
  } catch (const std::exception& error) {
    fuzz_fail("spawn threw an unexpected exception type: %s", error.what());
  } catch (...) {
    fuzz_fail("spawn threw something that is not a std::exception");
  }

  auto& [owner, handle] = *running;
  const auto reply = handle.submit(i2o2::op::nop{});
  const auto result = reply.wait_for(10s);
  if (!result) fuzz_fail("a nop did not resolve within 10 s (ring_depth %u, flags iopoll=%d sqpoll=%d)",
                         cfg.ring_depth, cfg.iopoll, cfg.sqpoll);
  const int got = *result;
  const bool ok = got == 0 || (got < 0 && got >= -i2o2::max_kernel_errno) ||
                  (nop_missing && got == i2o2::result_of(i2o2::errc::unsupported_op));
  if (!ok) fuzz_fail("a nop resolved with %d", got);
  if (trace)
    std::fprintf(stderr, "config: ring flags 0x%x, nop resolved with %d\n", owner.scheduler().ring_flags(), got);

  // Asking for a CQE's extra words: written (a NOP's are zero) on a ring
  // that really has 32-byte CQEs, refused untouched on any other.
  const bool big_cqes = (owner.scheduler().ring_flags() & IORING_SETUP_CQE32) != 0;
  i2o2::cqe_extra extra{{1, 2}};
  i2o2::prepared_op nop = i2o2::op::nop{};
  nop.extra_out = &extra;
  const auto with_extra = handle.submit(i2o2::op::raw{nop}).wait_for(10s);
  if (!with_extra) fuzz_fail("a nop with extra_out did not resolve within 10 s");
  if (!big_cqes && (*with_extra != i2o2::result_of(i2o2::errc::needs_cqe32) || extra.words[0] != 1))
    fuzz_fail("extra_out on a ring without CQE32: resolved with %d, words[0] %llu", *with_extra,
              static_cast<unsigned long long>(extra.words[0]));
  if (big_cqes && *with_extra == 0 && (extra.words[0] != 0 || extra.words[1] != 0))
    fuzz_fail("a nop's extra words on a CQE32 ring were not the kernel's zeros");
  owner.stop(std::chrono::milliseconds(5));
  running.reset();
  return 0;
}
