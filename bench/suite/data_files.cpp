#include "data_files.hpp"

#include "measure.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

namespace bench {

namespace {

// Files to remove at exit. Fixed-size C strings so the signal handler can
// unlink them without allocating.
constexpr std::size_t max_files = 8;
char registered[max_files][4096];
volatile std::sig_atomic_t registered_count = 0;
// The process group of a child that must not outlive the run (fio, which
// would keep reading the removed randread file); 0: none.
volatile std::sig_atomic_t child_group = 0;

/// Kills the child's group and removes the files: at exit, and from the
/// signal handler (async-signal-safe: kill and unlink only).
void clean_up() noexcept {
  if (child_group > 0) ::kill(-static_cast<pid_t>(child_group), SIGKILL);
  for (std::sig_atomic_t i = 0; i < registered_count; ++i)
    if (registered[i][0] != '\0') ::unlink(registered[i]);
}

extern "C" void on_signal(int signal) {
  clean_up();
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void install_clean_up() {
  static std::once_flag hooks;
  std::call_once(hooks, [] {
    std::atexit(clean_up);
    for (const int signal : {SIGINT, SIGTERM, SIGHUP})
      std::signal(signal, on_signal);
  });
}

void remember(const std::string& path) {
  install_clean_up();
  if (path.size() >= sizeof(registered[0])) fail("data file path too long: " + path);
  // A slot that remove_data_file emptied first (fio's stderr file comes
  // and goes with every fio run), else a new one.
  std::sig_atomic_t slot = 0;
  while (slot < registered_count && registered[slot][0] != '\0')
    ++slot;
  if (slot == static_cast<std::sig_atomic_t>(max_files)) fail("too many data files");
  // The first character last: until it is written, the handler sees the
  // slot empty rather than a partial path.
  std::memcpy(registered[slot] + 1, path.c_str() + 1, path.size());
  std::atomic_signal_fence(std::memory_order_release);
  registered[slot][0] = path[0];
  std::atomic_signal_fence(std::memory_order_release);
  if (slot == registered_count) registered_count = registered_count + 1;
}

void write_all(int fd, const std::byte* data, std::size_t size, std::uint64_t offset,
               const std::string& path) {
  while (size != 0) {
    const ssize_t written = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) fail("writing " + path + ": " + std::strerror(errno));
    data += written;
    size -= static_cast<std::size_t>(written);
    offset += static_cast<std::uint64_t>(written);
  }
}

void sync_or_fail(int fd, const std::string& path) {
  if (::fsync(fd) != 0) fail("fsync " + path + ": " + std::strerror(errno));
}

/// Why `available` bytes cannot hold `bytes` for `what` with a margin for
/// the file system's own blocks and whatever else writes there meanwhile
/// (a tenth more, and at least 256 MiB), or none when they can.
std::optional<std::string> lacking_space(const std::string& where, std::uint64_t available,
                                         std::uint64_t bytes, const std::string& what) {
  const std::uint64_t margin = std::max<std::uint64_t>(bytes / 10, std::uint64_t{256} << 20);
  if (available >= bytes + margin) return std::nullopt;
  return where + " has " + std::to_string(available >> 20) + " MiB free; " + what + " needs " +
         std::to_string(bytes >> 20) + " MiB and a margin of " + std::to_string(margin >> 20) + " MiB";
}

}  // namespace

void create_data_file(const std::string& path, std::uint64_t size) {
  const file_descriptor fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  constexpr std::size_t chunk = 1 << 20;
  std::vector<std::uint64_t> words(chunk / sizeof(std::uint64_t));
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (std::uint64_t offset = 0; offset < size; offset += chunk) {
    for (auto& word : words) {  // xorshift64: fast, and incompressible enough
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      word = state;
    }
    const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - offset));
    write_all(fd.get(), reinterpret_cast<const std::byte*>(words.data()), length, offset, path);
  }
  sync_or_fail(fd.get(), path);
}

file_descriptor::file_descriptor(const std::string& path, int flags)
    : fd_(::open(path.c_str(), flags | O_CLOEXEC, 0644)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
}

file_descriptor::~file_descriptor() { ::close(fd_); }

void check_data_dir(const std::string& dir) {
  struct statfs info {};
  constexpr int bad_option = 2;  // the exit status of a bad command line
  if (::statfs(dir.c_str(), &info) != 0) fail("--data-dir " + dir + ": " + std::strerror(errno), bad_option);
  const auto type = static_cast<unsigned long>(info.f_type);
  if (type == TMPFS_MAGIC || type == RAMFS_MAGIC)
    fail("--data-dir " + dir +
             " is on tmpfs/ramfs: O_DIRECT reads and buffered writes would not touch a disk; "
             "pick a directory on a disk (the default is the current directory)",
         bad_option);
  // Some file systems take the O_DIRECT open and refuse the IO itself:
  // one aligned block written and read back, as randread will.
  const std::string probe = data_path(dir, "probe");
  constexpr std::size_t block = 4096;
  const std::unique_ptr<void, decltype(&std::free)> buffer(std::aligned_alloc(block, block), &std::free);
  if (!buffer) fail("out of memory");
  std::memset(buffer.get(), 0x5a, block);
  const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644);
  int error = errno;
  if (fd >= 0) {
    errno = 0;  // a short transfer leaves it alone
    if (::pwrite(fd, buffer.get(), block, 0) != static_cast<ssize_t>(block) ||
        ::pread(fd, buffer.get(), block, 0) != static_cast<ssize_t>(block))
      error = errno != 0 ? errno : EIO;
    else
      error = 0;
    ::close(fd);
  }
  remove_data_file(probe);
  if (error != 0)
    fail("--data-dir " + dir + " does not take O_DIRECT IO: " + std::strerror(error), bad_option);
}

void check_free_space(const std::string& dir, std::uint64_t bytes, const std::string& what) {
  struct statvfs info {};
  if (::statvfs(dir.c_str(), &info) != 0) fail("--data-dir " + dir + ": " + std::strerror(errno));
  const std::uint64_t available = std::uint64_t{info.f_bavail} * info.f_frsize;
  if (const auto lacking = lacking_space("--data-dir " + dir, available, bytes, what))
    fail(*lacking + ": free some space, pick another --data-dir, or a smaller --file-size");
}

std::string data_path(const std::string& dir, const std::string& name) {
  std::string path = dir + "/i2o2-bench." + std::to_string(::getpid()) + "." + name;
  remember(path);
  return path;
}

void remove_at_exit(const std::string& path) { remember(path); }

void reset_append_file(const std::string& path, std::uint64_t room) {
  // Emptied first: the blocks of the last repetition count as free.
  const file_descriptor fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  struct statvfs info {};
  if (::fstatvfs(fd.get(), &info) != 0) fail("statvfs " + path + ": " + std::strerror(errno));
  const std::uint64_t available = std::uint64_t{info.f_bavail} * info.f_frsize;
  if (const auto lacking = lacking_space("the append file's file system", available, room,
                                         "one repetition (at the fastest rate so far, twice over)"))
    throw skip_case{*lacking + ": free some space, pick another --data-dir, or a shorter --seconds"};
  // The allocation does not grow op by op; the size (and so fdatasync's
  // metadata) still grows with every append.
  if (::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(room)) != 0) {
    if (errno == ENOSPC) throw skip_case{"fallocate " + path + ": no room left for one repetition"};
    if (errno != EOPNOTSUPP) fail("fallocate " + path + ": " + std::strerror(errno));
  }
  sync_or_fail(fd.get(), path);
}

void remove_data_file(const std::string& path) {
  ::unlink(path.c_str());
  for (std::sig_atomic_t i = 0; i < registered_count; ++i)
    if (path == registered[i]) registered[i][0] = '\0';
}

void kill_group_at_exit(pid_t group) {
  install_clean_up();
  child_group = static_cast<std::sig_atomic_t>(group);
}

void forget_child_group() { child_group = 0; }

}  // namespace bench
