#pragma once
/// The scheduler's table of in-flight ops. An op's user_data is its slot
/// index and the slot's generation; the slot keeps the reply's sender until
/// the op's first CQE and the guard until its last (ops that post several,
/// multishot ones and zero-copy sends, flag all but the last with
/// IORING_CQE_F_MORE). Scheduler thread only.

#include "../guard.hpp"
#include "../op.hpp"
#include "direct_files.hpp"
#include "table_use.hpp"
#include "user_data.hpp"

#include <linux/time_types.h>

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
    for (std::uint32_t id = size; id > 0; --id)
      free_.push_back(id - 1);
  }

  std::uint32_t in_use() const noexcept { return static_cast<std::uint32_t>(slots_.size() - free_.size()); }

  /// Takes a free slot (the scheduler's CQ budget ensures there is one);
  /// returns the op's user_data.
  std::uint64_t insert(Sender&& sender, stored_guard_t<Guard>&& guard, std::uint64_t key,
                       cqe_extra* extra_out = nullptr, table_use late_use = {},
                       direct_file_use direct = {}) noexcept {
    assert(!free_.empty());
    const std::uint32_t id = free_.back();
    free_.pop_back();
    slot& target = slots_[id];
    target.sender.emplace(std::move(sender));
    target.guard.emplace(std::move(guard));
    target.key = key;
    target.extra_out = extra_out;
    target.late_use = late_use;
    target.direct = direct;
    target.placed = placed_++;
    if (late_use.file != table_use::none || late_use.buffer != table_use::none) ++late_in_flight_;
    target.cancel_requested = false;
    target.cancel_missed = false;
    target.busy = true;
    return user_data_of(id);
  }

  /// A CQE of the op arrived: the first completes its reply (its extra
  /// words, on a CQE32 ring, stored first where the op asked); the last
  /// (`more` false) then destroys its guard (G2) and frees the slot. A
  /// stale or unknown user_data is ignored. Returns how the op changes the
  /// registered-file table (for the scheduler to tell the table).
  direct_file_use complete(std::uint64_t user_data, int result, bool more = false,
                           const __u64* extra = nullptr) noexcept {
    slot* done = find(user_data);
    if (done == nullptr) return {};
    const direct_file_use direct = done->direct;
    if (done->sender) {
      if (done->extra_out != nullptr && extra != nullptr) {
        done->extra_out->words[0] = extra[0];
        done->extra_out->words[1] = extra[1];
      }
      std::move(*done->sender).complete(result);
      done->sender.reset();
    }
    if (more) return direct;
    if (done->late_use.file != table_use::none || done->late_use.buffer != table_use::none) --late_in_flight_;
    done->guard.reset();
    if (done->cancel_missed) --missed_cancels_;
    done->cancel_missed = false;
    done->busy = false;
    ++done->generation;
    free_.push_back(index_of(user_data));
    return direct;
  }

  /// The user_data of the op in flight with `key`, if any.
  std::optional<std::uint64_t> find_key(std::uint64_t key) const noexcept {
    if (key == 0) return std::nullopt;
    for (std::uint32_t id = 0; id < slots_.size(); ++id)
      if (slots_[id].busy && slots_[id].key == key) return user_data_of(id);
    return std::nullopt;
  }

  /// How many ops were ever inserted: a mark for `may_look_up`.
  std::uint64_t placed_count() const noexcept { return placed_; }

  /// Whether an op inserted before mark `placed_before` and still in flight
  /// may yet look up slot `index` of the file (or buffer) table.
  bool may_look_up(bool file, std::uint32_t index, std::uint64_t placed_before) const noexcept {
    if (late_in_flight_ == 0) return false;
    for (const slot& entry : slots_)
      if (entry.busy && entry.placed < placed_before &&
          (file ? entry.late_use.file : entry.late_use.buffer) == index)
        return true;
    return false;
  }

  /// Storage for a linked timeout's timespec, alive until the op's CQE.
  __kernel_timespec& timeout_of(std::uint64_t user_data) noexcept {
    return slots_[index_of(user_data)].timeout;
  }

  /// Calls `f(user_data, id)` for every op in flight not yet asked to
  /// cancel, marking it asked, until `f` returns false (no room for more).
  template <class F>
  void request_cancels(F&& f) noexcept {
    for (std::uint32_t id = 0; id < slots_.size(); ++id) {
      slot& target = slots_[id];
      if (!target.busy || target.cancel_requested) continue;
      if (!f(user_data_of(id), id)) return;
      target.cancel_requested = true;
    }
  }

  /// A shutdown cancel of slot `id` came back without ending its op:
  /// -ENOENT for a linked op the kernel has not started yet (a hard link
  /// starts it even after the op before it was cancelled), -EALREADY for
  /// one already running. While that op is in flight, it is to be asked
  /// again (rearm_missed_cancels). A stale report is harmless: at worst
  /// an op past the deadline is asked twice.
  void cancel_missed(std::uint32_t id) noexcept {
    if (id >= slots_.size()) return;
    slot& target = slots_[id];
    if (!target.busy || !target.cancel_requested || target.cancel_missed) return;
    target.cancel_missed = true;
    ++missed_cancels_;
  }
  bool cancels_missed() const noexcept { return missed_cancels_ != 0; }
  /// Every op whose cancel missed is, for request_cancels, not asked yet.
  void rearm_missed_cancels() noexcept {
    for (slot& target : slots_)
      if (target.cancel_missed) target.cancel_missed = target.cancel_requested = false;
    missed_cancels_ = 0;
  }

private:
  struct slot {
    std::optional<Sender> sender;
    std::optional<stored_guard_t<Guard>> guard;
    std::uint64_t key = 0;
    cqe_extra* extra_out = nullptr;  // the op's prepared_op::extra_out
    table_use late_use{};            // slots it may look up after submission
    direct_file_use direct{};        // a direct descriptor it installs or removes
    std::uint64_t placed = 0;        // the table's placed_count() when inserted
    __kernel_timespec timeout{};
    std::uint32_t generation = 0;  // bumped on every completion
    bool cancel_requested = false;
    bool cancel_missed = false;  // its shutdown cancel found nothing to end
    bool busy = false;  // in flight: until the op's last CQE
  };

  std::uint64_t user_data_of(std::uint32_t id) const noexcept {
    // Generation in bits 32-62; bit 63 stays clear for internal events.
    return (static_cast<std::uint64_t>(slots_[id].generation & 0x7fffffffU) << 32) | id;
  }

  slot* find(std::uint64_t user_data) noexcept {
    const std::uint32_t id = index_of(user_data);
    if (id >= slots_.size() || !slots_[id].busy || user_data_of(id) != user_data) return nullptr;
    return &slots_[id];
  }

  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;
  std::uint64_t placed_ = 0;
  std::uint32_t late_in_flight_ = 0;  // ops in flight with a late table use
  std::uint32_t missed_cancels_ = 0;  // slots with cancel_missed set
};

}  // namespace i2o2::detail
