#pragma once
/// Bookkeeping for one registered-resource table (files or buffers): which
/// slots are free, registered, or unregistered but still awaiting the
/// kernel's tag CQE, and the guard of each (G4: a guard lives until that
/// CQE says no op uses the slot any more). Scheduler thread only.

#include "../guard.hpp"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace i2o2::detail {

template <class Guard>
class resource_table {
public:
  explicit resource_table(std::uint32_t size) : entries_(size) {
    free_.reserve(size);
    for (std::uint32_t index = size; index > 0; --index)
      free_.push_back(index - 1);
  }

  /// A free slot to register into, if any.
  std::optional<std::uint32_t> acquire() noexcept {
    if (free_.empty()) return std::nullopt;
    const std::uint32_t index = free_.back();
    free_.pop_back();
    return index;
  }
  /// The kernel accepted the registration into `index`.
  void commit(std::uint32_t index, stored_guard_t<Guard>&& guard) noexcept {
    entries_[index].guard.emplace(std::move(guard));
    entries_[index].state = slot_state::registered;
    ++entries_[index].registration;
    ++live_;
  }
  /// The kernel refused it: the slot is free again.
  void abort(std::uint32_t index) noexcept { free_.push_back(index); }

  bool registered(std::uint32_t index) const noexcept {
    return index < entries_.size() && entries_[index].state == slot_state::registered;
  }
  /// Counts the registrations into `index`: tells one from the next.
  std::uint32_t registration(std::uint32_t index) const noexcept {
    return index < entries_.size() ? entries_[index].registration : 0;
  }
  /// Unregistered: the guard stays until `on_tag`.
  void release(std::uint32_t index) noexcept {
    entries_[index].state = slot_state::releasing;
    ++awaiting_tag_;
  }

  /// The tag CQE for `index`: the kernel no longer uses the old resource.
  void on_tag(std::uint32_t index) noexcept {
    if (index >= entries_.size() || entries_[index].state == slot_state::free) return;
    if (entries_[index].state == slot_state::releasing) --awaiting_tag_;
    entries_[index].guard.reset();
    entries_[index].state = slot_state::free;
    free_.push_back(index);
    --live_;
  }

  /// Registered or awaiting a tag CQE.
  std::uint32_t live() const noexcept { return live_; }
  /// Unregistered, tag CQE still to come (each will take a CQE).
  std::uint32_t awaiting_tag() const noexcept { return awaiting_tag_; }

  /// Calls `f(index)` for every registered slot (for shutdown) until `f`
  /// returns false.
  template <class F>
  void for_each_registered(F&& f) {
    for (std::uint32_t index = 0; index < entries_.size(); ++index)
      if (entries_[index].state == slot_state::registered && !f(index)) return;
  }

private:
  enum class slot_state : std::uint8_t { free, registered, releasing };
  struct entry {
    std::optional<stored_guard_t<Guard>> guard;
    std::uint32_t registration = 0;
    slot_state state = slot_state::free;
  };
  std::vector<entry> entries_;
  std::vector<std::uint32_t> free_;
  std::uint32_t live_ = 0;
  std::uint32_t awaiting_tag_ = 0;
};

}  // namespace i2o2::detail
