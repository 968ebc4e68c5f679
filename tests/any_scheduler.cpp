// The 24 adapters behind tests/any_scheduler.hpp, instantiated here once.
#include "any_scheduler.hpp"

#include <functional>
#include <map>
#include <stdexcept>
#include <type_traits>

namespace i2o2_test {
namespace {

template <class T>
constexpr const char* name_of();
template <> constexpr const char* name_of<i2o2::queue::mpsc_ring>() { return "mpsc_ring"; }
template <> constexpr const char* name_of<i2o2::queue::mutex_ring>() { return "mutex_ring"; }
template <> constexpr const char* name_of<i2o2::wait::eventfd>() { return "eventfd"; }
template <> constexpr const char* name_of<i2o2::wait::futex>() { return "futex"; }
template <> constexpr const char* name_of<i2o2::wait::msg_ring>() { return "msg_ring"; }
template <> constexpr const char* name_of<i2o2::wait::spin>() { return "spin"; }
template <> constexpr const char* name_of<i2o2::reply::future>() { return "future"; }
template <> constexpr const char* name_of<i2o2::reply::callback<>>() { return "callback"; }
template <> constexpr const char* name_of<i2o2::reply::awaitable<>>() { return "awaitable"; }

template <class Queue, class Wait, class Reply>
class handle_adapter final : public any_handle {
  using scheduler_type = i2o2::basic_scheduler<Queue, Wait, Reply, i2o2::any_guard>;
  using handle_type = typename scheduler_type::handle_type;
  using reply_type = typename handle_type::reply_type;
  static constexpr bool is_callback = std::is_same_v<reply_type, i2o2::callback_submitted>;

public:
  explicit handle_adapter(handle_type handle) : handle_(std::move(handle)) {}

  std::unique_ptr<any_handle> clone() const override { return std::make_unique<handle_adapter>(handle_); }

  pending submit(const i2o2::prepared_op& op, i2o2::any_guard guard) override {
    return request<handle_type>([&](auto&&... reply_args) {
      return handle_.submit(i2o2::op::raw{op}, std::move(guard), std::forward<decltype(reply_args)>(reply_args)...);
    });
  }

  submit_attempt try_submit(const i2o2::prepared_op& op, i2o2::any_guard& guard) override {
    if constexpr (is_callback) {
      auto state = std::make_shared<pending::slot>();
      auto result = handle_.try_submit(i2o2::op::raw{op}, std::move(guard), record_into(state));
      if (!result) return {std::nullopt, result.error()};
      state->cancel_key = result.value().cancel_key();
      return {pending(state), {}};
    } else {
      auto result = handle_.try_submit(i2o2::op::raw{op}, std::move(guard));
      if (!result) return {std::nullopt, result.error()};
      return {pending(std::move(result).value()), {}};
    }
  }

  std::vector<pending> submit_many(std::span<const i2o2::prepared_op> ops,
                                   std::span<i2o2::any_guard> guards) override {
    return batch(ops, [&](auto&&... callbacks) { return handle_.submit_many(ops, guards, callbacks...); });
  }

  std::vector<pending> submit_chain(std::span<const i2o2::prepared_op> ops, std::span<i2o2::any_guard> guards,
                                    i2o2::link_kind link) override {
    return batch(ops, [&](auto&&... callbacks) { return handle_.submit_chain(ops, guards, link, callbacks...); });
  }

  pending cancel(const pending& target) override { return i2o2_test::cancel(handle_, target); }

  pending register_file(int fd, i2o2::any_guard guard) override {
    return request<handle_type>([&](auto&&... reply_args) {
      return handle_.register_file(fd, std::move(guard), std::forward<decltype(reply_args)>(reply_args)...);
    });
  }
  pending unregister_file(unsigned index) override {
    return request<handle_type>([&](auto&&... reply_args) {
      return handle_.unregister_file(index, std::forward<decltype(reply_args)>(reply_args)...);
    });
  }
  pending register_buffer(void* base, std::size_t length, i2o2::any_guard guard) override {
    return request<handle_type>([&](auto&&... reply_args) {
      return handle_.register_buffer(base, length, std::move(guard), std::forward<decltype(reply_args)>(reply_args)...);
    });
  }
  pending unregister_buffer(unsigned index) override {
    return request<handle_type>([&](auto&&... reply_args) {
      return handle_.unregister_buffer(index, std::forward<decltype(reply_args)>(reply_args)...);
    });
  }
  bool closed() const override { return handle_.closed(); }

private:
  /// submit_many / submit_chain: with one recording callback per op for the
  /// callback reply, none otherwise.
  template <class Send>
  std::vector<pending> batch(std::span<const i2o2::prepared_op> ops, Send&& send) {
    std::vector<pending> pendings;
    pendings.reserve(ops.size());
    if constexpr (is_callback) {
      std::vector<std::shared_ptr<pending::slot>> states;
      std::vector<decltype(record_into(nullptr))> callbacks;
      for (std::size_t i = 0; i < ops.size(); ++i) {
        states.push_back(std::make_shared<pending::slot>());
        callbacks.push_back(record_into(states.back()));
      }
      auto submitted = send(callbacks);
      for (std::size_t i = 0; i < ops.size(); ++i) {
        states[i]->cancel_key = submitted[i].cancel_key();
        pendings.emplace_back(states[i]);
      }
    } else {
      for (auto& reply : send()) pendings.emplace_back(std::move(reply));
    }
    return pendings;
  }

  handle_type handle_;
};

template <class Queue, class Wait, class Reply>
class scheduler_adapter final : public any_scheduler {
  using scheduler_type = i2o2::basic_scheduler<Queue, Wait, Reply, i2o2::any_guard>;

public:
  scheduler_adapter(std::string name, i2o2::config cfg)
      : name_(std::move(name)), owner_(std::move(cfg)),
        handle_(std::make_unique<handle_adapter<Queue, Wait, Reply>>(owner_.handle())) {}

  const std::string& name() const override { return name_; }
  any_handle& handle() override {
    if (!handle_) throw std::logic_error("the first handle was taken");
    return *handle_;
  }
  std::unique_ptr<any_handle> take_handle() override {
    if (!handle_) throw std::logic_error("the first handle was taken");
    return std::move(handle_);
  }
  void stop() override { owner_.stop(); }
  void stop(std::optional<std::chrono::nanoseconds> deadline) override { owner_.stop(deadline); }
  void join() override { owner_.join(); }

private:
  std::string name_;
  i2o2::scheduler_thread<scheduler_type> owner_;
  std::unique_ptr<any_handle> handle_;
};

using factory = std::function<std::unique_ptr<any_scheduler>(i2o2::config)>;

struct registry {
  std::vector<std::string> names;
  std::map<std::string, factory, std::less<>> factories;

  template <class Queue, class Wait, class Reply>
  void add() {
    std::string name = std::string(name_of<Queue>()) + "/" + name_of<Wait>() + "/" + name_of<Reply>();
    names.push_back(name);
    factories.emplace(name, [name](i2o2::config cfg) -> std::unique_ptr<any_scheduler> {
      return std::make_unique<scheduler_adapter<Queue, Wait, Reply>>(name, std::move(cfg));
    });
  }
  template <class Queue, class Wait>
  void add_each_reply() {
    add<Queue, Wait, i2o2::reply::future>();
    add<Queue, Wait, i2o2::reply::callback<>>();
    add<Queue, Wait, i2o2::reply::awaitable<>>();
  }
  template <class Queue>
  void add_each_wait() {
    add_each_reply<Queue, i2o2::wait::eventfd>();
    add_each_reply<Queue, i2o2::wait::futex>();
    add_each_reply<Queue, i2o2::wait::msg_ring>();
    add_each_reply<Queue, i2o2::wait::spin>();
  }

  registry() {
    add_each_wait<i2o2::queue::mpsc_ring>();  // the default, mpsc_ring/eventfd/future, comes first
    add_each_wait<i2o2::queue::mutex_ring>();
  }
};

const registry& the_registry() {
  static const registry instance;
  return instance;
}

}  // namespace

const std::vector<std::string>& policy_names() { return the_registry().names; }

std::unique_ptr<any_scheduler> spawn_policy(const std::string& name, i2o2::config cfg) {
  const auto& factories = the_registry().factories;
  const auto found = factories.find(name);
  if (found == factories.end()) throw std::invalid_argument("no policy combination named " + name);
  return found->second(std::move(cfg));
}

}  // namespace i2o2_test
