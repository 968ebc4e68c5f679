#pragma once
/// `i2o2::default_scheduler` and `i2o2::spawn()`: what a newcomer uses.

#include "guard.hpp"
#include "queue/mpsc_ring.hpp"
#include "reply/future.hpp"
#include "scheduler.hpp"
#include "spawn.hpp"
#include "wait/eventfd.hpp"

namespace i2o2 {

/// The default policies:
/// - queue::mpsc_ring: lock-free, bounded, one CAS per submit;
/// - wait::eventfd: parks inside io_uring_enter on every kernel from 5.15;
/// - reply::future: wait(), try_get(), wait_for() and co_await;
/// - any_guard: any movable value, a shared_ptr without allocating.
/// (Issue 3 revisits the choice with bench/ figures.)
using default_scheduler = basic_scheduler<queue::mpsc_ring, wait::eventfd, reply::future, any_guard>;
using handle = default_scheduler::handle_type;
using reply_t = default_scheduler::reply_type;

/// Runs a default scheduler on its own thread:
///
///     auto [owner, handle] = i2o2::spawn();
///     int result = handle.submit(i2o2::op::nop{}).wait();
inline spawned<default_scheduler> spawn(config cfg = {}) {
  return spawn_scheduler<default_scheduler>(std::move(cfg));
}

}  // namespace i2o2
