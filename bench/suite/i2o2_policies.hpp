#pragma once
/// The i2o2 policy combinations the suite shows, and their row names
/// (`i2o2/<queue>+<wait>+<reply>`; the default's is default_impl).

#include "cases.hpp"

#include <i2o2/i2o2.hpp>
#include <i2o2/queue/mutex_ring.hpp>
#include <i2o2/reply/callback.hpp>
#include <i2o2/wait/futex.hpp>
#include <i2o2/wait/msg_ring.hpp>
#include <i2o2/wait/spin.hpp>

#include <tuple>
#include <type_traits>

namespace bench {

template <class Queue, class Wait, class Reply>
using scheduler_of = i2o2::basic_scheduler<Queue, Wait, Reply, i2o2::any_guard>;

// Tables name the default's policies (default_policies): keep the names
// true if the default changes.
static_assert(std::is_same_v<i2o2::default_scheduler,
                             scheduler_of<i2o2::queue::mpsc_ring, i2o2::wait::eventfd, i2o2::reply::future>>,
              "i2o2::default_scheduler changed: update default_policies (cases.hpp)");

/// A scheduler type and the name of its rows.
template <class Scheduler>
struct policy_row {
  using scheduler = Scheduler;
  const char* name;
};

/// The default, then one policy changed at a time: the wait strategy
/// (eventfd vs futex vs msg_ring vs spin), the queue (mpsc_ring vs
/// mutex_ring), the reply (future vs callback).
inline auto policy_rows() {
  using namespace i2o2;
  return std::tuple{
      policy_row<default_scheduler>{default_impl},
      policy_row<scheduler_of<queue::mpsc_ring, wait::futex, reply::future>>{"i2o2/mpsc_ring+futex+future"},
      policy_row<scheduler_of<queue::mpsc_ring, wait::msg_ring, reply::future>>{
          "i2o2/mpsc_ring+msg_ring+future"},
      policy_row<scheduler_of<queue::mpsc_ring, wait::spin, reply::future>>{"i2o2/mpsc_ring+spin+future"},
      policy_row<scheduler_of<queue::mutex_ring, wait::eventfd, reply::future>>{
          "i2o2/mutex_ring+eventfd+future"},
      policy_row<scheduler_of<queue::mpsc_ring, wait::eventfd, reply::callback<>>>{
          "i2o2/mpsc_ring+eventfd+callback"},
  };
}

}  // namespace bench
