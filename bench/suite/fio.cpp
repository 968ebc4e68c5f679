// Baseline fio (randread only): fio's own io_uring engine on the same file,
// `clients` jobs (threads) of `qd` each, for the same time; read.iops and
// the total latency percentiles (lat_ns, not clat_ns) come from its JSON
// output. fio runs without a shell, and never outlives the bench.

#include "cases.hpp"
#include "data_files.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
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
#include <vector>

namespace bench {

namespace {

constexpr const char* impl = "fio";

/// What a command printed on stdout, and how it ended.
struct command_output {
  std::string out;
  bool ok = false;  // exited with status 0
  std::string how;  // "exit status N", "killed by signal N", ...
};

/// How a wait status reads.
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

/// The signals that end the bench (data_files.cpp's handler).
sigset_t termination_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal : {SIGINT, SIGTERM, SIGHUP})
    sigaddset(&signals, signal);
  return signals;
}

/// In the child, between fork and exec (async-signal-safe calls only): its
/// own process group, SIGKILL should the bench die, stdin from /dev/null,
/// stdout into `out_fd`, stderr into `err_path`, then `argv`.
[[noreturn]] void exec_child(pid_t bench, char* const* argv, int out_fd, const char* err_path,
                             const sigset_t& bench_mask) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != bench) ::_exit(127);  // the bench died before prctl
  const int in_fd = ::open("/dev/null", O_RDONLY);
  const int err_fd = ::open(err_path, O_WRONLY | O_TRUNC);
  if (in_fd < 0 || err_fd < 0 || ::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0)
    ::_exit(127);
  // The bench's handler (it removes the data files) is not the child's.
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  for (const int signal : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(signal, &defaults, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &bench_mask, nullptr);
  ::execvp(argv[0], argv);
  ::_exit(127);
}

/// Runs `args` (the program looked up in PATH; no shell) and returns what
/// it printed on stdout; its stderr goes to `err_path` (empty: nowhere).
/// The child must not outlive the bench: fio would keep reading the
/// randread file the bench removes. So it runs in a process group of its
/// own, which the bench's signal handler and atexit kill
/// (kill_group_at_exit), and it asks for SIGKILL should the bench die
/// any other way (PR_SET_PDEATHSIG). The termination signals stay blocked
/// from the fork until the group is registered.
command_output run_command(const std::vector<std::string>& args, const std::string& err_path) {
  command_output result;
  std::vector<char*> argv;
  for (const auto& arg : args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const std::string err = err_path.empty() ? "/dev/null" : err_path;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    result.how = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  const sigset_t blocked = termination_signals();
  sigset_t bench_mask;
  ::pthread_sigmask(SIG_BLOCK, &blocked, &bench_mask);
  const pid_t bench = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) exec_child(bench, argv.data(), out[1], err.c_str(), bench_mask);
  const int fork_error = errno;
  if (child > 0) {
    ::setpgid(child, child);  // as the child does: whichever runs first
    kill_group_at_exit(child);
  }
  ::pthread_sigmask(SIG_SETMASK, &bench_mask, nullptr);
  ::close(out[1]);
  if (child < 0) {
    ::close(out[0]);
    result.how = std::string("fork: ") + std::strerror(fork_error);
    return result;
  }
  char chunk[4096];
  for (;;) {
    const ssize_t got = ::read(out[0], chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.out.append(chunk, static_cast<std::size_t>(got));
  }
  ::close(out[0]);
  int status = 0;
  pid_t waited = 0;
  do
    waited = ::waitpid(child, &status, 0);
  while (waited < 0 && errno == EINTR);
  forget_child_group();
  if (waited < 0) {
    result.how = std::string("waitpid: ") + std::strerror(errno);
    return result;
  }
  result.how = describe_status(status);
  result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
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

/// Why fio cannot run here (`fio --version` failed), or none.
std::optional<std::string> fio_missing() {
  static const command_output version = run_command({"fio", "--version"}, "");
  if (version.ok) return std::nullopt;
  const bool not_found = version.how == "exit status 127";  // exec failed
  return "fio cannot run: fio --version ended with " + version.how +
         (not_found ? " (not installed? Debian package fio)" : "");
}

/// `path` for fio's --filename, where ':' separates file names.
std::string fio_escaped(const std::string& path) {
  std::string escaped;
  for (const char c : path)
    escaped += c == ':' ? std::string("\\:") : std::string(1, c);
  return escaped;
}

/// `args` as one line, for messages.
std::string command_line(const std::vector<std::string>& args) {
  std::string line;
  for (const auto& arg : args)
    line += (line.empty() ? "" : " ") + arg;
  return line;
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
  if (const auto missing = fio_missing()) throw skip_case{*missing};
  const stderr_file errors;
  // --thread: jobs as threads of one process (a forked job process moves
  // to a session of its own, out of reach of the kill of fio's group and
  // of its death signal). --allow_file_create=0: never recreate the data
  // file the suite removes on its way out.
  const std::vector<std::string> args{
      "fio",
      "--name=i2o2-randread",
      "--ioengine=io_uring",
      "--direct=1",
      "--rw=randread",
      "--bs=" + std::to_string(read_block),
      "--iodepth=" + std::to_string(config.qd),
      "--numjobs=" + std::to_string(config.clients),
      "--thread",
      "--group_reporting",
      "--runtime=" + std::to_string(duration.count()) + "ms",
      "--time_based",
      "--norandommap",
      "--randrepeat=0",
      "--lat_percentiles=1",
      "--filename=" + fio_escaped(p.read_file),
      "--size=" + std::to_string(p.read_file_size),
      "--allow_file_create=0",
      "--output-format=json",
  };
  const command_output output = run_command(args, errors.path());
  const std::string command = command_line(args);
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
