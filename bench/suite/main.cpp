// i2o2_bench: the benchmark suite. Every figure is printed beside baselines
// measured in the same run, on the same machine (raw liburing, a std::thread
// pool, plain blocking syscalls, fio), one table per workload:
//
//   nop_sync       W clients each submitting one nop and waiting: the
//                  scheduler's round trip (a nop does no IO)
//   nop_wake       one client, the scheduler parked between ops: the wait
//                  strategy's wake-up, per policy row
//   nop_pipelined  each client keeping 64 nops in flight: its throughput
//   randread       4 KiB O_DIRECT random reads, QD 1/32/128, and 128 over 4
//   seqwrite       buffered sequential writes, 4 KiB / 64 KiB / 1 MiB blocks
//   append         4 KiB write + fdatasync chains
//
// i2o2 rows are named i2o2/<queue>+<wait>+<reply> (i2o2/default is
// mpsc_ring+eventfd+future); the nop workloads also show the other policy
// combinations, one policy changed at a time.
//
// Each figure is the median of several repetitions, taken interleaved
// across a workload's cases so that drift on a shared machine hits them all
// alike. `i2o2_bench --help` lists the options.

#include "cases.hpp"
#include "data_files.hpp"
#include "options.hpp"
#include "report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <tuple>

namespace bench {

namespace {

plan make_plan(const options& opts) {
  plan p;
  if (!opts.clients.empty()) p.sync_clients = opts.clients;
  p.policy_clients.clear();
  for (unsigned clients : p.sync_clients)
    if (clients == 1 || clients == 16) p.policy_clients.push_back(clients);
  if (p.policy_clients.empty()) p.policy_clients = {p.sync_clients.front(), p.sync_clients.back()};
  p.nop_duration = opts.duration.value_or(std::chrono::milliseconds(opts.quick ? 200 : 500));
  p.io_duration = opts.duration.value_or(std::chrono::milliseconds(opts.quick ? 300 : 2000));
  const std::uint64_t size = opts.file_size.value_or(std::uint64_t{opts.quick ? 256U : 1024U} << 20);
  p.read_file_size = size;
  p.write_size = size;
  return p;
}

/// --impls: a name, the name without "i2o2/", or "i2o2" for every i2o2 row.
bool impl_selected(const options& opts, const std::string& impl) {
  if (opts.impls.empty()) return true;
  for (const auto& wanted : opts.impls) {
    if (impl == wanted || impl == "i2o2/" + wanted) return true;
    if (wanted == "i2o2" && impl.starts_with("i2o2/")) return true;
  }
  return false;
}

bool workload_selected(const options& opts, const std::string& workload) {
  return opts.workloads.empty() ||
         std::find(opts.workloads.begin(), opts.workloads.end(), workload) != opts.workloads.end();
}

std::size_t workload_index(const std::string& workload) {
  const auto& names = workload_names();
  return static_cast<std::size_t>(std::find(names.begin(), names.end(), workload) - names.begin());
}

int impl_rank(const std::string& impl) {
  if (impl == "i2o2/default") return 0;
  if (impl.starts_with("i2o2/")) return 1;
  if (impl == "raw_liburing") return 2;
  if (impl == "fio") return 3;
  if (impl == "thread_pool") return 4;
  return 5;
}

std::vector<bench_case> make_cases(const options& opts, const plan& p) {
  std::vector<bench_case> cases;
  add_i2o2_nop_cases(cases, p);
  add_i2o2_io_cases(cases, p);
  add_raw_liburing_cases(cases, p);
  add_fio_cases(cases, p);
  add_thread_pool_cases(cases, p);
  add_blocking_cases(cases, p);
  std::erase_if(cases, [&](const bench_case& c) {
    return !workload_selected(opts, c.workload) || !impl_selected(opts, c.impl) ||
           case_label(c).find(opts.only) == std::string::npos;
  });
  // Grouped by workload and configuration; within one, i2o2 first.
  std::stable_sort(cases.begin(), cases.end(), [](const bench_case& a, const bench_case& b) {
    const auto key = [](const bench_case& c) {
      return std::tuple(workload_index(c.workload), c.block.value_or(0), c.clients,
                        c.workload == "randread" ? c.qd : 0U, impl_rank(c.impl));
    };
    return key(a) < key(b);
  });
  return cases;
}

/// One run of `c`; a skip_case marks it skipped and it runs no more.
void run_once(bench_case& c, std::chrono::milliseconds duration, bool keep) {
  if (!c.skipped.empty()) return;
  try {
    rep_result result = c.run(duration);
    if (keep) c.reps.push_back(result);
  } catch (const skip_case& skip) {
    c.skipped = skip.why;
  }
}

class progress {
public:
  progress(std::string workload, std::size_t steps)
      : workload_(std::move(workload)), steps_(steps), tty_(::isatty(STDERR_FILENO) != 0) {}
  ~progress() {
    if (tty_) std::fprintf(stderr, "\r%*s\r", 100, "");
  }
  void step(const bench_case& c, const char* what) {
    ++done_;
    if (tty_)
      std::fprintf(stderr, "\r%-14s %3zu/%-3zu %-32s clients %-2u qd %-3u %-14s", workload_.c_str(), done_,
                   steps_, c.impl.c_str(), c.clients, c.qd, what);
  }
  /// Off a terminal: one line per repetition round.
  void round(const char* what) {
    if (!tty_) std::fprintf(stderr, "%s: %s\n", workload_.c_str(), what);
  }

private:
  std::string workload_;
  std::size_t steps_;
  std::size_t done_ = 0;
  bool tty_;
};

/// Runs one workload's cases: each once untimed (warm-up), then repetition
/// by repetition, interleaving the cases.
void run_workload(std::vector<bench_case*>& cases, const std::string& workload, int reps) {
  std::size_t steps = 0;
  for (const bench_case* c : cases)
    steps += static_cast<std::size_t>(reps) + (c->warm_up ? 1 : 0);
  progress shown(workload, steps);
  shown.round("warm-up");
  for (bench_case* c : cases) {
    if (!c->warm_up) continue;
    shown.step(*c, "warm-up");
    run_once(*c, std::max(c->duration / 4, std::chrono::milliseconds(20)), false);
  }
  for (int rep = 0; rep < reps; ++rep) {
    const std::string what = "repetition " + std::to_string(rep + 1) + "/" + std::to_string(reps);
    shown.round(what.c_str());
    for (bench_case* c : cases) {
      shown.step(*c, what.c_str());
      run_once(*c, c->duration, true);
    }
  }
}

/// Creates the files `workload` needs (untimed); returns what to remove.
std::vector<std::string> prepare_files(const std::string& workload, const std::string& dir, plan& p) {
  const auto note = [](const char* what, std::uint64_t size) {
    std::fprintf(stderr, "%s (%llu MiB)...\n", what, static_cast<unsigned long long>(size >> 20));
  };
  if (workload == "randread") {
    p.read_file = data_path(dir, "randread");
    note("creating the randread file", p.read_file_size);
    create_data_file(p.read_file, p.read_file_size);
    return {p.read_file};
  }
  if (workload == "seqwrite") {
    p.write_file = data_path(dir, "seqwrite");
    note("creating and caching the seqwrite file", p.write_size);
    create_data_file(p.write_file, p.write_size);
    return {p.write_file};
  }
  if (workload == "append") {
    p.append_file = data_path(dir, "append");
    return {p.append_file};
  }
  return {};
}

}  // namespace

}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  const auto began = bench_clock::now();
  const options opts = parse_options(argc, argv);
  plan p = make_plan(opts);
  std::vector<bench_case> cases = make_cases(opts, p);
  const int reps = opts.reps.value_or(opts.quick ? 3 : 5);
  if (cases.empty()) fail("no case matches --workloads, --impls and --only (see --list and --help)");

  if (opts.list) {
    for (const auto& c : cases)
      std::printf("%-14s %-32s clients %-3u qd %-4u block %u\n", c.workload.c_str(), c.impl.c_str(),
                  c.clients, c.qd, c.block.value_or(0));
    return 0;
  }
  const bool needs_files = std::any_of(cases.begin(), cases.end(), [](const bench_case& c) {
    return c.workload == "randread" || c.workload == "seqwrite" || c.workload == "append";
  });
  if (needs_files) check_data_dir(opts.data_dir);

  std::printf("i2o2_bench: %u cpus, kernel %s, liburing %s; median of %d repetitions of %.1f s (nops), "
              "%.1f s (randread, append); files of %llu MiB; spread = (max-min)/median of ops/s\n",
              std::thread::hardware_concurrency(), kernel_release().c_str(), liburing_version().c_str(), reps,
              std::chrono::duration<double>(p.nop_duration).count(),
              std::chrono::duration<double>(p.io_duration).count(),
              static_cast<unsigned long long>(p.read_file_size >> 20));
  std::fflush(stdout);

  for (const auto& workload : workload_names()) {
    std::vector<bench_case*> selected;
    for (auto& c : cases)
      if (c.workload == workload) selected.push_back(&c);
    if (selected.empty()) continue;
    const auto files = prepare_files(workload, opts.data_dir, p);
    run_workload(selected, workload, reps);
    for (const auto& file : files)
      remove_data_file(file);
    print_table(cases, workload);
  }

  if (!opts.json_path.empty()) {
    write_json(cases, opts.json_path);
    std::printf("\nwrote %s\n", opts.json_path.c_str());
  }
  if (!opts.plot_path.empty()) write_plot(cases, opts.plot_path);
  std::printf("\ntotal %.0f s\n", std::chrono::duration<double>(bench_clock::now() - began).count());
  return 0;
}
