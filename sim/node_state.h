// The simulated node itself, shared by all of corral-sim's routes: its live settings, the models
// it has installed (and the registry it can pull from, the blobs uploaded to it), the scheduler
// of loaded models and slots, the token gate, the request statistics, and the failures it acts
// out. The route units (inference_routes, model_routes, control_routes) hold a reference to one
// NodeState and keep nothing of their own.
//
// Thread safety: every method may be called from any of httplib's worker threads. Settings,
// models and statistics each have their own mutex (named beside the member); the scheduler and
// the gate lock themselves. Shutdown may be called from any thread, e.g. a signal thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/scheduler.h"
#include "sim/sim_config.h"
#include "sim/token_gate.h"
#include "sim/wire.h"

namespace corral::sim {

// The token gate's state as /_sim/stats and /_sim/release show it.
Json GateJson(const TokenGate::Status& gate);

class NodeState {
 public:
  NodeState(SimConfig config, std::vector<SimModel> models);
  NodeState(const NodeState&) = delete;
  NodeState& operator=(const NodeState&) = delete;

  // Settings. A request takes a copy when it starts and keeps it.
  SimConfig Config() const;
  // Replaces the settings and the scheduler's limits; `restart_failures` re-arms fail_times.
  void SetConfig(const SimConfig& config, bool restart_failures);
  // Takes the configured failure if it applies to this kind of route (counts fail_times down).
  FailMode TakeFailure(bool inference, bool has_tokens);

  // Installed models, by any spelling of the name.
  std::optional<SimModel> FindModel(std::string_view name) const;
  // Checks the name and finds the model; answers 400/404 itself when there is none.
  std::optional<SimModel> FindRequestedModel(const std::string& name, bool openai,
                                             httplib::Response& res) const;
  void InstallModel(SimModel model);
  // Uninstalls and unloads (at once when idle, else after its last request).
  void RemoveModel(const std::string& key);
  std::vector<SimModel> Models() const;
  // Applies a /_sim/config model change: replace all (when set), then add, remove, and extend
  // the registry.
  void ChangeModels(const std::optional<std::vector<SimModel>>& replace,
                    const std::vector<SimModel>& add, const std::vector<std::string>& remove,
                    const std::vector<std::string>& pullable);
  // Whether a pull of `ref` would find it (the built-in registry or a /_sim/config "pullable").
  bool InRegistry(const ModelRef& ref) const;
  std::vector<std::string> PullableNames() const;

  // Uploaded blobs, "sha256:<hex>" → size.
  std::optional<int64_t> BlobSize(const std::string& digest) const;
  void AddBlob(const std::string& digest, int64_t size);

  // True once the client left or the node shuts down.
  bool Cancelled(ConnectionWatch& watch) const;
  // Sleeps `duration`; false (early) when the request is cancelled.
  bool Sleep(std::chrono::milliseconds duration, ConnectionWatch& watch);
  bool shutting_down() const { return shutting_down_.load(); }
  // Wakes every waiting request and ends streams.
  void Shutdown();

  // Acts out a failure that happens before the first token. Returns true when the response is
  // settled (error sent, connection broken or abandoned); false to go on normally.
  bool FailBeforeAnswer(FailMode mode, bool openai, ConnectionWatch& watch, const SimConfig& config,
                        httplib::Response& res);
  // Waits for a slot; answers busy/cancel itself and returns false when there is none.
  bool AcquireSlot(const SimModel& model, int num_ctx, const KeepAlive& keep_alive, bool openai,
                   ConnectionWatch& watch, Scheduler::Lease* lease, httplib::Response& res);

  Scheduler& scheduler() { return scheduler_; }
  TokenGate& gate() { return gate_; }

  // Statistics for GET /_sim/stats.
  void RecordRequest(const httplib::Request& req);
  void CountCancelled();
  void CountCompleted();
  void CountInjected();
  Json StatsJson();

  // Back to the start-up settings and models; statistics, blobs, extra registry names cleared,
  // gating off, idle models unloaded.
  void Reset();

 private:
  std::atomic<bool> shutting_down_{false};
  Scheduler scheduler_;
  TokenGate gate_;

  const SimConfig startup_config_;
  const std::vector<SimModel> startup_models_;

  mutable std::mutex config_mu_;
  SimConfig config_;        // guarded by config_mu_
  int fail_remaining_ = 0;  // guarded by config_mu_

  mutable std::mutex models_mu_;
  std::map<std::string, SimModel> models_;  // by canonical key; guarded by models_mu_
  std::set<std::string> pullable_;          // extra registry names; guarded by models_mu_
  std::map<std::string, int64_t> blobs_;    // "sha256:<hex>" → size; guarded by models_mu_

  mutable std::mutex stats_mu_;
  std::map<std::string, int64_t> requests_by_path_;  // guarded by stats_mu_
  int64_t requests_total_ = 0;                       // guarded by stats_mu_
  int64_t cancelled_ = 0;                            // guarded by stats_mu_
  int64_t completed_ = 0;                            // guarded by stats_mu_
  int64_t injected_ = 0;                             // guarded by stats_mu_
  std::deque<Json> last_requests_;                   // guarded by stats_mu_
};

}  // namespace corral::sim
