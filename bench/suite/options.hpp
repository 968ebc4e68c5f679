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

/// Parses argv; prints usage and exits on --help or a bad argument.
options parse_options(int argc, char** argv);

}  // namespace bench
