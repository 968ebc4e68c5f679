// Uses an installed i2o2: writes a file through the scheduler, reads it back.
#include <i2o2/i2o2.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

int main() {
  char path[] = "i2o2-consumer-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return 1;
  ::unlink(path);
  auto [owner, handle] = i2o2::spawn({.ring_depth = 8});
  const char text[] = "found by find_package";
  const int written = handle.submit(i2o2::op::write{.file = fd, .buf = text, .len = sizeof(text)}).wait();
  char back[sizeof(text)] = {};
  const bool same = ::pread(fd, back, sizeof(back), 0) == sizeof(text) && std::memcmp(back, text, sizeof(text)) == 0;
  ::close(fd);
  std::printf("consumer: write returned %d, read back %s\n", written, same ? "the same bytes" : "something else");
  return written == static_cast<int>(sizeof(text)) && same ? 0 : 1;
}
