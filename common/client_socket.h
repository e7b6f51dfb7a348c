// Finding the client's socket from inside an httplib handler.
//
// cpp-httplib 0.11.4 gives a handler no access to the connection it serves, yet a proxy waiting
// minutes for a node's first byte (a cold model load) must notice a client that gave up, or
// the node keeps generating for nobody; the simulated node likewise stops generating for a
// client that left. The request does carry both ends' addresses, so the socket can be found
// among the process's descriptors: the one socket whose local and peer addresses match. This
// costs a scan of /proc/self/fd, so callers do it only on a slow path (a request that has
// already waited or streamed a while), never on every request.
//
// Thread safety: safe from any thread. The returned descriptor belongs to httplib: poll and
// peek at it, never read, write or close it.
#pragma once

#include <string>

namespace corral {

// The descriptor of the TCP socket connected from remote_addr:remote_port to
// local_addr:local_port (numeric addresses as httplib reports them), or -1. An empty local_addr
// matches any local end.
int FindClientSocket(const std::string& remote_addr, int remote_port, const std::string& local_addr,
                     int local_port);

}  // namespace corral
