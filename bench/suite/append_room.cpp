// append's preallocated room: sized per repetition from the rate the case
// has shown, so a long --seconds neither outgrows it (the file would grow
// op by op, and on a nearly full disk fail with ENOSPC mid-run) nor
// preallocates gigabytes for a slow disk.

#include "cases.hpp"
#include "data_files.hpp"

#include <algorithm>
#include <memory>

namespace bench {

namespace {

/// Room for `duration` of appends at `chains_per_sec` (0: unknown yet),
/// twice over, within the floor and ceiling, in whole MiB.
std::uint64_t append_room(double chains_per_sec, std::chrono::milliseconds duration) {
  const double seconds = std::chrono::duration<double>(duration).count();
  const double wanted = 2 * chains_per_sec * seconds * append_block;
  const double bounded =
      std::clamp(wanted, static_cast<double>(append_room_floor), static_cast<double>(append_room_ceiling));
  constexpr std::uint64_t mib = std::uint64_t{1} << 20;
  return (static_cast<std::uint64_t>(bounded) + mib - 1) / mib * mib;
}

}  // namespace

std::function<rep_result(std::chrono::milliseconds)> append_run(const plan& p, append_body body) {
  auto fastest = std::make_shared<double>(0.0);  // chains/s, over the case's repetitions so far
  return [&p, body = std::move(body), fastest](std::chrono::milliseconds duration) {
    const std::uint64_t room = append_room(*fastest, duration);
    reset_append_file(p.append_file, room);
    const std::uint64_t chains = room / append_block;
    rep_result result = body(duration, chains);
    *fastest = std::max(*fastest, result.ops_per_sec);
    result.cut_short = result.ops >= chains;
    return result;
  };
}

}  // namespace bench
