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
///
/// A thread is bound to its cache by a thread_local built on its first
/// make. Thread-locals built before that binding are destroyed after it and
/// may still free or make states (a per-thread vector of futures; on the
/// main thread, a static future destroyed at exit), when the cache may
/// already belong to a new thread. So the binding's destructor marks the
/// thread unbound: from then on what it frees goes home through the return
/// stack, as another thread's would, and what it makes is a new block
/// whose home, `ownerless()`, no thread owns and deletes what it is given
/// back. A thread that only frees never binds. A thread whose first make
/// comes from such a destructor binds then: glibc destroys a thread_local
/// built during thread-exit destruction as soon as the running destructor
/// returns, so the cache is given away again at once. Only once the main
/// thread's thread_locals are gone (a static destructor at exit) is such a
/// binding never destroyed: the main thread keeps that cache until the
/// process ends.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

// Test builds under ASan poison pooled blocks (see poison()). Only test
// builds: every file of a program must agree on these inline functions, and
// a program may mix ASan and plain files, where a plain file's make()
// would hand out a block an ASan file's destroy() poisoned. I2O2_TESTING
// is set for a whole build.
#if defined(I2O2_TESTING) && defined(__SANITIZE_ADDRESS__)
#define I2O2_POISON_POOLS 1
#elif defined(I2O2_TESTING) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define I2O2_POISON_POOLS 1
#endif
#endif
#ifdef I2O2_POISON_POOLS
#include <sanitizer/asan_interface.h>
#endif

namespace i2o2::detail {

template <class T, std::size_t Capacity = 256>
class state_pool {
public:
  /// Builds a T in a pooled block. Any thread; allocates only when the
  /// thread's cache is empty, or once the thread's binding is gone.
  template <class... Args>
  static T* make(Args&&... args) {
    cache* home = owned_;
    if (home == nullptr) [[unlikely]]
      home = bind();
    block* spare = nullptr;
    if (home == nullptr) {
      spare = fresh(ownerless());  // this thread is exiting: it owns no cache
    } else {
      if (home->free.empty()) home->take_returned();
      if (!home->free.empty()) {
        spare = home->free.back();
        home->free.pop_back();
      } else {
        spare = fresh(*home);
      }
    }
    unpoison(spare);
    return ::new (static_cast<void*>(spare->storage)) T(std::forward<Args>(args)...);
  }

  /// Destroys an object from make() and pools its block. Any thread.
  static void destroy(T* object) noexcept {
    object->~T();
    block* freed = block_of(object);
    poison(freed);
    // Null when unbound, which no block's home is: the block goes home.
    cache* mine = owned_;
    if (freed->home != mine) {
      freed->home->give_back(freed);
    } else if (mine->free.size() < Capacity) {
      mine->free.push_back(freed);  // reserved up front: never allocates
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
    explicit cache(bool has_owners) : pooled(has_owners) {
      if (pooled) free.reserve(Capacity);
    }
    // False for ownerless(): nobody would take its return stack.
    const bool pooled;
    // Owner thread only.
    std::vector<block*> free;
    // Blocks other threads freed, pushed by them, taken whole by the owner.
    std::atomic<block*> returned{nullptr};

    void give_back(block* freed) noexcept {
      if (!pooled) {
        delete freed;
        return;
      }
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

  // ASan test builds: a pooled block's object is unreadable until it is made
  // again, so that a use after destroy (a sender touching a state after its
  // last reference went) is reported rather than reading a reused block.
  static void poison([[maybe_unused]] block* pooled) noexcept {
#ifdef I2O2_POISON_POOLS
    ASAN_POISON_MEMORY_REGION(pooled->storage, sizeof(pooled->storage));
#endif
  }
  static void unpoison([[maybe_unused]] block* pooled) noexcept {
#ifdef I2O2_POISON_POOLS
    ASAN_UNPOISON_MEMORY_REGION(pooled->storage, sizeof(pooled->storage));
#endif
  }

  static block* fresh(cache& home) {
    block* made = new block;
    made->home = &home;
    return made;
  }

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

  /// Home of the blocks made by threads whose binding is gone.
  static cache& ownerless() {
    static cache* shared = new cache(false);  // never destroyed: as orphans()
    return *shared;
  }

  // The calling thread's cache: set while its binding lives, else null.
  // Constant-initialised and trivially destructible, so reading it costs
  // no guard and it stays readable while the thread's other
  // thread_locals are destroyed.
  static inline constinit thread_local cache* owned_ = nullptr;
  // Set when the binding is destroyed: the thread must not bind again.
  static inline constinit thread_local bool unbound_ = false;

  struct thread_binding {
    cache* bound;
    thread_binding() {
      {
        auto& shared = orphans();
        std::lock_guard lock(shared.mutex);
        if (shared.caches.empty()) {
          bound = new cache(true);
        } else {
          bound = shared.caches.back();
          shared.caches.pop_back();
        }
      }
      owned_ = bound;
    }
    ~thread_binding() {
      // Before the cache is shared: this thread never touches it as owner again.
      owned_ = nullptr;
      unbound_ = true;
      auto& shared = orphans();
      std::lock_guard lock(shared.mutex);
      shared.caches.push_back(bound);
    }
  };
  /// The thread's cache, bound on first use; null once its binding is gone.
  static cache* bind() {
    if (unbound_) return nullptr;
    thread_local thread_binding binding;
    return binding.bound;
  }
};

}  // namespace i2o2::detail
