#pragma once
/// A per-thread cache of reply states, so steady-state submits allocate
/// nothing: a state freed on a thread goes to that thread's cache, and the
/// next allocation on it takes one from there. Each cache is bounded; a
/// thread's cache is freed when the thread exits.

#include <cstddef>
#include <new>
#include <vector>

namespace i2o2::detail {

template <class T, std::size_t Capacity = 128>
class state_pool {
public:
  template <class... Args>
  static T* make(Args&&... args) {
    auto& free = cache().free;
    if (!free.empty()) {
      void* memory = free.back();
      free.pop_back();
      return ::new (memory) T(std::forward<Args>(args)...);
    }
    return ::new (::operator new(sizeof(T), std::align_val_t(alignof(T)))) T(std::forward<Args>(args)...);
  }

  static void destroy(T* object) noexcept {
    object->~T();
    auto& free = cache().free;
    if (free.size() < Capacity && cache().alive) {
      free.push_back(object);  // reserved up front: never allocates
      return;
    }
    ::operator delete(static_cast<void*>(object), std::align_val_t(alignof(T)));
  }

private:
  struct thread_cache {
    thread_cache() { free.reserve(Capacity); }
    ~thread_cache() {
      alive = false;
      for (void* memory : free) ::operator delete(memory, std::align_val_t(alignof(T)));
      free.clear();
    }
    std::vector<void*> free;
    bool alive = true;
  };
  static thread_cache& cache() noexcept {
    thread_local thread_cache local;
    return local;
  }
};

} // namespace i2o2::detail
