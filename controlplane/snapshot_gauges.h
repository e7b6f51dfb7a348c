// SnapshotGauges: what each published routing snapshot says about the fleet, written into the
// control plane's metrics — the node and model label domains, each node's health
// (corral_node_healthy), the routable nodes of each model (corral_model_healthy_nodes) and the
// snapshot's version.
//
// The snapshot is the one consistent view of nodes, health and models, so the gauges move with
// what proxies route by, never with a half-applied probe round. Series cannot be removed (see
// common/metrics.h), so a node or model that leaves the fleet keeps its series with the value NaN:
// it drops out of every comparison (an alert on `== 0` does not fire for a model nobody has any
// more, whose requests get 404, not 503) and out of Grafana's graphs, instead of showing a stale
// number forever.
//
// Thread safety: Record may be called from any thread; calls are serialised by a mutex (the
// publisher calls it from its own thread, and once from Start).
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "controlplane/control_metrics.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::control {

// A node is in the active pool unless the prober put it in standby: not probed yet counts as
// active, as it does for routing.
bool InActivePool(const corral::v1::Node& node);

class SnapshotGauges {
 public:
  // `metrics` must outlive this object.
  explicit SnapshotGauges(ControlMetrics* metrics) : metrics_(metrics) {}

  // Sets the label domains to the snapshot's nodes and canonical model keys (names that are not
  // valid model references are left out), then the gauges. A model counts a node when the node
  // is enabled, in the active pool and lists the model in /api/tags.
  void Record(const corral::v1::Snapshot& snapshot);

 private:
  ControlMetrics* const metrics_;
  std::mutex mu_;
  std::set<std::string> nodes_;   // the last snapshot's nodes; guarded by mu_
  std::set<std::string> models_;  // the last snapshot's model keys; guarded by mu_
};

}  // namespace corral::control
