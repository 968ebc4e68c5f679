#pragma once
// The smallest coroutine type that can co_await a reply, for tests of
// awaitable replies: the library ships awaitables, not a task type.

#include <coroutine>
#include <exception>

namespace i2o2_test {

/// Starts at once and frees itself when done; results leave through
/// whatever the coroutine was given (e.g. a std::promise it owns).
struct detached_task {
  struct promise_type {
    detached_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

}  // namespace i2o2_test
