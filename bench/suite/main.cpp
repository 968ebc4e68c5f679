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
// i2o2 rows are named i2o2/<queue>+<wait>+<reply>, the default scheduler's
// i2o2/default (tables add its policies, mpsc_ring+eventfd+future); the nop
// workloads also show the other policy combinations, one policy changed at
// a time.
//
// A case that throws fails alone: a FAILED line, the other cases go on,
// and the run exits with status 1 at the end.
//
// Each figure is the median of several repetitions, taken interleaved
// across a workload's cases so that drift on a shared machine hits them all
// alike; each repetition rotates the order within a configuration.
// `i2o2_bench --help` lists the options.

#include "cases.hpp"
#include "data_files.hpp"
#include "options.hpp"
#include "report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
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
  // --quick: a 256 MiB randread file and 256 MiB of seqwrite. (64 MiB in
  // 1 MiB blocks took ~10 ms a repetition, with 14-74% spread; 256 MiB
  // adds about 6 s to the quick run.)
  p.read_file_size = opts.file_size.value_or(std::uint64_t{opts.quick ? 256U : 1024U} << 20);
  p.write_size = opts.file_size.value_or(std::uint64_t{opts.quick ? 256U : 1024U} << 20);
  return p;
}

/// --impls: see impl_matches.
bool impl_selected(const options& opts, const std::string& impl) {
  return opts.impls.empty() ||
         std::any_of(opts.impls.begin(), opts.impls.end(),
                     [&](const std::string& wanted) { return impl_matches(impl, wanted); });
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
  if (impl == default_impl) return 0;
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
  std::vector<std::string> impls;
  for (const auto& c : cases)
    if (std::find(impls.begin(), impls.end(), c.impl) == impls.end()) impls.push_back(c.impl);
  check_impls(opts, impls);
  std::erase_if(cases, [&](const bench_case& c) {
    return !workload_selected(opts, c.workload) || !impl_selected(opts, c.impl) ||
           case_label(c).find(opts.only) == std::string::npos;
  });
  // Grouped by workload and configuration; within one, i2o2 first (the
  // order of the tables; each repetition rotates it: in_turn).
  std::stable_sort(cases.begin(), cases.end(), [](const bench_case& a, const bench_case& b) {
    const auto key = [](const bench_case& c) {
      return std::tuple(workload_index(c.workload), c.block.value_or(0), c.clients,
                        c.workload == "randread" ? c.qd : 0U, impl_rank(c.impl));
    };
    return key(a) < key(b);
  });
  return cases;
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
  /// A line of its own (on a terminal, over the progress line).
  void say(const std::string& line) { std::fprintf(stderr, "%s%s\n", tty_ ? "\r\033[K" : "", line.c_str()); }

private:
  std::string workload_;
  std::size_t steps_;
  std::size_t done_ = 0;
  bool tty_;
};

/// The cases measured side by side (one configuration: block, clients and,
/// for randread, the queue depth), compared with each other.
bool same_configuration(const bench_case& a, const bench_case& b) {
  return a.workload == b.workload && a.block == b.block && a.clients == b.clients &&
         (a.workload != "randread" || a.qd == b.qd);
}

/// `cases` (grouped by configuration, as make_cases sorts them) in the order
/// repetition `rep` runs them: each configuration's group rotated by `rep`,
/// so that no implementation always runs first, right after another
/// configuration, or always just before another (a disk cache warmed, a
/// dirty page cache left behind).
std::vector<bench_case*> in_turn(const std::vector<bench_case*>& cases, std::size_t rep) {
  std::vector<bench_case*> order;
  order.reserve(cases.size());
  for (std::size_t first = 0; first < cases.size();) {
    std::size_t end = first + 1;
    while (end < cases.size() && same_configuration(*cases[first], *cases[end]))
      ++end;
    const std::size_t size = end - first;
    for (std::size_t i = 0; i < size; ++i)
      order.push_back(cases[first + (rep + i) % size]);
    first = end;
  }
  return order;
}

/// One run of `c`. A skip_case marks it skipped; any other exception marks
/// it failed, says so at once, and the run goes on without it.
void run_once(bench_case& c, std::chrono::milliseconds duration, bool keep, progress& shown) {
  if (!c.skipped.empty() || !c.failed.empty()) return;
  try {
    rep_result result = c.run(duration);
    if (keep) c.reps.push_back(result);
  } catch (const skip_case& skip) {
    c.skipped = skip.why;
  } catch (const std::exception& error) {
    c.failed = error.what();
    shown.say("i2o2_bench: FAILED " + case_label(c) + ": " + c.failed + " (the other cases go on)");
  }
}

/// Runs one workload's cases: each once untimed (warm-up), then repetition
/// by repetition, interleaving the cases. `p.repetition` says which is
/// running (0: the warm-up).
void run_workload(std::vector<bench_case*>& cases, const std::string& workload, int reps, plan& p) {
  std::size_t steps = 0;
  for (const bench_case* c : cases)
    steps += static_cast<std::size_t>(reps) + (c->warm_up ? 1 : 0);
  progress shown(workload, steps);
  shown.round("warm-up");
  p.repetition = 0;
  for (bench_case* c : cases) {
    if (!c->warm_up) continue;
    shown.step(*c, "warm-up");
    run_once(*c, std::max(c->duration / 4, std::chrono::milliseconds(20)), false, shown);
  }
  for (int rep = 0; rep < reps; ++rep) {
    const std::string what = "repetition " + std::to_string(rep + 1) + "/" + std::to_string(reps);
    shown.round(what.c_str());
    p.repetition = static_cast<std::uint64_t>(rep) + 1;
    for (bench_case* c : in_turn(cases, static_cast<std::size_t>(rep))) {
      shown.step(*c, what.c_str());
      run_once(*c, c->duration, true, shown);
    }
  }
}

/// The disk space `workload`'s file takes (0: none). One workload's file
/// exists at a time: each is removed before the next workload runs.
std::uint64_t file_space(const std::string& workload, const plan& p) {
  if (workload == "randread") return p.read_file_size;
  if (workload == "seqwrite") return p.write_size;
  if (workload == "append") return append_room_floor;  // at least; each repetition checks its own
  return 0;
}

/// Creates the files `workload` needs (untimed), once the data directory
/// has room for them; returns what to remove.
std::vector<std::string> prepare_files(const std::string& workload, const std::string& dir, plan& p) {
  const auto note = [](const char* what, std::uint64_t size) {
    std::fprintf(stderr, "%s (%llu MiB)...\n", what, static_cast<unsigned long long>(size >> 20));
  };
  const std::uint64_t need = file_space(workload, p);
  if (need != 0) check_free_space(dir, need, "the " + workload + " file");
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

/// Says which cases failed; whether any did.
bool report_failures(const std::vector<bench_case>& cases) {
  std::size_t failed = 0;
  for (const auto& c : cases)
    failed += c.failed.empty() ? 0 : 1;
  if (failed != 0)
    std::fprintf(stderr, "i2o2_bench: %zu case(s) failed (the FAILED lines above say why)\n", failed);
  return failed != 0;
}

int run(int argc, char** argv) {
  const auto began = bench_clock::now();
  const options opts = parse_options(argc, argv);
  plan p = make_plan(opts);
  std::vector<bench_case> cases = make_cases(opts, p);
  const int reps = opts.reps.value_or(opts.quick ? 3 : 5);
  if (cases.empty()) fail("no case matches --workloads, --impls and --only (see --list and --help)", 2);

  if (opts.list) {
    for (const auto& c : cases)
      std::printf("%-14s %-32s clients %-3u qd %-4u block %u\n", c.workload.c_str(), c.impl.c_str(),
                  c.clients, c.qd, c.block.value_or(0));
    return 0;
  }
  // The largest file of the selected workloads (one exists at a time):
  // refuse now rather than after the workloads before it.
  std::uint64_t largest_file = 0;
  std::string largest_workload;
  for (const auto& c : cases)
    if (file_space(c.workload, p) > largest_file) {
      largest_file = file_space(c.workload, p);
      largest_workload = c.workload;
    }
  if (largest_file != 0) {
    check_data_dir(opts.data_dir);
    check_free_space(opts.data_dir, largest_file, "the " + largest_workload + " file");
  }

  std::printf("i2o2_bench: %u cpus, kernel %s, liburing %s; median of %d repetitions of %.3g s (nops), "
              "%.3g s (randread, append); a randread file of %llu MiB, seqwrite of %llu MiB; "
              "spread = (max-min)/median of ops/s; %s is i2o2::default_scheduler (%s)\n",
              std::thread::hardware_concurrency(), kernel_release().c_str(), liburing_version().c_str(), reps,
              std::chrono::duration<double>(p.nop_duration).count(),
              std::chrono::duration<double>(p.io_duration).count(),
              static_cast<unsigned long long>(p.read_file_size >> 20),
              static_cast<unsigned long long>(p.write_size >> 20), default_impl, default_policies);
  std::fflush(stdout);

  for (const auto& workload : workload_names()) {
    std::vector<bench_case*> selected;
    for (auto& c : cases)
      if (c.workload == workload) selected.push_back(&c);
    if (selected.empty()) continue;
    const auto files = prepare_files(workload, opts.data_dir, p);
    run_workload(selected, workload, reps, p);
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
  return report_failures(cases) ? 1 : 0;
}

}  // namespace

}  // namespace bench

int main(int argc, char** argv) {
  // What escapes a case (preparing a workload's files, writing the report)
  // ends the run with a message, and atexit removes the data files; an
  // uncaught exception would abort and leave them.
  try {
    return bench::run(argc, argv);
  } catch (const std::exception& error) {
    bench::fail(error.what());
  }
}
