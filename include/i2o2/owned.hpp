#pragma once
/// Owning-buffer helpers: the scheduler takes the buffer and hands it back
/// with the result, so code that never touches guards cannot free a buffer
/// the kernel is still writing into.
///
///     auto [n, page] = i2o2::read_owned(handle, fd, 0, std::vector<std::byte>(4096)).wait();
///
/// They need a handle whose guard can hold a `std::shared_ptr` (the default
/// `any_guard`) and whose reply can be waited on or co_awaited (the future).

#include "op.hpp"
#include "ops.hpp"

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace i2o2 {

/// The syscall-style result and the buffer, back in the caller's hands.
template <class Buffer>
struct owned_result {
  int result;
  Buffer buffer;
};

/// A reply that hands the buffer back with the result.
template <class Reply, class Buffer>
class owned_reply {
public:
  owned_reply(Reply reply, std::shared_ptr<Buffer> buffer)
      : reply_(std::move(reply)), buffer_(std::move(buffer)) {}

  /// Waits for the op; the kernel is done with the buffer once this returns.
  /// The buffer is moved out: a second call (or one after a successful
  /// try_get) returns the result with a moved-from buffer.
  owned_result<Buffer> wait() {
    const int result = reply_.wait();
    return {result, take()};
  }
  std::optional<owned_result<Buffer>> try_get() {
    const auto result = reply_.try_get();
    if (!result) return std::nullopt;
    return owned_result<Buffer>{*result, take()};
  }

  auto operator co_await() noexcept {
    struct awaiter {
      owned_reply* self;
      decltype(std::declval<const Reply&>().operator co_await()) inner;
      bool await_ready() noexcept { return inner.await_ready(); }
      auto await_suspend(std::coroutine_handle<> handle) noexcept { return inner.await_suspend(handle); }
      owned_result<Buffer> await_resume() noexcept { return {inner.await_resume(), self->take()}; }
    };
    return awaiter{this, reply_.operator co_await()};
  }

private:
  // The scheduler's copy of the pointer (the guard) may not be destroyed
  // yet, but the kernel is done: the buffer is ours to move out.
  Buffer take() noexcept { return std::move(*buffer_); }

  Reply reply_;
  std::shared_ptr<Buffer> buffer_;
};

namespace detail {
/// The bytes of `buffer` one read or write covers: all of them, up to what
/// one Linux read/write call transfers (MAX_RW_COUNT, 2 GiB less a page).
/// Past it the result is a short count, as from pread/pwrite, never a
/// length truncated to 32 bits.
template <class Buffer>
std::uint32_t io_length(Buffer& buffer) noexcept {
  constexpr std::size_t max_rw_count = 0x7ffff000;
  return static_cast<std::uint32_t>(std::min(buffer.size() * sizeof(*buffer.data()), max_rw_count));
}
}  // namespace detail

/// pread(2) of `buffer.size()` bytes at `offset` into `buffer`, which comes
/// back with the result (the byte count, or -errno; short past 2 GiB).
/// Throws `scheduler_closed` after shutdown, as submit; the buffer, moved
/// in, goes with it (check `handle.closed()` first to keep it).
template <class Handle, class Buffer = std::vector<std::byte>>
owned_reply<typename Handle::reply_type, Buffer>
read_owned(Handle& handle, file_ref file, std::uint64_t offset, Buffer buffer, op_options options = {}) {
  auto owned = std::make_shared<Buffer>(std::move(buffer));
  auto reply = handle.submit(op::read{.file = file,
                                      .buf = owned->data(),
                                      .len = detail::io_length(*owned),
                                      .offset = offset,
                                      .options = options},
                             owned);
  return {std::move(reply), std::move(owned)};
}

/// pwrite(2) of all of `buffer` at `offset`; the buffer comes back with the
/// result (the byte count, or -errno). After shutdown, as read_owned.
template <class Handle, class Buffer = std::vector<std::byte>>
owned_reply<typename Handle::reply_type, Buffer>
write_owned(Handle& handle, file_ref file, std::uint64_t offset, Buffer buffer, op_options options = {}) {
  auto owned = std::make_shared<Buffer>(std::move(buffer));
  auto reply = handle.submit(op::write{.file = file,
                                       .buf = owned->data(),
                                       .len = detail::io_length(*owned),
                                       .offset = offset,
                                       .options = options},
                             owned);
  return {std::move(reply), std::move(owned)};
}

}  // namespace i2o2
