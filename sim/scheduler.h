// The simulated node's model scheduler: which models are loaded, parallel slots per loaded
// model, the bounded wait queue, serialised cold loads, keep_alive expiry and a VRAM budget.
//
// It mirrors what a proxy can observe of Ollama's scheduler: a request for a model that is not
// loaded waits for the load (one load at a time per node); at most `num_parallel` generations
// run per loaded model and the rest wait (before any response header is sent); past
// `max_queue` waiting requests the node answers 503; a model stays loaded for its keep_alive
// after its last request; a request with other runner options (num_ctx) forces a reload once the
// model is idle; loading a model that does not fit evicts idle ones.
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
#include <string>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/wire.h"

namespace corral::sim {

struct SchedulerLimits {
  std::chrono::milliseconds load_delay{0};
  int num_parallel = 1;
  int max_queue = 512;
  int64_t vram_bytes = 0;  // 0: unlimited
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

  // The /api/ps body, sorted by expires_at, latest first.
  Json PsJson();
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

  static int64_t MemoryOf(const SimModel& model, int num_ctx);
  int64_t UsedMemoryLocked() const;
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
};

}  // namespace corral::sim
