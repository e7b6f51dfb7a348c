// ProxyServer: corral-proxy's HTTP data plane. It answers like one Ollama node while sending each
// request to a node of the fleet chosen from the current routing snapshot.
//
// This unit only wires: it registers the front door's head check and the handlers with the
// listener, reads a request's body into its ProxyCall, and hands each route to the unit that
// answers it (docs/proxy.md "Code map"): fleet-wide answers (fleet.h), the proxy's own view
// (proxy_state.h), the endpoints of the proxies Corral replaces (seed_routes.h), inference and
// node-local management (model_routes.h, which use forwarder.h:
// the retry loop, the exchange with a node, the answer relay), blob uploads (blob_upload.h).
//
// Threads: httplib runs each connection on one worker thread; a request, its upstream exchange
// and its stream relay all run on that thread (the relay loop carries streams on its own).
// Shared state: the snapshot store, the router's runtime counters, the upstream pool and the
// blob locations, each internally locked.
//
// Thread safety: Install once before the server runs; every other method is safe from any
// thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/http_listener.h"
#include "common/metrics.h"
#include "corral/v1/control.pb.h"
#include "dataplane/answer_relay.h"
#include "dataplane/blob_upload.h"
#include "dataplane/forwarder.h"
#include "dataplane/front_door.h"
#include "dataplane/model_routes.h"
#include "dataplane/node_exchange.h"
#include "dataplane/proxy_call.h"
#include "dataplane/proxy_state.h"
#include "dataplane/router.h"
#include "dataplane/seed_routes.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/upstream_pool.h"

namespace corral::dataplane {

struct ProxyOptions {
  std::string proxy_id = "corral-proxy";
  // How long a request waits for a node's first byte before the proxy starts watching the
  // client's socket too (finding it costs a descriptor scan, so fast requests skip it).
  std::chrono::milliseconds client_watch_after{200};
  // Longest pause between checks of a stream's client while the node is silent.
  std::chrono::milliseconds stream_poll{100};
  // How long a write to a node may stall before the request fails.
  std::chrono::milliseconds upstream_write_timeout{30000};
  // How long a blob's location (digest -> node) is remembered.
  std::chrono::milliseconds blob_cache_ttl{std::chrono::hours(1)};
};

class ProxyServer {
 public:
  ProxyServer(ProxyOptions options, FrontDoor& front_door, SnapshotStore& store, Router& router,
              UpstreamPool& pool);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Registers the front door's head check, the catch-all handlers and the server settings the
  // proxy relies on (TCP_NODELAY, keep-alive, timeouts, exception handler).
  void Install(HttpListener& server);

  // The proxy's view of each node of the current snapshot, for the control plane's Report.
  // Passive failures are counted since the previous call (the counter is reset).
  std::vector<corral::v1::NodeLoad> NodeLoads() { return state_.NodeLoads(); }

  // Ends every open stream with an error line and makes waiting requests give up: the end of a
  // graceful stop's grace period.
  void AbortAll() {
    aborting_.store(true);
    relay_.Abort();
    forwarder_.Abort();  // wakes requests waiting in the queue at once
  }

  // Proxied requests in progress (admission count).
  int64_t active_requests() const { return front_door_.active(); }

  // The body of GET /api/proxy/state.
  std::string StateJson() { return state_.StateJson(); }

  // What GET /metrics renders (Prometheus text); without one, /metrics is 404. Set before the
  // listener runs; `registry` outlives the server.
  void set_metrics(const metrics::Registry* registry) { metrics_ = registry; }

 private:
  void HandleNoBody(const httplib::Request& req, httplib::Response& res);
  void HandleWithBody(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader);
  void HandleOptions(const httplib::Request& req, httplib::Response& res);
  // The part of HandleWithBody after its call is built (the record is finished after it).
  void HandleBody(ProxyCall& call, const httplib::ContentReader& reader);
  // Hands `call` to the units that answer it (Dispatch, or HandleBody with a body); then, for
  // an answer that goes on after the handler, shows its model and node in the live view.
  void Serve(const httplib::Request& req, httplib::Response& res, Admitted& admitted,
             const httplib::ContentReader* reader);

  // The front door's decision for the request being served, with CORS headers set on `res`.
  // Null (and a 500 answered) outside a request the listener admitted.
  Admitted* Prepare(const httplib::Request& req, httplib::Response& res);
  // Reads the body of an inference or node-local request into call.body; false when the
  // request was answered instead (413, 503, 400, 408).
  bool ReadBody(ProxyCall& call, const httplib::ContentReader& reader);
  void Dispatch(ProxyCall& call);
  void AnswerFleet(ProxyCall& call);
  void AnswerMetrics(ProxyCall& call);
  // Sets call.pinned from X-Corral-Node; answers 400 and returns false for an unknown node.
  bool PinnedNode(ProxyCall& call);

  FrontDoor& front_door_;
  std::atomic<bool> aborting_{false};
  NodeExchange exchange_;
  AnswerRelay relay_;
  Forwarder forwarder_;
  BlobLocations blobs_;
  ModelRoutes model_routes_;
  BlobUpload blob_upload_;
  ProxyStateView state_;
  SeedRoutes seed_routes_;
  const metrics::Registry* metrics_ = nullptr;
};

}  // namespace corral::dataplane
