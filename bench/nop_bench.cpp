// nop_bench: what the scheduler itself costs per op.
//
// A nop does no IO, so every microsecond measured here is overhead: the
// client's submit, the trip through the queue, the scheduler's wake-up, its
// io_uring_enter, the reply. Each figure is printed beside baselines
// measured in the same run, on the same machine:
//
//   raw_liburing          the ceiling: one thread driving its own ring, one
//                         NOP per io_uring_enter (submit_and_wait(1)); no
//                         queue, no second thread, no wake-up.
//   raw_liburing/batched  the same ring with 64 NOPs per io_uring_enter: the
//                         most any scheduler can get out of the kernel.
//   thread_pool           the usual alternative to i2o2: hand the blocking
//                         call to a std::thread pool (2 workers, mutex +
//                         condition_variable queue) and wait on a
//                         std::future filled by a std::promise.
//
// Workloads:
//   nop_sync       W clients (--clients, default 1,16), each submitting one
//                  op and waiting for it, in a loop.
//   nop_pipelined  one client keeping 64 ops in flight (a sliding window:
//                  wait for the oldest, submit a new one); the pool the
//                  same way, the raw ring as batches of 64.
//
// Usage: nop_bench [--quick] [--json FILE] [--clients 1,16] [--reps N]
//                  [--seconds S] [--only TEXT]   (--help explains them)

#include <i2o2/i2o2.hpp>

#include <liburing.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using bench_clock = std::chrono::steady_clock;

/// Ops each pipelined client keeps in flight, and NOPs per batched enter.
constexpr unsigned pipeline_depth = 64;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "nop_bench: %s\n", what.c_str());
  std::exit(1);
}

/// Every op here is a nop and must resolve with 0.
void expect_zero(int result, const char* impl) {
  if (result != 0) fail(std::string(impl) + ": a nop resolved with " + std::to_string(result));
}

// ---- options ----------------------------------------------------------------

struct options {
  std::vector<unsigned> clients{1, 16};
  int reps = 5;
  std::chrono::milliseconds duration{500};
  std::string json_path;
  std::string only;  // run only cases whose "workload impl" contains this
};

void print_usage() {
  std::puts(
      "usage: nop_bench [--quick] [--json FILE] [--clients LIST] [--reps N] [--seconds S]\n"
      "  --quick         3 repetitions of 0.2 s (default: 5 of 0.5 s)\n"
      "  --json FILE     also write the results as JSON (schema 1)\n"
      "  --clients LIST  client counts for nop_sync, comma-separated (default: 1,16)\n"
      "  --reps N        repetitions per figure (the median is reported)\n"
      "  --seconds S     length of one repetition\n"
      "  --only TEXT     run only the cases whose \"workload impl\" contains TEXT\n"
      "                  (for profiling one case, e.g. --only 'nop_sync i2o2')");
}

std::vector<unsigned> parse_client_list(const std::string& text) {
  std::vector<unsigned> counts;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    const int count = std::atoi(item.c_str());
    if (count < 1 || count > 1024) fail("--clients: bad client count '" + item + "'");
    counts.push_back(static_cast<unsigned>(count));
  }
  if (counts.empty()) fail("--clients needs a list such as 1,16");
  return counts;
}

options parse_options(int argc, char** argv) {
  options result;
  bool quick = false;
  std::optional<int> reps;
  std::optional<double> seconds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--quick") quick = true;
    else if (arg == "--json") result.json_path = value();
    else if (arg == "--clients") result.clients = parse_client_list(value());
    else if (arg == "--reps") reps = std::atoi(value().c_str());
    else if (arg == "--seconds") seconds = std::atof(value().c_str());
    else if (arg == "--only") result.only = value();
    else if (arg == "-h" || arg == "--help") {
      print_usage();
      std::exit(0);
    } else {
      print_usage();
      fail("unknown option " + arg);
    }
  }
  result.reps = reps.value_or(quick ? 3 : 5);
  const double length = seconds.value_or(quick ? 0.2 : 0.5);
  if (result.reps < 1) fail("--reps must be at least 1");
  if (!(length > 0.0)) fail("--seconds must be positive");
  result.duration = std::chrono::milliseconds(static_cast<long>(length * 1000.0 + 0.5));
  return result;
}

// ---- measuring --------------------------------------------------------------

/// Times every `every`-th op of one client into a preallocated vector, so
/// that the measuring costs no allocation and few clock reads. Once full it
/// stops recording.
class latency_sampler {
public:
  static constexpr unsigned every = 8;

  explicit latency_sampler(std::size_t capacity) { nanos_.reserve(capacity); }

  /// When the op about to start is sampled, its start time; otherwise none.
  std::optional<bench_clock::time_point> start() noexcept {
    if (counter_++ % every != 0 || nanos_.size() == nanos_.capacity()) return std::nullopt;
    return bench_clock::now();
  }

  /// The op that `start` returned `started` for has completed.
  void finish(std::optional<bench_clock::time_point> started) noexcept {
    if (!started) return;
    const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(bench_clock::now() - *started);
    nanos_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(took.count(), UINT32_MAX)));
  }

  const std::vector<std::uint32_t>& nanos() const noexcept { return nanos_; }

private:
  std::vector<std::uint32_t> nanos_;
  std::uint64_t counter_ = 0;
};

/// One repetition's figures.
struct rep_result {
  double ops_per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
};

/// The value at quantile `q` (0..1) of `values`, which it reorders.
double quantile(std::vector<std::uint32_t>& values, double q) {
  if (values.empty()) return 0;
  const auto index = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

/// A client body: runs ops until `stop`, timing some with the sampler, and
/// returns how many ops it completed.
using client_body = std::function<std::uint64_t(const std::atomic<bool>& stop, latency_sampler&)>;

/// Runs `clients` threads for `duration` and measures them. Each thread
/// first calls `make_client()` (set-up, untimed), then all start together.
template <class MakeClient>
rep_result run_clients(unsigned clients, std::chrono::milliseconds duration, MakeClient make_client) {
  // Enough room for every 8th op at 4 M ops/s, shared among the clients.
  const double seconds = std::chrono::duration<double>(duration).count();
  const auto capacity = static_cast<std::size_t>(4e6 * seconds / latency_sampler::every * 2 / clients) + 4096;

  std::atomic<bool> stop{false};
  std::latch ready(static_cast<std::ptrdiff_t>(clients) + 1);
  std::vector<latency_sampler> samplers;  // constructed one by one: a copy drops the capacity
  samplers.reserve(clients);
  for (unsigned i = 0; i < clients; ++i) samplers.emplace_back(capacity);
  std::vector<std::uint64_t> ops(clients, 0);
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (unsigned i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      client_body body = make_client();
      ready.arrive_and_wait();
      ops[i] = body(stop, samplers[i]);
    });
  }
  ready.arrive_and_wait();
  const auto started = bench_clock::now();
  std::this_thread::sleep_for(duration);
  stop.store(true, std::memory_order_relaxed);
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(bench_clock::now() - started).count();

  std::uint64_t total_ops = 0;
  std::vector<std::uint32_t> all_nanos;
  for (unsigned i = 0; i < clients; ++i) {
    total_ops += ops[i];
    all_nanos.insert(all_nanos.end(), samplers[i].nanos().begin(), samplers[i].nanos().end());
  }
  return {static_cast<double>(total_ops) / elapsed, quantile(all_nanos, 0.50) / 1000.0,
          quantile(all_nanos, 0.99) / 1000.0};
}

// ---- i2o2 -------------------------------------------------------------------

/// nop_sync through i2o2's default scheduler: submit, wait, repeat.
rep_result i2o2_sync(unsigned clients, std::chrono::milliseconds duration) {
  auto spawned = i2o2::spawn();
  const i2o2::handle& shared = spawned.handle;
  return run_clients(clients, duration, [&shared]() -> client_body {
    return [handle = shared](const std::atomic<bool>& stop, latency_sampler& latencies) mutable {
      std::uint64_t ops = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto started = latencies.start();
        expect_zero(handle.submit(i2o2::op::nop{}).wait(), "i2o2");
        latencies.finish(started);
        ++ops;
      }
      return ops;
    };
  });
}

/// nop_pipelined through i2o2: a sliding window of 64 replies in flight.
rep_result i2o2_pipelined(std::chrono::milliseconds duration) {
  auto spawned = i2o2::spawn();
  const i2o2::handle& shared = spawned.handle;
  return run_clients(1, duration, [&shared]() -> client_body {
    return [handle = shared](const std::atomic<bool>& stop, latency_sampler& latencies) mutable {
      std::array<i2o2::reply_t, pipeline_depth> window;
      std::array<std::optional<bench_clock::time_point>, pipeline_depth> started;
      for (unsigned slot = 0; slot < pipeline_depth; ++slot) {
        started[slot] = latencies.start();
        window[slot] = handle.submit(i2o2::op::nop{});
      }
      std::uint64_t ops = 0;
      for (unsigned slot = 0; !stop.load(std::memory_order_relaxed); slot = (slot + 1) % pipeline_depth) {
        expect_zero(window[slot].wait(), "i2o2");
        latencies.finish(started[slot]);
        ++ops;
        started[slot] = latencies.start();
        window[slot] = handle.submit(i2o2::op::nop{});
      }
      for (auto& reply : window) expect_zero(reply.wait(), "i2o2");  // drain, uncounted
      return ops;
    };
  });
}

// ---- baseline: raw liburing -------------------------------------------------

/// The ceiling: one thread that owns a ring and drives it with NOPs itself.
/// Created with the flags i2o2 asks for where the kernel has them
/// (SINGLE_ISSUER | DEFER_TASKRUN), so both pay the same kernel path.
class raw_ring {
public:
  raw_ring() {
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (io_uring_queue_init_params(256, &ring_, &params) < 0) {
      params = io_uring_params{};
      if (const int error = io_uring_queue_init_params(256, &ring_, &params); error < 0)
        fail(std::string("io_uring_queue_init: ") + std::strerror(-error));
    }
  }
  raw_ring(const raw_ring&) = delete;
  raw_ring& operator=(const raw_ring&) = delete;
  ~raw_ring() { io_uring_queue_exit(&ring_); }

  /// Submits `count` NOPs in one io_uring_enter and reaps their CQEs.
  void nops(unsigned count) {
    for (unsigned i = 0; i < count; ++i) io_uring_prep_nop(io_uring_get_sqe(&ring_));
    if (const int result = io_uring_submit_and_wait(&ring_, count); result < 0)
      fail(std::string("io_uring_submit_and_wait: ") + std::strerror(-result));
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      expect_zero(cqe->res, "raw_liburing");
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    if (seen != count) fail("raw_liburing: fewer CQEs than NOPs");
  }

private:
  io_uring ring_{};
};

/// raw_liburing (batch 1) and raw_liburing/batched (batch 64). A sampled
/// latency is one io_uring_enter round trip: every op of a batch completes
/// when its batch returns.
rep_result raw_liburing(unsigned batch, std::chrono::milliseconds duration) {
  return run_clients(1, duration, [batch]() -> client_body {
    // Created on the client thread: SINGLE_ISSUER makes it the ring's owner.
    auto ring = std::make_shared<raw_ring>();
    return [ring, batch](const std::atomic<bool>& stop, latency_sampler& latencies) {
      std::uint64_t ops = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto started = latencies.start();
        ring->nops(batch);
        latencies.finish(started);
        ops += batch;
      }
      return ops;
    };
  });
}

// ---- baseline: a std::thread pool -------------------------------------------

/// What a program does without i2o2: a pool of worker threads taking tasks
/// from a mutex + condition_variable queue, each task answering through a
/// std::promise the client waits on with a std::future.
class thread_pool {
public:
  explicit thread_pool(unsigned workers) {
    for (unsigned i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  /// Any thread: queues `task`; the future yields what it returns.
  std::future<int> submit(int (*task)()) {
    job queued{task, std::promise<int>()};
    std::future<int> reply = queued.reply.get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(queued));
    }
    ready_.notify_one();
    return reply;
  }

private:
  struct job {
    int (*task)();
    std::promise<int> reply;
  };

  void work() {
    for (;;) {
      job next;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, and nothing left
        next = std::move(jobs_.front());
        jobs_.pop_front();
      }
      next.reply.set_value(next.task());
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

/// The nop-equivalent task: a trivial function, called through a pointer.
int trivial_task() { return 0; }

constexpr unsigned pool_workers = 2;

rep_result thread_pool_sync(unsigned clients, std::chrono::milliseconds duration) {
  thread_pool pool(pool_workers);
  return run_clients(clients, duration, [&pool]() -> client_body {
    return [&pool](const std::atomic<bool>& stop, latency_sampler& latencies) {
      std::uint64_t ops = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto started = latencies.start();
        expect_zero(pool.submit(trivial_task).get(), "thread_pool");
        latencies.finish(started);
        ++ops;
      }
      return ops;
    };
  });
}

rep_result thread_pool_pipelined(std::chrono::milliseconds duration) {
  thread_pool pool(pool_workers);
  return run_clients(1, duration, [&pool]() -> client_body {
    return [&pool](const std::atomic<bool>& stop, latency_sampler& latencies) {
      std::array<std::future<int>, pipeline_depth> window;
      std::array<std::optional<bench_clock::time_point>, pipeline_depth> started;
      for (unsigned slot = 0; slot < pipeline_depth; ++slot) {
        started[slot] = latencies.start();
        window[slot] = pool.submit(trivial_task);
      }
      std::uint64_t ops = 0;
      for (unsigned slot = 0; !stop.load(std::memory_order_relaxed); slot = (slot + 1) % pipeline_depth) {
        expect_zero(window[slot].get(), "thread_pool");
        latencies.finish(started[slot]);
        ++ops;
        started[slot] = latencies.start();
        window[slot] = pool.submit(trivial_task);
      }
      for (auto& reply : window) expect_zero(reply.get(), "thread_pool");  // drain, uncounted
      return ops;
    };
  });
}

// ---- cases, repetitions, figures ---------------------------------------------

/// One row of a table: an implementation under one workload.
struct bench_case {
  std::string workload;
  std::string impl;
  unsigned clients;
  unsigned qd;  // ops in flight per client
  std::function<rep_result(std::chrono::milliseconds)> run;
  std::vector<rep_result> reps{};
};

struct figure {
  double ops_per_sec;
  double p50_us;
  double p99_us;
  double spread;  // (max - min) / median of ops/s over the repetitions
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/// Each figure is the median over the repetitions (p50 and p99 too: the
/// median of each repetition's percentile).
figure summarise(const std::vector<rep_result>& reps) {
  std::vector<double> ops;
  std::vector<double> p50;
  std::vector<double> p99;
  for (const auto& rep : reps) {
    ops.push_back(rep.ops_per_sec);
    p50.push_back(rep.p50_us);
    p99.push_back(rep.p99_us);
  }
  const double middle = median(ops);
  const auto [low, high] = std::minmax_element(ops.begin(), ops.end());
  return {middle, median(p50), median(p99), middle > 0 ? (*high - *low) / middle : 0};
}

std::vector<bench_case> make_cases(const options& opts) {
  std::vector<bench_case> cases;
  for (unsigned clients : opts.clients) {
    cases.push_back({"nop_sync", "i2o2/default", clients, 1,
                     [clients](auto duration) { return i2o2_sync(clients, duration); }});
    cases.push_back({"nop_sync", "thread_pool", clients, 1,
                     [clients](auto duration) { return thread_pool_sync(clients, duration); }});
  }
  cases.push_back({"nop_sync", "raw_liburing", 1, 1,
                   [](auto duration) { return raw_liburing(1, duration); }});
  cases.push_back({"nop_pipelined", "i2o2/default", 1, pipeline_depth,
                   [](auto duration) { return i2o2_pipelined(duration); }});
  cases.push_back({"nop_pipelined", "thread_pool", 1, pipeline_depth,
                   [](auto duration) { return thread_pool_pipelined(duration); }});
  cases.push_back({"nop_pipelined", "raw_liburing/batched", 1, pipeline_depth,
                   [](auto duration) { return raw_liburing(pipeline_depth, duration); }});
  std::erase_if(cases, [&opts](const bench_case& c) {
    return (c.workload + " " + c.impl).find(opts.only) == std::string::npos;
  });
  return cases;
}

/// Runs every case once untimed (warm-up), then repetition by repetition,
/// interleaving the cases so that drift on a shared machine hits them all
/// alike rather than whichever happened to run last.
void run_all(std::vector<bench_case>& cases, const options& opts) {
  const auto warm_up = std::max(opts.duration / 4, std::chrono::milliseconds(20));
  for (auto& c : cases) c.run(warm_up);
  const bool show_progress = ::isatty(STDERR_FILENO) != 0;
  for (int rep = 0; rep < opts.reps; ++rep) {
    if (show_progress) std::fprintf(stderr, "\rrepetition %d/%d", rep + 1, opts.reps);
    for (auto& c : cases) c.reps.push_back(c.run(opts.duration));
  }
  if (show_progress) std::fprintf(stderr, "\r                    \r");
}

// ---- output -----------------------------------------------------------------

std::string format_rate(double ops) {
  char text[32];
  if (ops >= 1e6) std::snprintf(text, sizeof(text), "%.2fM", ops / 1e6);
  else if (ops >= 1e3) std::snprintf(text, sizeof(text), "%.1fk", ops / 1e3);
  else std::snprintf(text, sizeof(text), "%.0f", ops);
  return text;
}

/// The baseline row to compare `row` with: same impl as `impl`, the same
/// client count if there is one (the pool), otherwise any (the raw ring is
/// single-threaded whatever W is).
const bench_case* baseline_for(const std::vector<bench_case>& cases, const bench_case& row,
                               const std::string& impl) {
  const bench_case* any = nullptr;
  for (const auto& c : cases) {
    if (c.workload != row.workload || c.impl != impl) continue;
    if (c.clients == row.clients) return &c;
    if (!any) any = &c;
  }
  return any;
}

void print_table(const std::vector<bench_case>& cases, const std::string& workload,
                 const std::string& description, const std::vector<std::string>& baselines) {
  const auto in_table = [&workload](const bench_case& c) { return c.workload == workload; };
  if (std::none_of(cases.begin(), cases.end(), in_table)) return;  // filtered out by --only
  std::printf("\n%s: %s\n", workload.c_str(), description.c_str());
  std::printf("%-22s %7s %4s %10s %9s %9s %7s", "impl", "clients", "qd", "ops/s", "p50 us", "p99 us",
              "spread");
  for (const auto& baseline : baselines) std::printf("  %*s", static_cast<int>(baseline.size() + 2),
                                                     ("x " + baseline).c_str());
  std::printf("\n");
  for (const auto& row : cases) {
    if (!in_table(row)) continue;
    const figure f = summarise(row.reps);
    std::printf("%-22s %7u %4u %10s %9.2f %9.2f %6.1f%%", row.impl.c_str(), row.clients, row.qd,
                format_rate(f.ops_per_sec).c_str(), f.p50_us, f.p99_us, f.spread * 100);
    for (const auto& baseline : baselines) {
      const bench_case* base = baseline_for(cases, row, baseline);
      const int width = static_cast<int>(baseline.size() + 2);
      if (base) std::printf("  %*.3f", width, f.ops_per_sec / summarise(base->reps).ops_per_sec);
      else std::printf("  %*s", width, "-");
    }
    std::printf("\n");
  }
}

std::string kernel_release() {
  utsname names{};
  if (::uname(&names) != 0) return "unknown";
  return names.release;
}

std::string liburing_version() {
#ifdef IO_URING_VERSION_MAJOR
  return std::to_string(IO_URING_VERSION_MAJOR) + "." + std::to_string(IO_URING_VERSION_MINOR);
#else
  // The version macros arrived in liburing 2.4, and the build requires 2.3.
  return "2.3";
#endif
}

void write_json(const std::vector<bench_case>& cases, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail("cannot write " + path);
  const auto number = [](double value) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.6g", value);
    return std::string(text);
  };
  out << "{\"schema\": 1, \"machine\": {\"cpus\": " << std::thread::hardware_concurrency()
      << ", \"kernel\": \"" << kernel_release() << "\", \"liburing\": \"" << liburing_version()
      << "\"},\n \"results\": [";
  const char* separator = "\n";
  for (const auto& c : cases) {
    const figure f = summarise(c.reps);
    out << separator << "  {\"workload\": \"" << c.workload << "\", \"impl\": \"" << c.impl
        << "\", \"clients\": " << c.clients << ", \"qd\": " << c.qd
        << ", \"block\": 0, \"ops_per_sec\": " << number(f.ops_per_sec)
        << ", \"mb_per_sec\": null, \"p50_us\": " << number(f.p50_us)
        << ", \"p99_us\": " << number(f.p99_us) << ", \"spread\": " << number(f.spread) << "}";
    separator = ",\n";
  }
  out << "\n ]}\n";
  if (!out) fail("writing " + path + " failed");
}

} // namespace

int main(int argc, char** argv) {
  const options opts = parse_options(argc, argv);
  std::printf("nop_bench: %u cpus, kernel %s, liburing %s; median of %d x %.2f s; "
              "latency sampled every %uth op; spread = (max-min)/median of ops/s\n",
              std::thread::hardware_concurrency(), kernel_release().c_str(), liburing_version().c_str(),
              opts.reps, std::chrono::duration<double>(opts.duration).count(), latency_sampler::every);
  std::fflush(stdout);

  std::vector<bench_case> cases = make_cases(opts);
  run_all(cases, opts);

  print_table(cases, "nop_sync", "each client submits one nop and waits for it",
              {"thread_pool", "raw_liburing"});
  print_table(cases, "nop_pipelined",
              "one client, 64 in flight (sliding window); raw: 64 per enter, latency = one enter",
              {"thread_pool", "raw_liburing/batched"});
  if (!opts.json_path.empty()) {
    write_json(cases, opts.json_path);
    std::printf("\nwrote %s\n", opts.json_path.c_str());
  }
  return 0;
}
