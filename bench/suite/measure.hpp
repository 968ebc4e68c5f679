#pragma once
/// Measuring one repetition: client threads started together, a meter per
/// client that counts ops and samples latencies, and the figures of a run.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bench {

using bench_clock = std::chrono::steady_clock;

/// Prints `what` and exits (atexit handlers remove the data files).
[[noreturn]] inline void fail(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "i2o2_bench: %s\n", what.c_str());
  std::exit(1);
}

/// Every op of the suite knows the result it must resolve with.
inline void expect_result(int result, int expected, const char* impl) {
  if (result != expected)
    fail(std::string(impl) + ": an op resolved with " + std::to_string(result) + ", expected " +
         std::to_string(expected));
}

/// One repetition's figures.
struct rep_result {
  double ops_per_sec = 0;
  std::optional<double> mb_per_sec{};  // IO workloads only
  double p50_us = 0;
  double p99_us = 0;
};

/// The value at quantile `q` (0..1) of `values`, which it reorders.
inline double quantile(std::vector<std::uint32_t>& values, double q) {
  if (values.empty()) return 0;
  const auto index = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

/// One client's counter: ops completed, every `every`-th op's latency (into
/// a preallocated vector, so measuring allocates nothing; once full it stops
/// recording), and when the client stopped counting.
class client_meter {
public:
  client_meter(std::size_t capacity, unsigned every) : every_(every) { nanos_.reserve(capacity); }

  /// When the op about to start is sampled, its start time; otherwise none.
  std::optional<bench_clock::time_point> start() noexcept {
    if (counter_++ % every_ != 0 || nanos_.size() == nanos_.capacity()) return std::nullopt;
    return bench_clock::now();
  }

  /// `ops` ops have completed; the first was started at `started` (if sampled).
  void finish(std::optional<bench_clock::time_point> started, std::uint64_t ops = 1) noexcept {
    ops_ += ops;
    if (!started) return;
    const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(bench_clock::now() - *started);
    nanos_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(took.count(), UINT32_MAX)));
  }

  /// Call after the last counted op, before draining what is still in flight.
  void stop_counting() noexcept { ended_ = bench_clock::now(); }

  std::uint64_t ops() const noexcept { return ops_; }
  const std::vector<std::uint32_t>& nanos() const noexcept { return nanos_; }
  std::optional<bench_clock::time_point> ended() const noexcept { return ended_; }

private:
  unsigned every_;
  std::vector<std::uint32_t> nanos_;
  std::uint64_t counter_ = 0;
  std::uint64_t ops_ = 0;
  std::optional<bench_clock::time_point> ended_{};
};

/// How long a repetition runs: for a time, or until every client is done
/// with a fixed amount of work (then `stop` is never set).
struct run_length {
  std::optional<std::chrono::milliseconds> duration{};
  /// Room for latency samples per client (allocated before timing).
  std::size_t samples_per_client = 1 << 16;
  /// Time one op in this many.
  unsigned sample_every = 1;
};

/// Sample room for `rate` ops/s shared by `clients` for `duration`, with
/// every `every`-th op timed (twice the expected need).
inline std::size_t samples_for(double rate, std::chrono::milliseconds duration, unsigned clients,
                               unsigned every) {
  const double seconds = std::chrono::duration<double>(duration).count();
  return static_cast<std::size_t>(rate * seconds / every * 2 / clients) + 4096;
}

/// Runs `clients` threads and measures them. Each thread calls
/// `make_client(index)` (set-up, untimed), then all start together and run
/// `body(stop, meter)`. ops/s = all ops / the time until the last client
/// stopped counting.
template <class MakeClient>
rep_result run_clients(unsigned clients, const run_length& length, MakeClient&& make_client) {
  std::atomic<bool> stop{false};
  std::latch ready(static_cast<std::ptrdiff_t>(clients) + 1);
  std::vector<client_meter> meters;  // constructed one by one: a copy drops the capacity
  meters.reserve(clients);
  for (unsigned i = 0; i < clients; ++i)
    meters.emplace_back(length.samples_per_client, length.sample_every);
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (unsigned i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      auto body = make_client(i);
      ready.arrive_and_wait();
      body(stop, meters[i]);
      if (!meters[i].ended()) meters[i].stop_counting();
    });
  }
  ready.arrive_and_wait();
  const auto started = bench_clock::now();
  if (length.duration) {
    std::this_thread::sleep_for(*length.duration);
    stop.store(true, std::memory_order_relaxed);
  }
  for (auto& thread : threads)
    thread.join();

  bench_clock::time_point ended = started;
  std::uint64_t total_ops = 0;
  std::vector<std::uint32_t> all_nanos;
  for (const auto& meter : meters) {
    total_ops += meter.ops();
    ended = std::max(ended, *meter.ended());
    all_nanos.insert(all_nanos.end(), meter.nanos().begin(), meter.nanos().end());
  }
  const double elapsed = std::chrono::duration<double>(ended - started).count();
  rep_result result;
  result.ops_per_sec = elapsed > 0 ? static_cast<double>(total_ops) / elapsed : 0;
  result.p50_us = quantile(all_nanos, 0.50) / 1000.0;
  result.p99_us = quantile(all_nanos, 0.99) / 1000.0;
  return result;
}

/// A small fast generator for random offsets (xorshift64*).
class random_blocks {
public:
  random_blocks(std::uint64_t seed, std::uint64_t blocks) : state_(seed | 1), blocks_(blocks) {}
  /// A block index in [0, blocks).
  std::uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return (state_ * 0x2545F4914F6CDD1DULL) % blocks_;
  }

private:
  std::uint64_t state_;
  std::uint64_t blocks_;
};

/// A page-aligned buffer (O_DIRECT needs aligned memory).
class aligned_buffer {
public:
  explicit aligned_buffer(std::size_t bytes)
      : bytes_((bytes + 4095) / 4096 * 4096),
        data_(static_cast<std::byte*>(std::aligned_alloc(4096, bytes_ == 0 ? 4096 : bytes_))) {
    if (data_ == nullptr) fail("out of memory for IO buffers");
    std::fill(data_, data_ + bytes_, std::byte{0x5a});
  }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  ~aligned_buffer() { std::free(data_); }

  std::byte* data() const noexcept { return data_; }
  std::byte* at(std::size_t offset) const noexcept { return data_ + offset; }

private:
  std::size_t bytes_;
  std::byte* data_;
};

}  // namespace bench
