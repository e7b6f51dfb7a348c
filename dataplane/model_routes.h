// The routes that name a model: inference (routed by model and strategy) and node-local
// management (/api/show, pull, push, create, copy, delete, /v1/models/:model and blob HEAD,
// routed to the node(s) the model or blob concerns). Each reads what routing needs from the
// buffered body (body_peek.h), answers what it can answer itself (400 for a body or a "model"
// no node would accept, 403 for a model a token may not use, 404 for a model no node has), and
// hands the request to the Forwarder: a strategy pick, a fixed order of nodes, or a fan-out.
// Inference and node-local requests take their slot on a node the same way: the Router's lease,
// bounded by the node's max_parallel and counted against the model they name on that node
// (docs/proxy.md "Node-local management"); inference also needs a free slot for its model
// (num_parallel), pinned or not. A request naming a fleet-wide alias is routed as the alias's
// target, and its body's "model" is rewritten to the target, which is what the node knows
// (docs/routing.md "Aliases").
//
// Thread safety: every method is safe from any thread; a ProxyCall belongs to its thread.
#pragma once

#include <string>
#include <vector>

#include "dataplane/blob_upload.h"
#include "dataplane/forwarder.h"
#include "dataplane/node_exchange.h"
#include "dataplane/proxy_call.h"
#include "dataplane/router.h"

namespace corral::dataplane {

class ModelRoutes {
 public:
  ModelRoutes(Forwarder& forwarder, NodeExchange& exchange, Router& router, BlobLocations& blobs);

  // /api/generate, /api/chat, /api/embed(dings) and their /v1 counterparts.
  void Inference(ProxyCall& call);
  // /api/show, /api/pull, /api/push, /api/create, /api/copy, DELETE /api/delete,
  // /v1/models/:model.
  void NodeLocal(ProxyCall& call);
  // HEAD /api/blobs/:digest: asks each node in turn; the first that has the blob answers 200.
  void BlobHead(ProxyCall& call);

 private:
  // A model-limited token may only use its models (`model_key`, or the alias the request
  // named): answers 403 and returns false otherwise.
  static bool TokenAllowsModel(ProxyCall& call, const std::string& model_key,
                               const std::string& model, const std::string& alias_key = "");

  Forwarder& forwarder_;
  NodeExchange& exchange_;
  Router& router_;
  BlobLocations& blobs_;
};

}  // namespace corral::dataplane
