#pragma once
// Shared test helpers: a watchdog that turns a hang into a failure, temp
// files, pipes to park ops on, guards that record their destruction, and
// the polling loops the tests wait with.

#include <i2o2/i2o2.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace i2o2_test {

/// Aborts the process (a failure under ctest) if not destroyed within
/// `limit`: a hang becomes a failure with a message naming what hung.
class watchdog {
public:
  explicit watchdog(std::string what, std::chrono::seconds limit = std::chrono::seconds(60))
      : what_(std::move(what)), thread_([this, limit] {
          std::unique_lock lock(mutex_);
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' hung for more than %llds\n", what_.c_str(),
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    thread_.join();
  }

private:
  std::string what_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

/// A temporary file on the working directory's file system (not tmpfs),
/// removed on destruction.
class temp_file {
public:
  explicit temp_file(int flags = O_RDWR) {
    char name[] = "i2o2-test-XXXXXX";
    fd_ = ::mkstemp(name);
    REQUIRE(fd_ >= 0);
    path_ = name;
    if ((flags & ~O_RDWR) != 0) {
      ::close(fd_);
      fd_ = ::open(path_.c_str(), flags);
      REQUIRE(fd_ >= 0);
    }
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  /// Closes the fd without removing the file (for close-op tests).
  int release() { return std::exchange(fd_, -1); }

private:
  int fd_ = -1;
  std::string path_;
};

/// What a file holds, read with plain pread: the independent side of a
/// check on what an op wrote (short at the end of the file).
inline std::string pread_string(int fd, std::size_t size, off_t offset) {
  std::string out(size, '\0');
  const ssize_t got = ::pread(fd, out.data(), size, offset);
  REQUIRE(got >= 0);
  out.resize(static_cast<std::size_t>(got));
  return out;
}

/// A file's size, from fstat.
inline off_t size_of(int fd) {
  struct stat info {};
  REQUIRE(::fstat(fd, &info) == 0);
  return info.st_size;
}

/// A pipe: a read on an empty pipe parks until the test writes to it.
class pipe_pair {
public:
  pipe_pair() { REQUIRE(::pipe2(fds_, O_CLOEXEC) == 0); }
  pipe_pair(const pipe_pair&) = delete;
  pipe_pair& operator=(const pipe_pair&) = delete;
  ~pipe_pair() {
    ::close(fds_[0]);
    close_writer();
  }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void feed(const char* data, std::size_t size) {
    REQUIRE(::write(fds_[1], data, size) == static_cast<ssize_t>(size));
  }
  /// Ends the pipe: every read parked on it, and every later one, reads 0.
  void close_writer() noexcept {
    if (fds_[1] >= 0) ::close(std::exchange(fds_[1], -1));
  }

private:
  int fds_[2];
};

/// A read of `len` bytes from the pipe into `buffer`: parked in the kernel
/// until the pipe is fed.
inline i2o2::op::read pipe_read(const pipe_pair& pipe, void* buffer, std::uint32_t len,
                                i2o2::op_options options = {}) {
  return i2o2::op::read{.file = pipe.read_end(),
                        .buf = buffer,
                        .len = len,
                        .offset = i2o2::op::current_position,
                        .options = options};
}

/// Drains the pipe and counts the bytes still sitting in it: a cancelled
/// read leaves the bytes fed after it there, a completed one took them.
inline std::size_t bytes_left_in(const pipe_pair& pipe) {
  const int flags = ::fcntl(pipe.read_end(), F_GETFL);
  REQUIRE(::fcntl(pipe.read_end(), F_SETFL, flags | O_NONBLOCK) == 0);
  char sink[256];
  std::size_t total = 0;
  for (;;) {
    const ssize_t got = ::read(pipe.read_end(), sink, sizeof(sink));
    if (got <= 0) break;
    total += static_cast<std::size_t>(got);
  }
  REQUIRE(::fcntl(pipe.read_end(), F_SETFL, flags) == 0);
  return total;
}

/// A move-only guard that tells its shared `Record` when it dies, once
/// however often it was moved (`Record::guard_destroyed()`). A guard whose
/// destructor runs twice (a library bug: G1 says exactly once) tells its
/// record a second time, so the record counts 2 rather than nothing; a
/// moved-from guard's destruction counts nothing. (The test keeps the
/// record alive through its own shared_ptr, so the second report has
/// somewhere to go.) 24 bytes: it still fits any_guard's inline buffer.
template <class Record>
class recording_guard {
public:
  explicit recording_guard(std::shared_ptr<Record> record) noexcept : record_(std::move(record)) {}
  recording_guard(recording_guard&& other) noexcept : record_(std::move(other.record_)) {}
  recording_guard& operator=(recording_guard&& other) noexcept {
    if (this != &other) {
      if (record_) std::exchange(record_, nullptr)->guard_destroyed();
      record_ = std::move(other.record_);
    }
    return *this;
  }
  ~recording_guard() {
    if (life_ == destroyed) {
      // A second run on the same object. The first reported and released
      // record_, whose bytes still name the record: report again, and put
      // an empty shared_ptr there so that its destructor, about to run a
      // second time too, releases nothing.
      Record* const witness = record_.get();
      ::new (static_cast<void*>(&record_)) std::shared_ptr<Record>();
      if (witness != nullptr) witness->guard_destroyed();
      return;
    }
    if (record_) record_->guard_destroyed();
    life_ = destroyed;  // record_ keeps its pointer: its own destructor releases it
  }

private:
  static constexpr std::uint32_t live = 0x11fe600d;
  static constexpr std::uint32_t destroyed = 0xdead6a2d;

  std::shared_ptr<Record> record_;  // empty when moved from
  // Whether the destructor already ran. volatile: a store in a destructor
  // is otherwise dead to the compiler (GCC's lifetime DSE drops it).
  volatile std::uint32_t life_ = live;
};

/// Shared record of one guard's life: how often it was destroyed, whether
/// the op's completion had been observed before that, and on which thread.
struct guard_record {
  std::atomic<int> destroyed{0};
  std::atomic<bool> completion_seen{false};
  std::atomic<bool> destroyed_before_completion{false};

  void guard_destroyed() noexcept {
    if (!completion_seen.load()) destroyed_before_completion = true;
    destroyed.fetch_add(1);
  }
};

/// A guard that records its destruction into a `guard_record` (G1/G2).
using counting_guard = recording_guard<guard_record>;

/// Shared record of a guard that must outlive one reply it watches: its own
/// op's (G2: reply first, then guard) or that of an op using the registered
/// resource it guards (G4). Counts how often the guard died, and how often
/// that was before the watched reply had resolved.
struct reply_watch_record {
  /// What a guard dying before `watch` was called counts as: early for an
  /// op's own guard (its reply is watched as soon as submit returns); not
  /// early for a registered resource's, which no op uses until one is watched.
  enum class if_unwatched { early, not_early };

  explicit reply_watch_record(if_unwatched unwatched) noexcept : unwatched_(unwatched) {}

  std::atomic<int> destroyed{0};
  std::atomic<int> before_reply{0};

  void watch(std::shared_ptr<const i2o2::reply_t> reply) {
    std::lock_guard lock(mutex_);
    watched_ = std::move(reply);
  }
  void guard_destroyed() noexcept {
    {
      std::lock_guard lock(mutex_);
      const bool early = watched_ ? !watched_->is_ready() : unwatched_ == if_unwatched::early;
      if (early) before_reply.fetch_add(1);
    }
    destroyed.fetch_add(1);
  }

private:
  const if_unwatched unwatched_;
  std::mutex mutex_;
  std::shared_ptr<const i2o2::reply_t> watched_;
};

/// A guard that records into a `reply_watch_record` when it dies.
using reply_watch_guard = recording_guard<reply_watch_record>;

/// The results of N callback replies, by index, as they arrive (on the
/// scheduler thread): `into(i)` is the callback for the i-th.
template <std::size_t N>
class callback_results {
public:
  /// What a result reads before its reply came: no syscall returns it.
  static constexpr int none = 1000;

  callback_results() {
    for (auto& result : results_)
      result.store(none);
  }
  callback_results(const callback_results&) = delete;
  callback_results& operator=(const callback_results&) = delete;

  auto into(std::size_t index) {
    return [this, index](int result) noexcept { results_.at(index).store(result); };
  }
  int operator[](std::size_t index) const { return results_.at(index).load(); }
  bool arrived(std::size_t index) const { return (*this)[index] != none; }

private:
  std::array<std::atomic<int>, N> results_;
};

// ---- waiting without fixed sleeps -------------------------------------------

/// Polls `done` (yielding, not sleeping a fixed time) until it holds; gives
/// up after `limit` only so that a failure gets a message before the
/// watchdog fires. Not a timing target: correct code gets there quickly.
template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

/// Watches `still` for `span`: false if it stopped holding. Used only to
/// show that something that must never happen by itself (a parked op
/// resolving, a scheduler with a parked op finishing) does not happen
/// while we look; no correct run depends on how long we look.
template <class Predicate>
bool holds_for(Predicate still, std::chrono::milliseconds span) {
  const auto until = std::chrono::steady_clock::now() + span;
  while (std::chrono::steady_clock::now() < until) {
    if (!still()) return false;
    std::this_thread::yield();
  }
  return still();
}

/// Round-trips nops until `done()` holds: guards die on the scheduler
/// thread just after their reply resolves, so a later nop's round trip
/// gives them the time to. `Handle`: i2o2::handle or i2o2_test::any_handle.
template <class Handle, class Predicate>
bool settle(Handle& handle, Predicate done) {
  for (int i = 0; i < 100000; ++i) {
    if (done()) return true;
    if (handle.submit(i2o2::op::nop{}).wait() != 0) return false;
  }
  return done();
}

/// A few nop round trips: afterwards the scheduler has gone round its loop
/// (submitted, reaped) several times since anything sent before, so an op
/// sent earlier is in the kernel (e.g. parked on its pipe).
template <class Handle>
void churn(Handle& handle, int rounds = 16) {
  for (int i = 0; i < rounds; ++i)
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
}

}  // namespace i2o2_test
