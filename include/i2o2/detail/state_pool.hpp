#pragma once
/// A pool of reply states so steady-state submits allocate nothing.
///
/// Each thread owns a cache. A state remembers the cache it came from and
/// goes back there when freed: straight into the owner's list when the
/// owner frees it, or onto the cache's lock-free return stack when another
/// thread (the scheduler) lets go last. The owner takes the whole return
/// stack at once with one exchange, so pushes and the take cannot suffer
/// ABA. Caches are never freed: a thread that exits leaves its cache for
/// the next new thread, so a late return always finds its cache alive.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

namespace i2o2::detail {

template <class T, std::size_t Capacity = 256>
class state_pool {
public:
  template <class... Args>
  static T* make(Args&&... args) {
    cache& home = local();
    if (home.free.empty()) home.take_returned();
    block* spare = nullptr;
    if (!home.free.empty()) {
      spare = home.free.back();
      home.free.pop_back();
    } else {
      spare = new block;
      spare->home = &home;
    }
    return ::new (static_cast<void*>(spare->storage)) T(std::forward<Args>(args)...);
  }

  static void destroy(T* object) noexcept {
    object->~T();
    block* freed = block_of(object);
    cache& mine = local();
    if (freed->home != &mine) {
      freed->home->give_back(freed);
    } else if (mine.free.size() < Capacity) {
      mine.free.push_back(freed);  // reserved up front: never allocates
    } else {
      delete freed;
    }
  }

private:
  struct cache;
  struct block {
    block* next = nullptr;  // on a return stack
    cache* home = nullptr;
    alignas(T) std::byte storage[sizeof(T)];
  };

  struct cache {
    cache() { free.reserve(Capacity); }
    // Owner thread only.
    std::vector<block*> free;
    // Blocks other threads freed, pushed by them, taken whole by the owner.
    std::atomic<block*> returned{nullptr};

    void give_back(block* freed) noexcept {
      freed->next = returned.load(std::memory_order_relaxed);
      // Release: the owner that takes the stack sees the block's contents.
      while (!returned.compare_exchange_weak(freed->next, freed, std::memory_order_release,
                                             std::memory_order_relaxed)) {
      }
    }
    void take_returned() {
      block* taken = returned.exchange(nullptr, std::memory_order_acquire);
      while (taken != nullptr) {
        block* next = taken->next;
        if (free.size() < Capacity)
          free.push_back(taken);
        else
          delete taken;
        taken = next;
      }
    }
  };

  static block* block_of(T* object) noexcept {
    return reinterpret_cast<block*>(reinterpret_cast<std::byte*>(object) - offsetof(block, storage));
  }

  /// Caches of exited threads, for new threads to adopt.
  struct orphanage {
    std::mutex mutex;
    std::vector<cache*> caches;
  };
  static orphanage& orphans() {
    static orphanage* shared = new orphanage;  // never destroyed: threads may exit after main
    return *shared;
  }

  struct thread_binding {
    cache* bound;
    thread_binding() {
      auto& shared = orphans();
      std::lock_guard lock(shared.mutex);
      if (shared.caches.empty()) {
        bound = new cache;
      } else {
        bound = shared.caches.back();
        shared.caches.pop_back();
      }
    }
    ~thread_binding() {
      auto& shared = orphans();
      std::lock_guard lock(shared.mutex);
      shared.caches.push_back(bound);
    }
  };
  static cache& local() {
    thread_local thread_binding binding;
    return *binding.bound;
  }
};

}  // namespace i2o2::detail
