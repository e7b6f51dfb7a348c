// NodeExchange: one request with one node, up to its answer's head: the head sent to the node,
// the write of head and body in one go, and the wait for the answer's head (watching the client
// too once the node is slow, so a client that leaves cancels the node's work). A pooled
// connection the node closed while it sat idle is replaced by a fresh one without blaming the
// node. Also: reading a short answer whole, and keeping a node's whole answer to pass on later
// (SavedResponse). Which node to ask, and what to do when it fails, is the caller's
// (retry_loop.h, forwarder.h).
//
// Thread safety: every method is safe from any thread; a ProxyCall and its connections belong to
// the calling thread. The pool is internally locked.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/request_head.h"
#include "dataplane/proxy_call.h"
#include "dataplane/routing_table.h"
#include "dataplane/upstream.h"
#include "dataplane/upstream_pool.h"

namespace corral::dataplane {

// The largest node answer framed by Content-Length that is read whole before the client gets
// it (so that a node failing inside it can still be replaced by another); a longer one is
// relayed as it arrives.
inline constexpr size_t kMaxBufferedAnswer = size_t{1} << 20;
// The largest error body kept from a failing node to pass on if no other node answers.
inline constexpr size_t kMaxSavedErrorBody = 1 << 20;

// What a node answered, up to the head.
struct NodeAnswer {
  enum Kind { kFailed, kClientGone, kHead } kind = kFailed;
  std::string error;                           // kFailed: what went wrong, in words for the client
  std::unique_ptr<UpstreamConnection> conn;    // kHead: the head is parsed, the body may follow
  double latency_ms = 0;                       // kHead: from the request's write to the head
  std::chrono::steady_clock::time_point sent;  // kHead: when the request's write began
};

// A node's whole answer, kept to pass on when no other node does better.
struct SavedResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type;
  std::string body;
  std::string node;
};

struct ExchangeOptions {
  // How long a request waits for a node's first byte before the exchange starts watching the
  // client's socket too.
  std::chrono::milliseconds client_watch_after{200};
  // How long a write to a node may stall before the request fails.
  std::chrono::milliseconds upstream_write_timeout{30000};
};

class NodeExchange {
 public:
  // `aborting` turns true when the proxy stops: waits give up at once.
  NodeExchange(ExchangeOptions options, UpstreamPool& pool, const std::atomic<bool>& aborting);

  // The head sent to `node` for the client's request (common/request_head.h BuildForwardHead):
  // no hop-by-hop headers, no Corral token, no Origin, no Accept-Encoding.
  static std::string RequestHead(const ProxyCall& call, const NodeEntry& node, BodyFraming body,
                                 uint64_t length);

  // Sends the call's head and buffered body to `node` and waits for the answer's head, at most
  // the policy's first-byte time.
  NodeAnswer Send(ProxyCall& call, const NodeEntry& node);

  // Reads the rest of an answer's body into `body`, at most `limit` bytes; false with `error` on
  // a node failure, a longer body, a client that left or a stopping proxy.
  bool ReadWholeBody(ProxyCall& call, UpstreamConnection& conn, size_t limit, std::string* body,
                     std::string* error);

  // The answer on `conn`, its body read whole (at most `limit` bytes); nullopt when it could not
  // be read (`error` says why).
  std::optional<SavedResponse> ReadAnswer(ProxyCall& call, UpstreamConnection& conn,
                                          const std::string& node, size_t limit,
                                          std::string* error);

  // Gives a connection whose answer was read to its end back to the pool when the node keeps it
  // open; closes it otherwise.
  void GiveBack(const NodeEntry& node, std::unique_ptr<UpstreamConnection> conn);

  UpstreamPool& pool() { return pool_; }
  bool aborting() const { return aborting_.load(); }
  std::chrono::milliseconds write_timeout() const { return options_.upstream_write_timeout; }

 private:
  const ExchangeOptions options_;
  UpstreamPool& pool_;
  const std::atomic<bool>& aborting_;
};

}  // namespace corral::dataplane
