// The simulated node's model scheduler, the GPU of corral-sim: which models are loaded, parallel
// slots per loaded model, the wait queue, serialised cold loads whose time grows with the model's
// size, keep_alive expiry, a VRAM budget with least-recently-used eviction, and the statistics a
// routing benchmark reads (cold loads, time spent loading, evictions, peak concurrency).
//
// It mirrors what a proxy can observe of Ollama's scheduler: a request for a model that is not
// loaded waits for the load (one load at a time per node; load_delay + size in GiB x
// load_ms_per_gib); at most `num_parallel` generations run per loaded model and the rest wait
// (before any response header is sent; first come, first served), without limit when
// `max_queue` is 0 (Ollama's semaphore), else past `max_queue` waiting requests the node answers
// 503; a model stays loaded for its keep_alive after its last request; a request with other
// runner options (num_ctx) forces a reload once the model is idle. A model's memory is its size.
// Loading a model that does not fit evicts idle models, least recently used first; when the busy
// ones leave too little room the load waits for them to finish (it never fails), and requests
// that came after it wait behind it; on an empty node a model larger than the budget loads
// partly on the CPU, as Ollama does.
//
// Thread safety: every method may be called from any thread; one mutex guards all state.
// Waiting methods poll a caller-supplied cancel check so a client that goes away frees its
// place in the queue.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/wire.h"

namespace corral::sim {

inline constexpr double kBytesPerGib = 1024.0 * 1024.0 * 1024.0;

struct SchedulerLimits {
  std::chrono::milliseconds load_delay{0};  // every cold load
  double load_ms_per_gib = 0;               // plus this per GiB of the model's size
  int num_parallel = 1;                     // per loaded model
  int max_queue = 512;                      // waiting requests before 503; 0: no limit
  int64_t vram_bytes = 0;                   // 0: unlimited
};

// How long loading `model_size` bytes takes under `limits`.
std::chrono::nanoseconds LoadTime(const SchedulerLimits& limits, int64_t model_size);

// What the scheduler has done since start (or ResetStats).
struct SchedulerStats {
  struct PerModel {
    int64_t loads = 0;
    int64_t requests = 0;
  };
  int64_t loads = 0;                       // cold loads started (including ones cancelled midway)
  double load_seconds = 0;                 // time spent loading, cancelled loads included
  int64_t evictions = 0;                   // idle models unloaded to make room for a load
  int64_t requests = 0;                    // requests admitted to wait for a slot
  int max_running = 0;                     // most requests holding a slot on a loaded model at once
  std::map<std::string, PerModel> models;  // by display name
};

class Scheduler {
 public:
  enum class Result { kReady, kBusy, kCancelled, kShutdown };
  struct Lease {
    std::string key;
    // How long this request waited for its own cold load (zero when the model was warm).
    std::chrono::nanoseconds load_duration{0};
  };
  using CancelCheck = std::function<bool()>;

  void SetLimits(const SchedulerLimits& limits);

  // Waits for a slot on a loaded `model` with context `num_ctx`, loading it first if needed.
  // Returns kBusy at once when the queue is full, kCancelled when `cancelled` turned true while
  // waiting, kShutdown when Shutdown was called.
  Result Acquire(const SimModel& model, int num_ctx, const KeepAlive& keep_alive,
                 const CancelCheck& cancelled, Lease* lease);
  // Frees the slot; the model then stays loaded for `keep_alive` (zero unloads it when idle).
  void Release(const Lease& lease, const KeepAlive& keep_alive);
  // The unload shortcut (keep_alive 0, empty prompt): unloads now if idle, else after the last
  // running request.
  void Unload(const std::string& key);
  // Drops idle models (used by the control endpoint's reset and by model removal).
  void UnloadIdle();
  void Shutdown();

  // The /api/ps body, sorted by expires_at, latest first. A model being loaded is listed
  // already (as Ollama does); an evicted or expired one is gone at once.
  Json PsJson();
  SchedulerStats Stats() const;
  // Zeroes the statistics; max_running restarts from the requests running now.
  void ResetStats();
  int Active() const;
  int Pending() const;
  std::vector<std::string> LoadedNames();

 private:
  struct Loaded {
    SimModel model;
    int num_ctx = 0;
    bool loading = true;
    int active = 0;
    bool unload_when_idle = false;
    bool forever = false;
    WallTime expires{};
    std::chrono::steady_clock::time_point last_used{};
  };

  static int64_t MemoryOf(const SimModel& model);
  int64_t UsedMemoryLocked() const;
  int RunningLocked() const;
  void ExpireLocked(WallTime now);
  void SetExpiryLocked(Loaded& entry, const KeepAlive& keep_alive, WallTime now);
  // Makes room for `need` bytes by evicting idle models, least recently used first. False when
  // busy models leave too little room (the caller waits).
  bool MakeRoomLocked(int64_t need);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  SchedulerLimits limits_;                // guarded by mu_
  std::map<std::string, Loaded> loaded_;  // by canonical key; guarded by mu_
  bool loading_ = false;                  // one load at a time; guarded by mu_
  int pending_ = 0;                       // requests waiting for a slot or a load; guarded by mu_
  bool shutdown_ = false;                 // guarded by mu_
  SchedulerStats stats_;                  // guarded by mu_
  uint64_t next_ticket_ = 0;              // arrival order of Acquire calls; guarded by mu_
  std::set<uint64_t> room_waiters_;       // tickets waiting for memory to load; guarded by mu_
  // Tickets of the requests waiting, per model key (slots go to the oldest); guarded by mu_.
  std::map<std::string, std::set<uint64_t>> model_waiters_;
};

}  // namespace corral::sim
