// AnswerRelay: hands a node's answer to the client once its head has arrived. A short answer
// framed by Content-Length is read whole first, so that a node failing inside it can still be
// replaced by another; a stream (chunked or ended by close) goes out piece by piece as it
// arrives, its head first, then carried by the RelayLoop while the worker thread sleeps; a long
// answer framed by Content-Length is relayed as it arrives, one read at a time. A stream that
// breaks after its first byte ends with an Ollama-style error line (an SSE error event on /v1)
// and counts as the node's failure; a client that leaves closes the node's connection, which is
// what makes the node stop generating.
//
// Thread safety: every method is safe from any thread. Relay runs on the request's worker
// thread, and so do the content providers it installs (httplib calls them on that thread after
// the handler returned); the RelayLoop has its own thread (relay_loop.h).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "dataplane/node_exchange.h"
#include "dataplane/proxy_call.h"
#include "dataplane/relay_loop.h"
#include "dataplane/router.h"
#include "dataplane/upstream.h"

namespace corral::dataplane {

// How long a write to a client may stall before the client counts as gone (the listener's write
// timeout too, ProxyServer::Install).
inline constexpr std::chrono::milliseconds kClientWriteTimeout{30000};

class AnswerRelay {
 public:
  // `stream_poll`: longest pause between checks of a stream's client while the node is silent.
  AnswerRelay(NodeExchange& exchange, Router& router, std::chrono::milliseconds stream_poll);

  // Answers the client with the answer on `conn` from the lease's node, whose head has arrived
  // (2xx to 4xx). Returns false with `error` when the node failed while a short body was read:
  // nothing was sent yet, so the caller may retry. A stream keeps the lease (and the call's
  // admission slot) until it ends.
  bool Relay(ProxyCall& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
             std::string* error);

  // Ends every open stream with an error line (the end of a graceful stop's grace period).
  void Abort() { relay_loop_.Abort(); }

 private:
  void RelayStream(ProxyCall& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                   const std::string& content_type);
  void RelayLargeBody(ProxyCall& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                      const std::string& content_type);

  NodeExchange& exchange_;
  Router& router_;
  const std::chrono::milliseconds stream_poll_;
  RelayLoop relay_loop_;  // carries streamed bodies once their heads are out
};

// Copies the node's status and headers (less hop-by-hop ones) to the client's response and names
// the node in X-Corral-Node.
void CopyResponseHead(ProxyCall& call, const UpstreamConnection& conn, const std::string& node);

// Answers the client with the answer on `conn`, whose body was read whole into `body`.
void AnswerWhole(ProxyCall& call, const UpstreamConnection& conn, const std::string& node,
                 std::string body);

// Answers the client with a node's saved answer.
void AnswerSaved(ProxyCall& call, const SavedResponse& saved);

}  // namespace corral::dataplane
