#pragma once
/// What `try_submit` returns: the reply, or why nothing was taken.

#include "errors.hpp"

#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace i2o2 {

template <class Reply>
class submit_result {
public:
  submit_result(Reply reply) noexcept : reply_(std::move(reply)) {}       // NOLINT: implicit
  submit_result(errc error) noexcept : error_(make_error_code(error)) {}  // NOLINT: implicit

  bool has_value() const noexcept { return reply_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  /// `errc::queue_full` or `errc::scheduler_closed` when there is no reply.
  std::error_code error() const noexcept { return error_; }

  /// The reply; throws `std::system_error` with `error()` if there is none.
  Reply& value() & {
    if (!reply_) throw std::system_error(error_);
    return *reply_;
  }
  Reply&& value() && {
    if (!reply_) throw std::system_error(error_);
    return std::move(*reply_);
  }
  Reply& operator*() & noexcept { return *reply_; }
  Reply* operator->() noexcept { return &*reply_; }

private:
  std::optional<Reply> reply_;
  std::error_code error_;
};

}  // namespace i2o2
