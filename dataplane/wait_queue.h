// WaitQueue: requests waiting for a slot when every node that could serve them is full
// (docs/routing.md "The queue"). First come, first served: a slot given back on a node wakes
// the first waiter that can use that node and was not already woken; the woken waiter picks
// again (through the Router, by the usual rules) and leaves the queue with its slot, or waits
// on, keeping its place. A waiter whose wake went unused passes it to the next one.
//
// A wait ends when the request gets a slot, its deadline passes, its client leaves (the
// client's socket is watched: a departure is seen at once), or the proxy stops (Stop wakes
// every waiter). Each waiter blocks on its own eventfd, so no lock is held while it waits, and
// giving a slot back costs one relaxed load while nobody waits.
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "common/clock.h"

namespace corral::dataplane {

struct ProxyMetrics;

class WaitQueue {
 public:
  struct Limits {
    int64_t max_length = 1024;  // waiting requests at once
    Duration max_wait = std::chrono::seconds(30);
  };

  enum class End {
    kGot,         // take() got a slot
    kTimedOut,    // max_wait passed
    kFull,        // max_length requests were already waiting: not queued at all
    kClientGone,  // the client's socket closed
    kStopping,    // the proxy is stopping
  };
  // "got", "timeout", "full", "client_gone", "stopping".
  static const char* EndName(End end);

  struct Outcome {
    End end = End::kGot;
    Duration waited{};
  };

  // Whether a slot freed on the named node could serve this waiter.
  using CanUse = absl::FunctionRef<bool(std::string_view node)>;
  // Tries to take a slot; returns the node taken, or null. Called once right after joining (a
  // slot freed between the caller's failed pick and its joining is not missed), then after
  // every wake.
  using Take = absl::FunctionRef<const std::string*()>;

  explicit WaitQueue(const Clock& clock = SteadyClock::Instance());
  ~WaitQueue();
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  // Blocks the calling thread until one of the ends above. `model_key` names the model waited
  // for (reports); `client_fd` is the client's socket (-1: not watched); `aborting` (may be
  // null) turns true when the proxy stops.
  Outcome Wait(const Limits& limits, std::string_view model_key, CanUse can_use, Take take,
               int client_fd, const std::atomic<bool>* aborting);

  // A slot was given back on `node`. Cheap when nobody waits.
  void SlotFreed(std::string_view node) {
    if (depth_.load(std::memory_order_relaxed) == 0) return;
    Wake(node, nullptr);
  }

  // Every waiter picks again (limits grew, a snapshot changed what nodes can take).
  void WakeAll();

  // Ends every wait with kStopping, now and from now on.
  void Stop();

  // Updates the queue's metrics (depth gauge, wait histogram, rejections) when set; the
  // metrics outlive the queue.
  void UseMetrics(ProxyMetrics* metrics) { metrics_ = metrics; }

  int64_t depth() const { return depth_.load(std::memory_order_relaxed); }

  struct Stats {
    int64_t depth = 0;
    int64_t waited_total = 0;         // requests that joined the queue
    int64_t served_total = 0;         // ... and left it with a slot
    int64_t timed_out_total = 0;      // 503 after max_wait
    int64_t full_total = 0;           // 503: the queue was full
    int64_t client_gone_total = 0;    // the client left while waiting
    double wait_seconds_total = 0;    // time spent waiting by every request that left
    double longest_wait_seconds = 0;  // the longest wait of those waiting now
  };
  Stats stats() const;

  // Requests waiting now for `model_key` (empty: any model) that could use `node` (empty: any).
  int64_t Waiting(std::string_view node, std::string_view model_key) const;

  // Requests waiting now that could use `node`, by the model they wait for.
  std::map<std::string, int64_t> WaitingByModel(std::string_view node) const;

 private:
  struct Waiter {
    int efd = -1;
    std::string_view model_key;
    CanUse* can_use = nullptr;
    TimePoint joined{};
    bool woken = false;     // a wake is pending (guarded by mu_)
    std::string woken_for;  // the node that wake was for
  };
  using WaiterList = std::list<Waiter*>;

  // Wakes the first waiter after `after` (null: from the front) that can use `node` and has no
  // wake pending.
  void Wake(std::string_view node, Waiter* after);
  void Leave(WaiterList::iterator it, End end, Duration waited);

  const Clock& clock_;
  ProxyMetrics* metrics_ = nullptr;
  std::atomic<int64_t> depth_{0};
  std::atomic<bool> stopped_{false};
  mutable std::mutex mu_;  // guards waiters_, the Waiters' woken fields and the totals below
  WaiterList waiters_;
  int64_t waited_total_ = 0;
  int64_t served_total_ = 0;
  int64_t timed_out_total_ = 0;
  int64_t full_total_ = 0;
  int64_t client_gone_total_ = 0;
  double wait_seconds_total_ = 0;
};

}  // namespace corral::dataplane
