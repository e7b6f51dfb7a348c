// corral-sim's inference routes: native /api/generate, /api/chat, /api/embed, /api/embeddings and
// the OpenAI-compatible /v1/chat/completions, /v1/completions, /v1/embeddings. Each handler reads
// and checks its request (Ollama's refusals and texts), takes the configured failure, and hands
// the rest to a Generation (or computes the embedding itself after taking a slot).
//
// Thread safety: handlers run concurrently on httplib's worker threads; the routes hold nothing
// but a reference to the NodeState, which outlives them.
#pragma once

#include <httplib.h>

#include "sim/node_state.h"
#include "sim/scheduler.h"

namespace corral::sim {

class InferenceRoutes {
 public:
  explicit InferenceRoutes(NodeState& node) : node_(node) {}

  void HandleGenerate(const httplib::Request& req, httplib::Response& res);
  void HandleChat(const httplib::Request& req, httplib::Response& res);
  void HandleEmbed(const httplib::Request& req, httplib::Response& res);
  void HandleEmbeddings(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiChat(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiCompletion(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiEmbeddings(const httplib::Request& req, httplib::Response& res);

 private:
  // The embedding routes' work: the configured failure, a slot, and one token interval of compute
  // (none without input). Returns false when the response is settled (error or cancel sent).
  bool RunEmbedding(const SimModel& model, int num_ctx, const KeepAlive& keep_alive, bool has_input,
                    bool openai, ConnectionWatch& watch, Scheduler::Lease* lease,
                    httplib::Response& res);

  NodeState& node_;
};

}  // namespace corral::sim
