// A queue family whose queue cannot pop: basic_scheduler must reject it, naming queue_family.
#include <i2o2/i2o2.hpp>

#include <span>

struct push_only {
  template <class T>
  struct queue {
    explicit queue(std::size_t) {}
    bool try_push(T&) noexcept { return false; }
    bool try_push_many(std::span<T>) noexcept { return false; }
    bool empty() const noexcept { return true; }
    std::size_t capacity() const noexcept { return 0; }
  };
};

i2o2::basic_scheduler<push_only, i2o2::wait::eventfd, i2o2::reply::future, i2o2::any_guard>* scheduler;
