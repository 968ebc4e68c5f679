#pragma once
/// Running a scheduler on a thread of its own.

#include "scheduler.hpp"

#include <pthread.h>
#include <sched.h>

#include <exception>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace i2o2 {

/// Owns a scheduler running on its own named (optionally pinned) thread.
/// Destroying it stops the scheduler (with the config's shutdown deadline)
/// and joins the thread; destroyed on that thread itself (from a callback,
/// say), it stops the scheduler and lets the thread finish on its own.
template <class Scheduler>
class scheduler_thread {
public:
  /// Creates the scheduler and starts its thread; returns once the ring is
  /// running. Throws what the scheduler's creation or start-up throws.
  explicit scheduler_thread(config cfg) : scheduler_(std::make_shared<Scheduler>(std::move(cfg))) {
    std::promise<void> started;
    auto ready = started.get_future();
    // The thread gets the scheduler, never `this`: the owner may be moved,
    // or destroyed on this very thread, which then frees the scheduler.
    thread_ = std::thread([scheduler = scheduler_, started = std::move(started)]() mutable {
      const config& settings = scheduler->settings();
      ::pthread_setname_np(::pthread_self(), settings.thread_name.c_str());
      if (settings.cpu_affinity) {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(*settings.cpu_affinity, &cpus);
        if (const int error = ::pthread_setaffinity_np(::pthread_self(), sizeof(cpus), &cpus)) {
          started.set_exception(std::make_exception_ptr(
              std::system_error(error, std::system_category(),
                                "i2o2: pinning the scheduler thread to CPU " +
                                    std::to_string(*settings.cpu_affinity) + " failed")));
          return;
        }
      }
      try {
        scheduler->run([&started](std::exception_ptr error) {
          if (error)
            started.set_exception(error);
          else
            started.set_value();
        });
      } catch (...) {
        // Start-up failures reached the caller through the promise.
      }
    });
    try {
      ready.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }

  scheduler_thread(scheduler_thread&&) noexcept = default;
  scheduler_thread& operator=(scheduler_thread&&) = delete;
  ~scheduler_thread() {
    if (!thread_.joinable()) return;
    scheduler_->request_stop();
    if (on_scheduler_thread())
      thread_.detach();  // it cannot join itself: it finishes the shutdown alone
    else
      thread_.join();
  }

  /// A new handle. Any thread.
  typename Scheduler::handle_type handle() { return scheduler_->handle(); }

  /// Stops taking ops and waits until every accepted op has completed and
  /// the thread has exited; in-flight ops still running after `deadline`
  /// are cancelled (of several deadlines given, the earliest holds). Later
  /// submissions fail with scheduler_closed. Throws std::logic_error on the
  /// scheduler thread itself, which would wait for itself: use
  /// `scheduler().request_stop(deadline)` there.
  void stop(std::optional<std::chrono::nanoseconds> deadline) {
    if (!thread_.joinable()) return;
    refuse_on_scheduler_thread("stop");
    scheduler_->request_stop(deadline);
    thread_.join();
  }
  void stop() { stop(deadline_of_config()); }

  /// Waits for the scheduler to finish by itself (its last handle dropped).
  /// Throws std::logic_error on the scheduler thread itself.
  void join() {
    if (!thread_.joinable()) return;
    refuse_on_scheduler_thread("join");
    thread_.join();
  }

  Scheduler& scheduler() noexcept { return *scheduler_; }

private:
  bool on_scheduler_thread() const noexcept { return std::this_thread::get_id() == thread_.get_id(); }
  void refuse_on_scheduler_thread(const char* call) const {
    if (on_scheduler_thread())
      throw std::logic_error(std::string("i2o2: ") + call +
                             "() on the scheduler thread would wait for that thread itself; "
                             "call scheduler().request_stop() there");
  }

  std::optional<std::chrono::nanoseconds> deadline_of_config() const {
    return detail::shutdown_deadline_of(scheduler_->settings());
  }

  // Shared with the thread, which may outlive the owner (see ~scheduler_thread).
  std::shared_ptr<Scheduler> scheduler_;
  std::thread thread_;
};

/// What `spawn` returns: the thread's owner and a first handle.
template <class Scheduler>
struct spawned {
  scheduler_thread<Scheduler> owner;
  typename Scheduler::handle_type handle;
};

/// Creates a scheduler of type `Scheduler` and runs it on its own thread.
template <class Scheduler>
spawned<Scheduler> spawn_scheduler(config cfg = {}) {
  scheduler_thread<Scheduler> owner(std::move(cfg));
  auto handle = owner.handle();
  return {std::move(owner), std::move(handle)};
}

}  // namespace i2o2
