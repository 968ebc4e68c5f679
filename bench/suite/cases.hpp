#pragma once
/// The suite's vocabulary: the workloads, what one case (an implementation
/// under one workload configuration) is, and the plan every implementation
/// file reads to add its cases.

#include "measure.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bench {

// ---- workloads --------------------------------------------------------------

/// Ops each nop_pipelined client keeps in flight, and NOPs per batched enter
/// of the raw ring.
inline constexpr unsigned pipeline_depth = 64;

/// randread: 4 KiB O_DIRECT reads at random aligned offsets.
inline constexpr unsigned read_block = 4096;
struct read_config {
  unsigned clients;
  unsigned qd;  // reads in flight per client
};
/// QD 1, 32 and 128 from one client; QD 128 split over 4 clients.
inline constexpr read_config read_configs[] = {{1, 1}, {1, 32}, {1, 128}, {4, 32}};

/// seqwrite: buffered sequential writes of the whole write file, in these
/// blocks, `write_qd` in flight (where the implementation can).
inline constexpr unsigned write_blocks[] = {4096, 64 * 1024, 1024 * 1024};
inline constexpr unsigned write_qd = 16;

/// seqwrite's source: one block of pseudo-random bytes per client, which
/// every write of that client reads (writes in flight share it: they only
/// read it). Every implementation writes from this same layout, so none
/// copies from a larger (DRAM) or smaller (cache-resident) source.
inline std::unique_ptr<aligned_buffer> make_write_source(unsigned block) {
  auto source = std::make_unique<aligned_buffer>(block);
  source->fill_pseudo_random(block);
  return source;
}

/// append: 4 KiB write + fdatasync chains, one at a time, into a file whose
/// room is preallocated before each repetition (append_run).
inline constexpr unsigned append_block = 4096;
/// The room preallocated for one append repetition, before a rate is known
/// (the warm-up) and at least; at most the ceiling (a repetition that
/// fills it ends early).
inline constexpr std::uint64_t append_room_floor = std::uint64_t{64} << 20;
inline constexpr std::uint64_t append_room_ceiling = std::uint64_t{8} << 30;

/// The workloads, in report order.
inline const std::vector<std::string>& workload_names() {
  static const std::vector<std::string> names{"nop_sync", "nop_wake", "nop_pipelined",
                                              "randread", "seqwrite", "append"};
  return names;
}

// ---- the plan ----------------------------------------------------------------

/// What to run, decided from the options; read by every add_*_cases.
struct plan {
  /// nop_sync client counts; the policy rows use `policy_clients` of them.
  std::vector<unsigned> sync_clients{1, 2, 4, 8, 16};
  std::vector<unsigned> policy_clients{1, 16};
  std::vector<unsigned> pipelined_clients{1, 2};
  /// Length of one repetition of the timed cases.
  std::chrono::milliseconds nop_duration{500};
  std::chrono::milliseconds io_duration{2000};
  /// randread's file (read with O_DIRECT).
  std::string read_file;
  std::uint64_t read_file_size = 0;
  /// seqwrite's file, rewritten whole by every repetition.
  std::string write_file;
  std::uint64_t write_size = 0;
  /// append's file, emptied before every repetition.
  std::string append_file;
  /// The repetition running (0: the warm-up), set by the driver before
  /// each: it seeds randread's offsets (client_seed), so each repetition
  /// reads other blocks while every implementation reads the same ones.
  std::uint64_t repetition = 0;
};

// ---- cases -------------------------------------------------------------------

/// The policies of i2o2::default_scheduler (i2o2_policies.hpp checks them).
inline constexpr const char* default_policies = "mpsc_ring+eventfd+future";
/// The row name (and JSON impl) of i2o2::default_scheduler; every other
/// i2o2 row is "i2o2/<policies>". --impls takes "default" or its policies
/// for it too.
inline constexpr const char* default_impl = "i2o2/default";

/// How tables and plots name a row: the default's with its policies, so
/// that the policy rows beside it read as one policy changed.
inline std::string display_name(const std::string& impl) {
  return impl == default_impl ? impl + " (" + default_policies + ")" : impl;
}

/// One row of a table: an implementation under one workload configuration.
struct bench_case {
  std::string workload;
  std::string impl;  // "i2o2/default", "i2o2/<policies>", raw_liburing, thread_pool, blocking, fio
  unsigned clients = 1;
  unsigned qd = 1;                  // ops in flight per client
  std::optional<unsigned> block{};  // bytes per op, for IO workloads
  /// One repetition of `duration` (ignored by fixed-work cases). Throws
  /// skip_case when it cannot run here (a missing kernel feature or tool).
  std::function<rep_result(std::chrono::milliseconds duration)> run;
  std::chrono::milliseconds duration{0};
  bool warm_up = true;  // run once (for a quarter of `duration`) before the repetitions
  std::vector<rep_result> reps{};
  std::string skipped{};
  std::string failed{};  // what a repetition threw; the case then runs no more
};

/// Rows of one configuration, grouped in a table: the same block size and
/// client count, and for randread the same qd (seqwrite rows differ in qd
/// by implementation: blocking writes one block at a time).
inline bool same_config(const bench_case& a, const bench_case& b) {
  return a.workload == b.workload && a.block == b.block && a.clients == b.clients &&
         (a.workload != "randread" || a.qd == b.qd);
}

/// "workload impl c<clients> q<qd>", what --only matches.
inline std::string case_label(const bench_case& c) {
  return c.workload + " " + c.impl + " c" + std::to_string(c.clients) + " q" + std::to_string(c.qd) +
         (c.block ? " b" + std::to_string(*c.block) : "");
}

/// One append repetition of `duration` that writes at most `chains` chains
/// (what the preallocated room holds), then stops counting.
using append_body = std::function<rep_result(std::chrono::milliseconds duration, std::uint64_t chains)>;

/// An append case's `run`. Before each repetition (untimed) it empties the
/// file and preallocates room for the repetition: the fastest rate the case
/// has shown so far (the warm-up's, at first) for `duration`, twice over,
/// within append_room_floor..append_room_ceiling. It skips the case when
/// the file system lacks that room. A repetition that fills the room ends
/// there, its ops/s counting what it did (rep_result::cut_short), rather
/// than growing the file.
std::function<rep_result(std::chrono::milliseconds)> append_run(const plan& p, append_body body);

/// MB/s from ops/s for an IO workload.
inline rep_result with_bytes(rep_result result, unsigned block) {
  result.mb_per_sec = result.ops_per_sec * block / 1e6;
  return result;
}

// Each implementation adds its cases for every workload it supports.
void add_i2o2_nop_cases(std::vector<bench_case>& cases, const plan& p);
void add_i2o2_io_cases(std::vector<bench_case>& cases, const plan& p);
void add_raw_liburing_cases(std::vector<bench_case>& cases, const plan& p);
void add_thread_pool_cases(std::vector<bench_case>& cases, const plan& p);
void add_blocking_cases(std::vector<bench_case>& cases, const plan& p);
void add_fio_cases(std::vector<bench_case>& cases, const plan& p);

}  // namespace bench
