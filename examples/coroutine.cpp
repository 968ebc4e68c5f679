// coroutine.cpp: i2o2 from a C++20 coroutine. A reply is awaitable:
//
//     int wrote = co_await handle.submit(i2o2::op::write{...}, guard);
//
// suspends the coroutine without blocking any thread, and resumes it when
// the op completes.
//
// Where it resumes matters: ON THE SCHEDULER THREAD, inside its completion
// loop. So what runs after a co_await must be short and must never block on
// the scheduler (no reply.wait(), no long computation): the scheduler
// serves no one else meanwhile. Submitting a few more ops from there, as
// below, is fine while the queue has room (1024 envelopes by default);
// code that fans out many ops, or does real work, should first hop to its
// own executor (asio::post, a thread pool), as it would with any IO
// completion.

#include <i2o2/i2o2.hpp>

#include <stdlib.h>  // mkstemp
#include <unistd.h>  // close, unlink

#include <coroutine>
#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

/// The smallest task type that works: the coroutine starts at once, runs
/// until its first co_await, and frees itself when it finishes. A real
/// program would use its runtime's task (asio::awaitable, cppcoro::task...).
struct fire_and_forget {
  struct promise_type {
    fire_and_forget get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

/// What the coroutine found out, handed back to main.
struct outcome {
  int wrote = 0;
  int read = 0;
  std::string text;
  bool resumed_off_main = false;
};

/// Writes a line to `fd`, reads it back and reports through `done`.
/// Parameters are copied into the coroutine frame, so `handle` and `done`
/// live as long as the coroutine does.
fire_and_forget write_then_read(i2o2::handle handle, int fd, std::promise<outcome> done) {
  const auto main_thread = std::this_thread::get_id();
  outcome result;

  // The buffer is handed to the op as its guard, as in blocking.cpp: i2o2
  // keeps it alive until the kernel is done with it.
  const auto line = std::make_shared<const std::string>("hello from a coroutine\n");
  result.wrote = co_await handle.submit(
      i2o2::op::write{.file = fd, .buf = line->data(), .len = static_cast<std::uint32_t>(line->size())},
      line);

  // From here on we run on the scheduler thread (see the top of the file),
  // unless the write had already completed when we reached co_await: then
  // the coroutine did not suspend at all and is still on main's thread.
  result.resumed_off_main = std::this_thread::get_id() != main_thread;

  const auto page = std::make_shared<std::vector<char>>(line->size());
  result.read = co_await handle.submit(
      i2o2::op::read{.file = fd, .buf = page->data(), .len = static_cast<std::uint32_t>(page->size())},
      page);
  if (result.read > 0) result.text.assign(page->data(), static_cast<std::size_t>(result.read));

  done.set_value(std::move(result));  // wakes main; cheap, never blocks
}

} // namespace

int main() {
  auto [owner, handle] = i2o2::spawn();

  char path[] = "/tmp/i2o2-coroutine-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) {
    std::perror("mkstemp");
    return 1;
  }
  ::unlink(path);

  // Start the coroutine; it returns to us at its first co_await. Then wait
  // for it to finish. (In a real program this thread would carry on with
  // other work instead.)
  std::promise<outcome> done;
  std::future<outcome> finished = done.get_future();
  write_then_read(handle, fd, std::move(done));
  const outcome result = finished.get();
  ::close(fd);
  owner.stop();

  std::printf("write -> %d, read -> %d, resumed on: %s\nread back: %s", result.wrote, result.read,
              result.resumed_off_main ? "the scheduler thread" : "main's thread (no suspension)",
              result.text.c_str());
  const std::string expected = "hello from a coroutine\n";
  const bool ok = result.wrote == static_cast<int>(expected.size()) && result.text == expected;
  std::printf("%s\n", ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
