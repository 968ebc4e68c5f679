#pragma once
/// The scheduler's table of in-flight ops. An op's user_data is its slot
/// index; the slot keeps the reply's sender and the guard until the CQE.
/// Scheduler thread only.

#include "../guard.hpp"

#include <cassert>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace i2o2::detail {

template <class Sender, class Guard>
class slot_table {
public:
  explicit slot_table(std::uint32_t size) : slots_(size) {
    free_.reserve(size);
    for (std::uint32_t id = size; id > 0; --id) free_.push_back(id - 1);
  }

  std::uint32_t in_use() const noexcept { return static_cast<std::uint32_t>(slots_.size() - free_.size()); }

  /// Precondition: a slot is free (the scheduler's CQ budget ensures it).
  std::uint32_t insert(Sender&& sender, stored_guard_t<Guard>&& guard) noexcept {
    assert(!free_.empty());
    const std::uint32_t id = free_.back();
    free_.pop_back();
    slot& target = slots_[id];
    target.sender.emplace(std::move(sender));
    target.guard.emplace(std::move(guard));
    target.cancel_requested = false;
    return id;
  }

  /// The op's CQE arrived: complete its reply first, then destroy its guard
  /// (G2), then free the slot. A CQE for a free slot is ignored.
  void complete(std::uint32_t id, int result) noexcept {
    if (id >= slots_.size() || !slots_[id].sender) return;
    slot& done = slots_[id];
    std::move(*done.sender).complete(result);
    done.sender.reset();
    done.guard.reset();
    free_.push_back(id);
  }

  /// Calls `f(id)` for every op in flight not yet asked to cancel, marking
  /// it asked, until `f` returns false (no room for more cancels).
  template <class F>
  void request_cancels(F&& f) noexcept {
    for (std::uint32_t id = 0; id < slots_.size(); ++id) {
      slot& target = slots_[id];
      if (!target.sender || target.cancel_requested) continue;
      if (!f(id)) return;
      target.cancel_requested = true;
    }
  }

private:
  struct slot {
    std::optional<Sender> sender;
    std::optional<stored_guard_t<Guard>> guard;
    bool cancel_requested = false;
  };
  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;
};

} // namespace i2o2::detail
