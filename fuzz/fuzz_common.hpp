#pragma once
// Shared by the fuzz targets: FuzzedDataProvider and how an oracle fails.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>

/// An oracle violation: say what broke, then abort so libFuzzer (or the
/// replay driver's caller) records the input as a finding.
#define fuzz_fail(...)                                                  \
  do {                                                                  \
    std::fprintf(stderr, "i2o2 fuzz oracle violated (%s:%d): ", __FILE__, __LINE__); \
    std::fprintf(stderr, __VA_ARGS__);                                  \
    std::fprintf(stderr, "\n");                                         \
    std::fflush(stderr);                                                \
    std::abort();                                                       \
  } while (0)
