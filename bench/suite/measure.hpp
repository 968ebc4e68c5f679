#pragma once
/// Measuring one repetition: client threads started together, a meter per
/// client that counts ops and samples latencies, and the figures of a run.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <latch>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace bench {

using bench_clock = std::chrono::steady_clock;

/// Prints `what` and exits with `status` (atexit handlers remove the data
/// files): 1 for a failed run, 2 for a bad command line.
[[noreturn]] inline void fail(const std::string& what, int status = 1) {
  std::fflush(stdout);
  std::fprintf(stderr, "i2o2_bench: %s\n", what.c_str());
  std::exit(status);
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
  std::uint64_t ops = 0;  // ops counted (0 where unknown: fio)
  /// The repetition ran out of work before its time was up (append filled
  /// its preallocated room): ops/s counts what it did in the time it took.
  bool cut_short = false;
};

/// splitmix64's output function: a bijection of 64-bit words that spreads
/// neighbouring inputs (seeds 2 and 3) over unrelated outputs.
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A small fast generator (xorshift64*), its state the seed mixed by
/// splitmix64: distinct seeds give distinct sequences.
class xorshift64star {
public:
  explicit xorshift64star(std::uint64_t seed) noexcept : state_(splitmix64(seed)) {
    if (state_ == 0) state_ = 0x9e3779b97f4a7c15ULL;  // xorshift's one fixed point
  }
  std::uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }

private:
  std::uint64_t state_;
};

/// The most latency samples one client keeps, and all the clients of a
/// repetition together (8 MiB and 32 MiB): a long --seconds fills them, and
/// reservoir sampling then keeps a uniform sample of the whole repetition.
inline constexpr std::size_t max_samples_per_client = std::size_t{1} << 21;
inline constexpr std::size_t max_samples_per_run = std::size_t{1} << 23;

/// The sample room each of `clients` clients gets for `wanted`.
inline std::size_t sample_room(std::size_t wanted, unsigned clients) {
  const std::size_t share = std::max<std::size_t>(max_samples_per_run / std::max(clients, 1U), 4096);
  return std::min({wanted, max_samples_per_client, share});
}

/// One client's counter: ops completed, the latency of every `every`-th op,
/// and when the client stopped counting. The latencies go into a buffer
/// reserved before timing (measuring allocates nothing); once it is full,
/// reservoir sampling (Algorithm R) keeps it a uniform sample of every
/// timed op, early and late alike.
class client_meter {
public:
  client_meter(std::size_t capacity, unsigned every, std::uint64_t seed)
      : every_(every), capacity_(std::max<std::size_t>(capacity, 1)), random_(seed) {
    nanos_.reserve(capacity_);
  }

  /// When the op about to start is sampled, its start time; otherwise none.
  std::optional<bench_clock::time_point> start() noexcept {
    if (counter_++ % every_ != 0) return std::nullopt;
    return bench_clock::now();
  }

  /// `ops` ops have completed; the first was started at `started` (if sampled).
  void finish(std::optional<bench_clock::time_point> started, std::uint64_t ops = 1) noexcept {
    ops_ += ops;
    if (!started) return;
    const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(bench_clock::now() - *started);
    keep(static_cast<std::uint32_t>(std::min<std::int64_t>(took.count(), UINT32_MAX)));
  }

  /// Call after the last counted op, before draining what is still in flight.
  void stop_counting() noexcept { ended_ = bench_clock::now(); }

  std::uint64_t ops() const noexcept { return ops_; }
  std::optional<bench_clock::time_point> ended() const noexcept { return ended_; }

  /// Sorts the kept latencies, once the client is done (weighted_quantile
  /// reads them sorted).
  void sort_samples() { std::sort(nanos_.begin(), nanos_.end()); }
  const std::vector<std::uint32_t>& nanos() const noexcept { return nanos_; }
  /// How many timed ops each kept latency stands for (1 until the buffer
  /// filled).
  double weight() const noexcept {
    return nanos_.empty() ? 0.0 : static_cast<double>(timed_) / static_cast<double>(nanos_.size());
  }

private:
  void keep(std::uint32_t nanos) noexcept {
    ++timed_;
    if (nanos_.size() < capacity_) {
      nanos_.push_back(nanos);
      return;
    }
    // The timed_-th sample replaces a kept one with probability capacity / timed_.
    const std::uint64_t slot = random_.next() % timed_;
    if (slot < capacity_) nanos_[slot] = nanos;
  }

  unsigned every_;
  std::size_t capacity_;
  xorshift64star random_;
  std::vector<std::uint32_t> nanos_;
  std::uint64_t counter_ = 0;
  std::uint64_t timed_ = 0;
  std::uint64_t ops_ = 0;
  std::optional<bench_clock::time_point> ended_{};
};

/// The latency at quantile `q` (0..1) over the clients' kept samples, each
/// counted for the timed ops it stands for (client_meter::weight), so that a
/// client whose reservoir thinned its samples more is not under-counted.
/// Unthinned, it is the value at sorted index floor(q * (n - 1)). Each
/// meter's samples must be sorted (sort_samples).
inline double weighted_quantile(const std::vector<client_meter>& meters, double q) {
  double total = 0;
  for (const auto& meter : meters)
    total += meter.weight() * static_cast<double>(meter.nanos().size());
  if (!(total > 0)) return 0;
  const double rank = std::floor(q * (total - 1));  // weight that must lie at or below the answer
  // The weight of the samples at or below `value`.
  const auto weight_up_to = [&](std::uint32_t value) {
    double sum = 0;
    for (const auto& meter : meters) {
      const auto& nanos = meter.nanos();
      const auto count = std::upper_bound(nanos.begin(), nanos.end(), value) - nanos.begin();
      sum += meter.weight() * static_cast<double>(count);
    }
    return sum;
  };
  // The least value whose weight at or below it exceeds `rank` (rounding
  // slack: half a sample's weight).
  std::uint64_t low = 0;
  std::uint64_t high = UINT32_MAX;
  while (low < high) {
    const std::uint64_t middle = (low + high) / 2;
    if (weight_up_to(static_cast<std::uint32_t>(middle)) > rank + 0.5)
      high = middle;
    else
      low = middle + 1;
  }
  return static_cast<double>(low);
}

/// How long a repetition runs: for a time, or until every client is done
/// with a fixed amount of work (then `stop` is never set).
struct run_length {
  std::optional<std::chrono::milliseconds> duration{};
  /// Room for latency samples per client (allocated before timing; capped
  /// by sample_room).
  std::size_t samples_per_client = 1 << 16;
  /// Time one op in this many.
  unsigned sample_every = 1;
};

/// Sample room for `rate` ops/s shared by `clients` for `duration`, with
/// every `every`-th op timed (twice the expected need).
inline std::size_t samples_for(double rate, std::chrono::milliseconds duration, unsigned clients,
                               unsigned every) {
  const double seconds = std::chrono::duration<double>(duration).count();
  const double wanted = rate * seconds / every * 2 / clients + 4096;
  return wanted >= static_cast<double>(max_samples_per_client) ? max_samples_per_client
                                                               : static_cast<std::size_t>(wanted);
}

/// Thrown by a case that cannot run here, or whose repetition measured
/// nothing; the case is reported as skipped, with `why`.
struct skip_case {
  std::string why;
};

/// Counts the clients that are done, so that a timed repetition whose
/// clients all ran out of work ends then rather than at its time.
class finish_line {
public:
  explicit finish_line(unsigned clients) : running_(clients) {}
  void arrive() {
    {
      const std::lock_guard lock(mutex_);
      --running_;
    }
    all_done_.notify_all();
  }
  /// Waits until every client arrived or `duration` passed.
  void wait_for(std::chrono::milliseconds duration) {
    std::unique_lock lock(mutex_);
    all_done_.wait_for(lock, duration, [this] { return running_ == 0; });
  }

private:
  std::mutex mutex_;
  std::condition_variable all_done_;
  unsigned running_;
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
///
/// What a set-up throws (no IO in flight yet) is thrown here, on the
/// caller's thread, once every client is gone: the case fails, the run
/// goes on. A body that throws may leave IO in flight into its buffers, so
/// that ends the run (fail).
template <class MakeClient>
rep_result run_clients(unsigned clients, const run_length& length, MakeClient&& make_client) {
  using body_type = std::invoke_result_t<MakeClient&, unsigned>;
  std::atomic<bool> stop{false};
  std::atomic<bool> go{false};
  bool abandon = false;  // written before `go` is released: no body runs
  std::latch ready(static_cast<std::ptrdiff_t>(clients));
  finish_line done(clients);
  std::vector<std::exception_ptr> set_up_errors(clients);
  std::vector<client_meter> meters;  // constructed one by one: a copy drops the capacity
  meters.reserve(clients);
  for (unsigned i = 0; i < clients; ++i)
    meters.emplace_back(sample_room(length.samples_per_client, clients), length.sample_every, i);
  const auto release = [&](bool abandoning) {
    abandon = abandoning;
    go.store(true, std::memory_order_release);
    go.notify_all();
  };
  std::vector<std::thread> threads;
  threads.reserve(clients);
  const auto join_all = [&] {
    for (auto& thread : threads)
      thread.join();
  };
  for (unsigned i = 0; i < clients; ++i) {
    try {
      threads.emplace_back([&, i] {
        std::optional<body_type> body;
        try {
          body.emplace(make_client(i));
        } catch (...) {
          set_up_errors[i] = std::current_exception();
        }
        ready.count_down();
        go.wait(false, std::memory_order_acquire);
        if (body && !abandon) {
          try {
            (*body)(stop, meters[i]);
          } catch (const std::exception& error) {
            fail(std::string("a client failed with IO in flight, the run cannot go on: ") + error.what());
          }
          if (!meters[i].ended()) meters[i].stop_counting();
        }
        done.arrive();
      });
    } catch (...) {  // no thread for client i: release the others unused
      ready.count_down(static_cast<std::ptrdiff_t>(clients - i));
      release(true);
      join_all();
      throw;
    }
  }
  ready.wait();
  for (const auto& error : set_up_errors)
    if (error) {
      release(true);
      join_all();
      std::rethrow_exception(error);
    }
  const auto started = bench_clock::now();
  release(false);
  if (length.duration) {
    done.wait_for(*length.duration);
    stop.store(true, std::memory_order_relaxed);
  }
  join_all();

  bench_clock::time_point ended = started;
  std::uint64_t total_ops = 0;
  for (auto& meter : meters) {
    total_ops += meter.ops();
    ended = std::max(ended, *meter.ended());
    meter.sort_samples();
  }
  const double elapsed = std::chrono::duration<double>(ended - started).count();
  if (!(elapsed > 0)) throw skip_case{"a repetition measured no time (the clients ended as they started)"};
  if (total_ops == 0) throw skip_case{"no op completed within a repetition (a longer --seconds may help)"};
  rep_result result;
  result.ops_per_sec = static_cast<double>(total_ops) / elapsed;
  result.ops = total_ops;
  result.p50_us = weighted_quantile(meters, 0.50) / 1000.0;
  result.p99_us = weighted_quantile(meters, 0.99) / 1000.0;
  return result;
}

/// The seed of client `client`'s offsets in repetition `repetition`:
/// distinct for every (repetition, client) pair, the same for every
/// implementation within one repetition.
constexpr std::uint64_t client_seed(std::uint64_t repetition, unsigned client) noexcept {
  return (repetition << 32) | client;
}

/// Random block indexes for randread's offsets.
class random_blocks {
public:
  random_blocks(std::uint64_t seed, std::uint64_t blocks) : random_(seed), blocks_(blocks) {}
  /// A block index in [0, blocks).
  std::uint64_t next() noexcept { return random_.next() % blocks_; }

private:
  xorshift64star random_;
  std::uint64_t blocks_;
};

/// A page-aligned buffer (O_DIRECT needs aligned memory), filled with 0x5a.
class aligned_buffer {
public:
  explicit aligned_buffer(std::size_t bytes)
      : bytes_((bytes + 4095) / 4096 * 4096),
        data_(static_cast<std::byte*>(std::aligned_alloc(4096, bytes_ == 0 ? 4096 : bytes_))) {
    if (data_ == nullptr) throw std::bad_alloc();
    std::fill(data_, data_ + bytes_, std::byte{0x5a});
  }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  ~aligned_buffer() { std::free(data_); }

  std::byte* data() const noexcept { return data_; }
  std::byte* at(std::size_t offset) const noexcept { return data_ + offset; }

  /// Overwrites the buffer with pseudo-random bytes (data a file system or
  /// disk cannot compress or deduplicate away).
  void fill_pseudo_random(std::uint64_t seed) noexcept {
    xorshift64star random(seed);
    for (std::size_t offset = 0; offset + sizeof(std::uint64_t) <= bytes_; offset += sizeof(std::uint64_t)) {
      const std::uint64_t word = random.next();
      std::memcpy(data_ + offset, &word, sizeof(word));
    }
  }

private:
  std::size_t bytes_;
  std::byte* data_;
};

}  // namespace bench
