// A main() for builds without libFuzzer: runs LLVMFuzzerTestOneInput once on
// every file named on the command line and on every regular file inside
// every directory named there (recursively, in sorted order). An oracle
// violation aborts, so the ctest entry fails; a missing path is an error.
//
// Environment:
//  - I2O2_REPLAY_TIMEOUT=S (default 30): a watchdog aborts, naming the
//    input, when one run of an input takes longer than S seconds, so a
//    hang fails fast and says where instead of running into ctest's
//    timeout.
//  - I2O2_REPLAY_REPEAT=N (default 1): inputs found under a directory
//    named `regressions`, and files named on the command line, run N
//    times each: a finding may depend on timing, so one clean replay of
//    its reproducer proves little. The seed corpus (coverage) runs once.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

namespace {

/// A positive whole number from the environment, or `fallback`.
long env_count(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 1) {
    std::fprintf(stderr, "replay: %s must be a positive whole number, got \"%s\"\n", name, text);
    std::exit(2);
  }
  return value;
}

/// Aborts the process, naming the input, when one run outlasts its limit.
/// A thread rather than alarm(): a signal would interrupt the scheduler's
/// io_uring_enter (-EINTR) and change what is being replayed.
class watchdog {
public:
  explicit watchdog(std::chrono::seconds limit) : limit_(limit), thread_([this] { watch(); }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }

  /// A run of `input` starts now.
  void start(const std::string& input) {
    std::lock_guard lock(mutex_);
    input_ = input;
    deadline_ = std::chrono::steady_clock::now() + limit_;
    armed_ = true;
    changed_.notify_one();
  }
  /// The run ended.
  void stop() {
    std::lock_guard lock(mutex_);
    armed_ = false;
  }

private:
  void watch() {
    std::unique_lock lock(mutex_);
    while (!done_) {
      if (!armed_) {
        changed_.wait(lock);
        continue;
      }
      const auto deadline = deadline_;
      if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && armed_ && !done_ &&
          deadline_ == deadline) {
        std::fprintf(stderr,
                     "replay: %s did not finish within %lld s (a hang; I2O2_REPLAY_TIMEOUT sets the limit)\n",
                     input_.c_str(), static_cast<long long>(limit_.count()));
        std::fflush(stderr);
        std::abort();
      }
    }
  }

  const std::chrono::seconds limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string input_;                               // the input being run
  std::chrono::steady_clock::time_point deadline_;  // when its run must have ended
  bool armed_ = false;                              // a run is in progress
  bool done_ = false;                               // main is finished: exit
  std::thread thread_;                              // last: started once the rest exists
};

struct input {
  fs::path path;
  bool repeated;  ///< runs I2O2_REPLAY_REPEAT times
};

bool under_regressions(const fs::path& path) {
  return std::any_of(path.begin(), path.end(), [](const fs::path& part) { return part == "regressions"; });
}

}  // namespace

int main(int argc, char** argv) {
  const long repeat = env_count("I2O2_REPLAY_REPEAT", 1);
  const long timeout = env_count("I2O2_REPLAY_TIMEOUT", 30);
  std::vector<input> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path path(argv[i]);
    std::error_code error;
    if (fs::is_directory(path, error)) {
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file() && entry.path().filename().string().rfind("README", 0) != 0)
          inputs.push_back({entry.path(), under_regressions(entry.path())});
    } else if (fs::is_regular_file(path, error)) {
      inputs.push_back({path, true});
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end(), [](const input& a, const input& b) { return a.path < b.path; });
  watchdog dog{std::chrono::seconds(timeout)};
  std::size_t runs = 0;
  for (const auto& [path, repeated] : inputs) {
    std::ifstream file(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    const long times = repeated ? repeat : 1;
    std::fprintf(stderr, "replay: %s (%zu bytes)%s\n", path.c_str(), bytes.size(),
                 times > 1 ? (" x" + std::to_string(times)).c_str() : "");
    for (long i = 0; i < times; ++i) {
      dog.start(path.string() + (times > 1 ? " (run " + std::to_string(i + 1) + ")" : ""));
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      dog.stop();
      ++runs;
    }
  }
  std::fprintf(stderr, "replay: %zu inputs (%zu runs), no finding\n", inputs.size(), runs);
  return 0;
}
