// One inference in progress on the simulated node, and what a simulated model produces.
//
// A Generation is planned (thinking pieces, content tokens or one tool call), waits for its
// slot, then is paced token by token (interval, jitter, the token gate) and framed for its API:
// native NDJSON lines or one object, OpenAI SSE events or one object, with Ollama's metrics in
// the final chunk and the configured mid-stream failure acted out on the way. Tool calls and
// embeddings are deterministic functions of the request, so answers can be checked.
//
// Thread safety: a Generation belongs to one request. The handler thread starts it; afterwards
// only httplib's content provider for that response touches it (one call at a time). It holds a
// NodeState* that outlives every request.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/node_state.h"
#include "sim/request_fields.h"
#include "sim/scheduler.h"
#include "sim/sim_config.h"
#include "sim/wire.h"

namespace corral::sim {

enum class Api { kGenerate, kChat, kOpenAiChat, kOpenAiCompletion };

// One produced unit: a thinking or content token, or a whole tool call.
struct Piece {
  enum Kind { kThinking, kContent, kToolCall } kind;
  std::string text;
  Json tool_call;  // native shape
};

// The native tool call a model would make for the first tool offered.
Json ToolCallFor(const Json& tools);

// Deterministic pseudo-embedding: a function of the model and the text only, at float32
// precision; `normalise` makes it unit length (the legacy /api/embeddings does not).
std::vector<double> EmbeddingVector(const std::string& model_key, std::string_view text, int dims,
                                    bool normalise);

struct Generation {
  using SteadyTime = std::chrono::steady_clock::time_point;
  enum class Outcome { kRunning, kCompleted, kCancelled, kFailed };

  Generation(NodeState* n, const httplib::Request& req)
      : node(n), watch(req), config(n->Config()), start(std::chrono::steady_clock::now()) {}
  ~Generation() {
    if (leased) node->scheduler().Release(lease, keep_alive);
  }

  NodeState* node;
  ConnectionWatch watch;
  SimConfig config;
  SteadyTime start;

  Api api = Api::kGenerate;
  std::string model_echo;
  SimModel model;
  std::vector<Piece> pieces;
  std::string done_reason = "stop";
  int prompt_tokens = 1;
  bool stream = true;
  bool with_context = false;
  bool include_usage = false;
  KeepAlive keep_alive{false, std::chrono::minutes(5)};
  FailMode fail = FailMode::kNone;
  std::string openai_id;
  int64_t openai_created = 0;

  Scheduler::Lease lease;
  bool leased = false;
  SteadyTime slot_at{}, first_at{}, last_at{};
  size_t next = 0;  // next piece to produce
  int written = 0;  // pieces written to the client
  bool final_produced = false;
  bool role_sent = false;  // OpenAI chat: role goes in the first delta only
  int64_t last_created_ns = 0;
  std::string pending;  // produced, not yet written
  Outcome outcome = Outcome::kRunning;

  bool openai() const { return api == Api::kOpenAiChat || api == Api::kOpenAiCompletion; }

  void Plan(bool thinking, int content_tokens, const Json* tools_call);

  std::string CreatedAt();

  // Waits out the pacing and the gate for the next piece. False when the client left.
  bool AwaitPiece();

  struct Metrics {
    int64_t total, load, prompt_eval, eval;
    int prompt_count, eval_count;
  };
  Metrics ComputeMetrics() const;

  // The closing fields of a native answer (the final chunk, or the stream:false object).
  void AddDone(Json& j, const Metrics& m) const;

  Json OpenAiToolCall(const Json& native) const;

  std::string FinishReason() const;

  Json OpenAiEnvelope(bool chunk) const;

  Json Usage() const;

  static Json ZeroUsage();

  static std::string Sse(const Json& j) { return "data: " + GoJson(j) + "\n\n"; }

  // The OpenAI stream's end: the finish event, the usage event when asked for, then [DONE].
  std::string OpenAiStreamEnd(const Json& finish) const;

  // One streamed line (or SSE event) for a piece.
  std::string ChunkFor(const Piece& p);

  // The end of a stream: the done chunk (native), or finish + usage + [DONE] (OpenAI).
  // `tail` is the last content piece when config.final_text puts it into the final chunk.
  std::string FinalChunk(const Piece* tail);

  Json ContextTokens(const Metrics& m) const;

  // The mid-stream error as each API shows it: an {"error"} line, or (OpenAI) an empty delta,
  // which is what Ollama's SSE writer turns an error into.
  std::string ErrorLine();

  // Produces the next line into `pending`. False when the client left.
  bool Produce();

  // The whole answer as one object (stream:false). Call after every piece was awaited.
  Json WholeAnswer();

  void SetOutcome(Outcome o);

  // Counts an injected mid-stream failure; the die mode ends the process here, the stall mode
  // holds the connection (and the slot) without a byte until the client leaves.
  void InjectMidStreamFailure();

  // The tail every inference route shares: wait for a slot, plan the pieces, answer.
  static void Start(std::shared_ptr<Generation> gen, Api api, const std::string& name,
                    const SimModel& model, const CommonFields& common, int prompt_tokens,
                    bool thinking, const Json* tool_call, httplib::Response& res);

  // A native request with nothing to generate loads (or, with keep_alive 0, unloads) the model
  // and answers one JSON object even when streaming; `key` names the empty answer field.
  void AnswerLoadRequest(const SimModel& load, const std::string& name, const CommonFields& common,
                         const char* key, Json empty, httplib::Response& res);

  // Frees the slot as soon as the answer is over, not when the last reference goes.
  void Finish();

  // Streams or returns the answer of a planned generation.
  static void Respond(std::shared_ptr<Generation> gen, httplib::Response& res);
};

}  // namespace corral::sim
