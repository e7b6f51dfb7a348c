// ProxyServer: corral-proxy's HTTP data plane. It answers like one Ollama node while sending each
// request to a node of the fleet chosen from the current routing snapshot.
//
// Per request (docs/proxy.md has the full picture): classify the route; for inference, peek
// at the body for the model, pick a node with the Router, forward the bytes untouched with
// filtered headers over a pooled keep-alive connection, and relay the answer — streams piece
// by piece as they arrive, with the node's own status and Content-Type. Before the first byte
// reaches the client, a connect error, a timeout before headers or a 5xx moves the request to
// the next candidate; after it, a failing node ends the stream with an error line. A client that
// leaves closes the upstream connection at once (also while a node is still loading a model,
// before it sent anything). Fleet-wide answers (/, /api/version, /api/tags, /api/ps,
// /v1/models) come from the snapshot; management routes go to the node(s) they concern.
//
// Threads: httplib runs each connection on one worker thread; a request, its upstream exchange
// and its stream relay all run on that thread. Shared state: the snapshot store, the router's
// runtime counters, the upstream pool and the blob-location cache, each internally locked.
//
// Thread safety: Install once before the server runs; every other method is safe from any
// thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/http_listener.h"
#include "corral/v1/control.pb.h"
#include "dataplane/front_door.h"
#include "dataplane/relay_loop.h"
#include "dataplane/route.h"
#include "dataplane/router.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/upstream_pool.h"

namespace corral::dataplane {

// The request header that pins a request to one node (and the response header that names the
// node that served it).
inline constexpr const char* kNodeHeader = "X-Corral-Node";

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
  std::vector<corral::v1::NodeLoad> NodeLoads();

  // Ends every open stream with an error line and makes waiting requests give up: the end of a
  // graceful stop's grace period.
  void AbortAll() {
    aborting_.store(true);
    relay_loop_.Abort();
  }

  // Proxied requests in progress (admission count).
  int64_t active_requests() const { return front_door_.active(); }

  // The body of GET /api/proxy/state.
  std::string StateJson();

 private:
  struct Call;
  struct NodeAnswer;
  struct SavedResponse;

  void HandleNoBody(const httplib::Request& req, httplib::Response& res);
  void HandleWithBody(const httplib::Request& req, httplib::Response& res,
                      const httplib::ContentReader& reader);
  void HandleOptions(const httplib::Request& req, httplib::Response& res);

  // The front door's decision for the request being served, with CORS headers set on `res`.
  // Null (and a 500 answered) outside a request the listener admitted.
  Admitted* Prepare(const httplib::Request& req, httplib::Response& res);
  void Dispatch(Call& call);
  void AnswerFleet(Call& call);
  void AnswerProxy(Call& call);

  void RouteInference(Call& call);
  void RouteNodeLocal(Call& call);
  void RouteBlobHead(Call& call);
  void RouteBlobUpload(Call& call, const httplib::ContentReader& reader);
  void RouteFanOut(Call& call, const std::vector<std::string>& nodes, bool empty_on_success);

  // Tries nodes from `order` (names), at most policy.max_attempts, until one answers.
  void ForwardToNodes(Call& call, const std::vector<std::string>& order,
                      const std::string& model_key);
  // Tries nodes picked by the strategy for `model_key`.
  void ForwardByModel(Call& call, const std::string& model_key, const std::string& model_as_sent);

  // One request/response with one node up to the response head.
  NodeAnswer SendToNode(Call& call, const NodeEntry& node);
  // Reads the rest of a response body into `body`, at most `limit` bytes; false with `error` on
  // a node failure or a longer body.
  bool ReadWholeBody(Call& call, UpstreamConnection& conn, size_t limit, std::string* body,
                     std::string* error);
  // After a successful head: answer the client (buffered or streamed). Returns false when the
  // node failed while its body was read (nothing was sent yet, so the caller may retry).
  bool Relay(Call& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
             const std::string& node_name, double latency_ms, std::string* error);
  void CopyResponseHead(Call& call, const UpstreamConnection& conn, const std::string& node);
  // Relays a node's answer framed by a Content-Length too large to buffer, as it arrives.
  void RelayLargeBody(Call& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                      const std::string& node_name, const std::string& content_type);
  void SetSaved(Call& call, const SavedResponse& saved);

  // Routable, not ejected nodes among `names` (or all nodes when null), least in-flight first.
  std::vector<std::string> OrderByLoad(const RoutingTable& table,
                                       const std::vector<std::string>* names) const;
  // A model-limited token may only use its models: answers 403 and returns false otherwise.
  bool TokenAllowsModel(Call& call, const std::string& model_key, const std::string& model);
  bool PinnedNode(Call& call, std::string* node);

  // The head sent to `node` for the client's request (common/request_head.h BuildForwardHead).
  std::string NodeRequestHead(const Call& call, const NodeEntry& node, BodyFraming body,
                              uint64_t length) const;

  void RememberBlob(const std::string& digest, const std::string& node);
  std::string BlobNode(const std::string& digest);

  const ProxyOptions options_;
  FrontDoor& front_door_;
  SnapshotStore& store_;
  Router& router_;
  UpstreamPool& pool_;
  std::atomic<bool> aborting_{false};
  RelayLoop relay_loop_;  // carries streamed bodies once their heads are out

  std::mutex blob_mu_;  // guards blob_nodes_
  std::unordered_map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>>
      blob_nodes_;
};

}  // namespace corral::dataplane
