// ProxyStateView: what the proxy shows of itself: GET /api/proxy (health: ok while some node can
// serve, 503 otherwise), GET /api/proxy/state (every node of the snapshot with this proxy's
// runtime counts: in flight, per model, ejection, latency, totals; admission and body budget;
// the snapshot served) and the per-node loads sent to the control plane with each Report.
//
// Thread safety: every method is safe from any thread; it reads the snapshot store, the router
// and the front door, each internally synchronised.
#pragma once

#include <string>
#include <vector>

#include "corral/v1/control.pb.h"
#include "dataplane/front_door.h"
#include "dataplane/proxy_call.h"
#include "dataplane/router.h"
#include "dataplane/snapshot_store.h"

namespace corral::dataplane {

class ProxyStateView {
 public:
  ProxyStateView(std::string proxy_id, FrontDoor& front_door, SnapshotStore& store, Router& router);

  // Answers GET /api/proxy or GET /api/proxy/state.
  void Answer(ProxyCall& call);

  // The body of GET /api/proxy/state.
  std::string StateJson();

  // The proxy's view of each node of the current snapshot, for the control plane's Report.
  // Passive failures are counted since the previous call (the counter is reset).
  std::vector<corral::v1::NodeLoad> NodeLoads();

 private:
  const std::string proxy_id_;
  FrontDoor& front_door_;
  SnapshotStore& store_;
  Router& router_;
};

}  // namespace corral::dataplane
