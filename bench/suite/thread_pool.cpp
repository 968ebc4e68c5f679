// Baseline thread_pool: what a program does without i2o2. A pool of
// std::threads takes tasks from a mutex + condition_variable queue; each
// task makes the blocking syscall (pread, pwrite, pwrite + fdatasync; a
// trivial function for nops) and answers through a std::promise the client
// waits on with a std::future. A client takes its replies as the i2o2
// client does: the oldest first (nops, seqwrite), or, for reads, whichever
// is ready (polled), blocking on the oldest only when none is.
//
// Workers: one per core for nops (nops never block, so more only
// contend); for IO, one per op in flight (all clients' qd together), since
// a worker blocked in pread holds one IO in flight at most.

#include "cases.hpp"
#include "data_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace bench {

namespace {

constexpr const char* impl = "thread_pool";
/// One worker per core, as a pool for non-blocking tasks is sized.
unsigned nop_workers() { return std::max(1U, std::thread::hardware_concurrency()); }

/// What a task does, with its arguments: a plain function pointer, no
/// allocation beyond the promise's shared state.
struct io_call {
  int (*run)(const io_call&);
  int fd = -1;
  void* buf = nullptr;
  std::size_t len = 0;
  off_t offset = 0;
};

int result_of(ssize_t result) { return result < 0 ? -errno : static_cast<int>(result); }
int call_nop(const io_call&) { return 0; }
int call_pread(const io_call& c) { return result_of(::pread(c.fd, c.buf, c.len, c.offset)); }
int call_pwrite(const io_call& c) { return result_of(::pwrite(c.fd, c.buf, c.len, c.offset)); }
int call_append(const io_call& c) {
  const int written = call_pwrite(c);
  if (written < 0) return written;
  return ::fdatasync(c.fd) == 0 ? written : -errno;
}

class thread_pool {
public:
  explicit thread_pool(unsigned workers) {
    for (unsigned i = 0; i < workers; ++i)
      workers_.emplace_back([this] { work(); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& worker : workers_)
      worker.join();
  }

  /// Any thread: queues `call`; the future yields what it returns.
  std::future<int> submit(const io_call& call) {
    job queued{call, std::promise<int>()};
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
    io_call call;
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
      next.reply.set_value(next.call.run(next.call));
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

/// One client's IO buffer, window of futures, and its slots' start times
/// and submission order, made in the client's set-up, before timing.
struct pool_client {
  pool_client(unsigned qd, std::size_t buffer_bytes)
      : buffer(buffer_bytes), window(qd), started(qd), submitted_as(qd) {}
  aligned_buffer buffer;
  std::vector<std::future<int>> window;
  std::vector<std::optional<bench_clock::time_point>> started;
  std::vector<std::uint64_t> submitted_as;  // submission number of each slot's call
};

/// How a client takes its replies.
enum class order {
  oldest_first,  // wait for the oldest call (nops, write streams: as the i2o2 client)
  any_ready,     // take whichever calls are done, block only if none is (reads finish out of order)
};

/// Keeps `qd` calls in flight through `pool`, submitting `make_call(slot)`
/// into each slot whose call was taken, until `more()` is false, then
/// drains. With `timed`, stops counting at that point. `taking` says which
/// reply is taken next: the oldest call's (a sliding window), or any that
/// is ready, polling them all (wait_for 0) and blocking on the oldest only
/// when none is, as the i2o2 client does for reads.
template <class More, class MakeCall>
void keep_in_flight(thread_pool& pool, pool_client& client, unsigned qd, int expected, bool timed,
                    order taking, client_meter& meter, More&& more, MakeCall&& make_call) {
  auto& window = client.window;
  auto& started = client.started;
  std::uint64_t submitted = 0;
  unsigned in_flight = 0;
  const auto submit = [&](unsigned slot) {
    started[slot] = meter.start();
    client.submitted_as[slot] = submitted++;
    window[slot] = pool.submit(make_call(slot));
    ++in_flight;
  };
  // Takes the reply of `slot` (its future becomes invalid) and refills it.
  const auto take = [&](unsigned slot) {
    expect_result(window[slot].get(), expected, impl);
    --in_flight;
    if (!meter.ended()) meter.finish(started[slot]);
    if (!more()) {
      if (timed && !meter.ended()) meter.stop_counting();
      return;
    }
    submit(slot);
  };
  for (unsigned slot = 0; slot < qd && more(); ++slot)
    submit(slot);
  if (taking == order::oldest_first) {
    for (unsigned slot = 0; in_flight != 0; slot = (slot + 1) % qd)
      if (window[slot].valid()) take(slot);  // else retired, or never used
    return;
  }
  while (in_flight != 0) {
    bool took_any = false;
    for (unsigned slot = 0; slot < qd; ++slot) {
      if (!window[slot].valid() ||
          window[slot].wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        continue;
      take(slot);
      took_any = true;
    }
    if (took_any) continue;
    // Nothing is in: block on the oldest call.
    unsigned oldest = qd;
    for (unsigned slot = 0; slot < qd; ++slot)
      if (window[slot].valid() && (oldest == qd || client.submitted_as[slot] < client.submitted_as[oldest]))
        oldest = slot;
    take(oldest);
  }
}

rep_result nops(unsigned clients, unsigned qd, std::chrono::milliseconds duration) {
  thread_pool pool(nop_workers());
  const run_length length{duration, samples_for(1e6, duration, clients, 8), 8};
  return run_clients(clients, length, [&](unsigned) {
    return [&, client = std::make_unique<pool_client>(qd, 0)](const std::atomic<bool>& stop,
                                                              client_meter& meter) {
      keep_in_flight(
          pool, *client, qd, 0, true, order::oldest_first, meter,
          [&] { return !stop.load(std::memory_order_relaxed); }, [](unsigned) { return io_call{call_nop}; });
    };
  });
}

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  const file_descriptor file(p.read_file, O_RDONLY | O_DIRECT);
  const std::uint64_t blocks = p.read_file_size / read_block;
  thread_pool pool(config.clients * config.qd);
  const run_length length{duration, samples_for(2e5, duration, config.clients, 1), 1};
  const auto result = run_clients(config.clients, length, [&](unsigned index) {
    return [&, client = std::make_unique<pool_client>(config.qd, std::size_t{config.qd} * read_block),
            offsets = random_blocks(client_seed(p.repetition, index), blocks)](const std::atomic<bool>& stop,
                                                                               client_meter& meter) mutable {
      keep_in_flight(
          pool, *client, config.qd, read_block, true, order::any_ready, meter,
          [&] { return !stop.load(std::memory_order_relaxed); },
          [&](unsigned slot) {
            const auto offset = static_cast<off_t>(offsets.next() * read_block);
            return io_call{call_pread, file.get(), client->buffer.at(std::size_t{slot} * read_block),
                           read_block, offset};
          });
    };
  });
  return with_bytes(result, read_block);
}

rep_result seqwrite(const plan& p, unsigned block) {
  const file_descriptor file(p.write_file, O_WRONLY);
  const std::uint64_t count = p.write_size / block;
  thread_pool pool(write_qd);
  const run_length length{std::nullopt, count + 16, 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, client = std::make_unique<pool_client>(write_qd, 0),
            source = make_write_source(block)](const std::atomic<bool>&, client_meter& meter) {
      std::uint64_t issued = 0;
      keep_in_flight(
          pool, *client, write_qd, static_cast<int>(block), false, order::oldest_first, meter,
          [&] { return issued < count; },
          [&](unsigned) {
            const auto offset = static_cast<off_t>(issued++ * block);
            return io_call{call_pwrite, file.get(), source->data(), block, offset};
          });
    };
  });
  ::fdatasync(file.get());  // untimed: the next repetition starts from clean pages
  return with_bytes(result, block);
}

rep_result append(const plan& p, std::chrono::milliseconds duration, std::uint64_t chains) {
  const file_descriptor file(p.append_file, O_WRONLY);
  thread_pool pool(1);
  const run_length length{duration, samples_for(1e5, duration, 1, 1), 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, client = std::make_unique<pool_client>(1, append_block)](const std::atomic<bool>& stop,
                                                                        client_meter& meter) {
      std::uint64_t chain = 0;
      keep_in_flight(
          pool, *client, 1, append_block, true, order::oldest_first, meter,
          [&] { return chain < chains && !stop.load(std::memory_order_relaxed); },
          [&](unsigned) {
            const auto offset = static_cast<off_t>(chain++ * append_block);
            return io_call{call_append, file.get(), client->buffer.data(), append_block, offset};
          });
    };
  });
  return with_bytes(result, append_block);
}

}  // namespace

void add_thread_pool_cases(std::vector<bench_case>& cases, const plan& p) {
  for (unsigned clients : p.sync_clients)
    cases.push_back({"nop_sync", impl, clients, 1, std::nullopt,
                     [clients](auto duration) { return nops(clients, 1, duration); }, p.nop_duration});
  // Its worker sleeps on a condition variable between ops: a wake per op.
  cases.push_back({"nop_wake", impl, 1, 1, std::nullopt, [](auto duration) { return nops(1, 1, duration); },
                   p.nop_duration});
  for (unsigned clients : p.pipelined_clients)
    cases.push_back({"nop_pipelined", impl, clients, pipeline_depth, std::nullopt,
                     [clients](auto duration) { return nops(clients, pipeline_depth, duration); },
                     p.nop_duration});
  for (const read_config config : read_configs)
    cases.push_back({"randread", impl, config.clients, config.qd, read_block,
                     [&p, config](auto duration) { return randread(p, config, duration); }, p.io_duration});
  for (const unsigned block : write_blocks)
    cases.push_back({"seqwrite", impl, 1, write_qd, block, [&p, block](auto) { return seqwrite(p, block); },
                     p.io_duration, false});
  cases.push_back(
      {"append", impl, 1, 1, append_block,
       append_run(p, [&p](auto duration, std::uint64_t chains) { return append(p, duration, chains); }),
       p.io_duration});
}

}  // namespace bench
