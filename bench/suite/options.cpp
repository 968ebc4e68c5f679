#include "options.hpp"

#include "cases.hpp"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace bench {

namespace {

void print_usage() {
  std::puts("usage: i2o2_bench [options]\n"
            "  --quick            3 short repetitions, 256 MiB files: the whole run in about a minute\n"
            "                     (default: 5 repetitions of 0.5 s (nops) / 2 s (IO), 1 GiB files)\n"
            "  --json FILE        also write the results as JSON (schema 1)\n"
            "  --plot FILE.png    plot nop_sync ops/s against clients with gnuplot\n"
            "  --workloads LIST   comma-separated: nop_sync,nop_wake,nop_pipelined,randread,seqwrite,append\n"
            "  --impls LIST       comma-separated: default, i2o2 (every i2o2 row), a policy row such as\n"
            "                     mpsc_ring+futex+future, raw_liburing, thread_pool, blocking, fio\n"
            "  --clients LIST     nop_sync client counts (default 1,2,4,8,16; policy rows use 1 and 16)\n"
            "  --reps N           repetitions per figure (the median is reported)\n"
            "  --seconds S        length of one repetition of a timed case\n"
            "  --file-size SIZE   randread file and seqwrite amount, e.g. 512M, 1G\n"
            "  --data-dir DIR     where the data files go (a disk, not tmpfs; default: .);\n"
            "                     they are removed when the run ends\n"
            "  --only TEXT        only the cases whose label \"workload impl c<clients> q<qd>[ b<block>]\"\n"
            "                     contains TEXT, e.g. --only 'randread i2o2/default c1 q32' or\n"
            "                     --only 'seqwrite raw_liburing c1 q16 b4096' (for profiling)\n"
            "  --list             print the cases that would run, and exit");
}

[[noreturn]] void usage_error(const std::string& what) {
  print_usage();
  fail(what);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ','))
    if (!item.empty()) items.push_back(item);
  return items;
}

std::vector<unsigned> parse_counts(const std::string& text) {
  std::vector<unsigned> counts;
  for (const auto& item : split(text)) {
    const int count = std::atoi(item.c_str());
    if (count < 1 || count > 1024) usage_error("--clients: bad client count '" + item + "'");
    counts.push_back(static_cast<unsigned>(count));
  }
  if (counts.empty()) usage_error("--clients needs a list such as 1,16");
  return counts;
}

std::uint64_t parse_size(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  const std::string suffix(end);
  double scale = 1;
  if (suffix == "K" || suffix == "k")
    scale = 1 << 10;
  else if (suffix == "M" || suffix == "m")
    scale = 1 << 20;
  else if (suffix == "G" || suffix == "g")
    scale = 1 << 30;
  else if (!suffix.empty())
    usage_error("--file-size: bad size '" + text + "'");
  const auto bytes = static_cast<std::uint64_t>(value * scale) / (1 << 20) * (1 << 20);
  if (bytes < (std::uint64_t{16} << 20)) usage_error("--file-size must be at least 16M");
  return bytes;
}

}  // namespace

options parse_options(int argc, char** argv) {
  options result;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--quick")
      result.quick = true;
    else if (arg == "--json")
      result.json_path = value();
    else if (arg == "--plot")
      result.plot_path = value();
    else if (arg == "--workloads")
      result.workloads = split(value());
    else if (arg == "--impls")
      result.impls = split(value());
    else if (arg == "--clients")
      result.clients = parse_counts(value());
    else if (arg == "--reps")
      result.reps = std::atoi(value().c_str());
    else if (arg == "--seconds") {
      const double seconds = std::atof(value().c_str());
      if (!(seconds > 0.0)) usage_error("--seconds must be positive");
      result.duration = std::chrono::milliseconds(static_cast<long>(seconds * 1000.0 + 0.5));
    } else if (arg == "--file-size")
      result.file_size = parse_size(value());
    else if (arg == "--data-dir")
      result.data_dir = value();
    else if (arg == "--only")
      result.only = value();
    else if (arg == "--list")
      result.list = true;
    else if (arg == "-h" || arg == "--help") {
      print_usage();
      std::exit(0);
    } else {
      usage_error("unknown option " + arg);
    }
  }
  if (result.reps && *result.reps < 1) usage_error("--reps must be at least 1");
  for (const auto& workload : result.workloads) {
    bool known = false;
    for (const auto& name : workload_names())
      known = known || name == workload;
    if (!known) usage_error("--workloads: unknown workload '" + workload + "'");
  }
  return result;
}

}  // namespace bench
