// An Asio coroutine that co_awaits i2o2 reads: the file IO runs on the i2o2
// scheduler thread, and each completion resumes the coroutine on the
// io_context's thread (the token's associated executor).
#include <i2o2/asio.hpp>
#include <i2o2/ops.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace asio = boost::asio;

asio::awaitable<std::string> read_all(i2o2::asio_scheduler::handle_type& handle, int fd,
                                      std::thread::id io_thread, bool& stayed_on_io_thread) {
  std::string text;
  char chunk[8];
  for (std::uint64_t offset = 0;; offset += sizeof(chunk)) {
    const int n = co_await i2o2::async_submit(
        handle, i2o2::op::read{.file = fd, .buf = chunk, .len = sizeof(chunk), .offset = offset},
        asio::use_awaitable);
    stayed_on_io_thread = stayed_on_io_thread && std::this_thread::get_id() == io_thread;
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
  }
  co_return text;
}

int main() {
  char path[] = "i2o2-asio-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return 1;
  ::unlink(path);
  const std::string expected = "read through io_uring, resumed by asio";
  if (::pwrite(fd, expected.data(), expected.size(), 0) != static_cast<ssize_t>(expected.size())) return 1;

  auto [owner, handle] = i2o2::spawn_scheduler<i2o2::asio_scheduler>();
  asio::io_context io;
  bool stayed_on_io_thread = true;
  auto text = asio::co_spawn(io, read_all(handle, fd, std::this_thread::get_id(), stayed_on_io_thread),
                             asio::use_future);
  io.run();  // returns once the coroutine is done: each op kept it busy
  const std::string got = text.get();
  ::close(fd);
  std::printf("read \"%s\" (%s on the io_context thread)\n", got.c_str(),
              stayed_on_io_thread ? "resumed" : "NOT resumed");
  return got == expected && stayed_on_io_thread ? 0 : 1;
}
