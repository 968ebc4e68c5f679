#pragma once
/// The command line of i2o2_bench.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bench {

struct options {
  bool quick = false;
  std::string json_path;
  std::string plot_path;
  std::vector<std::string> workloads;  // empty: all
  std::vector<std::string> impls;      // empty: all
  std::vector<unsigned> clients;       // nop_sync client counts; empty: 1,2,4,8,16
  std::optional<int> reps;
  std::optional<std::chrono::milliseconds> duration;  // one repetition of a timed case
  std::optional<std::uint64_t> file_size;             // randread file, seqwrite amount
  std::string data_dir = ".";
  std::string only;  // substring of case_label()
  bool list = false;
};

/// Parses argv; prints usage and exits on --help or a bad argument (exit
/// status 2), also when --json or --plot names a file it cannot write.
options parse_options(int argc, char** argv);

/// Whether the row `impl` is one --impls `wanted` picks: its name, the name
/// without "i2o2/", "i2o2" for every i2o2 row; the default scheduler's row
/// (i2o2/default) also by its policies.
bool impl_matches(const std::string& impl, const std::string& wanted);

/// Prints usage and exits unless every --impls name picks one of `impls`
/// (every row name there is), listing the valid names.
void check_impls(const options& opts, const std::vector<std::string>& impls);

}  // namespace bench
