// Baseline blocking: plain syscall loops on the client threads themselves,
// no queue and no other thread.
//
//   randread  one thread per read in flight (clients x qd threads), each
//             looping pread; that is how blocking code gets a queue depth
//   seqwrite  one thread, a pwrite loop over the file (qd 1)
//   append    one thread, pwrite + fdatasync in a loop

#include "cases.hpp"
#include "data_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace bench {

namespace {

constexpr const char* impl = "blocking";

int result_of(ssize_t result) { return result < 0 ? -errno : static_cast<int>(result); }

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  const file_descriptor file(p.read_file, O_RDONLY | O_DIRECT);
  const std::uint64_t blocks = p.read_file_size / read_block;
  const unsigned threads = config.clients * config.qd;
  const run_length length{duration, samples_for(2e5, duration, threads, 1), 1};
  const auto result = run_clients(threads, length, [&](unsigned index) {
    return [&, buffer = std::make_unique<aligned_buffer>(read_block),
            offsets = random_blocks(client_seed(p.repetition, index), blocks)](const std::atomic<bool>& stop,
                                                                               client_meter& meter) mutable {
      while (!stop.load(std::memory_order_relaxed)) {
        const auto started = meter.start();
        const auto offset = static_cast<off_t>(offsets.next() * read_block);
        expect_result(result_of(::pread(file.get(), buffer->data(), read_block, offset)), read_block, impl);
        meter.finish(started);
      }
    };
  });
  return with_bytes(result, read_block);
}

rep_result seqwrite(const plan& p, unsigned block) {
  const file_descriptor file(p.write_file, O_WRONLY);
  const std::uint64_t count = p.write_size / block;
  const run_length length{std::nullopt, count + 16, 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, source = make_write_source(block)](const std::atomic<bool>&, client_meter& meter) {
      for (std::uint64_t i = 0; i < count; ++i) {
        const auto started = meter.start();
        const auto offset = static_cast<off_t>(i * block);
        expect_result(result_of(::pwrite(file.get(), source->data(), block, offset)), static_cast<int>(block),
                      impl);
        meter.finish(started);
      }
    };
  });
  ::fdatasync(file.get());  // untimed: the next repetition starts from clean pages
  return with_bytes(result, block);
}

rep_result append(const plan& p, std::chrono::milliseconds duration, std::uint64_t chains) {
  const file_descriptor file(p.append_file, O_WRONLY);
  const run_length length{duration, samples_for(1e5, duration, 1, 1), 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, buffer = std::make_unique<aligned_buffer>(append_block)](const std::atomic<bool>& stop,
                                                                        client_meter& meter) {
      for (std::uint64_t chain = 0; chain < chains && !stop.load(std::memory_order_relaxed); ++chain) {
        const auto started = meter.start();
        const auto offset = static_cast<off_t>(chain * append_block);
        expect_result(result_of(::pwrite(file.get(), buffer->data(), append_block, offset)), append_block,
                      impl);
        expect_result(::fdatasync(file.get()) == 0 ? 0 : -errno, 0, impl);
        meter.finish(started);
      }
    };
  });
  return with_bytes(result, append_block);
}

}  // namespace

void add_blocking_cases(std::vector<bench_case>& cases, const plan& p) {
  for (const read_config config : read_configs)
    cases.push_back({"randread", impl, config.clients, config.qd, read_block,
                     [&p, config](auto duration) { return randread(p, config, duration); }, p.io_duration});
  for (const unsigned block : write_blocks)
    cases.push_back({"seqwrite", impl, 1, 1, block, [&p, block](auto) { return seqwrite(p, block); },
                     p.io_duration, false});
  cases.push_back(
      {"append", impl, 1, 1, append_block,
       append_run(p, [&p](auto duration, std::uint64_t chains) { return append(p, duration, chains); }),
       p.io_duration});
}

}  // namespace bench
