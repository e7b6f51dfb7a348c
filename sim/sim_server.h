// corral-sim's HTTP behaviour: one simulated Ollama node on the wire.
//
// SimServer installs Ollama's routes (native /api/*, the OpenAI-compatible /v1/*) and the
// simulator's own control routes (/_sim/*) on an httplib::Server. It answers with Ollama's exact
// shapes, content types, status codes and error texts (shared/ollama-api.md), paces streamed
// tokens, holds response headers back until the first token exists (queue wait, cold load and
// prompt evaluation happen first, as on a real node), and injects failures on demand. Tests,
// the demo and the benchmarks drive it; docs/sim.md is the user's guide.
//
// This file only wires routes to the units that do the work: NodeState (node_state.h) is the
// node itself, InferenceRoutes, ModelRoutes and ControlRoutes answer their routes, Generation
// (generation.h) runs one inference, sim_config.h holds the settings.
//
// Thread safety: Register once before the server runs. Handlers run on httplib's worker threads
// concurrently (see NodeState). Shutdown may be called from any thread, e.g. a signal thread.
#pragma once

#include <httplib.h>

#include <vector>

#include "sim/control_routes.h"
#include "sim/inference_routes.h"
#include "sim/model_catalog.h"
#include "sim/model_routes.h"
#include "sim/node_state.h"
#include "sim/sim_config.h"

namespace corral::sim {

class SimServer {
 public:
  SimServer(SimConfig config, std::vector<SimModel> models);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Installs the routes and the server options the simulation needs (TCP_NODELAY, keep-alive).
  void Register(httplib::Server& server);
  // Wakes every waiting request and ends streams; call before stopping the server.
  void Shutdown();

 private:
  // What no route took: Go's 404 or 405, or the redirect of a trailing slash.
  void HandleUnrouted(const httplib::Request& req, httplib::Response& res);

  NodeState node_;
  InferenceRoutes inference_routes_{node_};
  ModelRoutes model_routes_{node_};
  ControlRoutes control_routes_{node_};
};

}  // namespace corral::sim
