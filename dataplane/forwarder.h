// Forwarder: sends a client's request to the node(s) it goes to and answers the client with
// what they said. ByModel lets the Router pick among the nodes that have the model (inference);
// InOrder tries a fixed list of nodes (a pinned node, node-local management); both run the one
// RetryLoop, with the exchange (node_exchange.h) and the relay (answer_relay.h) behind its
// NodeAttempt. FanOut sends the request to every node of a list (copy, delete, unload). Every
// slot on a node is taken through the Router's lease, counted against the node's max_parallel
// and, when the request names a model, against that model on the node (an inference request
// also needs a free slot for the model: num_parallel). ByModel waits in the Router's queue when
// every candidate is full (docs/routing.md "The queue").
//
// Thread safety: every method is safe from any thread; a ProxyCall belongs to its thread.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "dataplane/answer_relay.h"
#include "dataplane/node_exchange.h"
#include "dataplane/proxy_call.h"
#include "dataplane/retry_loop.h"
#include "dataplane/router.h"

namespace corral::dataplane {

// Routable, not ejected nodes of `table` among `names` (or all nodes when null), fewest requests
// in flight first, then snapshot order.
std::vector<std::string> OrderByLoad(const RoutingTable& table, Router& router,
                                     const std::vector<std::string>* names);

class Forwarder {
 public:
  Forwarder(NodeExchange& exchange, AnswerRelay& relay, Router& router,
            const std::atomic<bool>& aborting);

  // Tries nodes picked by the strategy for `model_key` (canonical); `model_as_sent` names the
  // model in the client's errors (404 no node has it; 503 none healthy, none placement allows,
  // or all busy past the queue's bounds).
  void ByModel(ProxyCall& call, const std::string& model_key, const std::string& model_as_sent);

  // Tries the nodes of `order` in turn; a node whose slot cannot be taken is passed over. A
  // non-empty `model_key` counts the request against that model on the node; `model_limited`
  // (inference) also needs a free slot for the model there.
  void InOrder(ProxyCall& call, const std::vector<std::string>& order, const std::string& model_key,
               bool model_limited = false);

  // Ends every wait in the queue (the proxy stops). Waits also end on their own within 100 ms
  // of `aborting` turning true.
  void Abort();

  // Sends the request to every node of `nodes`, reading each answer whole: the client gets the
  // first error a node answered, else the first success (only its status when
  // `empty_on_success`), else a 502.
  void FanOut(ProxyCall& call, const std::vector<std::string>& nodes, const std::string& model_key,
              bool empty_on_success);

 private:
  // The end of a retry loop that left no answer set: 499 for a client gone, the last 5xx saved,
  // or nothing (false: the caller answers).
  bool Finish(ProxyCall& call, const RetryOutcome& outcome);

  NodeExchange& exchange_;
  AnswerRelay& relay_;
  Router& router_;
  const std::atomic<bool>& aborting_;
  RetryLoop loop_;
};

}  // namespace corral::dataplane
