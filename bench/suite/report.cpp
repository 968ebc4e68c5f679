#include "report.hpp"

#include <liburing.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

namespace bench {

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

bool measured(const bench_case& c) { return c.skipped.empty() && !c.reps.empty(); }

/// What each workload's table says and which baselines its ratios use.
struct table_spec {
  const char* workload;
  const char* description;
  std::vector<std::string> baselines;
};

const std::vector<table_spec>& table_specs() {
  static const std::vector<table_spec> specs{
      {"nop_sync",
       "each client submits one nop and waits for it; raw_liburing: one client, one nop per enter (so a "
       "ratio to it at 1 client only)",
       {"thread_pool", "raw_liburing"}},
      {"nop_wake",
       "one client, one nop at a time, the scheduler parked between ops (idle_spin and busy_spin 0): the "
       "wait "
       "strategy's wake-up; thread_pool: its worker sleeps between ops too",
       {"thread_pool"}},
      {"nop_pipelined",
       "each client keeps 64 nops in flight (sliding window); raw_liburing: one client, 64 per enter, "
       "latency = one enter (a ratio to it at 1 client only)",
       {"thread_pool", "raw_liburing"}},
      {"randread",
       "4 KiB O_DIRECT reads at random offsets; qd = in flight per client; thread_pool: a worker per read "
       "in flight; blocking: a thread per read in flight",
       {"fio", "raw_liburing", "thread_pool", "blocking"}},
      {"seqwrite",
       "buffered sequential rewrite of the whole file (page cache warm), every write from one source "
       "block; blocking: pwrite loop",
       {"raw_liburing", "thread_pool", "blocking"}},
      {"append",
       "4 KiB write + fdatasync, one chain at a time; ops = chains",
       {"raw_liburing", "thread_pool", "blocking"}},
  };
  return specs;
}

/// The `impl` row to compare `row` with: the one of the same configuration
/// (clients, qd, block), or none, and the ratio prints "-" (raw_liburing's
/// single-client nop rows, for one, have no match at W > 1). The one
/// exception is by design: blocking's seqwrite is a pwrite loop, qd 1 where
/// the others keep write_qd in flight, and it is compared with them (both
/// ways) all the same: the same writes of the same blocks.
const bench_case* baseline_for(const std::vector<bench_case>& cases, const bench_case& row,
                               const std::string& impl) {
  const bool any_qd = row.workload == "seqwrite" && (impl == "blocking" || row.impl == "blocking");
  for (const auto& c : cases) {
    if (c.workload != row.workload || c.impl != impl || !measured(c)) continue;
    if (c.block == row.block && c.clients == row.clients && (c.qd == row.qd || any_qd)) return &c;
  }
  return nullptr;
}

std::string format_rate(double ops) {
  char text[32];
  if (ops >= 1e6)
    std::snprintf(text, sizeof(text), "%.2fM", ops / 1e6);
  else if (ops >= 1e3)
    std::snprintf(text, sizeof(text), "%.1fk", ops / 1e3);
  else
    std::snprintf(text, sizeof(text), "%.0f", ops);
  return text;
}

std::string format_block(std::optional<unsigned> block) {
  if (!block) return "-";
  if (*block >= (1U << 20)) return std::to_string(*block >> 20) + "M";
  if (*block >= (1U << 10)) return std::to_string(*block >> 10) + "k";
  return std::to_string(*block);
}

std::string json_number(std::optional<double> value) {
  if (!value) return "null";
  char text[32];
  std::snprintf(text, sizeof(text), "%.6g", *value);
  return text;
}

}  // namespace

figure summarise(const bench_case& c) {
  std::vector<double> ops;
  std::vector<double> mb;
  std::vector<double> p50;
  std::vector<double> p99;
  for (const auto& rep : c.reps) {
    ops.push_back(rep.ops_per_sec);
    if (rep.mb_per_sec) mb.push_back(*rep.mb_per_sec);
    p50.push_back(rep.p50_us);
    p99.push_back(rep.p99_us);
  }
  figure f;
  if (ops.empty()) return f;
  f.ops_per_sec = median(ops);
  if (!mb.empty()) f.mb_per_sec = median(mb);
  f.p50_us = median(p50);
  f.p99_us = median(p99);
  const auto [low, high] = std::minmax_element(ops.begin(), ops.end());
  f.spread = f.ops_per_sec > 0 ? (*high - *low) / f.ops_per_sec : 0;
  return f;
}

std::string kernel_release() {
  utsname names{};
  if (::uname(&names) != 0) return "unknown";
  return names.release;
}

std::string liburing_version() {
#ifdef IO_URING_VERSION_MAJOR
  return std::to_string(IO_URING_VERSION_MAJOR) + "." + std::to_string(IO_URING_VERSION_MINOR);
#else
  // The version macros arrived in liburing 2.4, and the build requires 2.3.
  return "2.3";
#endif
}

void print_table(const std::vector<bench_case>& cases, const std::string& workload) {
  const auto spec = std::find_if(table_specs().begin(), table_specs().end(),
                                 [&](const table_spec& s) { return s.workload == workload; });
  const auto in_table = [&](const bench_case& c) { return c.workload == workload; };
  if (spec == table_specs().end() || std::none_of(cases.begin(), cases.end(), in_table)) return;

  std::printf("\n%s: %s\n", workload.c_str(), spec->description);
  std::printf("%-39s %7s %4s %5s %9s %8s %9s %9s %7s", "impl", "clients", "qd", "block", "ops/s", "MB/s",
              "p50 us", "p99 us", "spread");
  for (const auto& baseline : spec->baselines)
    std::printf("  x %s", baseline.c_str());
  std::printf("\n");
  const bench_case* previous = nullptr;
  for (const auto& row : cases) {
    if (!in_table(row) || !measured(row)) continue;
    if (previous && !same_config(*previous, row)) std::printf("\n");  // a blank line between configurations
    previous = &row;
    const figure f = summarise(row);
    const std::string mb = f.mb_per_sec ? std::to_string(static_cast<long>(*f.mb_per_sec + 0.5)) : "-";
    std::printf("%-39s %7u %4u %5s %9s %8s %9.1f %9.1f %6.1f%%", display_name(row.impl).c_str(), row.clients,
                row.qd, format_block(row.block).c_str(), format_rate(f.ops_per_sec).c_str(), mb.c_str(),
                f.p50_us, f.p99_us, f.spread * 100);
    for (const auto& baseline : spec->baselines) {
      const int width = static_cast<int>(baseline.size() + 2);
      const bench_case* base = baseline_for(cases, row, baseline);
      const double base_ops = base ? summarise(*base).ops_per_sec : 0;
      if (base_ops > 0)
        std::printf("  %*.3f", width, f.ops_per_sec / base_ops);
      else
        std::printf("  %*s", width, "-");
    }
    std::printf("\n");
  }
  for (const auto& row : cases) {
    if (!in_table(row)) continue;
    if (!row.skipped.empty())
      std::printf("skip: %s %s (clients %u, qd %u): %s\n", row.workload.c_str(), row.impl.c_str(),
                  row.clients, row.qd, row.skipped.c_str());
    if (!row.failed.empty())
      std::printf("FAILED: %s %s (clients %u, qd %u): %s\n", row.workload.c_str(), row.impl.c_str(),
                  row.clients, row.qd, row.failed.c_str());
    const auto cut_short =
        std::count_if(row.reps.begin(), row.reps.end(), [](const rep_result& rep) { return rep.cut_short; });
    if (measured(row) && cut_short != 0)
      std::printf("note: %s %s: %zu of %zu repetitions filled the room preallocated for them before their "
                  "time was up; their ops/s count what they did in the time they took\n",
                  row.workload.c_str(), row.impl.c_str(), static_cast<std::size_t>(cut_short),
                  row.reps.size());
  }
  std::fflush(stdout);
}

void write_json(const std::vector<bench_case>& cases, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail("cannot write " + path);
  out << "{\"schema\": 1, \"machine\": {\"cpus\": " << std::thread::hardware_concurrency()
      << ", \"kernel\": \"" << kernel_release() << "\", \"liburing\": \"" << liburing_version()
      << "\"},\n \"results\": [";
  const char* separator = "\n";
  for (const auto& c : cases) {
    if (!measured(c)) continue;
    const figure f = summarise(c);
    out << separator << "  {\"workload\": \"" << c.workload << "\", \"impl\": \"" << c.impl
        << "\", \"clients\": " << c.clients << ", \"qd\": " << c.qd
        << ", \"block\": " << (c.block ? std::to_string(*c.block) : "null")
        << ", \"ops_per_sec\": " << json_number(f.ops_per_sec)
        << ", \"mb_per_sec\": " << json_number(f.mb_per_sec) << ", \"p50_us\": " << json_number(f.p50_us)
        << ", \"p99_us\": " << json_number(f.p99_us) << ", \"spread\": " << json_number(f.spread) << "}";
    separator = ",\n";
  }
  out << "\n ]}\n";
  if (!out) fail("writing " + path + " failed");
}

void write_plot(const std::vector<bench_case>& cases, const std::string& path) {
  // impl -> (clients, ops/s), in the order the impls first appear.
  std::vector<std::string> impls;
  std::map<std::string, std::vector<std::pair<unsigned, double>>> lines;
  for (const auto& c : cases) {
    if (c.workload != "nop_sync" || !measured(c)) continue;
    if (!lines.contains(c.impl)) impls.push_back(c.impl);
    lines[c.impl].emplace_back(c.clients, summarise(c).ops_per_sec);
  }
  if (impls.empty()) {
    std::printf("skip: --plot %s: no nop_sync results to plot\n", path.c_str());
    return;
  }
  if (std::system("gnuplot --version >/dev/null 2>&1") != 0) {
    std::printf("skip: --plot %s: gnuplot not found (Debian package gnuplot-nox)\n", path.c_str());
    return;
  }
  unsigned clients_low = ~0U;
  unsigned clients_high = 0;
  for (const auto& [impl, points] : lines)
    for (const auto& point : points) {
      clients_low = std::min(clients_low, point.first);
      clients_high = std::max(clients_high, point.first);
    }
  const std::string script_path = path + ".gnuplot";
  {
    std::ofstream script(script_path);
    for (std::size_t i = 0; i < impls.size(); ++i) {
      auto& points = lines[impls[i]];
      std::sort(points.begin(), points.end());
      script << "$line" << i << " << EOD\n";
      for (const auto& [clients, ops] : points)
        script << clients << " " << ops << "\n";
      script << "EOD\n";
    }
    script << "set terminal pngcairo size 1100,650 font 'sans,10'\n"
           << "set output '" << path << "'\n"
           << "set title 'nop_sync: submit one nop and wait, W clients ("
           << std::thread::hardware_concurrency() << " cpus, kernel " << kernel_release() << ")'\n"
           << "set xlabel 'clients'\nset ylabel 'ops/s'\n"
           << "set termoption noenhanced\n"  // impl names have underscores
           << "set logscale x 2\nset logscale y 10\nset grid\nset key outside right top\n"
           << "set format y '%.0s%c'\nset xtics (1, 2, 4, 8, 16, 32, 64, 128)\n"
           << "set xrange [" << clients_low * 0.8 << ":" << clients_high * 1.25 << "]\n"
           << "plot ";
    for (std::size_t i = 0; i < impls.size(); ++i)
      script << (i ? ", " : "") << "$line" << i << " using 1:2 with linespoints lw 2 pt 7 title '"
             << display_name(impls[i]) << "'";
    script << "\n";
  }
  const int status = std::system(("gnuplot '" + script_path + "'").c_str());
  std::remove(script_path.c_str());
  if (status != 0) fail("gnuplot failed on the plot of " + path);
  std::printf("wrote %s\n", path.c_str());
}

}  // namespace bench
