// Owning-buffer helpers (owned.hpp read_owned / write_owned): the
// scheduler takes the buffer and hands it back with the result, through
// wait(), try_get() or co_await. Dropping the owned reply early frees
// nothing early (G6): the buffer lives, through the guard, until the op's CQE.
//
// Ops that must stay in flight are parked on an empty pipe and completed by
// writing to it. Every test case runs under a watchdog.
#include "coroutine_support.hpp"
#include "support.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using i2o2_test::detached_task;
using i2o2_test::eventually;
using i2o2_test::pread_string;
using i2o2_test::settle;

i2o2::config small_ring() { return i2o2::config{.queue_capacity = 64, .ring_depth = 8}; }

std::vector<std::byte> to_bytes(const std::string& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

std::string to_string(const std::vector<std::byte>& bytes, std::size_t count) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), count);
}

/// What a tracked_buffer saw when it was destroyed.
struct buffer_record {
  std::atomic<int> destroyed{0};
  std::string contents;  // written before `destroyed` (release), read after it (acquire)
};

/// A buffer for read_owned that records its contents when destroyed: if the
/// buffer died before the kernel wrote into it, the record shows that.
class tracked_buffer {
public:
  tracked_buffer(std::size_t size, std::shared_ptr<buffer_record> record)
      : bytes_(size, '\0'), record_(std::move(record)) {}
  tracked_buffer(tracked_buffer&& other) noexcept = default;  // leaves `other` without a record
  tracked_buffer(const tracked_buffer&) = delete;
  tracked_buffer& operator=(const tracked_buffer&) = delete;
  tracked_buffer& operator=(tracked_buffer&&) = delete;
  ~tracked_buffer() {
    if (!record_) return;
    record_->contents.assign(bytes_.begin(), bytes_.end());
    record_->destroyed.fetch_add(1, std::memory_order_release);
  }
  char* data() noexcept { return bytes_.data(); }
  std::size_t size() const noexcept { return bytes_.size(); }

private:
  std::vector<char> bytes_;
  std::shared_ptr<buffer_record> record_;
};

struct round_trip {
  int written = 0;
  std::vector<std::byte> written_buffer;
  int read = 0;
  std::vector<std::byte> read_buffer;
  std::thread::id resumed_on;
};

detached_task write_then_read(i2o2::handle& handle, int fd, std::promise<round_trip> done) {
  round_trip out;
  auto [written, written_buffer] = co_await i2o2::write_owned(handle, fd, 8, to_bytes("co_awaited write"));
  out.written = written;
  out.written_buffer = std::move(written_buffer);
  // Resumed on the scheduler thread: this submit comes from it.
  auto [read, read_buffer] = co_await i2o2::read_owned(handle, fd, 8, std::vector<std::byte>(16));
  out.read = read;
  out.read_buffer = std::move(read_buffer);
  out.resumed_on = std::this_thread::get_id();
  done.set_value(std::move(out));
}

detached_task read_pipe(i2o2::handle& handle, int fd, std::promise<i2o2::owned_result<std::string>> done) {
  auto result = co_await i2o2::read_owned(handle, fd, i2o2::op::current_position, std::string(6, '.'));
  done.set_value(std::move(result));
}

}  // namespace

TEST_CASE("write_owned resolves with the byte count and hands the buffer back intact", "[owned]") {
  i2o2_test::watchdog dog("write_owned");
  i2o2_test::temp_file file;
  auto [owner, handle] = i2o2::spawn(small_ring());

  const std::string text = "owned bytes go to the kernel and come back";
  auto [result, buffer] = i2o2::write_owned(handle, file.fd(), 100, to_bytes(text)).wait();
  CHECK(result == static_cast<int>(text.size()));
  REQUIRE(buffer.size() == text.size());
  CHECK(to_string(buffer, buffer.size()) == text);
  CHECK(pread_string(file.fd(), text.size(), 100) == text);

  // Any contiguous buffer type: a std::string.
  auto [string_result, string_buffer] = i2o2::write_owned(handle, file.fd(), 0, std::string("string")).wait();
  CHECK(string_result == 6);
  CHECK(string_buffer == "string");
  CHECK(pread_string(file.fd(), 6, 0) == "string");
}

TEST_CASE("read_owned resolves with the bytes read and hands the buffer back", "[owned]") {
  i2o2_test::watchdog dog("read_owned");
  i2o2_test::temp_file file;
  const std::string text = "0123456789";
  REQUIRE(::pwrite(file.fd(), text.data(), text.size(), 0) == 10);
  auto [owner, handle] = i2o2::spawn(small_ring());

  SECTION("a full read") {
    auto [result, buffer] = i2o2::read_owned(handle, file.fd(), 2, std::vector<std::byte>(5)).wait();
    CHECK(result == 5);
    REQUIRE(buffer.size() == 5);
    CHECK(to_string(buffer, 5) == "23456");
  }
  SECTION("a short read at the end of the file keeps the buffer's size") {
    auto [result, buffer] =
        i2o2::read_owned(handle, file.fd(), 0, std::vector<std::byte>(100, std::byte{'#'})).wait();
    CHECK(result == 10);
    REQUIRE(buffer.size() == 100);
    CHECK(to_string(buffer, 10) == text);
    CHECK(to_string(buffer, 100).substr(10) == std::string(90, '#'));
  }
  SECTION("an error gives the buffer back untouched") {
    auto [result, buffer] = i2o2::read_owned(handle, -1, 0, std::vector<std::byte>(8, std::byte{'z'})).wait();
    CHECK(result == -EBADF);
    REQUIRE(buffer.size() == 8);
    CHECK(to_string(buffer, 8) == "zzzzzzzz");
  }
  SECTION("with a per-op timeout on a read that never gets data") {
    i2o2_test::pipe_pair pipe;
    auto [result, buffer] = i2o2::read_owned(handle, pipe.read_end(), i2o2::op::current_position,
                                             std::vector<std::byte>(4), i2o2::op_options{.timeout = 10ms})
                                .wait();
    CHECK(result == -ECANCELED);
    CHECK(buffer.size() == 4);
  }
}

TEST_CASE("try_get on an owned reply: empty while parked, then the result and the buffer", "[owned]") {
  i2o2_test::watchdog dog("owned try_get");
  i2o2_test::pipe_pair pipe;
  auto [owner, handle] = i2o2::spawn(small_ring());

  auto owned =
      i2o2::read_owned(handle, pipe.read_end(), i2o2::op::current_position, std::vector<std::byte>(5));
  REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked
  CHECK_FALSE(owned.try_get().has_value());
  pipe.feed("polls", 5);
  std::optional<i2o2::owned_result<std::vector<std::byte>>> got;
  REQUIRE(eventually([&] {
    got = owned.try_get();
    return got.has_value();
  }));
  CHECK(got->result == 5);
  CHECK(to_string(got->buffer, 5) == "polls");
}

TEST_CASE("co_await on owned replies inside a coroutine", "[owned][co_await]") {
  i2o2_test::watchdog dog("owned co_await");
  auto [owner, handle] = i2o2::spawn(small_ring());

  SECTION("write, then read back, in one coroutine") {
    i2o2_test::temp_file file;
    std::promise<round_trip> done;
    auto result = done.get_future();
    write_then_read(handle, file.fd(), std::move(done));
    REQUIRE(result.wait_for(20s) == std::future_status::ready);
    const auto got = result.get();
    CHECK(got.written == 16);
    CHECK(to_string(got.written_buffer, got.written_buffer.size()) == "co_awaited write");
    CHECK(got.read == 16);
    CHECK(to_string(got.read_buffer, 16) == "co_awaited write");
    CHECK(pread_string(file.fd(), 16, 8) == "co_awaited write");
  }
  SECTION("suspended on a parked read until the pipe is fed") {
    i2o2_test::pipe_pair pipe;
    std::promise<i2o2::owned_result<std::string>> done;
    auto result = done.get_future();
    read_pipe(handle, pipe.read_end(), std::move(done));
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);        // the read is parked
    CHECK(result.wait_for(0s) == std::future_status::timeout);  // so the coroutine is suspended
    pipe.feed("resume", 6);
    REQUIRE(result.wait_for(20s) == std::future_status::ready);
    const auto got = result.get();
    CHECK(got.result == 6);
    CHECK(got.buffer == "resume");
  }
}

TEST_CASE("G6: a dropped owned reply frees its buffer only after the kernel wrote into it", "[owned][G6]") {
  i2o2_test::watchdog dog("dropped owned reply");
  i2o2_test::pipe_pair pipe;
  auto [owner, handle] = i2o2::spawn(small_ring());

  for (int round = 0; round < 4; ++round) {
    INFO("round " << round);
    auto record = std::make_shared<buffer_record>();
    {
      auto owned =
          i2o2::read_owned(handle, pipe.read_end(), i2o2::op::current_position, tracked_buffer(8, record));
      REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);  // the read is parked
    }                                                       // dropped: the guard alone keeps the buffer now
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    CHECK(record->destroyed.load() == 0);

    pipe.feed("late!", 5);
    // The read was not cancelled (it took the bytes), and the buffer was
    // destroyed after the kernel wrote them into it, exactly once.
    REQUIRE(settle(handle, [&] { return record->destroyed.load(std::memory_order_acquire) != 0; }));
    CHECK(record->destroyed.load(std::memory_order_acquire) == 1);
    CHECK(record->contents.substr(0, 5) == "late!");
    CHECK(bytes_left_in(pipe) == 0);
  }

  // Kept instead of dropped: the buffer comes back (moved out), and the
  // copy the scheduler held is an empty shell that records nothing.
  auto record = std::make_shared<buffer_record>();
  {
    auto owned =
        i2o2::read_owned(handle, pipe.read_end(), i2o2::op::current_position, tracked_buffer(8, record));
    pipe.feed("kept", 4);
    auto [result, buffer] = owned.wait();
    CHECK(result == 4);
    CHECK(std::string(buffer.data(), 4) == "kept");
    REQUIRE(handle.submit(i2o2::op::nop{}).wait() == 0);
    CHECK(record->destroyed.load() == 0);  // still ours
  }
  CHECK(record->destroyed.load() == 1);
  CHECK(record->contents.substr(0, 4) == "kept");
}

TEST_CASE("owned reads and writes past 4 GiB are short, never a length wrapped to 32 bits", "[owned]") {
  // A buffer type only as big as it says: nothing is allocated or sent.
  struct claimed_buffer {
    std::size_t bytes;
    std::byte* data() noexcept { return nullptr; }
    std::size_t size() const noexcept { return bytes; }
  };
  constexpr std::uint32_t max_rw_count = 0x7ffff000;      // what one read(2) / write(2) transfers at most
  claimed_buffer past_4_gib{(std::size_t{1} << 32) + 8};  // wrapped, this was 8 bytes
  claimed_buffer exactly_4_gib{std::size_t{1} << 32};     // wrapped, 0: a read would look like EOF
  claimed_buffer small{4096};
  CHECK(i2o2::detail::io_length(past_4_gib) == max_rw_count);
  CHECK(i2o2::detail::io_length(exactly_4_gib) == max_rw_count);
  CHECK(i2o2::detail::io_length(small) == 4096);
  std::vector<std::uint32_t> words(10);
  CHECK(i2o2::detail::io_length(words) == 40);
}
