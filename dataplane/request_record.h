// RequestRecord: one request's account, from the moment its head arrived to its end, read by
// everything that reports on requests (metrics, the access log, token usage, the live view) —
// never by hooks in the request path's error exits one by one (Envoy's StreamInfo is the model).
//
// The request path fills it as it goes (route, model, token, each node tried and how that went,
// the times of the node's first byte and of the first token at the client, bytes, token counts)
// and a RecordHandle finishes it exactly once, however the request ends: answered, refused,
// retried then answered, a stream completed, cut by its node, left by its client, idle, or the
// proxy stopping. A handle dropped without Finish finishes the record as abandoned, so no path
// can forget one; a second Finish is ignored (the first outcome stands).
//
// Thread safety: a record is filled by one thread at a time (the request's worker, then the
// stream relay that carries its body, handed over with the handle). Finish may be called from
// either; sinks run on the finishing thread, once, after the record is complete, and must not
// block (an access-log write is the slowest allowed).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/route.h"

namespace corral::dataplane {

// How a request ended, for the access log's `outcome` and the metrics' error class.
enum class RequestOutcome {
  kAnswered,       // a whole answer reached the client (any status, node's or proxy's)
  kRefused,        // the proxy answered it without a node: auth, admission, budget, bad input
  kNoNode,         // no node could serve it (404 no model, 503 none healthy or all busy, 502)
  kNodeFailed,     // a node failed after the answer started (an error line ended the stream)
  kClientGone,     // the client left before the answer was whole
  kIdleTimeout,    // the node sent nothing for the policy's idle time mid-answer
  kProxyStopping,  // a graceful stop's grace period ended it
  kAbandoned,      // the handle was dropped without a Finish (a bug; counted, never silent)
};

// Stable lower-case name ("answered", "client_gone", ...), for logs and labels.
const char* OutcomeName(RequestOutcome outcome);

// One node tried for the request.
struct TriedNode {
  std::string node;
  int status = 0;             // the node's status, 0 when it gave none
  std::string error;          // why the attempt failed ("" when it answered)
  double first_byte_ms = -1;  // time from sending to the node's first byte; -1 without one
};

struct RequestRecord {
  using Clock = std::chrono::steady_clock;

  std::string request_id;
  std::string method;
  Endpoint endpoint = Endpoint::kNotFound;
  std::string route;       // EndpointName(endpoint), e.g. "chat", "v1.chat"
  std::string model;       // as the client sent it
  std::string model_key;   // canonical (registry.ollama.ai/library/llama3.2:latest)
  std::string token_name;  // the inference token's name, "" in an open fleet
  std::string client_address;
  std::vector<TriedNode> attempts;

  Clock::time_point start;                // the head arrived
  std::optional<Clock::time_point> sent;  // the request went to the node that answered
  std::optional<Clock::time_point> node_first_byte;
  std::optional<Clock::time_point> first_token;  // the first token reached the client
  Clock::time_point end;
  // Time spent in the wait queue for a free slot (all waits of the request together).
  Clock::duration queued{};

  int status = 0;  // what the client got (499 when it left before any answer)
  RequestOutcome outcome = RequestOutcome::kAbandoned;
  std::string error;                     // why, for any outcome but kAnswered with a 2xx
  uint64_t bytes_in = 0;                 // request body bytes
  uint64_t bytes_out = 0;                // answer body bytes relayed
  std::optional<int64_t> input_tokens;   // prompt_eval_count / usage.prompt_tokens
  std::optional<int64_t> output_tokens;  // eval_count / usage.completion_tokens
  bool streamed = false;

  // The node that served the answer: the last attempt, when it answered.
  const TriedNode* served_by() const;
};

// Reads finished records (metrics, access log, usage ledger). Implementations are thread-safe.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void OnFinished(const RequestRecord& record) = 0;
};

// Owns a record until it is finished, then hands it to every sink, once.
class RecordHandle {
 public:
  // `sinks` outlive the handle (the proxy owns them for its whole life).
  RecordHandle(std::vector<RecordSink*> sinks, RequestRecord::Clock::time_point start);
  // The same, with a list the caller keeps (the proxy's: no copy per request). Null: no sinks.
  RecordHandle(const std::vector<RecordSink*>* sinks, RequestRecord::Clock::time_point start);
  ~RecordHandle();  // finishes as kAbandoned when nobody did
  RecordHandle(const RecordHandle&) = delete;
  RecordHandle& operator=(const RecordHandle&) = delete;

  RequestRecord& record() { return record_; }

  // Finishes the record: sets status, outcome and error, stamps the end, and runs the sinks.
  // Only the first call counts; returns false for a later one.
  bool Finish(int status, RequestOutcome outcome, std::string error = "");
  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  std::vector<RecordSink*> own_sinks_;
  const std::vector<RecordSink*>* sinks_;  // own_sinks_ or the caller's list
  RequestRecord record_;
  std::atomic<bool> finished_{false};
};

// The access log's line for a finished record: one JSON object, fields in a fixed order
// (docs/observability.md "Access log"). Never a prompt, an answer or a token's text.
std::string AccessLogLine(const RequestRecord& record,
                          std::chrono::system_clock::time_point wall_end);

}  // namespace corral::dataplane
