// Header filtering in both directions of the proxy.
//
// Request: drop hop-by-hop headers, Host (rewritten to the node), Content-Length (recomputed),
// Origin (the proxy answers CORS itself; a node would 403 an unknown origin), httplib's injected
// REMOTE_ADDR/REMOTE_PORT/LOCAL_ADDR/LOCAL_PORT, and Accept-Encoding (bodies pass through as the
// node sends them). Response: drop hop-by-hop and framing headers httplib sets itself.
// Pure, safe from any thread.
#pragma once

#include <string_view>

namespace corral::dataplane {

// True when a client request header must not be forwarded to the node.
bool IsDroppedRequestHeader(std::string_view name);

// True when a node response header must not be copied to the client.
bool IsDroppedResponseHeader(std::string_view name);

}  // namespace corral::dataplane
