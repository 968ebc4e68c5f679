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

/// Thrown by a case that cannot run here, or whose repetition measured
/// nothing; the case is reported as skipped, with `why`.
struct skip_case {
  std::string why;
};

/// Runs `clients` threads and measures them. Each thread calls
/// `make_client(index)`: the set-up, untimed, where everything a client
/// allocates belongs (buffers, rings, slot vectors, its random offsets).
/// Once every client is set up, the clock is read and only then are the
/// clients released (an atomic flag), so no client starts its timed work
/// before the start time; each then runs `body(stop, meter)`. ops/s = all
/// ops / the time from the start until the last client stopped counting.
/// A repetition that measured no time or completed no op throws skip_case
/// rather than reporting 0 ops/s.
template <class MakeClient>
rep_result run_clients(unsigned clients, const run_length& length, MakeClient&& make_client) {
  std::atomic<bool> stop{false};
  std::atomic<bool> go{false};
  std::latch ready(static_cast<std::ptrdiff_t>(clients));
  std::vector<client_meter> meters;  // constructed one by one: a copy drops the capacity
  meters.reserve(clients);
  for (unsigned i = 0; i < clients; ++i)
    meters.emplace_back(length.samples_per_client, length.sample_every);
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (unsigned i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      auto body = make_client(i);
      ready.count_down();
      go.wait(false, std::memory_order_acquire);
      body(stop, meters[i]);
      if (!meters[i].ended()) meters[i].stop_counting();
    });
  }
  ready.wait();
  const auto started = bench_clock::now();
  go.store(true, std::memory_order_release);
  go.notify_all();
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
  if (!(elapsed > 0)) throw skip_case{"a repetition measured no time (the clients ended as they started)"};
  if (total_ops == 0) throw skip_case{"no op completed within a repetition (a longer --seconds may help)"};
  rep_result result;
  result.ops_per_sec = static_cast<double>(total_ops) / elapsed;
  result.p50_us = quantile(all_nanos, 0.50) / 1000.0;
  result.p99_us = quantile(all_nanos, 0.99) / 1000.0;
  return result;
}

/// splitmix64's output function: a bijection of 64-bit words that spreads
/// neighbouring inputs (seeds 2 and 3) over unrelated outputs.
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// The seed of client `client`'s offsets in repetition `repetition`:
/// distinct for every (repetition, client) pair, the same for every
/// implementation within one repetition.
constexpr std::uint64_t client_seed(std::uint64_t repetition, unsigned client) noexcept {
  return (repetition << 32) | client;
}

/// A small fast generator for random offsets (xorshift64*), its state the
/// seed mixed by splitmix64: distinct seeds give distinct sequences.
class random_blocks {
public:
  random_blocks(std::uint64_t seed, std::uint64_t blocks) : state_(splitmix64(seed)), blocks_(blocks) {
    if (state_ == 0) state_ = 0x9e3779b97f4a7c15ULL;  // xorshift's one fixed point
  }
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
