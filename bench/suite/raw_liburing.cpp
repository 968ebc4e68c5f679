// Baseline raw_liburing: each client thread owns a ring and drives it
// itself: no queue, no second thread, no wake-up. The ceiling for any
// scheduler. Rings get the flags i2o2 asks for where the kernel has them
// (SINGLE_ISSUER | DEFER_TASKRUN), so both pay the same kernel path.
//
//   nop_sync       one NOP per io_uring_enter (submit_and_wait(1))
//   nop_pipelined  64 NOPs per io_uring_enter (batched)
//   randread       `qd` reads in flight; each completed read is re-issued
//                  at once with its own enter (on this disk that beat one
//                  enter for all re-issued reads, see DESIGN.md)
//   seqwrite       `write_qd` writes in flight, a sequential stream
//   append         write linked to fdatasync, submit_and_wait(2)

#include "cases.hpp"
#include "data_files.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <system_error>

namespace bench {

namespace {

constexpr const char* impl = "raw_liburing";

class raw_ring {
public:
  explicit raw_ring(unsigned entries) {
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (io_uring_queue_init_params(entries, &ring_, &params) < 0) {
      params = io_uring_params{};
      if (const int error = io_uring_queue_init_params(entries, &ring_, &params); error < 0)
        throw std::system_error(-error, std::system_category(), "raw_liburing: io_uring_queue_init");
    }
  }
  raw_ring(const raw_ring&) = delete;
  raw_ring& operator=(const raw_ring&) = delete;
  ~raw_ring() { io_uring_queue_exit(&ring_); }

  io_uring_sqe* sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    if (entry == nullptr) fail("raw_liburing: SQ full");
    return entry;
  }

  /// Submits what is queued and waits for `count` CQEs (retrying on EINTR).
  void submit_and_wait(unsigned count) {
    for (;;) {
      const int result = io_uring_submit_and_wait(&ring_, count);
      if (result >= 0) return;
      if (result != -EINTR && result != -EAGAIN && result != -EBUSY)
        fail(std::string("io_uring_submit_and_wait: ") + std::strerror(-result));
    }
  }
  void submit() { submit_and_wait(0); }

  /// Calls `take(user_data, res)` for every CQE ready; returns how many.
  template <class Take>
  unsigned reap(Take&& take) {
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      take(cqe->user_data, cqe->res);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    return seen;
  }

private:
  io_uring ring_{};
};

// ---- nops ---------------------------------------------------------------------

/// `batch` NOPs per enter. A sampled latency is one enter round trip. Like
/// the i2o2 and thread_pool rows, one op in 8 is timed (one enter in
/// 8 / batch); a batch of 8 or more is timed every enter.
rep_result nops(unsigned batch, std::chrono::milliseconds duration) {
  const unsigned every = std::max(8 / batch, 1U);
  const run_length length{duration, samples_for(2e7 / batch, duration, 1, every), every};
  return run_clients(1, length, [batch](unsigned) {
    // Created on the client thread: SINGLE_ISSUER makes it the ring's owner.
    return
        [batch, ring = std::make_shared<raw_ring>(256)](const std::atomic<bool>& stop, client_meter& meter) {
          while (!stop.load(std::memory_order_relaxed)) {
            const auto started = meter.start();
            for (unsigned i = 0; i < batch; ++i)
              io_uring_prep_nop(ring->sqe());
            ring->submit_and_wait(batch);
            const unsigned seen = ring->reap([](std::uint64_t, int res) { expect_result(res, 0, impl); });
            if (seen != batch) fail("raw_liburing: fewer CQEs than NOPs");
            meter.finish(started, batch);
          }
        };
  });
}

// ---- IO streams ---------------------------------------------------------------

/// How a stream of ops ends and is submitted.
struct stream_mode {
  bool timed;         // stop counting at the first completion after `more()` turns false
  bool enter_per_op;  // one io_uring_enter per re-issued op, rather than one per reap
};

/// One client's ring, its IO buffer and its slots' start times, made in the
/// client's set-up (on the client thread: SINGLE_ISSUER makes it the ring's
/// owner), before timing.
struct ring_client {
  ring_client(unsigned entries, unsigned qd, std::size_t buffer_bytes)
      : ring(entries), buffer(buffer_bytes), started(qd) {}
  raw_ring ring;
  aligned_buffer buffer;
  std::vector<std::optional<bench_clock::time_point>> started;
};

/// Keeps `qd` ops in flight on the client's ring, re-issuing a slot when
/// its op completes while `more()`; then drains. `issue(sqe, slot)`
/// prepares a slot's next op; every op must resolve with `expected`.
template <class More, class Issue>
void keep_in_flight(ring_client& client, unsigned qd, int expected, client_meter& meter, stream_mode mode,
                    More&& more, Issue&& issue) {
  raw_ring& ring = client.ring;
  auto& started = client.started;
  unsigned in_flight = 0;
  const auto start_slot = [&](unsigned slot) {
    io_uring_sqe* sqe = ring.sqe();
    issue(sqe, slot);
    sqe->user_data = slot;
    started[slot] = meter.start();
    ++in_flight;
  };
  for (unsigned slot = 0; slot < qd && more(); ++slot)
    start_slot(slot);
  ring.submit();
  while (in_flight != 0) {
    ring.submit_and_wait(1);
    ring.reap([&](std::uint64_t user_data, int res) {
      const auto slot = static_cast<unsigned>(user_data);
      expect_result(res, expected, impl);
      --in_flight;
      if (!meter.ended()) meter.finish(started[slot]);
      if (!more()) {
        if (mode.timed && !meter.ended()) meter.stop_counting();
        return;
      }
      start_slot(slot);
      if (mode.enter_per_op) ring.submit();
    });
  }
  if (!meter.ended()) meter.stop_counting();
}

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  const file_descriptor file(p.read_file, O_RDONLY | O_DIRECT);
  const std::uint64_t blocks = p.read_file_size / read_block;
  const run_length length{duration, samples_for(2e5, duration, config.clients, 1), 1};
  const auto result = run_clients(config.clients, length, [&](unsigned index) {
    // Each client: a ring of its own with `qd` reads in flight.
    return [&,
            client = std::make_unique<ring_client>(std::max(config.qd, 8U), config.qd,
                                                   std::size_t{config.qd} * read_block),
            offsets = random_blocks(client_seed(p.repetition, index), blocks)](const std::atomic<bool>& stop,
                                                                               client_meter& meter) mutable {
      keep_in_flight(
          *client, config.qd, read_block, meter, {.timed = true, .enter_per_op = true},
          [&] { return !stop.load(std::memory_order_relaxed); },
          [&](io_uring_sqe* sqe, unsigned slot) {
            io_uring_prep_read(sqe, file.get(), client->buffer.at(std::size_t{slot} * read_block), read_block,
                               offsets.next() * read_block);
          });
    };
  });
  return with_bytes(result, read_block);
}

rep_result seqwrite(const plan& p, unsigned block) {
  const file_descriptor file(p.write_file, O_WRONLY);
  const std::uint64_t count = p.write_size / block;
  const run_length length{std::nullopt, count + 16, 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, client = std::make_unique<ring_client>(write_qd, write_qd, 0),
            source = make_write_source(block)](const std::atomic<bool>&, client_meter& meter) {
      std::uint64_t issued = 0;
      keep_in_flight(
          *client, write_qd, static_cast<int>(block), meter, {.timed = false, .enter_per_op = false},
          [&] { return issued < count; },
          [&](io_uring_sqe* sqe, unsigned) {
            io_uring_prep_write(sqe, file.get(), source->data(), block, issued * block);
            ++issued;
          });
    };
  });
  ::fdatasync(file.get());  // untimed: the next repetition starts from clean pages
  return with_bytes(result, block);
}

/// One append client: write linked to fdatasync, one chain per enter, at
/// most `chains` of them.
void append_client(ring_client& client, int fd, std::uint64_t chains, const std::atomic<bool>& stop,
                   client_meter& meter) {
  raw_ring& ring = client.ring;
  const aligned_buffer& buffer = client.buffer;
  for (std::uint64_t chain = 0; chain < chains && !stop.load(std::memory_order_relaxed); ++chain) {
    const auto started = meter.start();
    io_uring_sqe* write = ring.sqe();
    io_uring_prep_write(write, fd, buffer.data(), append_block, chain * append_block);
    write->flags |= IOSQE_IO_LINK;
    write->user_data = 0;
    io_uring_sqe* sync = ring.sqe();
    io_uring_prep_fsync(sync, fd, IORING_FSYNC_DATASYNC);
    sync->user_data = 1;
    for (unsigned seen = 0; seen < 2;) {
      ring.submit_and_wait(2 - seen);
      seen += ring.reap([](std::uint64_t user_data, int res) {
        expect_result(res, user_data == 0 ? int{append_block} : 0, impl);
      });
    }
    meter.finish(started);
  }
}

rep_result append(const plan& p, std::chrono::milliseconds duration, std::uint64_t chains) {
  const file_descriptor file(p.append_file, O_WRONLY);
  const run_length length{duration, samples_for(1e5, duration, 1, 1), 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, client = std::make_unique<ring_client>(8, 0, append_block)](const std::atomic<bool>& stop,
                                                                           client_meter& meter) {
      append_client(*client, file.get(), chains, stop, meter);
    };
  });
  return with_bytes(result, append_block);
}

}  // namespace

void add_raw_liburing_cases(std::vector<bench_case>& cases, const plan& p) {
  cases.push_back({"nop_sync", impl, 1, 1, std::nullopt, [](auto duration) { return nops(1, duration); },
                   p.nop_duration});
  cases.push_back({"nop_pipelined", impl, 1, pipeline_depth, std::nullopt,
                   [](auto duration) { return nops(pipeline_depth, duration); }, p.nop_duration});
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
