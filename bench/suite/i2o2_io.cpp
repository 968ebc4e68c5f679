// i2o2 (the default policies) under the IO workloads: randread, seqwrite,
// append. Clients submit through handles exactly as an application would.

#include "cases.hpp"
#include "data_files.hpp"
#include "i2o2_client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <memory>

namespace bench {

namespace {

using scheduler = i2o2::default_scheduler;
constexpr const char* impl = default_impl;

rep_result randread(const plan& p, read_config config, std::chrono::milliseconds duration) {
  const file_descriptor file(p.read_file, O_RDONLY | O_DIRECT);
  const std::uint64_t blocks = p.read_file_size / read_block;
  std::vector<std::unique_ptr<window_for<scheduler>>> windows;
  std::vector<std::unique_ptr<aligned_buffer>> buffers;
  for (unsigned i = 0; i < config.clients; ++i) {
    windows.push_back(std::make_unique<window_for<scheduler>>(config.qd));
    buffers.push_back(std::make_unique<aligned_buffer>(std::size_t{config.qd} * read_block));
  }
  auto spawned = spawn_or_skip<scheduler>();
  const run_length length{duration, samples_for(2e5, duration, config.clients, 1), 1};
  using slots_type = client_slots<window_for<scheduler>, scheduler::handle_type>;
  const auto result = run_clients(config.clients, length, [&](unsigned index) {
    return [&, index, handle = spawned.handle, slots = std::make_unique<slots_type>(config.qd),
            offsets = random_blocks(client_seed(p.repetition, index), blocks)](const std::atomic<bool>& stop,
                                                                               client_meter& meter) mutable {
      std::byte* base = buffers[index]->data();
      // Reads complete out of order: take whichever are done.
      run_window(handle, *windows[index], *slots, config.qd, false, read_block, impl, stop, meter,
                 [&](unsigned slot) {
                   return i2o2::op::read{.file = file.get(),
                                         .buf = base + slot * read_block,
                                         .len = read_block,
                                         .offset = offsets.next() * read_block};
                 });
    };
  });
  return with_bytes(result, read_block);
}

rep_result seqwrite(const plan& p, unsigned block) {
  const file_descriptor file(p.write_file, O_WRONLY);
  const std::uint64_t count = p.write_size / block;
  future_window<i2o2::handle> window(write_qd);
  const auto source = make_write_source(block);
  auto spawned = spawn_or_skip<scheduler>();
  const run_length length{std::nullopt, count + 16, 1};
  using slots_type = client_slots<future_window<i2o2::handle>, i2o2::handle>;
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, handle = spawned.handle, slots = std::make_unique<slots_type>(write_qd)](
               const std::atomic<bool>&, client_meter& meter) mutable {
      run_stream(handle, window, *slots, write_qd, count, static_cast<int>(block), impl, meter,
                 [&](std::uint64_t i) {
                   return i2o2::op::write{
                       .file = file.get(), .buf = source->data(), .len = block, .offset = i * block};
                 });
    };
  });
  ::fdatasync(file.get());  // untimed: the next repetition starts from clean pages
  return with_bytes(result, block);
}

rep_result append(const plan& p, std::chrono::milliseconds duration, std::uint64_t chains) {
  const file_descriptor file(p.append_file, O_WRONLY);
  const aligned_buffer buffer(append_block);
  auto spawned = spawn_or_skip<scheduler>();
  const run_length length{duration, samples_for(1e5, duration, 1, 1), 1};
  const auto result = run_clients(1, length, [&](unsigned) {
    return [&, handle = spawned.handle](const std::atomic<bool>& stop, client_meter& meter) mutable {
      for (std::uint64_t chain = 0; chain < chains && !stop.load(std::memory_order_relaxed); ++chain) {
        const auto started = meter.start();
        auto replies = handle.submit_chain(i2o2::op::write{.file = file.get(),
                                                           .buf = buffer.data(),
                                                           .len = append_block,
                                                           .offset = chain * append_block},
                                           i2o2::op::fsync{.file = file.get(), .data_only = true});
        expect_result(replies[0].wait(), append_block, impl);
        expect_result(replies[1].wait(), 0, impl);
        meter.finish(started);
      }
    };
  });
  return with_bytes(result, append_block);
}

}  // namespace

void add_i2o2_io_cases(std::vector<bench_case>& cases, const plan& p) {
  for (const read_config config : read_configs)
    cases.push_back(
        {"randread", impl, config.clients, config.qd, read_block,
         [&p, config](std::chrono::milliseconds duration) { return randread(p, config, duration); },
         p.io_duration});
  for (const unsigned block : write_blocks)
    cases.push_back({"seqwrite", impl, 1, write_qd, block,
                     [&p, block](std::chrono::milliseconds) { return seqwrite(p, block); }, p.io_duration,
                     false});
  cases.push_back(
      {"append", impl, 1, 1, append_block,
       append_run(p, [&p](auto duration, std::uint64_t chains) { return append(p, duration, chains); }),
       p.io_duration});
}

}  // namespace bench
