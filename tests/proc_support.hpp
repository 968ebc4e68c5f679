#pragma once
// Views of this process's threads through Linux /proc: tests find the
// scheduler thread by its name (config::thread_name) and watch it sleep,
// which it does only inside io_uring_enter.

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

namespace i2o2_test {

/// The kernel's id of this process's thread named `name`.
inline std::optional<pid_t> thread_named(const std::string& name) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string line;
    std::getline(comm, line);
    if (line == name) return static_cast<pid_t>(std::stol(entry.path().filename().string()));
  }
  return std::nullopt;
}

/// Thread `tid`'s state letter from /proc ('S': asleep; '?': unreadable).
/// The state follows the name, which is in parentheses and may hold any
/// character, so it is found after the last ')'.
inline char run_state(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto end_of_name = text.rfind(')');
  return end_of_name == std::string::npos || end_of_name + 2 >= text.size() ? '?' : text[end_of_name + 2];
}

}  // namespace i2o2_test
