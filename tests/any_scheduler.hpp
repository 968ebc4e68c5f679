#pragma once
// One queue x wait x reply combination behind a virtual interface, chosen
// by name at run time. A test body is compiled once and run against all 24
// combinations through Catch2's GENERATE:
//
//     const std::string policy = GENERATE(from_range(i2o2_test::policy_names()));
//     CAPTURE(policy);
//     auto scheduler = i2o2_test::spawn_policy(policy, cfg);
//     auto& handle = scheduler->handle();
//     CHECK(handle.submit(i2o2::op::nop{}).wait() == 0);
//
// The 24 schedulers are instantiated once, in any_scheduler.cpp, rather
// than in every test file: that keeps the suite's build time flat.

#include "policy_matrix.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace i2o2_test {

/// What `try_submit` did: something to wait on, or the refusal.
struct submit_attempt {
  std::optional<pending> reply;
  std::error_code error;
};

/// A handle of some combination; every submit returns a `pending`. The
/// guard is always an `i2o2::any_guard`.
class any_handle {
public:
  virtual ~any_handle() = default;
  /// Another handle to the same scheduler (for a client thread).
  virtual std::unique_ptr<any_handle> clone() const = 0;

  virtual pending submit(const i2o2::prepared_op& op, i2o2::any_guard guard = {}) = 0;
  /// On refusal `guard` is left with the caller.
  virtual submit_attempt try_submit(const i2o2::prepared_op& op, i2o2::any_guard& guard) = 0;
  virtual std::vector<pending> submit_many(std::span<const i2o2::prepared_op> ops,
                                           std::span<i2o2::any_guard> guards = {}) = 0;
  virtual std::vector<pending> submit_chain(std::span<const i2o2::prepared_op> ops,
                                            std::span<i2o2::any_guard> guards = {},
                                            i2o2::link_kind link = i2o2::link_kind::soft) = 0;
  virtual pending cancel(const pending& target) = 0;

  virtual pending register_file(int fd, i2o2::any_guard guard = {}) = 0;
  virtual pending unregister_file(unsigned index) = 0;
  virtual pending register_buffer(void* base, std::size_t length, i2o2::any_guard guard = {}) = 0;
  virtual pending unregister_buffer(unsigned index) = 0;
  virtual bool closed() const = 0;

  // Ops of any type, through their SQE image.
  template <i2o2::operation Op>
  pending submit(const Op& op, i2o2::any_guard guard = {}) {
    return submit(i2o2::prepared_op(op), std::move(guard));
  }
  template <i2o2::operation Op>
  submit_attempt try_submit(const Op& op, i2o2::any_guard& guard) {
    return try_submit(i2o2::prepared_op(op), guard);
  }
  template <i2o2::operation Op>
  submit_attempt try_submit(const Op& op) {
    i2o2::any_guard none;
    return try_submit(i2o2::prepared_op(op), none);
  }
};

/// A running scheduler of some combination: its owner and a first handle.
class any_scheduler {
public:
  virtual ~any_scheduler() = default;
  virtual const std::string& name() const = 0;
  /// The first handle; throws once it was taken.
  virtual any_handle& handle() = 0;
  /// Moves the first handle out, so that the test can drop the last one.
  virtual std::unique_ptr<any_handle> take_handle() = 0;
  /// scheduler_thread::stop(): with the config's deadline, or the given one.
  virtual void stop() = 0;
  virtual void stop(std::optional<std::chrono::nanoseconds> deadline) = 0;
  /// scheduler_thread::join(): waits for the scheduler to finish by itself.
  virtual void join() = 0;
};

/// "queue/wait/reply" for each of the 24 combinations, the default first.
const std::vector<std::string>& policy_names();

/// Spawns the combination `name` (one of policy_names()) on its own thread.
std::unique_ptr<any_scheduler> spawn_policy(const std::string& name, i2o2::config cfg = {});

}  // namespace i2o2_test
