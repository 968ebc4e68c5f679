#pragma once
/// Bookkeeping for one registered-resource table (files or buffers): which
/// slots are free, registered, or unregistered but still awaiting the
/// kernel's tag CQE, and the guard of each (G4: a guard lives until that
/// CQE says no op uses the slot any more); and, for files, which slots a
/// direct descriptor holds or an op in flight may install one into, never
/// handed out. Scheduler thread only.

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
      list_free(index - 1);
  }

  /// A free slot to register into, if any. (A slot a direct descriptor
  /// took while listed is dropped from the list here.)
  std::optional<std::uint32_t> acquire() noexcept {
    while (!free_.empty()) {
      const std::uint32_t index = free_.back();
      free_.pop_back();
      entries_[index].listed = false;
      if (!entries_[index].direct && entries_[index].direct_ops == 0) return index;
    }
    return std::nullopt;
  }
  /// The kernel accepted the registration into `index`.
  void commit(std::uint32_t index, stored_guard_t<Guard>&& guard) noexcept {
    entries_[index].guard.emplace(std::move(guard));
    entries_[index].state = slot_state::registered;
    ++entries_[index].registration;
    ++live_;
  }
  /// The kernel refused it: the slot is free again.
  void abort(std::uint32_t index) noexcept { list_free(index); }

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
    list_free(index);
    --live_;
  }

  /// An op naming slot `index` for a direct descriptor (one to install or
  /// a close) goes into the ring. The kernel may act on the slot before
  /// its CQE is reaped: until then the slot is not handed out.
  void direct_op_placed(std::uint32_t index) noexcept {
    if (index < entries_.size()) ++entries_[index].direct_ops;
  }

  /// That op's CQE: it `installed` a direct descriptor into `index`, or
  /// emptied the slot, if it `succeeded`. Installed over a file registered
  /// there (before the op was placed: the slot was not handed out since),
  /// it ended that registration: its tag CQE, before or after this one,
  /// releases the guard as after an unregister. `named`: placed with
  /// direct_op_placed; an allocated slot (IORING_FILE_INDEX_ALLOC) is
  /// known only now.
  void direct_op_done(std::uint32_t index, bool named, bool installed, bool succeeded) noexcept {
    if (index >= entries_.size()) return;
    entry& slot = entries_[index];
    if (named && slot.direct_ops != 0) --slot.direct_ops;
    if (succeeded) {
      slot.direct = installed;
      if (installed && slot.state == slot_state::registered) release(index);
    }
    list_free(index);
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
    std::uint16_t direct_ops = 0;  // ops in flight naming the slot for a direct descriptor
    bool direct = false;           // a direct descriptor holds the slot
    bool listed = false;           // in free_
  };

  /// Onto the free list if it is free, not listed, and no direct
  /// descriptor holds it or may be installed into it.
  void list_free(std::uint32_t index) noexcept {
    entry& slot = entries_[index];
    if (slot.listed || slot.direct || slot.direct_ops != 0 || slot.state != slot_state::free) return;
    slot.listed = true;
    free_.push_back(index);
  }
  std::vector<entry> entries_;
  std::vector<std::uint32_t> free_;
  std::uint32_t live_ = 0;
  std::uint32_t awaiting_tag_ = 0;
};

}  // namespace i2o2::detail
