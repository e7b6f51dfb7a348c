// Blob uploads (POST /api/blobs/:digest) and where blobs live. An upload is streamed straight to
// one node, never buffered: only the connection can be retried on another node, since body
// bytes that went to a node cannot be replayed. BlobLocations remembers which node received
// (or holds) a digest, so that the /api/create naming it, and later HEAD checks, go to that node.
//
// Thread safety: every method is safe from any thread; BlobLocations is internally locked.
#pragma once

#include <httplib.h>

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/node_exchange.h"
#include "dataplane/proxy_call.h"
#include "dataplane/router.h"

namespace corral::dataplane {

// digest -> the node that has the blob, for a while.
class BlobLocations {
 public:
  explicit BlobLocations(std::chrono::milliseconds ttl) : ttl_(ttl) {}

  void Remember(const std::string& digest, const std::string& node);
  // The node remembered for `digest`, or "" when none (or the memory expired).
  std::string Find(const std::string& digest);

 private:
  const std::chrono::milliseconds ttl_;
  std::mutex mu_;  // guards nodes_
  std::unordered_map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>>
      nodes_;
};

// The nodes to ask about a blob, in turn: the pinned node alone, else the node remembered for
// it first and every other available node, least loaded first.
std::vector<std::string> BlobCandidates(const ProxyCall& call, Router& router, BlobLocations& blobs,
                                        const std::string& digest);

class BlobUpload {
 public:
  BlobUpload(NodeExchange& exchange, Router& router, BlobLocations& blobs);

  // Streams the request's body to a node as it arrives and answers with the node's answer.
  void Route(ProxyCall& call, const httplib::ContentReader& reader);

 private:
  NodeExchange& exchange_;
  Router& router_;
  BlobLocations& blobs_;
};

}  // namespace corral::dataplane
