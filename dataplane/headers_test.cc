// Header filtering of a node's answer: what the proxy must not relay to the client
// (shared/ollama-api.md §10, platform-notes.md §4.7, RFC 9110 §7.6.1).
#include "dataplane/headers.h"

#include "gtest/gtest.h"

namespace corral::dataplane {
namespace {

const std::vector<std::string> kNone;

TEST(Headers, HopByHopHeadersAreDropped) {
  for (const char* name :
       {"Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
        "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate", "proxy-anything"}) {
    EXPECT_TRUE(IsDroppedResponseHeader(name, kNone)) << name;
  }
}

TEST(Headers, HeadersTheNodesConnectionHeaderNamesAreDropped) {
  const auto options = ResponseConnectionOptions({{"Content-Type", "application/json"},
                                                  {"Connection", "keep-alive, X-Node-Secret"},
                                                  {"connection", "X-Other"}});
  EXPECT_TRUE(IsDroppedResponseHeader("X-Node-Secret", options));
  EXPECT_TRUE(IsDroppedResponseHeader("x-node-secret", options));
  EXPECT_TRUE(IsDroppedResponseHeader("X-Other", options));
  EXPECT_FALSE(IsDroppedResponseHeader("X-Node-Secret", kNone));
}

TEST(Headers, FramingHttplibWritesItselfIsDropped) {
  EXPECT_TRUE(IsDroppedResponseHeader("Content-Length", kNone));
  EXPECT_TRUE(IsDroppedResponseHeader("content-type", kNone));
  EXPECT_TRUE(IsDroppedResponseHeader("TRANSFER-ENCODING", kNone));
}

TEST(Headers, TheNodesOwnHeadersAreKept) {
  for (const char* name :
       {"Date", "Content-Encoding", "Cache-Control", "Vary", "Location",
        "Access-Control-Allow-Origin", "X-Custom", "Host", "Origin", "", "TEX", "Proxy"}) {
    EXPECT_FALSE(IsDroppedResponseHeader(name, kNone)) << name;
  }
}

}  // namespace
}  // namespace corral::dataplane
