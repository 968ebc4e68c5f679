// detail/state_pool.hpp: a thread's cache is its own. What a thread frees or
// makes after its binding is gone (from thread_locals built before the
// binding, so destroyed after it) never touches the cache it gave away,
// which a new thread may already own; every object made is destroyed once.
#include <i2o2/detail/state_pool.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <semaphore>
#include <thread>

namespace {

/// Counts live objects and destructions of an object not alive. One Tag per
/// test case, so that each has a pool (and an orphanage) of its own.
template <int Tag>
struct tracked {
  static constexpr int alive_mark = 0x5eed;
  static inline std::atomic<int> live{0};
  static inline std::atomic<int> bad_destroys{0};
  int mark = alive_mark;
  tracked() { live.fetch_add(1); }
  ~tracked() {
    if (mark != alive_mark) bad_destroys.fetch_add(1);
    mark = 0;
    live.fetch_sub(1);
  }
};

/// A thread_local whose destructor uses the pool: built before the thread's
/// first make, it is destroyed after the pool's binding.
struct at_thread_exit {
  std::function<void()> run;
  ~at_thread_exit() {
    if (run) run();
  }
};

template <class T>
std::uintptr_t address(T* object) {
  return reinterpret_cast<std::uintptr_t>(object);
}

}  // namespace

TEST_CASE("state_pool: frees and makes after a thread's binding is gone leave the cache it gave away alone") {
  using object = tracked<1>;
  using pool = i2o2::detail::state_pool<object>;
  std::binary_semaphore a_unbound{0}, b_adopted{0}, a_done{0};
  object* kept = nullptr;  // A's, freed only at A's exit
  object* late = nullptr;  // made by A at exit, freed by B
  std::uintptr_t a_spare = 0, late_made = 0, b_first = 0, b_next = 0, b_after = 0, kept_at = 0;

  std::thread a([&] {
    thread_local at_thread_exit exit_hook;  // first: destroyed after the binding
    exit_hook.run = [&] {
      a_unbound.release();  // A's cache is in the orphanage now
      b_adopted.acquire();
      pool::destroy(kept);
      late = pool::make();
      late_made = address(late);
      pool::destroy(pool::make());
      a_done.release();
    };
    kept = pool::make();  // binds A to a new cache
    kept_at = address(kept);
    object* spare = pool::make();
    a_spare = address(spare);
    pool::destroy(spare);  // A's list: [spare]
  });
  std::thread b([&] {
    a_unbound.acquire();
    object* first = pool::make();  // binds B: adopts A's cache, the only orphan
    b_first = address(first);
    pool::destroy(first);  // B's list: [first]
    b_adopted.release();
    a_done.acquire();
    object* next = pool::make();   // B's list is B's alone: the block it freed
    object* after = pool::make();  // then A's late free, back through the return stack
    b_next = address(next);
    b_after = address(after);
    pool::destroy(next);
    pool::destroy(after);
    pool::destroy(late);  // made by a thread that owned no cache
  });
  a.join();
  b.join();

  CHECK(b_first == a_spare);  // B did adopt A's cache
  CHECK(late_made != kept_at);
  CHECK(late_made != a_spare);
  CHECK(b_next == b_first);
  CHECK(b_after == kept_at);
  CHECK(object::live.load() == 0);
  CHECK(object::bad_destroys.load() == 0);
}

TEST_CASE("state_pool: a thread's late frees and makes race nothing with the thread that adopted its cache") {
  // Under ThreadSanitizer this catches a late op touching the adopted
  // cache's owner-only list, without either side having to be caught in the act.
  using object = tracked<2>;
  using pool = i2o2::detail::state_pool<object>;
  constexpr int rounds = 100;
  std::binary_semaphore a_unbound{0}, b_adopted{0};
  object* kept = nullptr;

  std::thread a([&] {
    thread_local at_thread_exit exit_hook;
    exit_hook.run = [&] {
      a_unbound.release();
      b_adopted.acquire();
      for (int i = 0; i < rounds; ++i) {
        pool::destroy(pool::make());
        if (i == rounds / 2) pool::destroy(kept);
      }
    };
    kept = pool::make();
    pool::destroy(pool::make());
  });
  std::thread b([&] {
    a_unbound.acquire();
    object* mine = pool::make();  // adopts A's cache
    b_adopted.release();
    for (int i = 0; i < rounds; ++i)
      pool::destroy(pool::make());
    pool::destroy(mine);
  });
  a.join();
  b.join();

  CHECK(object::live.load() == 0);
  CHECK(object::bad_destroys.load() == 0);
}

TEST_CASE("state_pool: a thread first using the pool at its exit gives its cache away when done") {
  using object = tracked<3>;
  using pool = i2o2::detail::state_pool<object>;
  object* handed = nullptr;
  std::uintptr_t c_spare = 0, d_first = 0;

  std::thread c([&] {
    thread_local at_thread_exit exit_hook;  // the pool is untouched until it runs
    exit_hook.run = [&] {
      handed = pool::make();  // binds C now, during its exit
      object* spare = pool::make();
      c_spare = address(spare);
      pool::destroy(spare);
    };
  });
  c.join();
  std::thread d([&] {
    object* first = pool::make();  // adopts C's cache
    d_first = address(first);
    pool::destroy(first);
    pool::destroy(handed);
  });
  d.join();

  CHECK(d_first == c_spare);
  CHECK(object::live.load() == 0);
  CHECK(object::bad_destroys.load() == 0);
}

// The gate on I2O2_TESTING and ASan (state_pool.hpp) must not turn the
// poisoning off unseen: the ASan build checks it is on.
#if defined(__SANITIZE_ADDRESS__)
#define I2O2_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define I2O2_TEST_UNDER_ASAN 1
#endif
#endif
#ifdef I2O2_TEST_UNDER_ASAN
#include <sanitizer/asan_interface.h>

namespace {
/// Whole 8-byte granules, as the pooled states are: ASan cannot poison a
/// partial one.
struct granules {
  std::uint64_t words[4] = {};
};
}  // namespace

TEST_CASE("state_pool: under ASan a destroyed object's block is poisoned until it is made again") {
  using pool = i2o2::detail::state_pool<granules>;
  auto* object = pool::make();
  CHECK_FALSE(__asan_address_is_poisoned(object));
  pool::destroy(object);
  CHECK(__asan_address_is_poisoned(object));  // a use after destroy is reported
  auto* again = pool::make();
  REQUIRE(again == object);  // the thread's cache hands the block back
  CHECK_FALSE(__asan_address_is_poisoned(again));
  pool::destroy(again);
}
#endif
