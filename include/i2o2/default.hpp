#pragma once
/// `i2o2::default_scheduler` and `i2o2::spawn()`: what a newcomer uses.

#include "guard.hpp"
#include "queue/mpsc_ring.hpp"
#include "reply/future.hpp"
#include "scheduler.hpp"
#include "spawn.hpp"
#include "wait/eventfd.hpp"

namespace i2o2 {

/// The default policies, chosen from `scripts/bench` on a 2-core VM (kernel
/// 6.18; figures are medians with 50-100% spread, so only large gaps count):
///
/// - queue::mpsc_ring, not mutex_ring: equal for one-at-a-time round trips,
///   but 64 nops in flight ran at 7.9M/s against 2.4M/s (one client) and
///   8.2M/s against 5.1M/s (two): the mutex serialises client and scheduler.
/// - wait::eventfd: parked-scheduler round trips (nop_wake) ran at
///   117-145k/s, futex 107-149k/s, msg_ring 111-144k/s: no difference beyond
///   the noise (futex's p50 was ~1 us lower: 4.7 against 5.1-6.2 us). eventfd
///   works on every kernel from 5.15; futex needs 6.7 and msg_ring 5.18.
///   spin (1.3M/s) never sleeps and costs a core: an opt-in.
/// - reply::future: as fast as the callback reply (1.27-1.43M/s at one
///   client, 7.9M/s against 8.9M/s pipelined) and the one that suits every
///   caller: wait(), try_get(), wait_for(), co_await.
/// - any_guard: any movable value, a shared_ptr without allocating.
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
