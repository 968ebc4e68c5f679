// blocking.cpp: the shortest useful i2o2 program. A plain thread writes a
// buffer to a file, fsyncs it and reads it back, blocking on each reply.
//
// Any thread may do this: a worker of your own pool, a request handler, a
// test. The IO itself runs on i2o2's scheduler thread, through io_uring.

#include <i2o2/i2o2.hpp>

#include <stdlib.h>  // mkstemp
#include <unistd.h>  // close, unlink

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

/// Prints what an op resolved with: a byte count, or the error it names.
void report(const char* what, int result) {
  if (result >= 0) std::printf("%-6s -> %d\n", what, result);
  else std::printf("%-6s -> error: %s\n", what, i2o2::to_error_code(result).message().c_str());
}

} // namespace

int main() {
  // 1. Start a scheduler on its own thread. `owner` controls the thread;
  //    `handle` is what clients submit through (copy it to every thread
  //    that needs it).
  auto [owner, handle] = i2o2::spawn();

  char path[] = "/tmp/i2o2-blocking-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) {
    std::perror("mkstemp");
    return 1;
  }
  ::unlink(path);  // the file lives on until `fd` is closed

  // 2. Write. The kernel reads `text` some time after submit returns, so
  //    the op gets a guard: a shared_ptr that i2o2 keeps alive until the
  //    kernel is done with the buffer, even if we stop waiting for the reply.
  const auto text = std::make_shared<const std::string>("hello from i2o2\n");
  auto written = handle.submit(
      i2o2::op::write{.file = fd, .buf = text->data(), .len = static_cast<std::uint32_t>(text->size())},
      text);
  const int wrote = written.wait();  // what pwrite(2) returns, or -errno
  report("write", wrote);

  // 3. fsync: no buffer, so no guard.
  const int synced = handle.submit(i2o2::op::fsync{.file = fd}).wait();
  report("fsync", synced);

  // 4. Read it back into a buffer guarded the same way.
  const auto page = std::make_shared<std::vector<char>>(text->size());
  const int got = handle
                      .submit(i2o2::op::read{.file = fd,
                                             .buf = page->data(),
                                             .len = static_cast<std::uint32_t>(page->size())},
                              page)
                      .wait();
  report("read", got);
  const std::string back(page->data(), got > 0 ? static_cast<std::size_t>(got) : 0);
  std::printf("read back: %s", back.c_str());
  ::close(fd);

  // 5. Shut down: stop() finishes every accepted op, releases every guard and
  //    joins the thread. (Dropping `owner` or the last handle does the same.)
  //    Later submissions are refused with i2o2::scheduler_closed.
  owner.stop();

  const bool ok = wrote == static_cast<int>(text->size()) && synced == 0 && back == *text;
  std::printf("%s\n", ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
