// corral-sim's model routes: what the node has and what it holds in memory (/api/tags, /api/ps,
// /api/show, /v1/models, /v1/models/:model) and node-local management (/api/pull, /api/push,
// /api/create, /api/copy, DELETE /api/delete, /api/blobs/:digest), with Ollama's status-line
// streams and error texts.
//
// Thread safety: handlers run concurrently on httplib's worker threads; the routes hold nothing
// but a reference to the NodeState, which outlives them and every stream they start.
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <vector>

#include "sim/node_state.h"
#include "sim/sim_config.h"
#include "sim/wire.h"

namespace corral::sim {

class ModelRoutes {
 public:
  explicit ModelRoutes(NodeState& node) : node_(node) {}

  void HandleTags(const httplib::Request& req, httplib::Response& res);
  void HandlePs(const httplib::Request& req, httplib::Response& res);
  void HandleShow(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiModels(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiModel(const httplib::Request& req, httplib::Response& res);
  void HandlePull(const httplib::Request& req, httplib::Response& res);
  void HandlePush(const httplib::Request& req, httplib::Response& res);
  void HandleCreate(const httplib::Request& req, httplib::Response& res);
  void HandleCopy(const httplib::Request& req, httplib::Response& res);
  void HandleDelete(const httplib::Request& req, httplib::Response& res);
  void HandleBlob(const httplib::Request& req, httplib::Response& res);

 private:
  // The configured failure, when it applies to management routes (fail_all_routes), acted out
  // before the answer. True when the response is settled.
  bool FailedBeforeAnswer(ConnectionWatch& watch, const SimConfig& config, httplib::Response& res);
  // Answers a pull/push/create: a stream of status lines (one every pull_interval_ms), or with
  // stream:false one object ({"status":"success"} or a 500 error). `install` runs just before
  // the success line is sent, so a client that saw "success" finds the model at once.
  void RespondWithStatusLines(std::shared_ptr<ConnectionWatch> watch, std::vector<Json> lines,
                              std::function<void()> install, bool stream, const SimConfig& config,
                              httplib::Response& res);

  NodeState& node_;
};

}  // namespace corral::sim
