// Router: picks the node for a request, and keeps the runtime state that outlives snapshots.
//
// Runtime state (in-flight counts per node and per (node, model), passive ejection, round-robin
// and weighted cursors, upstream latency, models seen loaded since the snapshot, request and
// load durations) is keyed by node name and survives snapshot swaps. Selection
// (docs/routing.md "Picking a node"): the nodes placement allows for the model, routable, not
// ejected, not excluded, with a free node slot (max_parallel) and a free slot for the model
// (num_parallel); then the soft placement preference; then warm first, or the cost rule when
// every warm node is busy; then the strategy; ties break by snapshot order. A request that finds
// every candidate full may wait in the Router's queue (wait_queue.h) for a slot to be given back.
//
// Thread safety: every method is safe from any thread. Pick and the Lease it returns take and
// give back a slot atomically, so concurrent picks never exceed a node's limits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "dataplane/routing_table.h"
#include "dataplane/slot_grants.h"
#include "dataplane/wait_queue.h"

namespace corral::dataplane {

// One model on one node, as this proxy saw it.
struct ModelRuntime {
  int64_t in_flight = 0;
  // A first byte showed the model loaded on the node while the snapshot of version
  // `resident_in` listed it as not loaded: warm while that is the table's version.
  bool resident = false;
  uint64_t resident_in = 0;
  bool ResidentIn(uint64_t version) const { return resident && resident_in == version; }
  double duration_ms = 0;  // EWMA of the time a request holds its slot; 0 = none finished
};

// Per-node counters. Owned by Router; shared with leases so a lease outliving a swap is safe.
struct NodeRuntime {
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> requests_total{0};
  std::atomic<int64_t> failures_total{0};
  std::atomic<int64_t> passive_failures_unreported{0};
  std::atomic<double> latency_ms{0};        // EWMA of time to response headers
  std::atomic<int64_t> ejections_total{0};  // passive ejections since the node was first seen

  // Guarded by mu.
  std::mutex mu;
  std::unordered_map<std::string, ModelRuntime> models;  // canonical key -> its state
  std::vector<std::string> cold_loads;  // models loaded cold since the last load report
  int consecutive_failures = 0;
  int ejections = 0;  // consecutive ejections, for the back-off doubling
  TimePoint ejected_until{};
  int64_t weighted_current = 0;  // smooth weighted round robin state
};

// Why no node was picked; the proxy turns each into the design's answer.
enum class PickError {
  kNone,
  kModelNotFound,  // no node in the snapshot lists the model -> 404
  kNoHealthyNode,  // nodes list it, none routable / all ejected -> 503
  kAllBusy,        // candidates exist but all are full (node or model slots) -> wait, or 503
  kExhausted,      // every candidate already tried for this request -> last error stands
  kNotPlaceable,   // nodes list the model, but memory or a hard rule allow none -> 503
};

// "model_not_found", "no_healthy_node", "all_busy", "exhausted", "not_placeable" (and "none"),
// for logs.
const char* PickErrorName(PickError error);

class Router;

// One taken slot on a node. Releases it when destroyed (or on Release()).
class Lease {
 public:
  Lease() = default;
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  explicit operator bool() const { return node_ != nullptr; }
  const NodeEntry& node() const { return *node_; }
  size_t node_index() const { return node_index_; }
  // The canonical model key the slot was taken for; empty for a node-wide Acquire.
  const std::string& model_key() const { return model_key_; }
  void Release();

 private:
  friend class Router;
  std::shared_ptr<const RoutingTable> table_;  // keeps node_ alive
  const NodeEntry* node_ = nullptr;
  size_t node_index_ = 0;
  std::shared_ptr<NodeRuntime> runtime_;
  std::string model_key_;
  Router* router_ = nullptr;
  TimePoint taken_{};
};

struct PickResult {
  Lease lease;
  PickError error = PickError::kNone;
  // kAllBusy only: a cold node was free, but the cost rule chose to wait for a warm one (Pick
  // with may_wait = false would take the cold node).
  bool cold_free = false;
};

struct PickOptions {
  // The request can wait in the queue: the cost rule may then answer kAllBusy to wait for a
  // busy warm node rather than load the model cold. Without it a free cold node is taken.
  bool may_wait = false;
};

class Router {
 public:
  explicit Router(const Clock& clock = SteadyClock::Instance());

  // Picks a node holding `model_key` (a canonical key) and takes a slot on it. Nodes whose
  // names are in `exclude` are skipped (already tried by this request).
  PickResult Pick(const std::shared_ptr<const RoutingTable>& table, const std::string& model_key,
                  const std::unordered_set<std::string>& exclude, PickOptions options = {});

  // Takes a slot on a named node regardless of model (node-local management, a pinned node).
  // Returns an empty lease when the node is unknown, not routable, ejected or at max_parallel
  // (the limit protects the node whatever the request is). A non-empty model_key also counts
  // the request against that model on the node; with `model_limited` (an inference request
  // pinned to the node) it must also find a free slot for the model, as Pick does.
  Lease Acquire(const std::shared_ptr<const RoutingTable>& table, const std::string& node_name,
                const std::string& model_key = "", bool model_limited = false);

  // Every limit is taken through `grants` (this proxy's share of each node's limits when
  // several proxies serve the fleet); null = the limits whole. Set before serving; `grants`
  // outlives the router.
  void UseSlotGrants(const SlotGrants* grants) { grants_.store(grants); }

  // The slots this proxy may use on a node: max_parallel and, for a model, num_parallel (0 = the
  // default, 1), each through the slot grants. -1 = no limit (a max_parallel of 0); 0 = none
  // now (this proxy's grant is empty while other proxies use the node).
  int64_t NodeLimit(const NodeEntry& node) const;
  int64_t ModelLimit(const NodeEntry& node, const std::string& model_key) const;

  // The requests waiting for a slot (wait_queue.h). Lease releases wake them.
  WaitQueue& queue() { return queue_; }

  // The node's first byte for the lease's request arrived after `latency_ms`. When the
  // lease's snapshot did not list the model as loaded there, the model is now treated as
  // loaded on the node until the next snapshot, the load is counted as cold (reported to the
  // control plane) and its time feeds the model's observed load time.
  void RecordFirstByte(const Lease& lease, double latency_ms);

  // The model's observed cold-load time (EWMA, ms); 0 = none observed.
  double ObservedLoadMs(const std::string& model_key) const;

  // Passive outlier detection on real traffic. A success resets the failure run; after
  // `eject_after_failures` consecutive failures the node is ejected for a back-off period that
  // doubles per repeat, capped.
  void RecordSuccess(const std::string& node_name, double header_latency_ms);
  void RecordFailure(const std::string& node_name, const EffectivePolicy& policy);
  bool IsEjected(const std::string& node_name) const;

  // The runtime state of a node (created on first use).
  std::shared_ptr<NodeRuntime> Runtime(const std::string& node_name);

  // This proxy's requests in flight on a node for one model (0 when none or unknown).
  int64_t ModelInFlight(const std::string& node_name, const std::string& model_key) const;

  // One node's load as the proxy reports it to the control plane.
  struct ModelLoadSample {
    std::string model;  // canonical key
    int64_t in_flight = 0;
    int64_t waiting = 0;  // queued requests for the model that this node could serve
  };
  struct NodeLoadSample {
    std::string node;
    int64_t in_flight = 0;
    int64_t passive_failures = 0;  // since the previous TakeLoadReport
    bool ejected = false;
    double latency_ms = 0;                // EWMA of time to response headers; 0 = none measured
    int64_t waiting = 0;                  // queued requests this node could serve
    std::vector<ModelLoadSample> models;  // models in flight or waited for, by key
    std::vector<std::string> cold_loads;  // models loaded cold since the previous report
  };
  // Every node with runtime state, by name; resets each node's unreported failure count and
  // cold loads.
  std::vector<NodeLoadSample> TakeLoadReport();

  // Drops the runtime state of nodes absent from `table` that have nothing in flight, so a
  // fleet with churn does not grow the map forever. A node that comes back starts afresh.
  void ForgetNodesNotIn(const RoutingTable& table);

 private:
  friend class Lease;
  std::shared_ptr<NodeRuntime> FindRuntime(const std::string& node_name) const;
  bool EjectedNow(NodeRuntime& runtime) const;
  // Takes a node slot and, with a model key, a model slot; false (nothing taken) when full.
  bool TryTake(const NodeEntry& node, NodeRuntime& runtime, const std::string& model_key,
               int64_t model_limit);
  void FillLease(Lease& lease, const std::shared_ptr<const RoutingTable>& table,
                 const NodeEntry& node, std::shared_ptr<NodeRuntime> runtime,
                 const std::string& model_key);
  // Gives back what a lease took and wakes a waiter that can use the node.
  void GiveBack(Lease& lease);

  const Clock& clock_;
  std::atomic<const SlotGrants*> grants_{nullptr};
  WaitQueue queue_;
  mutable std::mutex load_mu_;                       // guards load_ms_
  std::unordered_map<std::string, double> load_ms_;  // canonical key -> cold-load EWMA
  mutable std::mutex mu_;                            // guards runtimes_ and rr_cursor_
  std::unordered_map<std::string, std::shared_ptr<NodeRuntime>> runtimes_;
  uint64_t rr_cursor_ = 0;
  // Serialises one smooth-weighted-round-robin step (it reads and writes every candidate's
  // weighted_current). Taken before any NodeRuntime::mu, never after.
  std::mutex weighted_mu_;
};

}  // namespace corral::dataplane
