#pragma once
/// What a run prints and writes: one table per workload with ratios to the
/// baselines, the JSON file (schema 1), the gnuplot PNG.

#include "cases.hpp"

#include <string>
#include <vector>

namespace bench {

/// A case's figures: the median over its repetitions (p50 and p99 too: the
/// median of each repetition's percentile), and the spread of ops/s.
struct figure {
  double ops_per_sec = 0;
  std::optional<double> mb_per_sec{};
  double p50_us = 0;
  double p99_us = 0;
  double spread = 0;  // (max - min) / median of ops/s over the repetitions
};
figure summarise(const bench_case& c);

std::string kernel_release();
std::string liburing_version();

/// Prints the table of `workload` (nothing when it has no cases), then a
/// line per skipped case.
void print_table(const std::vector<bench_case>& cases, const std::string& workload);

void write_json(const std::vector<bench_case>& cases, const std::string& path);

/// nop_sync ops/s against clients, one line per implementation. Prints a
/// skip line instead when gnuplot is missing or there is nothing to plot.
void write_plot(const std::vector<bench_case>& cases, const std::string& path);

}  // namespace bench
