#pragma once
/// The eventfd wait strategy (the default; every kernel from 5.6).
///
/// The parked scheduler has a read of an eventfd in flight in its ring; a
/// producer wakes it by writing the eventfd, which completes the read. The
/// eventfd belongs to the shared state that every handle keeps alive, so a
/// producer can never write to a descriptor that was closed and reused.

#include "../detail/user_data.hpp"
#include "concept.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace i2o2::wait {

class eventfd {
public:
  static constexpr bool can_park = true;

  eventfd() : fd_(::eventfd(0, EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::system_error(errno, std::system_category(), "i2o2: eventfd failed");
  }
  eventfd(const eventfd&) = delete;
  eventfd& operator=(const eventfd&) = delete;
  ~eventfd() { ::close(fd_); }

  /// Any thread.
  void notify() noexcept {
    const std::uint64_t one = 1;
    // Cannot fail short of a counter overflow, which needs 2^64 wakes.
    [[maybe_unused]] const auto written = ::write(fd_, &one, sizeof(one));
  }

  /// Scheduler thread.
  bool arm(detail::ring& ring) noexcept {
    if (armed_) return true;
    io_uring_sqe* sqe = ring.get_sqe();
    if (sqe == nullptr) return false;
    std::memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_READ;
    sqe->fd = fd_;
    sqe->addr = reinterpret_cast<std::uintptr_t>(&counter_);
    sqe->len = sizeof(counter_);
    sqe->user_data = detail::wake_user_data;
    armed_ = true;
    return true;
  }

  void on_wake(int) noexcept { armed_ = false; }
  bool armed() const noexcept { return armed_; }

  void block() noexcept {
    std::uint64_t value = 0;
    [[maybe_unused]] const auto got = ::read(fd_, &value, sizeof(value));
  }

private:
  int fd_;
  // Written by the kernel when the armed read completes; scheduler thread.
  std::uint64_t counter_ = 0;
  bool armed_ = false;
};
static_assert(wait_strategy<eventfd>);

}  // namespace i2o2::wait
