// Header filtering in both directions of the proxy.
//
// Request: drop hop-by-hop headers, Host (rewritten to the node), Content-Length (recomputed),
// Origin (the proxy answers CORS itself; a node would 403 an unknown origin), httplib's injected
// REMOTE_ADDR/REMOTE_PORT/LOCAL_ADDR/LOCAL_PORT, and Accept-Encoding (bodies pass through as the
// node sends them). Response: drop hop-by-hop and framing headers httplib sets itself:
// Content-Length, and Content-Type (pass the node's Content-Type as the content-type argument of
// set_content / set_chunked_content_provider instead of copying it).
// Hop-by-hop = Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade and Proxy-*.
// Names compare case-insensitively. Headers a Connection header lists by name are hop-by-hop too;
// a name-only check cannot see them, so the caller drops those. Authorization, User-Agent,
// Content-Type (request) and unknown headers pass.
// Pure, safe from any thread.
#pragma once

#include <string_view>

namespace corral::dataplane {

// True when a client request header must not be forwarded to the node.
bool IsDroppedRequestHeader(std::string_view name);

// True when a node response header must not be copied to the client.
bool IsDroppedResponseHeader(std::string_view name);

}  // namespace corral::dataplane
