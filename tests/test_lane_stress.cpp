// A randomized stress of the scheduler thread's overflow lane and of cancels
// getting past ops that wait for ring room (set-aside). Two client threads,
// and bursts run from callbacks on the scheduler thread, pick random
// actions: nops, soft chains of nops, try_submits, 1-byte reads parked on
// pipes fed only at the end, cancels of their own parked reads and of each
// other's, and cancels naming nothing (resolved inside the scheduler's
// pull, so the bursts they start send mid-pull). The queue is small, so
// bursts overflow into the lane; the ring has six op slots, and in "crowd"
// runs parked reads fill them all, so that only a cancel makes room. After
// the clients, tail rounds leave the scheduler thread alone: nobody else's
// push can then wake a scheduler that sleeps on its own lane.
// Oracles: every reply arrives, exactly once; each submitter's nops
// complete in the order it sent them; a cancel of a parked read resolves 0
// and the read -ECANCELED; the reads still parked at the end read their
// byte. The choices come from a seed, printed on failure
// (I2O2_LANE_STRESS_SEED=N runs that seed alone); interleavings vary.
#include "support.hpp"

#include <i2o2/queue/mutex_ring.hpp>
#include <i2o2/reply/callback.hpp>
#include <i2o2/wait/msg_ring.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using i2o2_test::eventually;

constexpr int no_result = i2o2_test::callback_results<1>::none;

constexpr std::size_t clients = 2;
constexpr std::size_t scheduler_actor = clients;  // every burst: one submitter, the scheduler thread
constexpr std::size_t actors = clients + 1;

constexpr std::uint32_t seeds = 100;  // per policy
constexpr int actions_per_client = 150;
constexpr int bursts_per_run = 100;
constexpr int tail_rounds = 6;   // after the clients: the scheduler thread alone
constexpr int tail_bursts = 12;  // more bursts each tail round may start
constexpr int max_burst_actions = 6;
constexpr int max_bursts = bursts_per_run + tail_rounds * (tail_bursts + 1);
constexpr int op_slots = 6;  // a ring_depth 4 ring: CQ 8, less the wake-up's and the cancels' entries

/// One parked read, and the cancel sent for it, if any.
struct read_record {
  i2o2::callback_submitted submitted;  // written before the read is published
  std::size_t pipe = 0;
  char sink = 0;
  std::atomic<bool> claimed{false};  // a cancel is (about to be) sent: at most one per read
  std::atomic<int> result{no_result};
  std::atomic<int> replies{0};
  std::atomic<int> cancel_result{no_result};
  std::atomic<int> cancel_replies{0};

  /// Its cancel resolved, and so did the read, unless the cancel failed
  /// (then check_cancels says so, and the read waits for its byte).
  bool settled() const {
    return cancel_replies.load() != 0 && (replies.load() != 0 || cancel_result.load() != 0);
  }
};

/// What one submitter owns; the scheduler actor's is touched only on the
/// scheduler thread (and by the main thread once every burst is over).
struct actor_state {
  std::unique_ptr<read_record[]> reads;
  std::size_t read_capacity = 0;
  std::atomic<std::size_t> reads_used{0};
  std::vector<read_record*> own_open;      // own reads, some perhaps claimed by others since
  std::atomic<std::uint64_t> next_seq{1};  // atomic only so a hung run can be shown
};

template <class Handle>
class stress_run {
public:
  /// A "room" run keeps enough op slots free of uncancelled reads for the
  /// longest chain. A "crowd" run sends no chain longer than one op and
  /// lets unresolved reads take every slot: when the clients then wait for
  /// queue room, only a cancel gets things going, and if none is on its
  /// way the main thread sends one (rescue()).
  stress_run(std::uint32_t seed, std::size_t queue_capacity, bool crowd)
      : seed_(seed), crowd_(crowd), max_chain_(crowd ? 1 : std::min<std::size_t>(3, queue_capacity)),
        read_cap_(crowd ? op_slots : op_slots - static_cast<int>(max_chain_)) {
    for (std::size_t a = 0; a < actors; ++a) {
      auto& actor = actors_[a];
      actor.read_capacity = a == scheduler_actor ? max_bursts * max_burst_actions : actions_per_client;
      // Up to three nops an action (a chain), by sequence number from 1.
      done_[a].resize(actor.read_capacity * 3 + 1);
      actor.reads = std::make_unique<read_record[]>(actor.read_capacity);
      actor.own_open.reserve(actor.read_capacity);
      for (std::size_t i = 0; i < actor.read_capacity; ++i)
        actor.reads[i].pipe = a;
    }
    doomed_.reserve(max_burst_actions);
    for (auto& list : published_)
      list.reserve(actions_per_client * clients + max_bursts * max_burst_actions);
  }

  void start(Handle& handle) { handle_ = &handle; }

  void client(std::size_t index) {
    std::mt19937 rng(seed_ * 7919 + static_cast<std::uint32_t>(index));
    for (int i = 0; i < actions_per_client; ++i)
      act(index, rng);
    clients_done_.fetch_add(1);
  }

  /// Starts a tail round: a cancel naming nothing whose reply starts a
  /// burst, with more bursts to come. Only the scheduler thread sends then,
  /// so nobody else's push wakes it: one that sleeps with a due cancel in
  /// its lane, all op slots taken by reads only that cancel can end, hangs.
  void start_tail_round(std::uint32_t round) {
    bursts_left_.store(std::max(bursts_left_.load(), 0) + tail_bursts);
    const nothing_reply reply{this, (seed_ * 31 + round) | 1};
    sent_.fetch_add(1);
    handle_->cancel(i2o2::callback_submitted{}, reply);
  }

  bool clients_done() const { return clients_done_.load() == static_cast<int>(clients); }

  /// The replies of everything but parked reads are in, so no burst runs
  /// any more, and every cancelled read has settled. Reads `replied_`
  /// before `sent_`: equal, nothing was in flight when `replied_` was read,
  /// and only a callback then running could have sent more.
  bool quiet() const {
    const long replied = replied_.load();
    return replied == sent_.load() && !a_cancel_unsettled();
  }

  /// Waits until `done()`, for at most `patience`. In a crowd run, when
  /// nothing moves, both clients wait for queue room (or are done) and no
  /// cancel is on its way, the reads fill every op slot and nothing but a
  /// cancel can end one: it sends one. Never while a cancel is on its way:
  /// its delivery is the scheduler's to make (sending another would wake
  /// it, and hide a cancel it forgot in its lane).
  template <class Done>
  bool wait_rescuing(Done done, std::chrono::seconds patience) {
    const auto give_up = std::chrono::steady_clock::now() + patience;
    long seen = progress();
    int unchanged = 0;
    while (!done()) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::yield();
      if (const long now = progress(); now != seen) {
        seen = now;
        unchanged = 0;
        continue;
      }
      if (!crowd_ || ++unchanged < 2000) continue;
      unchanged = 0;
      if (clients_waiting_.load() + clients_done_.load() == static_cast<int>(clients) &&
          !a_cancel_unsettled())
        rescue();
    }
    return true;
  }

  /// Feeds each pipe a byte per read still parked on it.
  void feed_parked() {
    std::array<std::size_t, actors> parked{};
    for_each_read([&](const auto&, const read_record& read) {
      if (read.replies.load() == 0) ++parked[read.pipe];
    });
    for (std::size_t p = 0; p < actors; ++p) {
      const std::string bytes(parked[p], 'x');
      if (!bytes.empty()) pipes_[p].feed(bytes.data(), bytes.size());
    }
  }

  /// Unsticks a scheduler that hung: plenty of bytes for every read.
  void feed_all() {
    const std::string bytes(512, 'x');
    for (auto& pipe : pipes_)
      pipe.feed(bytes.data(), bytes.size());
  }

  bool all_reads_replied() const {
    bool all = true;
    for_each_read([&](const auto&, const read_record& read) { all = all && read.replies.load() != 0; });
    return all;
  }

  /// Once quiet: each cancel resolved 0 and its read -ECANCELED, and no
  /// read nobody cancelled has resolved (its pipe is not fed yet).
  void check_cancels() {
    for_each_read([this](const auto& name, const read_record& read) {
      if (read.claimed.load()) {
        if (read.cancel_result.load() != 0 || read.result.load() != -ECANCELED)
          problem(name() +
                  ": cancelled while parked and unfed, once, after it was sent: the cancel resolved " +
                  shown(read.cancel_result.load()) + " (not 0), the read " + shown(read.result.load()) +
                  " (not -ECANCELED)");
      } else if (read.replies.load() != 0) {
        problem(name() + ": resolved " + shown(read.result.load()) + " before its pipe was fed, uncancelled");
      }
    });
  }

  /// At the end: every read nobody cancelled read its byte, and every
  /// reply came exactly once.
  void check_end() {
    for_each_read([this](const auto& name, const read_record& read) {
      if (read.replies.load() != 1 || read.cancel_replies.load() != (read.claimed.load() ? 1 : 0))
        problem(name() + ": " + std::to_string(read.replies.load()) + " replies and " +
                std::to_string(read.cancel_replies.load()) + " to its cancel");
      else if (!read.claimed.load() && read.result.load() != 1)
        problem(name() + ": fed, resolved " + shown(read.result.load()) + ", not 1");
    });
    if (replied_.load() != sent_.load())
      problem("replies of nops, chain members, tries and cancels: " + std::to_string(replied_.load()) +
              " for " + std::to_string(sent_.load()) + " sent");
  }

  /// FAIL_CHECKs each problem found (the first 20), by callbacks and by
  /// the checks; true if there was none.
  bool report() {
    std::lock_guard lock(problems_mutex_);
    for (const auto& problem : problems_)
      FAIL_CHECK(problem);
    return problems_.empty();
  }

  /// What is known of a run that hung: counts, how far each submitter's
  /// nops got, and the cancelled reads not settled.
  std::string summary() const {
    std::string out = "sent " + std::to_string(sent_.load()) + ", replied " +
                      std::to_string(replied_.load()) + ", bursts left " +
                      std::to_string(bursts_left_.load()) + ", reads counted " +
                      std::to_string(reads_counted_.load()) + ", rescues " + std::to_string(rescues_.load()) +
                      ", clients waiting in a call " + std::to_string(clients_waiting_.load()) + ", done " +
                      std::to_string(clients_done_.load());
    for (std::size_t a = 0; a < actors; ++a) {
      const auto& actor = actors_[a];
      out += "\nactor " + std::to_string(a) + ": nops sent " + std::to_string(actor.next_seq.load() - 1) +
             ", last completed (chain members aside) " + std::to_string(last_done_[a].load()) + ", reads " +
             std::to_string(actor.reads_used.load());
      for (std::size_t i = 0; i < actor.reads_used.load(); ++i) {
        const auto& read = actor.reads[i];
        if (!read.claimed.load() || read.settled()) continue;
        out += "\n  read " + std::to_string(i) + " cancelled: cancel " + shown(read.cancel_result.load()) +
               ", read " + shown(read.result.load());
      }
    }
    return out;
  }

private:
  enum class nop_kind : std::uint8_t { single, chain_head, chain_member, tried };

  static const char* name_of(nop_kind kind) {
    switch (kind) {
    case nop_kind::single: return "a nop";
    case nop_kind::chain_head: return "a chain's head";
    case nop_kind::chain_member: return "a chain's member";
    case nop_kind::tried: return "a try_submit";
    }
    return "?";
  }

  static std::string shown(int result) { return result == no_result ? "nothing" : std::to_string(result); }

  /// A nop's reply: its submitter, its place in that submitter's order,
  /// and the seed of the burst it starts (0: none). Small: stored inline.
  struct nop_reply {
    stress_run* run;
    std::uint64_t seq;
    std::uint32_t actor;
    std::uint32_t burst_seed;
    nop_kind kind;
    void operator()(int result) const noexcept { run->nop_done(*this, result); }
  };

  struct read_reply {
    stress_run* run;
    read_record* read;
    void operator()(int result) const noexcept {
      read->result.store(result);
      read->replies.fetch_add(1);
      if (run->crowd_) run->reads_counted_.fetch_sub(1);  // counted until it resolves
      run->read_replies_.fetch_add(1);
    }
  };

  struct cancel_reply {
    stress_run* run;
    read_record* read;
    void operator()(int result) const noexcept {
      read->cancel_result.store(result);
      read->cancel_replies.fetch_add(1);
      run->replied_.fetch_add(1);
    }
  };

  /// The reply of a cancel naming nothing: -ENOENT at once, inside the
  /// scheduler's pull, so the burst it may start sends mid-pull.
  struct nothing_reply {
    stress_run* run;
    std::uint32_t burst_seed;
    void operator()(int result) const noexcept { run->nothing_done(*this, result); }
  };

  /// Counts a client in a call that may wait for queue room.
  class waiting_scope {
  public:
    waiting_scope(stress_run& run, std::size_t a) : run_(a < clients ? &run : nullptr) {
      if (run_ != nullptr) run_->clients_waiting_.fetch_add(1);
    }
    waiting_scope(const waiting_scope&) = delete;
    waiting_scope& operator=(const waiting_scope&) = delete;
    ~waiting_scope() {
      if (run_ != nullptr) run_->clients_waiting_.fetch_sub(1);
    }

  private:
    stress_run* run_;
  };

  enum class action { nop, chain, park, park_doomed, cancel_own, cancel_foreign, cancel_nothing, try_nop };

  /// Weights, in the order of `action`. A crowd run parks more, cancels
  /// less, and sends more cancels naming nothing: their bursts then often
  /// run with every op slot taken, the clients waiting for queue room.
  static constexpr std::array<unsigned, 8> room_weights{4, 2, 3, 2, 2, 1, 1, 2};
  static constexpr std::array<unsigned, 8> crowd_weights{2, 1, 6, 1, 2, 2, 4, 1};

  action pick(std::mt19937& rng) const {
    const auto& weights = crowd_ ? crowd_weights : room_weights;
    unsigned total = 0;
    for (const unsigned weight : weights)
      total += weight;
    auto roll = rng() % total;
    std::size_t chosen = 0;
    while (roll >= weights[chosen])
      roll -= weights[chosen++];
    return static_cast<action>(chosen);
  }

  void act(std::size_t a, std::mt19937& rng) {
    switch (pick(rng)) {
    case action::nop: submit_nop(a, rng); break;
    case action::chain: submit_chain(a, rng); break;
    case action::park: park(a, rng); break;
    case action::park_doomed: park_doomed(a, rng); break;
    case action::cancel_own:
      if (!cancel_own(a, rng)) submit_nop(a, rng);
      break;
    case action::cancel_foreign:
      if (!cancel_foreign(a, rng)) submit_nop(a, rng);
      break;
    case action::cancel_nothing: cancel_nothing(a, rng); break;
    case action::try_nop: try_nop(a, rng); break;
    }
  }

  /// The seed of the burst a reply starts, or 0 for none. Both drawn
  /// always, so the choices after do not hang on what is left of the budget.
  std::uint32_t maybe_burst(std::mt19937& rng) {
    const auto roll = rng();
    const auto burst_seed = static_cast<std::uint32_t>(rng() | 1);
    return roll % 4 == 0 && bursts_left_.fetch_sub(1) > 0 ? burst_seed : 0;
  }

  nop_reply next_nop(std::size_t a, std::mt19937& rng, nop_kind kind) {
    const auto burst_seed = maybe_burst(rng);
    return nop_reply{this, actors_[a].next_seq++, static_cast<std::uint32_t>(a), burst_seed, kind};
  }

  void submit_nop(std::size_t a, std::mt19937& rng) {
    const auto reply = next_nop(a, rng, nop_kind::single);
    const waiting_scope waiting(*this, a);
    sent_.fetch_add(1);  // before sending: the reply may come before submit returns
    handle_->submit(i2o2::op::nop{}, {}, reply);
  }

  void submit_chain(std::size_t a, std::mt19937& rng) {
    const std::size_t length = std::min<std::size_t>(2 + rng() % 2, max_chain_);
    const std::array<i2o2::prepared_op, 3> ops{i2o2::op::nop{}, i2o2::op::nop{}, i2o2::op::nop{}};
    std::array<nop_reply, 3> replies{};
    for (std::size_t i = 0; i < length; ++i)
      replies[i] = next_nop(a, rng, i == 0 ? nop_kind::chain_head : nop_kind::chain_member);
    const waiting_scope waiting(*this, a);
    sent_.fetch_add(static_cast<long>(length));
    handle_->submit_chain(std::span<const i2o2::prepared_op>(ops.data(), length), {}, i2o2::link_kind::soft,
                          std::span<nop_reply>(replies.data(), length));
  }

  void try_nop(std::size_t a, std::mt19937& rng) {
    const auto reply = next_nop(a, rng, nop_kind::tried);
    typename Handle::guard_arg no_guard{};
    sent_.fetch_add(1);  // refused, its reply comes at once, on this thread
    const auto tried = handle_->try_submit(i2o2::op::nop{}, std::move(no_guard), reply);
    if (!tried && tried.error() != i2o2::errc::queue_full)
      problem("actor " + std::to_string(a) + ": try_submit failed with " + tried.error().message());
  }

  read_record& send_read(std::size_t a) {
    auto& read = actors_[a].reads[actors_[a].reads_used++];
    const waiting_scope waiting(*this, a);
    read.submitted =
        handle_->submit(i2o2_test::pipe_read(pipes_[a], &read.sink, 1), {}, read_reply{this, &read});
    return read;
  }

  /// Parks a read that any actor may cancel later, first cancelling one if
  /// as many as may be are counted already (else a nop).
  void park(std::size_t a, std::mt19937& rng) {
    if (actors_[a].reads_used == actors_[a].read_capacity || !count_read(a, rng)) {
      submit_nop(a, rng);
      return;
    }
    auto& read = send_read(a);
    actors_[a].own_open.push_back(&read);
    std::lock_guard lock(published_mutex_);
    published_[a == scheduler_actor ? 1 : 0].push_back(&read);
  }

  /// Parks a read that its sender cancels: a client at once, a burst at
  /// its end. In a room run they are not counted: they take the free slots
  /// only while their cancels are on their way (nothing a burst does waits).
  void park_doomed(std::size_t a, std::mt19937& rng) {
    if (actors_[a].reads_used == actors_[a].read_capacity || (crowd_ && !count_read(a, rng))) {
      submit_nop(a, rng);
      return;
    }
    auto& read = send_read(a);
    read.claimed.store(true);
    if (a == scheduler_actor)
      doomed_.push_back(&read);
    else
      send_cancel(a, read);
  }

  /// Counts a read about to be sent, if there is room for it: in a room
  /// run, reads nobody has cancelled; in a crowd run, reads not resolved.
  bool count_read(std::size_t a, std::mt19937& rng) {
    if (reads_counted_.fetch_add(1) < read_cap_) return true;
    reads_counted_.fetch_sub(1);
    // In a room run a cancel frees room for this one; in a crowd run only
    // the read's end does, and the reads are left to fill the slots.
    if (crowd_ || (!cancel_own(a, rng) && !cancel_foreign(a, rng))) return false;
    if (reads_counted_.fetch_add(1) < read_cap_) return true;
    reads_counted_.fetch_sub(1);  // another actor took the one freed
    return false;
  }

  bool cancel_own(std::size_t a, std::mt19937& rng) {
    auto& open = actors_[a].own_open;
    while (!open.empty()) {
      const std::size_t at = rng() % open.size();
      read_record* read = open[at];
      open[at] = open.back();
      open.pop_back();
      if (claim(*read)) {
        send_cancel(a, *read);
        return true;
      }
    }
    return false;
  }

  /// Cancels a read another thread sent: a burst, one a client sent; a
  /// client, one a burst sent.
  bool cancel_foreign(std::size_t a, std::mt19937& rng) {
    read_record* target = claim_published(a == scheduler_actor ? 0 : 1, rng());
    if (target == nullptr) return false;
    send_cancel(a, *target);
    return true;
  }

  /// Claims a read from published_[list], trying from `start` on.
  read_record* claim_published(std::size_t list, std::uint32_t start) {
    // Held only to pick: nobody submits while holding it.
    std::lock_guard lock(published_mutex_);
    auto& reads = published_[list];
    while (!reads.empty()) {
      const std::size_t at = start % reads.size();
      read_record* read = reads[at];
      reads[at] = reads.back();
      reads.pop_back();
      if (claim(*read)) return read;
    }
    return nullptr;
  }

  bool claim(read_record& read) {
    if (read.claimed.exchange(true)) return false;
    if (!crowd_) reads_counted_.fetch_sub(1);  // its cancel is sure to get through and free its slot
    return true;
  }

  void rescue() {
    read_record* target = claim_published(0, 0);
    if (target == nullptr) target = claim_published(1, 0);
    if (target == nullptr) return;
    rescues_.fetch_add(1);
    send_cancel(actors, *target);
  }

  void cancel_nothing(std::size_t a, std::mt19937& rng) {
    const nothing_reply reply{this, maybe_burst(rng)};
    const waiting_scope waiting(*this, a);
    sent_.fetch_add(1);
    handle_->cancel(i2o2::callback_submitted{}, reply);
  }

  void send_cancel(std::size_t a, read_record& read) {
    const waiting_scope waiting(*this, a);
    sent_.fetch_add(1);
    handle_->cancel(read.submitted, cancel_reply{this, &read});
  }

  long progress() const { return replied_.load() + read_replies_.load(); }

  bool a_cancel_unsettled() const {
    bool unsettled = false;
    for_each_read([&](const auto&, const read_record& read) {
      unsettled = unsettled || (read.claimed.load() && !read.settled());
    });
    return unsettled;
  }

  /// Calls `visit(name, read)` for each read sent; `name()` says which it is.
  template <class Visit>
  void for_each_read(Visit visit) const {
    for (std::size_t a = 0; a < actors; ++a)
      for (std::size_t i = 0; i < actors_[a].reads_used.load(); ++i) {
        const auto name = [a, i] {
          return "actor " + std::to_string(a) + (a == scheduler_actor ? " (bursts)" : " (client)") +
                 ", read " + std::to_string(i);
        };
        visit(name, actors_[a].reads[i]);
      }
  }

  /// Scheduler thread (or a refused try's sending thread).
  void nop_done(const nop_reply& reply, int result) {
    if (reply.kind == nop_kind::tried && result == i2o2::result_of(i2o2::errc::queue_full)) {
      replied_.fetch_add(1);
      return;
    }
    const auto who = [&reply] {
      return "actor " + std::to_string(reply.actor) + ", nop " + std::to_string(reply.seq) + " (" +
             name_of(reply.kind) + ")";
    };
    if (result != 0) problem(who() + ": resolved " + std::to_string(result) + ", not 0");
    // A chain's member only after the op before it in its chain: the
    // kernel issues the next link as task work, so a nop sent after the
    // chain may complete before its members. Everything else in the order
    // sent (a chain's head is issued with the SQEs around it).
    auto& done = done_[reply.actor];
    if (reply.seq >= done.size()) {
      problem(who() + ": more nops than the run has room for");
    } else if (reply.kind == nop_kind::chain_member) {
      if (done[reply.seq - 1] == 0) problem(who() + ": completed before the op before it in its chain");
    } else {
      auto& last = last_done_[reply.actor];
      if (reply.seq <= last.load())
        problem(who() + ": completed after nop " + std::to_string(last.load()) + " (" +
                name_of(last_kind_[reply.actor]) + "), sent later");
      last.store(reply.seq);
      last_kind_[reply.actor] = reply.kind;
    }
    if (reply.seq < done.size() && done[reply.seq]++ != 0) problem(who() + ": completed twice");
    if (reply.burst_seed != 0) burst(reply.burst_seed);
    replied_.fetch_add(1);  // last: a burst's sends are counted before this reply is
  }

  void nothing_done(const nothing_reply& reply, int result) {
    if (result != -ENOENT)
      problem("a cancel naming nothing resolved " + std::to_string(result) + ", not -ENOENT");
    if (reply.burst_seed != 0) burst(reply.burst_seed);
    replied_.fetch_add(1);
  }

  void burst(std::uint32_t seed) {
    std::mt19937 rng(seed);
    const int count = 1 + static_cast<int>(rng() % max_burst_actions);
    try {
      for (int i = 0; i < count; ++i)
        act(scheduler_actor, rng);
      for (read_record* read : doomed_)
        send_cancel(scheduler_actor, *read);
      doomed_.clear();
    } catch (const i2o2::scheduler_closed&) {
      // Only once a run that hung is torn down: its replies were reported.
    }
  }

  void problem(std::string what) {
    std::lock_guard lock(problems_mutex_);
    if (problems_.size() < 20) problems_.push_back(std::move(what));
  }

  const std::uint32_t seed_;
  const bool crowd_;
  const std::size_t max_chain_;
  const int read_cap_;
  Handle* handle_ = nullptr;
  std::array<i2o2_test::pipe_pair, actors> pipes_;
  std::array<actor_state, actors> actors_;
  // Scheduler thread only (last_done_ is read when a run hangs): the last
  // nop completed, chain members aside, and which nops have completed.
  std::array<std::atomic<std::uint64_t>, actors> last_done_{};
  std::array<nop_kind, actors> last_kind_{};
  std::array<std::vector<std::uint8_t>, actors> done_;
  std::vector<read_record*> doomed_;  // a burst's reads to cancel at its end
  std::atomic<int> clients_done_{0};
  std::atomic<int> clients_waiting_{0};
  std::atomic<long> sent_{0};
  std::atomic<long> replied_{0};
  std::atomic<long> read_replies_{0};
  std::atomic<int> reads_counted_{0};
  std::atomic<int> rescues_{0};
  std::atomic<int> bursts_left_{bursts_per_run};
  std::mutex published_mutex_;
  std::array<std::vector<read_record*>, 2> published_;  // [0]: clients' reads, [1]: bursts'
  std::mutex problems_mutex_;
  std::vector<std::string> problems_;
};

/// One seed's run; false if it found a problem.
template <class Scheduler>
bool run_seed(std::uint32_t seed, const char* policy) {
  const std::size_t queue_capacity = seed % 2 == 1 ? 2 : 4;
  const bool crowd = seed / 2 % 2 == 1;
  INFO("policy " << policy << ", seed " << seed << " (replay: I2O2_LANE_STRESS_SEED=" << seed
                 << "), queue capacity " << queue_capacity << (crowd ? ", crowd" : ", room"));
  // A correct run takes milliseconds: a wait gives up after `patience`, so
  // a hang is reported (and the rest of the run given a chance to end)
  // well before the watchdog aborts.
  const auto patience = std::chrono::seconds(10);
  i2o2_test::watchdog dog(std::string("lane stress, ") + policy + ", seed " + std::to_string(seed),
                          std::chrono::seconds(40));
  // Declared before the scheduler, which calls into it until it is gone.
  stress_run<typename Scheduler::handle_type> run(seed, queue_capacity, crowd);
  auto running = i2o2::spawn_scheduler<Scheduler>(
      i2o2::config{.queue_capacity = static_cast<std::uint32_t>(queue_capacity), .ring_depth = 4});
  run.start(running.handle);
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < clients; ++c)
    threads.emplace_back([&run, c] { run.client(c); });
  bool hung = false;
  if (!run.wait_rescuing([&] { return run.clients_done(); }, patience)) {
    // A client waits in a call for queue room that never comes.
    FAIL_CHECK("a client never got its ops into the queue: " << run.summary());
    run.feed_all();  // may unstick it; if not, the watchdog ends the run
    hung = true;
  }
  for (auto& thread : threads)
    thread.join();
  if (hung) return false;
  if (!run.wait_rescuing([&] { return run.quiet(); }, patience)) {
    FAIL_CHECK("a reply never came (nop, chain member, try, cancel, or cancelled read): " << run.summary());
    run.feed_all();
    return false;
  }
  for (std::uint32_t round = 0; round < tail_rounds; ++round) {
    run.start_tail_round(round);
    if (!run.wait_rescuing([&] { return run.quiet(); }, patience)) {
      FAIL_CHECK("a reply never came in tail round " << round
                                                     << ", the scheduler thread alone: " << run.summary());
      run.feed_all();
      return false;
    }
  }
  run.check_cancels();
  run.feed_parked();
  if (!eventually([&] { return run.all_reads_replied(); }, patience)) {
    FAIL_CHECK("a fed read never resolved: " << run.summary());
    return false;
  }
  run.check_end();
  return run.report();
}

/// Seeds 1 to `seeds`, up to the first that fails; or the one
/// I2O2_LANE_STRESS_SEED names.
template <class Scheduler>
void run_seeds(const char* policy) {
  if (const char* only = std::getenv("I2O2_LANE_STRESS_SEED")) {
    run_seed<Scheduler>(static_cast<std::uint32_t>(std::strtoul(only, nullptr, 10)), policy);
    return;
  }
  for (std::uint32_t seed = 1; seed <= seeds; ++seed)
    if (!run_seed<Scheduler>(seed, policy)) return;
}

template <class Queue, class Wait>
using callback_scheduler = i2o2::basic_scheduler<Queue, Wait, i2o2::reply::callback<>, void>;

}  // namespace

TEST_CASE("random lane and cancel traffic from clients and callbacks keeps every promise",
          "[scheduler][stress]") {
  SECTION("mpsc_ring, eventfd") {
    run_seeds<callback_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::eventfd>>("mpsc_ring/eventfd");
  }
  SECTION("mutex_ring, eventfd") {
    run_seeds<callback_scheduler<i2o2::queue::mutex_ring, i2o2::wait::eventfd>>("mutex_ring/eventfd");
  }
  SECTION("mpsc_ring, msg_ring") {
    run_seeds<callback_scheduler<i2o2::queue::mpsc_ring, i2o2::wait::msg_ring>>("mpsc_ring/msg_ring");
  }
}
