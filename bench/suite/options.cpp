#include "options.hpp"

#include "cases.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

namespace bench {

namespace {

void print_usage() {
  std::puts("usage: i2o2_bench [options]\n"
            "  --quick            3 short repetitions, a 256 MiB randread file and 256 MiB of seqwrite:\n"
            "                     the whole run in about a minute (default: 5 repetitions of 0.5 s (nops)\n"
            "                     / 2 s (IO), a 1 GiB randread file and 1 GiB of seqwrite)\n"
            "  --json FILE        also write the results as JSON (schema 1)\n"
            "  --plot FILE.png    plot nop_sync ops/s against clients with gnuplot\n"
            "  --workloads LIST   comma-separated: nop_sync,nop_wake,nop_pipelined,randread,seqwrite,append\n"
            "  --impls LIST       comma-separated: default (i2o2::default_scheduler, the row i2o2/default,\n"
            "                     policies mpsc_ring+eventfd+future), i2o2 (every i2o2 row), a policy row\n"
            "                     such as mpsc_ring+futex+future, raw_liburing, thread_pool, blocking, fio\n"
            "  --clients LIST     nop_sync client counts (default 1,2,4,8,16; policy rows use 1 and 16)\n"
            "  --reps N           repetitions per figure, 1 to 1000 (the median is reported)\n"
            "  --seconds S        length of one repetition of a timed case (at least 0.001)\n"
            "  --file-size SIZE   randread file and seqwrite amount (both, --quick or not), e.g. 512M, 1G;\n"
            "                     at least 16M, and it must fit in --data-dir's free space\n"
            "  --data-dir DIR     where the data files go (a disk, not tmpfs; default: .);\n"
            "                     they are removed when the run ends\n"
            "  --only TEXT        only the cases whose label \"workload impl c<clients> q<qd>[ b<block>]\"\n"
            "                     contains TEXT, e.g. --only 'randread i2o2/default c1 q32'\n"
            "                     or --only 'seqwrite raw_liburing c1 q16 b4096' (for profiling)\n"
            "  --list             print the cases that would run, and exit\n"
            "exit status: 0, or 1 when a case failed or the run could not go on, 2 for a bad command line");
}

/// A bad command line: exit status 2.
constexpr int usage_status = 2;

[[noreturn]] void usage_error(const std::string& what) {
  print_usage();
  fail(what, usage_status);
}

/// `text`, all of it, as a whole number in [low, high]; none otherwise
/// ("3x", "4abc", " 4", "-1", "").
std::optional<int> whole_number(const std::string& text, int low, int high) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [stopped, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || stopped != end || value < low || value > high) return std::nullopt;
  return value;
}

/// --reps: a whole number from 1 to 1000.
int parse_reps(const std::string& text) {
  const auto reps = whole_number(text, 1, 1000);
  if (!reps) usage_error("--reps: '" + text + "' is not a whole number from 1 to 1000");
  return *reps;
}

/// Fails (exit status 2) unless `path` can be written, so that a bad --json
/// or --plot path shows now rather than after the whole run. A file that
/// was not there is removed again: the run writes it at the end.
void check_writable(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return;
  }
  if (errno == EEXIST) fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  fail(option + " " + path + ": cannot write it: " + std::strerror(errno), usage_status);
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
    const auto count = whole_number(item, 1, 1024);
    if (!count) usage_error("--clients: '" + item + "' is not a whole number from 1 to 1024");
    counts.push_back(static_cast<unsigned>(*count));
  }
  if (counts.empty()) usage_error("--clients needs a list such as 1,16");
  return counts;
}

std::uint64_t parse_size(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str())
    usage_error("--file-size: bad size '" + text + "' (a number with K, M or G, e.g. 512M)");
  if (!(value > 0)) usage_error("--file-size must be positive, not '" + text + "'");
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
  if (!(value * scale <= 0x1p50)) usage_error("--file-size '" + text + "' is too large");
  const auto bytes = static_cast<std::uint64_t>(value * scale) / (1 << 20) * (1 << 20);
  if (bytes < (std::uint64_t{16} << 20)) usage_error("--file-size must be at least 16M");
  return bytes;
}

/// "a, b, c".
std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names)
    text += (text.empty() ? "" : ", ") + name;
  return text;
}

/// --seconds: a positive number of seconds, at least 1 ms once rounded.
std::chrono::milliseconds parse_seconds(const std::string& text) {
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') usage_error("--seconds: bad number '" + text + "'");
  if (!(seconds > 0.0)) usage_error("--seconds must be positive, not '" + text + "'");
  if (!(seconds <= 3600.0)) usage_error("--seconds '" + text + "' is too long (at most 3600)");
  const auto duration = std::chrono::milliseconds(static_cast<long>(seconds * 1000.0 + 0.5));
  if (duration.count() < 1) usage_error("--seconds " + text + " rounds to 0 ms: give at least 0.001");
  return duration;
}

/// A non-empty comma-separated list for `option`.
std::vector<std::string> parse_list(const std::string& option, const std::string& text) {
  auto items = split(text);
  if (items.empty()) usage_error(option + " needs a comma-separated list");
  return items;
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
      result.workloads = parse_list(arg, value());
    else if (arg == "--impls")
      result.impls = parse_list(arg, value());
    else if (arg == "--clients")
      result.clients = parse_counts(value());
    else if (arg == "--reps")
      result.reps = parse_reps(value());
    else if (arg == "--seconds")
      result.duration = parse_seconds(value());
    else if (arg == "--file-size")
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
  for (const auto& workload : result.workloads) {
    bool known = false;
    for (const auto& name : workload_names())
      known = known || name == workload;
    if (!known)
      usage_error("--workloads: unknown workload '" + workload + "' (valid: " + joined(workload_names()) +
                  ")");
  }
  check_writable("--json", result.json_path);
  check_writable("--plot", result.plot_path);
  return result;
}

void check_impls(const options& opts, const std::vector<std::string>& impls) {
  for (const auto& wanted : opts.impls) {
    const bool known = std::any_of(impls.begin(), impls.end(),
                                   [&](const std::string& impl) { return impl_matches(impl, wanted); });
    if (known) continue;
    std::vector<std::string> valid{"i2o2 (every i2o2 row)"};
    for (const auto& impl : impls)
      valid.push_back(impl.starts_with("i2o2/") ? impl.substr(5) : impl);
    std::replace(valid.begin(), valid.end(), std::string("default"),
                 "default (or " + std::string(default_policies) + ")");
    usage_error("--impls: unknown implementation '" + wanted + "' (valid: " + joined(valid) +
                "; an i2o2 row also with its i2o2/ prefix)");
  }
}

bool impl_matches(const std::string& impl, const std::string& wanted) {
  if (impl == wanted || impl == "i2o2/" + wanted) return true;
  if (wanted == "i2o2") return impl.starts_with("i2o2/");
  return impl == default_impl &&
         (wanted == default_policies || wanted == "i2o2/" + std::string(default_policies));
}

}  // namespace bench
