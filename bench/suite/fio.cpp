// Baseline fio (randread only): fio's own io_uring engine on the same file,
// `clients` jobs of `qd` each, for the same time; read.iops and the total
// latency percentiles (lat_ns, not clat_ns) come from its JSON output.

#include "cases.hpp"
#include "data_files.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <string>

namespace bench {

namespace {

constexpr const char* impl = "fio";

/// What a command printed on stdout, and how it ended.
struct command_output {
  std::string out;
  bool ok = false;  // exited with status 0
  std::string how;  // "exit status N", "signal N", ...
};

/// Runs `command` through the shell; its stdout, and whether it exited 0.
command_output capture(const std::string& command) {
  command_output result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    result.how = std::string("popen: ") + std::strerror(errno);
    return result;
  }
  char chunk[4096];
  while (const std::size_t got = std::fread(chunk, 1, sizeof(chunk), pipe))
    result.out.append(chunk, got);
  const int status = ::pclose(pipe);
  if (status == -1)
    result.how = std::string("pclose: ") + std::strerror(errno);
  else if (WIFEXITED(status))
    result.how = "exit status " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    result.how = "killed by signal " + std::to_string(WTERMSIG(status));
  else
    result.how = "wait status " + std::to_string(status);
  result.ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return result;
}

/// A temporary file for fio's stderr, removed with the object.
class stderr_file {
public:
  stderr_file() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/i2o2-bench-fio.XXXXXX";
    const int fd = ::mkstemp(pattern.data());
    if (fd >= 0) {
      ::close(fd);
      path_ = pattern;
      remove_at_exit(path_);  // also if the run is interrupted while fio runs
    }
  }
  stderr_file(const stderr_file&) = delete;
  stderr_file& operator=(const stderr_file&) = delete;
  ~stderr_file() {
    if (!path_.empty()) remove_data_file(path_);
  }

  /// The shell redirection of stderr into the file (or away, without one).
  std::string redirection(const std::string& quoted_path) const {
    return path_.empty() ? " 2>/dev/null" : " 2>" + quoted_path;
  }
  const std::string& path() const noexcept { return path_; }

  /// Its last `lines` lines, each indented, or a note that it is empty.
  std::string tail(std::size_t lines) const {
    if (path_.empty()) return "    (not kept: no temporary file)";
    std::ifstream in(path_);
    std::deque<std::string> last;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      last.push_back(line);
      if (last.size() > lines) last.pop_front();
    }
    if (last.empty()) return "    (fio wrote nothing on stderr)";
    std::string text;
    for (const auto& line : last)
      text += (text.empty() ? "    " : "\n    ") + line;
    return text;
  }

private:
  std::string path_;
};

bool fio_available() {
  static const bool available = capture("fio --version 2>/dev/null").ok;
  return available;
}

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// The number after `"key" :` at or after `from` in fio's JSON, or none.
std::optional<double> number_after(const std::string& json, const std::string& key, std::size_t from,
                                   std::size_t* at = nullptr) {
  const std::size_t found = json.find("\"" + key + "\"", from);
  if (found == std::string::npos) return std::nullopt;
  const std::size_t colon = json.find(':', found);
  if (colon == std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(json.c_str() + colon + 1, &end);
  if (end == json.c_str() + colon + 1) return std::nullopt;
  if (at != nullptr) *at = found;
  return value;
}

/// fio's figures from its JSON; what is missing from it, if anything.
std::optional<rep_result> parse(const std::string& json, std::string& missing) {
  // jobs[0] (group_reporting: one job for all) -> "read" -> iops, and
  // "lat_ns" -> "percentile" -> "50.000000" / "99.000000".
  const std::size_t read = json.find("\"read\"");
  if (read == std::string::npos) {
    missing = "no \"read\" section in its JSON output";
    return std::nullopt;
  }
  const auto iops = number_after(json, "iops", read);
  const std::size_t lat = json.find("\"lat_ns\"", read);
  const std::size_t percentiles = lat == std::string::npos ? lat : json.find("\"percentile\"", lat);
  if (!iops || percentiles == std::string::npos) {
    missing = "no read iops or latency percentiles in its JSON";
    return std::nullopt;
  }
  const auto p50 = number_after(json, "50.000000", percentiles);
  const auto p99 = number_after(json, "99.000000", percentiles);
  if (!p50 || !p99) {
    missing = "no 50th/99th latency percentile in its JSON";
    return std::nullopt;
  }
  if (!(*iops > 0)) {
    missing = "no read completed (its read iops is 0)";
    return std::nullopt;
  }
  rep_result result;
  result.ops_per_sec = *iops;
  result.p50_us = *p50 / 1000.0;
  result.p99_us = *p99 / 1000.0;
  return result;
}

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  if (!fio_available()) throw skip_case{"fio not found (Debian package fio)"};
  const stderr_file errors;
  const std::string command = "fio --name=i2o2-randread --ioengine=io_uring --direct=1 --rw=randread --bs=" +
                              std::to_string(read_block) + " --iodepth=" + std::to_string(config.qd) +
                              " --numjobs=" + std::to_string(config.clients) +
                              " --group_reporting --runtime=" + std::to_string(duration.count()) +
                              "ms --time_based --norandommap --randrepeat=0" +
                              " --lat_percentiles=1 --filename=" + shell_quoted(p.read_file) +
                              " --size=" + std::to_string(p.read_file_size) +
                              // If the suite is killed while fio runs, fio
                              // outlives it briefly: never recreate the data
                              // file the suite removes on its way out.
                              " --allow_file_create=0 --output-format=json";
  const command_output output = capture(command + errors.redirection(shell_quoted(errors.path())));
  // A failing fio skips its case (the run and the other cases go on),
  // saying why: what it printed on stderr.
  if (!output.ok)
    throw skip_case{"fio failed (" + output.how + "): " + command + "\n  fio's stderr ends:\n" +
                    errors.tail(10)};
  std::string missing;
  const auto figures = parse(output.out, missing);
  if (!figures)
    throw skip_case{"fio: " + missing + ": " + command + "\n  fio's stderr ends:\n" + errors.tail(10)};
  return with_bytes(*figures, read_block);
}

}  // namespace

void add_fio_cases(std::vector<bench_case>& cases, const plan& p) {
  for (const read_config config : read_configs)
    cases.push_back({"randread", impl, config.clients, config.qd, read_block,
                     [&p, config](auto duration) { return randread(p, config, duration); }, p.io_duration,
                     false});
}

}  // namespace bench
