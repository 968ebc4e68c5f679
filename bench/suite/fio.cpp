// Baseline fio (randread only): fio's own io_uring engine on the same file,
// `clients` jobs of `qd` each, for the same time; read.iops and the total
// latency percentiles (lat_ns, not clat_ns) come from its JSON output.

#include "cases.hpp"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace bench {

namespace {

constexpr const char* impl = "fio";

/// Runs `command` through the shell; its stdout, and whether it exited 0.
std::pair<std::string, bool> capture(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {"", false};
  std::string output;
  char chunk[4096];
  while (const std::size_t got = std::fread(chunk, 1, sizeof(chunk), pipe))
    output.append(chunk, got);
  const int status = ::pclose(pipe);
  return {output, status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0};
}

bool fio_available() {
  static const bool available = capture("fio --version 2>/dev/null").second;
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

rep_result parse(const std::string& json) {
  // jobs[0] (group_reporting: one job for all) -> "read" -> iops, and
  // "lat_ns" -> "percentile" -> "50.000000" / "99.000000".
  const std::size_t read = json.find("\"read\"");
  if (read == std::string::npos) fail("fio: no \"read\" section in its JSON output");
  const auto iops = number_after(json, "iops", read);
  const std::size_t lat = json.find("\"lat_ns\"", read);
  const std::size_t percentiles = lat == std::string::npos ? lat : json.find("\"percentile\"", lat);
  if (!iops || percentiles == std::string::npos) fail("fio: no read iops or latency percentiles in its JSON");
  const auto p50 = number_after(json, "50.000000", percentiles);
  const auto p99 = number_after(json, "99.000000", percentiles);
  if (!p50 || !p99) fail("fio: no 50th/99th latency percentile in its JSON");
  rep_result result;
  result.ops_per_sec = *iops;
  result.p50_us = *p50 / 1000.0;
  result.p99_us = *p99 / 1000.0;
  return result;
}

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  if (!fio_available()) throw skip_case{"fio not found (Debian package fio)"};
  const std::string command = "fio --name=i2o2-randread --ioengine=io_uring --direct=1 --rw=randread --bs=" +
                              std::to_string(read_block) + " --iodepth=" + std::to_string(config.qd) +
                              " --numjobs=" + std::to_string(config.clients) +
                              " --group_reporting --runtime=" + std::to_string(duration.count()) +
                              "ms --time_based --norandommap --randrepeat=0" +
                              " --lat_percentiles=1 --filename=" + shell_quoted(p.read_file) +
                              " --size=" + std::to_string(p.read_file_size) +
                              " --output-format=json 2>/dev/null";
  const auto [output, ok] = capture(command);
  if (!ok) fail("fio failed: " + command);
  return with_bytes(parse(output), read_block);
}

}  // namespace

void add_fio_cases(std::vector<bench_case>& cases, const plan& p) {
  for (const read_config config : read_configs)
    cases.push_back({"randread", impl, config.clients, config.qd, read_block,
                     [&p, config](auto duration) { return randread(p, config, duration); }, p.io_duration,
                     false});
}

}  // namespace bench
