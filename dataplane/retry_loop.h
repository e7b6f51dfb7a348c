// RetryLoop: tries one request on node after node until one answers, the same way for every
// route that goes to a node (docs/proxy.md "Failures and retries"). Candidates come from a
// CandidateSource (the Router's pick for a model, or a fixed order of names), each with its
// slot already taken; the loop sends the request through a NodeAttempt, at most
// policy.max_attempts nodes and never the same node twice. A connect error, a timeout before
// the head, a 5xx (its answer kept, the last one passed on if no node does better) or a node
// failing inside a short body moves the request on; each such failure counts against the node
// (passive ejection), an answer counts as its success. The loop stops at once when the proxy
// stops or the client leaves. What to answer when no node answered is the caller's.
//
// Thread safety: Run is safe from any thread, with its source and attempt on that thread.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "dataplane/node_exchange.h"
#include "dataplane/router.h"
#include "dataplane/routing_table.h"

namespace corral::dataplane {

// Names of the nodes a request was sent to.
using TriedNodes = std::unordered_set<std::string>;

// Where the nodes to try come from.
class CandidateSource {
 public:
  virtual ~CandidateSource() = default;
  // The next node to try, its slot taken; an empty lease when no candidate is left. Never a node
  // in `tried`. A candidate passed over because its slot could not be taken may say so in
  // `last_error` ("node 'a' is not available").
  virtual Lease Next(const TriedNodes& tried, std::string* last_error) = 0;
};

// How one try on one node ended.
struct TryResult {
  enum Kind {
    kAnswered,     // the client has its answer (or its stream is under way)
    kFailed,       // nothing reached the client: `error` says why
    kServerError,  // the node answered 5xx: `saved` holds it when it could be read whole
    kClientGone,   // the client left while the node prepared its answer
  } kind = kFailed;
  std::string error;
  int status = 0;                      // kServerError
  std::optional<SavedResponse> saved;  // kServerError
  double latency_ms = 0;               // kAnswered: time to the answer's head
};

// One try of the request on one node.
class NodeAttempt {
 public:
  virtual ~NodeAttempt() = default;
  // Sends the request to the lease's node. On kAnswered the client's answer is set, and a
  // stream may have taken the lease along.
  virtual TryResult Try(Lease& lease) = 0;
};

struct RetryOutcome {
  enum End { kAnswered, kClientGone, kNoAnswer } end = kNoAnswer;
  int attempts = 0;  // nodes the request was sent to
  // kNoAnswer: the last 5xx a node answered, to pass on; and why the last node failed.
  std::optional<SavedResponse> last_server_error;
  std::string last_error;
};

class RetryLoop {
 public:
  // `aborting` turns true when the proxy stops: no further node is tried.
  RetryLoop(Router& router, const std::atomic<bool>& aborting);

  // `method` and `path` name the request in the log.
  RetryOutcome Run(const EffectivePolicy& policy, CandidateSource& candidates, NodeAttempt& attempt,
                   std::string_view method, std::string_view path);

 private:
  Router& router_;
  const std::atomic<bool>& aborting_;
};

}  // namespace corral::dataplane
