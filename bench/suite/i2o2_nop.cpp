// i2o2 under the nop workloads, for the default and each policy row: what
// the scheduler itself costs per op (a nop does no IO).

#include "cases.hpp"
#include "i2o2_client.hpp"
#include "i2o2_policies.hpp"

#include <memory>
#include <string_view>
#include <tuple>

namespace bench {

namespace {

/// `clients` clients each keeping `qd` nops in flight (qd 1: submit and wait).
template <class Scheduler>
rep_result i2o2_nops(unsigned clients, unsigned qd, std::chrono::milliseconds duration, const char* impl,
                     i2o2::config cfg = {}) {
  using window_type = window_for<Scheduler>;
  // Declared before the scheduler so they outlive it (callback replies).
  std::vector<std::unique_ptr<window_type>> windows;
  for (unsigned i = 0; i < clients; ++i)
    windows.push_back(std::make_unique<window_type>(qd));
  auto spawned = spawn_or_skip<Scheduler>(std::move(cfg));
  const run_length length{duration, samples_for(4e6, duration, clients, 8), 8};
  using slots_type = client_slots<window_type, typename Scheduler::handle_type>;
  return run_clients(clients, length, [&](unsigned index) {
    return [&, handle = spawned.handle, window = windows[index].get(),
            slots = std::make_unique<slots_type>(qd)](const std::atomic<bool>& stop,
                                                      client_meter& meter) mutable {
      run_window(handle, *window, *slots, qd, true, 0, impl, stop, meter,
                 [](unsigned) { return i2o2::op::nop{}; });
    };
  });
}

template <class Row>
void add_row(std::vector<bench_case>& cases, const plan& p, Row row) {
  using scheduler = typename Row::scheduler;
  const bool is_default = std::string_view(row.name) == default_impl;
  for (unsigned clients : is_default ? p.sync_clients : p.policy_clients)
    cases.push_back({"nop_sync", row.name, clients, 1, std::nullopt,
                     [clients, name = row.name](std::chrono::milliseconds duration) {
                       return i2o2_nops<scheduler>(clients, 1, duration, name);
                     },
                     p.nop_duration});
  // No idle or busy spin: the scheduler parks after every op, so each round trip
  // goes through the wait strategy's wake-up (what an idle service sees).
  cases.push_back({"nop_wake", row.name, 1, 1, std::nullopt,
                   [name = row.name](std::chrono::milliseconds duration) {
                     return i2o2_nops<scheduler>(1, 1, duration, name,
                                                 {.idle_spin = std::chrono::microseconds(0),
                                                  .busy_spin = std::chrono::microseconds(0)});
                   },
                   p.nop_duration});
  for (unsigned clients : p.pipelined_clients)
    cases.push_back({"nop_pipelined", row.name, clients, pipeline_depth, std::nullopt,
                     [clients, name = row.name](std::chrono::milliseconds duration) {
                       return i2o2_nops<scheduler>(clients, pipeline_depth, duration, name);
                     },
                     p.nop_duration});
}

}  // namespace

void add_i2o2_nop_cases(std::vector<bench_case>& cases, const plan& p) {
  std::apply([&](auto... rows) { (add_row(cases, p, rows), ...); }, policy_rows());
}

}  // namespace bench
