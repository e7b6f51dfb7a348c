// Header filtering: what the proxy must not relay between client and node (shared/ollama-api.md
// §1.1 and §10, platform-notes.md §4.7).
#include "dataplane/headers.h"

#include "gtest/gtest.h"

namespace corral::dataplane {
namespace {

constexpr const char* kHopByHop[] = {
    "Connection",          "Keep-Alive",       "Transfer-Encoding", "TE", "Trailer", "Upgrade",
    "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate"};

TEST(Headers, HopByHopHeadersAreDroppedInBothDirections) {
  for (const char* name : kHopByHop) {
    EXPECT_TRUE(IsDroppedRequestHeader(name)) << name;
    EXPECT_TRUE(IsDroppedResponseHeader(name)) << name;
  }
}

TEST(Headers, NamesCompareCaseInsensitively) {
  EXPECT_TRUE(IsDroppedRequestHeader("connection"));
  EXPECT_TRUE(IsDroppedRequestHeader("TRANSFER-ENCODING"));
  EXPECT_TRUE(IsDroppedRequestHeader("host"));
  EXPECT_TRUE(IsDroppedRequestHeader("oRiGiN"));
  EXPECT_TRUE(IsDroppedRequestHeader("remote_addr"));
  EXPECT_TRUE(IsDroppedResponseHeader("content-length"));
  EXPECT_TRUE(IsDroppedResponseHeader("proxy-anything"));
}

TEST(Headers, RequestDropsWhatTheNodeMustNotSee) {
  EXPECT_TRUE(IsDroppedRequestHeader("Host")) << "rewritten to the node's own host:port";
  EXPECT_TRUE(IsDroppedRequestHeader("Content-Length")) << "recomputed";
  EXPECT_TRUE(IsDroppedRequestHeader("Origin")) << "a node 403s unknown origins";
  EXPECT_TRUE(IsDroppedRequestHeader("Accept-Encoding")) << "no compression through the proxy";
  for (const char* injected : {"REMOTE_ADDR", "REMOTE_PORT", "LOCAL_ADDR", "LOCAL_PORT"}) {
    EXPECT_TRUE(IsDroppedRequestHeader(injected)) << injected;
  }
}

TEST(Headers, RequestKeepsEndToEndHeaders) {
  for (const char* name :
       {"User-Agent", "Accept", "Content-Type", "Authorization", "X-Request-Id", "OpenAI-Beta",
        "x-stainless-os", "Cookie", "X-OpenWebUI-User-Name", "Content-Encoding", "Expect",
        "Hostname", "Origin-Trial", "Proxy", "TEX"}) {
    EXPECT_FALSE(IsDroppedRequestHeader(name)) << name;
  }
}

TEST(Headers, ResponseDropsFramingHttplibWritesItself) {
  EXPECT_TRUE(IsDroppedResponseHeader("Content-Length"));
  EXPECT_TRUE(IsDroppedResponseHeader("Content-Type"));
  EXPECT_TRUE(IsDroppedResponseHeader("Transfer-Encoding"));
}

TEST(Headers, ResponseKeepsTheNodesOwnHeaders) {
  for (const char* name : {"Date", "Content-Encoding", "Cache-Control", "Vary", "Location",
                           "Access-Control-Allow-Origin", "X-Custom", "Host", "Origin"}) {
    EXPECT_FALSE(IsDroppedResponseHeader(name)) << name;
  }
}

TEST(Headers, EmptyNameIsKept) {
  EXPECT_FALSE(IsDroppedRequestHeader(""));
  EXPECT_FALSE(IsDroppedResponseHeader(""));
}

}  // namespace
}  // namespace corral::dataplane
