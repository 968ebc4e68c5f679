#pragma once
/// The files the IO workloads use: where they may live (on a disk, never on
/// tmpfs, where O_DIRECT and the page cache mean nothing), how they are
/// created and prepared before timing, and their removal — also when the
/// run fails or is interrupted.

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace bench {

/// An open file descriptor, closed on destruction.
class file_descriptor {
public:
  /// Opens `path` with `flags`; throws std::system_error when it cannot.
  file_descriptor(const std::string& path, int flags);
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor();
  int get() const noexcept { return fd_; }

private:
  int fd_;
};

/// Fails the run unless `dir` is a directory on a real file system (not
/// tmpfs/ramfs) that accepts O_DIRECT.
void check_data_dir(const std::string& dir);

/// Fails the run, saying so, unless `dir` has room for `bytes` more (with a
/// margin) for `what` ("the randread file", ...).
void check_free_space(const std::string& dir, std::uint64_t bytes, const std::string& what);

/// `dir`/i2o2-bench.<pid>.<name>, remembered for removal at exit.
std::string data_path(const std::string& dir, const std::string& name);

/// Remembers `path` (a file made elsewhere) for removal at exit, also on
/// SIGINT/SIGTERM, until remove_data_file.
void remove_at_exit(const std::string& path);

/// Creates `path` with `size` bytes of pseudo-random data, synced. For
/// randread: written data (neither the file system nor a thin-provisioned
/// disk can answer a read of it without reading). For seqwrite: the blocks
/// are allocated and the page cache holds every page, so timed rewrites
/// measure writing, not first-touch allocation.
void create_data_file(const std::string& path, std::uint64_t size);

/// Before an append repetition (untimed): truncates to 0 and preallocates
/// `room` bytes beyond the end (FALLOC_FL_KEEP_SIZE), synced. Throws
/// skip_case, saying so, when the file system lacks that room.
void reset_append_file(const std::string& path, std::uint64_t room);

/// Removes `path` now (and forgets it).
void remove_data_file(const std::string& path);

/// Kills process group `group` (a child run in a group of its own: fio)
/// if the run ends or is interrupted (SIGINT, SIGTERM, SIGHUP) while it
/// runs, until forget_child_group.
void kill_group_at_exit(pid_t group);
void forget_child_group();

}  // namespace bench
