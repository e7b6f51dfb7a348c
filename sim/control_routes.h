// corral-sim's own control routes (/_sim/*, not part of Ollama): GET /_sim/stats (counters, the
// scheduler's state and the last requests), GET/POST /_sim/config (the running settings and
// models), POST /_sim/release (tokens through the gate) and POST /_sim/reset (back to start-up).
// docs/sim.md is their reference.
//
// Thread safety: handlers run concurrently on httplib's worker threads; the routes hold nothing
// but a reference to the NodeState, which outlives them.
#pragma once

#include <httplib.h>

#include "sim/node_state.h"

namespace corral::sim {

class ControlRoutes {
 public:
  explicit ControlRoutes(NodeState& node) : node_(node) {}

  void HandleStats(const httplib::Request& req, httplib::Response& res);
  void HandleConfig(const httplib::Request& req, httplib::Response& res);
  void HandleRelease(const httplib::Request& req, httplib::Response& res);
  void HandleReset(const httplib::Request& req, httplib::Response& res);

 private:
  NodeState& node_;
};

}  // namespace corral::sim
