// Prober: the fleet's one health and model prober. It probes every registered node on an
// interval, applies the healthy/unhealthy thresholds, and records each round in the Registry,
// which bumps the snapshot version when health or the model lists change, so every proxy learns
// of a node moving between the active pool (HEALTHY) and the standby pool (UNHEALTHY).
//
// A probe round of one node: GET /api/version (liveness: 200 with a version, within the liveness
// timeout), then, only if the node is live, GET /api/tags and GET /api/ps. A failed tags or ps
// call does not fail liveness; the round then leaves that list out and the registry keeps the
// last known one. Each call's timeout is a total deadline and each answer has a size cap
// (NodeClient); an answer over its cap, or a list cut at kMaxModelsPerNode, is logged at WARN once
// per change of what the node does, not once per round.
//
// Scheduling: each node has its own next-probe time, `interval` after its previous round ended,
// jittered by ±`jitter` so a fleet added at once does not stay in lock-step. Rounds of one node
// never overlap. Rounds run on a fixed pool of `workers` threads whatever the fleet size; one
// scheduler thread hands due nodes to them.
//
// Seams: time comes from a Clock and the I/O from a ProbeTransport, so tests drive thresholds and
// jitter with a ManualClock and a scripted transport (and Wake()) instead of sleeping.
//
// Thread safety: all public methods are safe from any thread. Start and Stop are called once
// each; the destructor stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "controlplane/node_client.h"
#include "controlplane/registry.h"

namespace corral::control {

struct ControlMetrics;

struct ProberOptions {
  std::chrono::milliseconds interval{5000};  // between the end of a round and the next
  double jitter = 0.10;                      // ± fraction of `interval`, in [0, 0.5]
  // Liveness (GET /api/version) answer deadline, and the TCP connect deadline of every call.
  std::chrono::milliseconds liveness_timeout{2000};
  std::chrono::milliseconds tags_timeout{5000};
  std::chrono::milliseconds ps_timeout{1000};
  // Consecutive failed rounds that move a HEALTHY node to the standby pool (UNHEALTHY). A node
  // never seen healthy (UNKNOWN) has no credit and goes UNHEALTHY on its first failure.
  int unhealthy_threshold = 2;
  // Consecutive successful rounds that bring a node back to the active pool.
  int healthy_threshold = 1;
  size_t workers = 16;  // probe threads, whatever the fleet size
  // How often the scheduler re-reads the whole node list on its own (new, removed, re-addressed
  // nodes). ProbeNow and Wake re-read it at once, so this only bounds how long a change made
  // without them goes unseen; the list carries every model entry, so it is not read every tick.
  std::chrono::milliseconds refresh_interval{5000};
  // How soon ProbeSoon's round comes: a short delay lets the reports of several proxies'
  // cold loads on one node (a burst of first requests) share one round.
  std::chrono::milliseconds probe_soon_delay{250};
  // Where each round's outcome and liveness round trip are counted (corral_probes_total,
  // corral_probe_duration_seconds); null = not counted. Not owned; must outlive the Prober.
  ControlMetrics* metrics = nullptr;
};

// The I/O of one probe round: a seam so tests can script answers. Implementations must be safe to
// call from several threads at once and must return within their own timeouts.
class ProbeTransport {
 public:
  virtual ~ProbeTransport() = default;
  virtual ProbeResult Probe(const std::string& url) = 0;
};

// The real transport: NodeClient calls with the prober's timeouts. Latency is the wall-clock
// round trip of the liveness call.
class HttpProbeTransport final : public ProbeTransport {
 public:
  explicit HttpProbeTransport(const ProberOptions& options);

  // ProbeTransport
  ProbeResult Probe(const std::string& url) override;

 private:
  NodeClientOptions client_options_;
};

// The threshold state machine of one node: a pure value, exposed for tests.
class HealthThresholds {
 public:
  HealthThresholds(int unhealthy_threshold, int healthy_threshold,
                   corral::v1::Health initial = corral::v1::HEALTH_UNKNOWN);
  // Feeds one round's liveness verdict; returns the node's health after it.
  corral::v1::Health Observe(bool reachable);
  corral::v1::Health health() const { return health_; }

 private:
  int unhealthy_threshold_;
  int healthy_threshold_;
  corral::v1::Health health_;
  int consecutive_failures_ = 0;
  int consecutive_successes_ = 0;
};

class Prober {
 public:
  // Production wiring: real HTTP probes, the steady clock.
  Prober(Registry* registry, ProberOptions options);
  // The seam: `transport` and `clock` must outlive the Prober. `seed` fixes the jitter sequence.
  Prober(Registry* registry, ProberOptions options, ProbeTransport* transport, const Clock* clock,
         uint64_t seed = std::random_device{}());
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Starts the scheduler and the workers. Every known node is probed at once.
  void Start();
  // Stops scheduling, lets running rounds finish (bounded by the transport's timeouts), joins.
  void Stop();

  // Probes `name` as soon as a worker is free (a node just created or re-addressed), re-reading
  // the node list first so a node created a moment ago is found.
  void ProbeNow(const std::string& name);
  // Probes `name` within `probe_soon_delay` (a proxy reported a cold load there, so /api/ps
  // has changed): the next round is brought forward, never pushed back, so reports of many
  // cold loads in a burst cost one round. A round already running when this arrives may have
  // read /api/ps before the load, so one more follows it. Unknown names are ignored.
  void ProbeSoon(const std::string& name);
  // Makes the scheduler re-read the clock and the node list now (tests that move a ManualClock).
  void Wake();

  // Rounds finished and recorded since Start, over all nodes.
  uint64_t completed_rounds() const;
  // When `name`'s next round is due; nullopt for a node not scheduled (unknown, or in a round).
  std::optional<TimePoint> NextProbeAt(const std::string& name) const;

 private:
  struct NodeState {
    std::string url;
    HealthThresholds thresholds;
    TimePoint next_due;
    bool in_round = false;
    bool probe_again = false;    // ProbeNow arrived during a round: run another at once
    bool probe_soon = false;     // ProbeSoon arrived during a round: run another soon after
    bool removed = false;        // no longer listed; dropped when its round ends
    std::string list_warning{};  // the last round's ProbeResult::list_warning, logged on change
  };

  void SchedulerLoop();
  void WorkerLoop();
  // Re-reads the node list. REQUIRES: mu_ held by `lock`; released around the registry read.
  void RefreshNodes(std::unique_lock<std::mutex>& lock);
  void RunRound(const std::string& name, const std::string& url);
  Duration JitteredIntervalLocked();  // REQUIRES: mu_ held

  Registry* const registry_;
  const ProberOptions options_;
  std::unique_ptr<ProbeTransport> owned_transport_;
  ProbeTransport* const transport_;
  const Clock* const clock_;

  mutable std::mutex mu_;
  std::condition_variable scheduler_cv_;    // due times, Wake, ProbeNow, Stop
  std::condition_variable worker_cv_;       // work queued, Stop
  std::map<std::string, NodeState> nodes_;  // guarded by mu_
  std::deque<std::string> queue_;           // due node names; guarded by mu_
  std::mt19937_64 rng_;                     // guarded by mu_
  bool refresh_requested_ = true;           // guarded by mu_
  std::vector<std::string> probe_now_;      // ProbeNow names awaiting a refresh; guarded by mu_
  bool wake_ = false;                       // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  bool started_ = false;                    // guarded by mu_
  TimePoint last_refresh_{};                // guarded by mu_
  uint64_t completed_rounds_ = 0;           // guarded by mu_
  std::thread scheduler_;
  std::vector<std::thread> workers_;
};

}  // namespace corral::control
