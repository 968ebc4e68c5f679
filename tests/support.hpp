#pragma once
// Shared test helpers: a watchdog that turns a hang into a failure, temp
// files, pipes to park ops on, and guards that record their destruction.

#include <i2o2/i2o2.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

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

/// A pipe: a read on an empty pipe parks until the test writes to it.
class pipe_pair {
public:
  pipe_pair() { REQUIRE(::pipe2(fds_, O_CLOEXEC) == 0); }
  pipe_pair(const pipe_pair&) = delete;
  pipe_pair& operator=(const pipe_pair&) = delete;
  ~pipe_pair() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void feed(const char* data, std::size_t size) {
    REQUIRE(::write(fds_[1], data, size) == static_cast<ssize_t>(size));
  }

private:
  int fds_[2];
};

/// Shared record of one guard's life: how often it was destroyed, whether
/// the op's completion had been observed before that, and on which thread.
struct guard_record {
  std::atomic<int> destroyed{0};
  std::atomic<bool> completion_seen{false};
  std::atomic<bool> destroyed_before_completion{false};
};

/// A guard that records its destruction into a `guard_record` (G1/G2).
class counting_guard {
public:
  explicit counting_guard(std::shared_ptr<guard_record> record) noexcept : record_(std::move(record)) {}
  counting_guard(counting_guard&& other) noexcept : record_(std::move(other.record_)) {}
  counting_guard& operator=(counting_guard&& other) noexcept {
    if (this != &other) {
      note_destroyed();
      record_ = std::move(other.record_);
    }
    return *this;
  }
  ~counting_guard() { note_destroyed(); }

private:
  void note_destroyed() noexcept {
    if (!record_) return;
    if (!record_->completion_seen.load()) record_->destroyed_before_completion = true;
    record_->destroyed.fetch_add(1);
    record_.reset();
  }
  std::shared_ptr<guard_record> record_;
};

} // namespace i2o2_test
