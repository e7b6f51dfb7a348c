// UpstreamPool: idle keep-alive connections to nodes, so a request usually skips the TCP
// handshake.
//
// Keyed by "host:port". The most recently returned connection is handed out first (the least
// likely to have been closed by the node). The pool keeps what the load needs: a connection
// idle longer than `max_idle_age` is dropped (when met at either end of its node's list), so
// the idle set follows the concurrency of the last minute; `max_idle_per_node` is only a bound
// (the proxy sets it to its own concurrency limit, which no burst can exceed). A connection idle
// for at least `probe_after_idle` is checked with LooksAlive before it is handed out; one
// returned more recently is handed out unchecked, since a node closes idle connections after
// seconds, not microseconds. A connection that still turns out stale between Take and the write
// is the caller's case to handle (retry once on a fresh connection when the request can be
// resent).
//
// Thread safety: every method is safe from any thread (one mutex around the idle lists; no
// I/O happens under it).
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "dataplane/upstream.h"

namespace corral::dataplane {

class UpstreamPool {
 public:
  explicit UpstreamPool(size_t max_idle_per_node = 64,
                        std::chrono::milliseconds max_idle_age = std::chrono::seconds(60),
                        std::chrono::milliseconds probe_after_idle = std::chrono::seconds(1));

  // An idle connection to `endpoint` that looks usable, or null.
  std::unique_ptr<UpstreamConnection> Take(const std::string& endpoint);
  // A pooled connection if there is one, otherwise a new one.
  absl::StatusOr<std::unique_ptr<UpstreamConnection>> Obtain(const std::string& host, int port,
                                                             std::chrono::milliseconds timeout);
  // Returns a connection whose last response completed with keep-alive.
  void Give(const std::string& endpoint, std::unique_ptr<UpstreamConnection> conn);

  size_t IdleCount(const std::string& endpoint) const;

  static std::string Endpoint(const std::string& host, int port);

 private:
  using IdleList = std::deque<std::unique_ptr<UpstreamConnection>>;

  const size_t max_idle_per_node_;
  const std::chrono::milliseconds max_idle_age_;
  const std::chrono::milliseconds probe_after_idle_;
  mutable std::mutex mu_;
  // Guarded by mu_. Front of each list = longest idle, back = most recently returned.
  std::unordered_map<std::string, IdleList> idle_;
};

}  // namespace corral::dataplane
