// UpstreamPool: idle keep-alive connections to nodes, so a request usually skips the TCP
// handshake.
//
// Keyed by "host:port". At most `max_idle_per_node` idle connections are kept per node (the
// most recently used first: it is the least likely to have been closed by the node); one idle
// longer than `max_idle_age`, or that LooksAlive() rejects, is dropped when taken. A connection
// that still goes stale between Take and the write is the caller's case to handle (retry once
// on a fresh connection when the request can be resent).
//
// Thread safety: every method is safe from any thread (one mutex around the idle lists; no
// I/O except one non-blocking peek happens under it).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/upstream.h"

namespace corral::dataplane {

class UpstreamPool {
 public:
  explicit UpstreamPool(size_t max_idle_per_node = 64,
                        std::chrono::milliseconds max_idle_age = std::chrono::seconds(60));

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
  const size_t max_idle_per_node_;
  const std::chrono::milliseconds max_idle_age_;
  mutable std::mutex mu_;
  // Guarded by mu_. Back of each vector = most recently returned.
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace corral::dataplane
