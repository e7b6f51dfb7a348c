// Node base URLs: the one place that decides what a valid node address is.
//
// Used by the control plane (rejecting bad input with a message a person can act on) and by
// the proxy (where to connect). Pure, safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral {

struct NodeUrl {
  std::string host;  // name or IP literal, no brackets
  int port = 0;
  std::string Normalized() const;  // "http://host:port"
};

// Accepts "http://host:port", "http://host" (port 80) and "host:port" (http assumed), with an
// optional trailing "/"; a bare "host" gets Ollama's own port 11434, as OLLAMA_HOST does. The
// scheme is matched case-insensitively and the host is lower-cased, so Normalized() is the one
// spelling of an address; an IPv6 literal is written in brackets ("http://[::1]:80"). Rejects
// other schemes, paths, queries, user info, empty hosts and ports outside 1..65535, with an
// InvalidArgument status whose message starts `node URL "<text>"` and names the problem, e.g.
// `node URL "ftp://x" must use http (e.g. http://10.0.0.5:11434)`.
absl::StatusOr<NodeUrl> ParseNodeUrl(std::string_view text);

}  // namespace corral
