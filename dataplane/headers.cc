#include "dataplane/headers.h"

#include <array>

#include "common/ascii.h"

namespace corral::dataplane {
namespace {

bool IsAnyOf(std::string_view name, const auto& names) {
  for (std::string_view candidate : names) {
    if (EqualsIgnoreCase(name, candidate)) return true;
  }
  return false;
}

// RFC 9110 §7.6.1 connection-specific fields, plus the Proxy-* family: they describe one hop
// and must never be relayed.
bool IsHopByHop(std::string_view name) {
  static constexpr std::array<std::string_view, 6> kHopByHop = {
      "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade"};
  return IsAnyOf(name, kHopByHop) || StartsWithIgnoreCase(name, "Proxy-");
}

}  // namespace

bool IsDroppedRequestHeader(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kDropped = {
      "Host",             // a loopback-bound node answers 403 to a Host that is not its own
      "Content-Length",   // recomputed by the client library from the forwarded body
      "Origin",           // the proxy answers CORS; a node would 403 an origin it does not know
      "Accept-Encoding",  // bodies pass through as the node writes them: no compression
      "REMOTE_ADDR",      // cpp-httplib injects these four into every request it parses
      "REMOTE_PORT",
      "LOCAL_ADDR",
      "LOCAL_PORT"};
  return IsHopByHop(name) || IsAnyOf(name, kDropped);
}

bool IsDroppedResponseHeader(std::string_view name) {
  // cpp-httplib writes its own framing (Content-Length or Transfer-Encoding: chunked) and the
  // Content-Type passed to set_content / the content provider; a copy would duplicate them.
  static constexpr std::array<std::string_view, 2> kDropped = {"Content-Length", "Content-Type"};
  return IsHopByHop(name) || IsAnyOf(name, kDropped);
}

}  // namespace corral::dataplane
