// SeedRoutes: the answers corral-proxy gives on the endpoints of the proxies it replaces, so
// their users' health checks, monitors and scripts keep working unchanged (docs/migrating.md):
//
//   GET /api/health                  {"status":"ok"} while the proxy runs (liveness)
//   GET /api/proxy/active-requests   the requests in flight now, and the per-node view of the
//                                    same name ("nodes", "total_active_requests"); ?node_id=
//                                    (or ?node=) a node's name keeps that node only
//   GET /__proxy/health              {"status":"ok","healthy_backends":N}, 200 even with none
//   GET /__proxy/backends            every node, sorted by port: port, healthy, in_flight
//   GET /health                      status, timestamp and every enabled node's health
//
// The bodies are built by pure functions of a NodeView list (and the live requests), so they
// are specified by unit tests; SeedRoutes only reads the snapshot, the router and the registry.
// HEAD gets the GET's status and headers, without the body.
//
// Thread safety: every function and method is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/live_requests.h"
#include "dataplane/proxy_call.h"
#include "dataplane/router.h"
#include "dataplane/routing_table.h"

namespace corral::dataplane {

// One node of the snapshot as the seeds' endpoints show it.
struct NodeView {
  std::string name;
  std::string url;
  int port = 0;
  bool enabled = false;     // admin state ENABLED (not draining or disabled)
  bool healthy = false;     // can serve now: routable and not ejected by this proxy
  std::string admin_state;  // e.g. "ADMIN_STATE_ENABLED"
  std::string health;       // e.g. "HEALTH_HEALTHY"
  bool ejected = false;
  int64_t in_flight = 0;
  double probe_latency_ms = 0;  // 0: not measured
  int priority = 0;
  double max_memory_gb = 0;  // 0: not set
  std::vector<std::string> models;
};

// The nodes of `table` in snapshot order, with this proxy's runtime counts from `router`.
std::vector<NodeView> ViewNodes(const RoutingTable& table, Router& router);

// GET /api/health.
std::string ApiHealthBody();

// GET /__proxy/health: the count of nodes that can serve now.
std::string BackendsHealthBody(const std::vector<NodeView>& nodes);

// GET /__proxy/backends: {"backends":[{"port","healthy","in_flight","name","url"}]}, sorted by
// port, then name.
std::string BackendsBody(const std::vector<NodeView>& nodes);

// GET /health at wall time `now`: {"status":"ok","timestamp","servers":{name:{"status":
// "healthy"|"unhealthy","response_time_ms","priority","max_memory_gb"[,"error"]}},
// "external_hosts":{}}. Nodes not enabled are left out.
std::string HealthBody(const std::vector<NodeView>& nodes,
                       std::chrono::system_clock::time_point now);

// GET /api/proxy/active-requests. `rows` are the live requests (oldest first), `steady_now` and
// `wall_now` the same instant on both clocks. `only_node` non-empty keeps that node's entry
// and requests.
std::string ActiveRequestsBody(const std::vector<NodeView>& nodes,
                               const std::vector<LiveRequests::Row>& rows,
                               RequestRecord::Clock::time_point steady_now,
                               std::chrono::system_clock::time_point wall_now,
                               const std::string& only_node);

class SeedRoutes {
 public:
  SeedRoutes(Router& router, const LiveRequests& live) : router_(router), live_(live) {}

  // Answers a request for one of the endpoints above (RouteClass::kProxy).
  void Answer(ProxyCall& call);

 private:
  Router& router_;
  const LiveRequests& live_;
};

}  // namespace corral::dataplane
