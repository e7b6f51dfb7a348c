// Router: picks the node for a request, and keeps the runtime state that outlives snapshots.
//
// Runtime state (in-flight counts per node and per (node, model), passive ejection, round-robin
// and weighted cursors, upstream latency) is keyed by node name and survives snapshot swaps.
// Selection: routable, not ejected, has the model, under max_parallel, not excluded; then
// loaded-first; then the strategy; ties break by snapshot order.
//
// Thread safety: every method is safe from any thread. Pick and the Lease it returns take and
// give back a slot atomically, so concurrent picks never exceed a node's max_parallel.
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

namespace corral::dataplane {

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
  std::unordered_map<std::string, int64_t> model_in_flight;  // canonical key -> count
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
  kAllBusy,        // candidates exist but all at max_parallel -> 503 (busy)
  kExhausted,      // every candidate already tried for this request -> last error stands
};

// "model_not_found", "no_healthy_node", "all_busy", "exhausted" (and "none"), for logs.
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
};

struct PickResult {
  Lease lease;
  PickError error = PickError::kNone;
};

class Router {
 public:
  explicit Router(const Clock& clock = SteadyClock::Instance());

  // Picks a node holding `model_key` (a canonical key) and takes a slot on it. Nodes whose
  // names are in `exclude` are skipped (already tried by this request).
  PickResult Pick(const std::shared_ptr<const RoutingTable>& table, const std::string& model_key,
                  const std::unordered_set<std::string>& exclude);

  // Takes a slot on a named node regardless of model (node-local management, a pinned node).
  // Returns an empty lease when the node is unknown, not routable, ejected or at max_parallel
  // (the limit protects the node whatever the request is). A non-empty model_key also counts
  // the request against that model on the node.
  Lease Acquire(const std::shared_ptr<const RoutingTable>& table, const std::string& node_name,
                const std::string& model_key = "");

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
  struct NodeLoadSample {
    std::string node;
    int64_t in_flight = 0;
    int64_t passive_failures = 0;  // since the previous TakeLoadReport
    bool ejected = false;
    double latency_ms = 0;  // EWMA of time to response headers; 0 = none measured
  };
  // Every node with runtime state, by name; resets each node's unreported failure count.
  std::vector<NodeLoadSample> TakeLoadReport();

  // Drops the runtime state of nodes absent from `table` that have nothing in flight, so a
  // fleet with churn does not grow the map forever. A node that comes back starts afresh.
  void ForgetNodesNotIn(const RoutingTable& table);

 private:
  std::shared_ptr<NodeRuntime> FindRuntime(const std::string& node_name) const;
  bool EjectedNow(NodeRuntime& runtime) const;

  const Clock& clock_;
  mutable std::mutex mu_;  // guards runtimes_ and rr_cursor_
  std::unordered_map<std::string, std::shared_ptr<NodeRuntime>> runtimes_;
  uint64_t rr_cursor_ = 0;
  // Serialises one smooth-weighted-round-robin step (it reads and writes every candidate's
  // weighted_current). Taken before any NodeRuntime::mu, never after.
  std::mutex weighted_mu_;
};

}  // namespace corral::dataplane
