// Header filtering of a node's answer before it reaches the client. (What a node gets of the
// client's request is built by common/request_head.h BuildForwardHead.)
//
// Dropped: hop-by-hop headers (RFC 9110 §7.6.1: the standard set, Proxy-*, and every header the
// node's own Connection header names), and the framing and type httplib writes itself:
// Content-Length, and Content-Type (passed as the content-type argument of set_content / the
// content provider instead of copied, or it would be doubled). Names compare
// case-insensitively. Pure, safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corral::dataplane {

// The options named by every Connection header of a node's answer, lower-cased.
std::vector<std::string> ResponseConnectionOptions(
    const std::vector<std::pair<std::string, std::string>>& headers);

// True when a node response header must not be copied to the client; `connection_options` as
// ResponseConnectionOptions returns them.
bool IsDroppedResponseHeader(std::string_view name,
                             const std::vector<std::string>& connection_options);

}  // namespace corral::dataplane
