// Front-door suite: a real corral-proxy (and, for the prober, a real corral-control) attacked as
// an attacker would, with a RecordingNode behind it that keeps every byte it receives
// (docs/security.md "The front door", docs/reliability.md).
//
// For each attack both sides are asserted: the client's answer (status, the route's error
// format, the connection closed when a body was announced) and the node's bytes (exactly the
// requests the client sent, read by an independent parser: no smuggled request, no control
// character, no hop-by-hop header, no Authorization). What "nothing reached the node" means is
// made exact by a marker: after the attack a well-formed marked request goes through, and once
// the node has it, everything the proxy forwarded before is on record.
//
// Waits have deadlines; nothing sleeps for a fixed time (a trickling client paces its bytes,
// which is the attack, not a wait).
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/token_hash.h"
#include "tests/control/fleet.h"
#include "tests/faults/harness.h"
#include "tests/hostile/raw_client.h"
#include "tests/support/process.h"
#include "tests/support/recording_node.h"

namespace corral::hostile {
namespace {

using corral::faults::ReportMeasured;
using corral::testing::ChildProcess;
using corral::testing::NodeReply;
using corral::testing::RecordedRequest;
using corral::testing::RecordingNode;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// A refusal decided on the head must arrive this soon: no body byte is awaited for it. Generous
// for a loaded two-core machine; the proxy's body timeouts are tens of seconds.
constexpr seconds kHeadDeadline(5);
// Anything else the proxy and the node do here.
constexpr seconds kDeadline(20);

// Under AddressSanitizer or ThreadSanitizer a process's memory is the sanitizer's: memory bounds
// are checked in plain builds only, the behaviour in every build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMemoryBounds = false;
#else
constexpr bool kMemoryBounds = true;
#endif

// The bounds this suite states (docs/reliability.md): how much a node's oversized answer may
// raise the peak memory of the proxy relaying it, and an oversized /api/tags that of the
// control plane probing it.
constexpr int64_t kProxyGrowthBoundMiB = 128;
constexpr int64_t kControlGrowthBoundMiB = 64;
constexpr uint64_t kLargeAnswerBytes = 512ull << 20;
constexpr uint64_t kLargeTagsBytes = 64ull << 20;

const std::string kFullToken = "front-door-token-all";
const std::string kLimitedToken = "front-door-token-llama";  // llama3.2:latest only
const std::string kGenerateBody = R"({"model":"llama3.2","prompt":"hi","stream":false})";
const std::string kChatBody =
    R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false})";
const std::string kMarkerHeader = "X-Front-Door-Marker";
const std::string kBlobPath =
    "/api/blobs/sha256:29b966933827787e189bd9f467e53140aa55a3d2a1362c15d7b3f1f4db80a708";

std::string Bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// A chunked body carrying `body` in one chunk; `extension` goes on the chunk-size line and
// `trailers` (whole lines) after the last chunk.
std::string Chunked(const std::string& body, const std::string& extension = "",
                    const std::string& trailers = "") {
  std::ostringstream size;
  size << std::hex << body.size();
  return size.str() + extension + "\r\n" + body + "\r\n0\r\n" + trailers + "\r\n";
}

// A non-streamed generate body of exactly `size` bytes.
std::string GenerateBodyOfSize(size_t size) {
  const std::string head = R"({"model":"llama3.2","stream":false,"prompt":")";
  const std::string tail = "\"}";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

std::string Describe(const std::vector<RecordedRequest>& requests) {
  std::string out;
  for (const auto& r : requests) out += "\n  " + r.Summary();
  return out;
}

class FrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = corral::testing::MakeTempDir("front_door_test");
    ASSERT_TRUE(node_.Start());
  }

  void TearDown() override {
    if (HasFailure()) {
      if (proxy_) proxy_->DumpLog();
      std::cout << "the node received:" << Describe(node_.Requests()) << std::endl;
      for (const auto& e : node_.ParseErrors()) std::cout << "  parse error: " << e << std::endl;
    }
    proxy_.reset();
    node_.Stop();
    std::filesystem::remove_all(dir_);
  }

  // Starts corral-proxy on a snapshot with the recording node (llama3.2:latest) and, when
  // `tokens`, two inference tokens: one for everything, one limited to llama3.2.
  void StartProxy(bool tokens, const std::vector<std::string>& flags = {}) {
    tokens_ = tokens;
    json snapshot = {
        {"version", "1"},
        {"nodes",
         json::array({corral::faults::SnapshotNode("node", node_.url(), {"llama3.2:latest"})})}};
    if (tokens) {
      snapshot["tokens"] =
          json::array({{{"name", "all"}, {"sha256_hex", corral::TokenSha256Hex(kFullToken)}},
                       {{"name", "llama-only"},
                        {"sha256_hex", corral::TokenSha256Hex(kLimitedToken)},
                        {"models", {"registry.ollama.ai/library/llama3.2:latest"}}}});
    }
    const std::string path = dir_ + "/snapshot.json";
    std::ofstream(path + ".tmp") << snapshot.dump();
    std::filesystem::rename(path + ".tmp", path);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--snapshot", path};
    args.insert(args.end(), flags.begin(), flags.end());
    proxy_ =
        std::make_unique<ChildProcess>(corral::testing::BinaryPath("corral-proxy"), args, dir_);
    ASSERT_GT(proxy_->WaitForPort(seconds(15)), 0) << "corral-proxy did not start";
  }

  int port() const { return proxy_->port(); }
  std::string Auth() const { return tokens_ ? Bearer(kFullToken) : ""; }

  std::unique_ptr<RawConnection> Connect() {
    auto conn = RawConnection::Open(port());
    EXPECT_NE(conn, nullptr) << "cannot connect to corral-proxy";
    return conn;
  }

  // Sends `bytes` on a new connection and reads one answer.
  Answer Exchange(const std::string& bytes, milliseconds timeout = kDeadline) {
    auto conn = Connect();
    if (!conn) return Answer{};
    conn->Send(bytes);
    return conn->Read(timeout);
  }

  // Sends a well-formed marked generate and waits until the node has it, then returns every
  // other request the node received: what the proxy forwarded before the marker.
  std::vector<RecordedRequest> ForwardedBeforeMarker() {
    const Answer marked =
        Exchange(Request("POST", "/api/generate", kGenerateBody,
                         Auth() + kMarkerHeader + ": 1\r\nContent-Type: application/json\r\n"));
    EXPECT_EQ(marked.status, 200) << "the marker request: " << marked.Summary();
    std::vector<RecordedRequest> others;
    const auto has_marker = [&] {
      for (const auto& r : node_.CompleteRequests()) {
        if (r.Header(kMarkerHeader) != nullptr) return true;
      }
      return false;
    };
    EXPECT_TRUE(WaitFor(has_marker, kDeadline, "the marker request to reach the node"));
    for (auto& r : node_.Requests()) {
      if (r.Header(kMarkerHeader) == nullptr) others.push_back(std::move(r));
    }
    return others;
  }

  // Nothing but the marker reached the node: no request, no stray byte, no parse error.
  ::testing::AssertionResult NothingReachedTheNode() {
    const auto forwarded = ForwardedBeforeMarker();
    const auto errors = node_.ParseErrors();
    size_t marker_bytes = 0;
    for (const auto& r : node_.CompleteRequests()) {
      if (r.Header(kMarkerHeader) != nullptr) marker_bytes += r.raw_head.size() + r.body.size();
    }
    const std::string raw = node_.RawBytes();
    if (forwarded.empty() && errors.empty() && raw.size() == marker_bytes) {
      return ::testing::AssertionSuccess();
    }
    auto failure = ::testing::AssertionFailure()
                   << "the node received more than the marker (" << raw.size() << " bytes, "
                   << marker_bytes << " of them the marker):" << Describe(forwarded);
    for (const auto& e : errors) failure << "\n  parse error: " << e;
    return failure;
  }

  void RelayHalfGigabyte(bool chunked);

  ::testing::AssertionResult ClosesSoon(RawConnection& conn) {
    return WaitFor([&] { return conn.ClosedByServer(); }, kHeadDeadline,
                   "corral-proxy to close the connection");
  }

  std::string dir_;
  RecordingNode node_;
  std::unique_ptr<ChildProcess> proxy_;
  bool tokens_ = false;
};

// ---- a. smuggling through percent-encoding ----------------------------------------------------

TEST_F(FrontDoorTest, PercentEncodedHeaderValueReachesTheNodeVerbatimAndSmugglesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  const std::string smuggler =
      "a%0d%0aContent-Length:%200%0d%0a%0d%0aDELETE /api/delete HTTP/1.1%0d%0aHost: x%0d%0a";
  const Answer answer =
      Exchange(Request("POST", "/api/generate", kGenerateBody,
                       Auth() + "X-A: " + smuggler + "\r\nContent-Type: application/json\r\n"));
  EXPECT_EQ(answer.status, 200) << answer.Summary();
  EXPECT_NE(answer.body.find("Hello from the recording node."), std::string::npos)
      << answer.Summary();

  const auto forwarded = ForwardedBeforeMarker();
  ASSERT_EQ(forwarded.size(), 1u) << "exactly the one request the client sent:"
                                  << Describe(forwarded);
  const RecordedRequest& r = forwarded[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/api/generate");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.body, kGenerateBody);
  ASSERT_NE(r.Header("X-A"), nullptr) << r.Summary();
  EXPECT_EQ(*r.Header("X-A"), smuggler) << "the value must reach the node byte for byte";
  // The words stay inside the header value: no line of the node's bytes starts a request.
  EXPECT_EQ(node_.RawBytes().find("\nDELETE "), std::string::npos);
  for (const auto& req : node_.Requests()) {
    EXPECT_NE(req.method, "DELETE") << "a smuggled request reached the node: " << req.Summary();
  }
  EXPECT_TRUE(node_.ParseErrors().empty());
}

// ---- b. raw control characters and ambiguous framing: 400, closed, nothing forwarded ---------

struct BadHead {
  std::string name;
  std::string path;
  std::string bytes;
};

void PrintTo(const BadHead& head, std::ostream* os) { *os << head.name; }

std::vector<BadHead> BadHeads() {
  const std::string auth = Bearer(kFullToken);
  const std::string b = kGenerateBody;
  const std::string length = "Content-Length: " + std::to_string(b.size()) + "\r\n";
  const std::string start = "POST /api/generate HTTP/1.1\r\nHost: corral\r\n" + auth +
                            "Content-Type: application/json\r\n";
  const auto with_header = [&](const std::string& line) {
    return Request("POST", "/api/generate", b, auth + line);
  };
  std::string trailers;
  for (int i = 0; i < 9; ++i)
    trailers += "X-Trailer-" + std::to_string(i) + ": " + std::string(1000, 't') + "\r\n";
  std::string lf_only =
      "POST /api/generate HTTP/1.1\nHost: corral\nAuthorization: Bearer " + kFullToken +
      "\nContent-Type: application/json\nContent-Length: " + std::to_string(b.size()) + "\n\n" + b;
  return {
      {"CrInsideAHeaderValue", "/api/generate", with_header("X-A: a\rb\r\n")},
      {"NulInAHeaderValue", "/api/generate", with_header(std::string("X-A: a\0b\r\n", 10))},
      {"OtherControlCharacterInAHeaderValue", "/api/generate", with_header("X-A: a\x01z\r\n")},
      {"BareLfLineEndings", "/api/generate", lf_only},
      {"ObsFold", "/api/generate", with_header("X-A: a\r\n b\r\n")},
      {"SpaceBeforeTheColon", "/api/generate", with_header("X-A : b\r\n")},
      {"InvalidHeaderNameCharacter", "/api/generate", with_header("X(A): b\r\n")},
      {"ContentLengthWithChunked", "/api/generate",
       start + length + "Transfer-Encoding: chunked\r\n\r\n" + Chunked(b)},
      {"TwoDifferentContentLengths", "/api/generate",
       start + length + "Content-Length: " + std::to_string(b.size() + 5) + "\r\n\r\n" + b +
           "     "},
      {"TransferEncodingGzip", "/api/generate", start + "Transfer-Encoding: gzip\r\n\r\n" + b},
      {"ChunkSizeLineOver1KiB", "/api/generate",
       start + "Transfer-Encoding: chunked\r\n\r\n" + Chunked(b, ";ext=" + std::string(1100, 'e'))},
      {"TrailersOver8KiB", "/api/generate",
       start + "Transfer-Encoding: chunked\r\n\r\n" + Chunked(b, "", trailers)},
      {"OpenAIRouteCrInsideAHeaderValue", "/v1/chat/completions",
       Request("POST", "/v1/chat/completions", kChatBody, auth + "X-A: a\rb\r\n")},
  };
}

class BadHeadTest : public FrontDoorTest, public ::testing::WithParamInterface<BadHead> {};

TEST_P(BadHeadTest, Gets400InTheRoutesFormatThenCloseAndReachesNoNode) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  const BadHead& bad = GetParam();
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send(bad.bytes);
  const Answer answer = conn->Read(kDeadline);
  EXPECT_EQ(answer.status, 400) << answer.Summary();
  EXPECT_TRUE(IsRouteError(answer, bad.path));
  EXPECT_TRUE(ClosesSoon(*conn));
  EXPECT_TRUE(NothingReachedTheNode());
}

INSTANTIATE_TEST_SUITE_P(FrontDoor, BadHeadTest, ::testing::ValuesIn(BadHeads()),
                         [](const ::testing::TestParamInfo<BadHead>& info) {
                           return info.param.name;
                         });

// ---- c. hop-by-hop headers, both ways --------------------------------------------------------

TEST_F(FrontDoorTest, HopByHopHeadersStayOnTheirHopInBothDirections) {
  NodeReply reply = NodeReply::Json(
      200, R"({"model":"llama3.2","response":"hop","done":true,"done_reason":"stop"})");
  reply.headers = {{"Connection", "X-Node-Secret"}, {"X-Node-Secret", "y"}};
  node_.SetReply("/api/generate", reply);
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  const Answer answer = Exchange(Request(
      "POST", "/api/generate", kGenerateBody,
      Auth() + "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
               "TE: trailers\r\nProxy-Authorization: Basic x\r\nUpgrade: websocket\r\n"
               "Content-Type: application/json\r\n"));
  EXPECT_EQ(answer.status, 200) << answer.Summary();
  EXPECT_EQ(answer.headers.count("x-node-secret"), 0u)
      << "a header the node named in Connection reached the client: " << answer.Summary();
  if (answer.headers.count("connection")) {
    EXPECT_EQ(Lower(answer.headers.at("connection")).find("x-node-secret"), std::string::npos)
        << answer.Summary();
  }

  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, "/api/generate"));
  const auto requests = node_.CompleteRequests("/api/generate");
  ASSERT_EQ(requests.size(), 1u) << Describe(requests);
  const RecordedRequest& r = requests[0];
  for (const char* name : {"X-Secret", "Keep-Alive", "TE", "Proxy-Authorization", "Upgrade"}) {
    EXPECT_FALSE(r.HasRawHeaderLine(name)) << name << " reached the node:\n" << r.Summary();
  }
  const std::string* connection = r.Header("Connection");
  if (connection != nullptr) {
    EXPECT_EQ(Lower(*connection).find("x-secret"), std::string::npos)
        << "the client's Connection header reached the node:\n"
        << r.Summary();
  }
  EXPECT_EQ(node_.RawBytes().find("Basic x"), std::string::npos);
}

// ---- d. Corral's token stays in Corral --------------------------------------------------------

TEST_F(FrontDoorTest, TheClientsAuthorizationNeverReachesTheNodeWhenTokensAreConfigured) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  for (const std::string& token : {kFullToken, kLimitedToken}) {
    const Answer answer = Exchange(Request("POST", "/api/generate", kGenerateBody,
                                           Bearer(token) + "Content-Type: application/json\r\n"));
    EXPECT_EQ(answer.status, 200) << answer.Summary();
  }
  ASSERT_TRUE(node_.WaitForRequests(2, kDeadline, "/api/generate"));
  for (const auto& r : node_.CompleteRequests()) {
    EXPECT_FALSE(r.HasRawHeaderLine("Authorization")) << r.Summary();
  }
  const std::string raw = Lower(node_.RawBytes());
  EXPECT_EQ(raw.find("authorization"), std::string::npos)
      << "an Authorization line reached the node";
  EXPECT_EQ(raw.find(kFullToken), std::string::npos);
  EXPECT_EQ(raw.find(kLimitedToken), std::string::npos);
}

TEST_F(FrontDoorTest, AnOpenProxyForwardsAuthorizationForTheOperatorsNode) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(false));
  const Answer answer = Exchange(
      Request("POST", "/api/generate", kGenerateBody,
              "Authorization: Bearer node-credential\r\nContent-Type: application/json\r\n"));
  EXPECT_EQ(answer.status, 200) << answer.Summary();
  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, "/api/generate"));
  const auto requests = node_.CompleteRequests("/api/generate");
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_NE(requests[0].Header("Authorization"), nullptr) << requests[0].Summary();
  EXPECT_EQ(*requests[0].Header("Authorization"), "Bearer node-credential");
}

// ---- e. blob uploads need a token with the right to manage models ---------------------------

TEST_F(FrontDoorTest, BlobUploadWithoutATokenGets401AndReachesNoNode) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send(
      Request("POST", kBlobPath, "blob bytes", "Content-Type: application/octet-stream\r\n"));
  const Answer answer = conn->Read(kHeadDeadline);
  EXPECT_EQ(answer.status, 401) << answer.Summary();
  EXPECT_TRUE(IsRouteError(answer, kBlobPath));
  EXPECT_TRUE(NothingReachedTheNode());
}

TEST_F(FrontDoorTest, BlobUploadWithAModelLimitedTokenGets403AndReachesNoNode) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send(Request("POST", kBlobPath, "blob bytes", Bearer(kLimitedToken)));
  const Answer answer = conn->Read(kHeadDeadline);
  EXPECT_EQ(answer.status, 403) << answer.Summary();
  EXPECT_TRUE(IsRouteError(answer, kBlobPath));
  EXPECT_TRUE(NothingReachedTheNode());
}

TEST_F(FrontDoorTest, BlobUploadWithAFullTokenIsForwarded) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  const Answer answer = Exchange(Request("POST", kBlobPath, "blob bytes", Bearer(kFullToken)));
  EXPECT_EQ(answer.status, 201) << answer.Summary();
  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, kBlobPath));
  const auto requests = node_.CompleteRequests(kBlobPath);
  ASSERT_EQ(requests.size(), 1u) << Describe(requests);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].body, "blob bytes");
  EXPECT_FALSE(requests[0].HasRawHeaderLine("Authorization"));
}

// ---- f. the 401 arrives before the body -------------------------------------------------------

const std::string kHugeHead =
    "POST /api/generate HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\n"
    "Content-Length: 200000000\r\n";

TEST_F(FrontDoorTest, A401ArrivesBeforeAnAnnouncedBodyIsSent) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  const auto start = Clock::now();
  conn->Send(kHugeHead + "\r\n");  // and never a byte of the body
  const Answer answer = conn->Read(kHeadDeadline);
  ASSERT_EQ(answer.status, 401) << "no 401 within " << kHeadDeadline.count()
                                << " s of the head: " << answer.Summary();
  EXPECT_TRUE(IsRouteError(answer, "/api/generate"));
  EXPECT_EQ(Lower(answer.headers.count("connection") ? answer.headers.at("connection") : ""),
            "close")
      << answer.Summary();
  EXPECT_TRUE(ClosesSoon(*conn));
  ReportMeasured(
      "401 on the head",
      std::to_string(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count()) +
          " ms after a head announcing 200 MB with no token");
  EXPECT_TRUE(NothingReachedTheNode());
}

TEST_F(FrontDoorTest, ExpectContinueWithoutATokenGets401AndNever100) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send(kHugeHead + "Expect: 100-continue\r\n\r\n");
  const Answer answer = conn->Read(kHeadDeadline);
  EXPECT_EQ(answer.raw.find("100 Continue"), std::string::npos)
      << "the proxy invited the body of a request it must refuse: " << answer.Summary();
  EXPECT_EQ(answer.status, 401) << answer.Summary();
  EXPECT_TRUE(ClosesSoon(*conn));
  EXPECT_TRUE(NothingReachedTheNode());
}

TEST_F(FrontDoorTest, ExpectContinueWithAValidTokenGets100ThenTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send("POST /api/generate HTTP/1.1\r\nHost: corral\r\n" + Bearer(kFullToken) +
             "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
             std::to_string(kGenerateBody.size()) + "\r\n\r\n");
  const std::string interim = conn->ReadHead(kHeadDeadline);
  ASSERT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << "got: " << interim;
  conn->Send(kGenerateBody);
  const Answer answer = conn->Read(kDeadline);
  EXPECT_EQ(answer.status, 200) << answer.Summary();
  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, "/api/generate"));
  EXPECT_EQ(node_.CompleteRequests("/api/generate")[0].body, kGenerateBody);
  EXPECT_FALSE(node_.CompleteRequests("/api/generate")[0].HasRawHeaderLine("Expect"));
}

// ---- g. admission on the head -----------------------------------------------------------------

TEST_F(FrontDoorTest, PastMaxStreamsAnAnnouncedBodyGets503BeforeItIsSent) {
  NodeReply held = NodeReply::Json(
      200, R"({"model":"llama3.2","response":"held","done":true,"done_reason":"stop"})");
  held.hold = true;
  node_.SetReply("/api/generate", held);
  ASSERT_NO_FATAL_FAILURE(StartProxy(true, {"--max-streams", "1"}));
  auto first = Connect();
  ASSERT_NE(first, nullptr);
  first->Send(Request("POST", "/api/generate", kGenerateBody, Bearer(kFullToken)));
  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, "/api/generate"));  // held at the node

  auto second = Connect();
  ASSERT_NE(second, nullptr);
  second->Send("POST /api/generate HTTP/1.1\r\nHost: corral\r\n" + Bearer(kFullToken) +
               "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n");
  const Answer refused = second->Read(kHeadDeadline);
  EXPECT_EQ(refused.status, 503) << refused.Summary();
  EXPECT_EQ(refused.headers.count("retry-after"), 1u) << refused.Summary();
  EXPECT_TRUE(IsRouteError(refused, "/api/generate"));
  EXPECT_TRUE(ClosesSoon(*second));

  node_.Release();
  const Answer served = first->Read(kDeadline);
  EXPECT_EQ(served.status, 200) << served.Summary();
  EXPECT_EQ(node_.CompleteRequests("/api/generate").size(), 1u) << Describe(node_.Requests());
}

// ---- h. connections per client address --------------------------------------------------------

TEST_F(FrontDoorTest, OneClientAddressHoldsAtMostItsConnectionCap) {
  constexpr int kCap = 4;
  ASSERT_NO_FATAL_FAILURE(StartProxy(true, {"--max-client-connections", std::to_string(kCap)}));
  const std::string version = Request("GET", "/api/version", "", Bearer(kFullToken));
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < kCap; ++i) {
    held.push_back(Connect());
    ASSERT_NE(held.back(), nullptr);
    held.back()->Send(version);
    const Answer answer = held.back()->Read(kDeadline);
    ASSERT_EQ(answer.status, 200) << "connection " << i << ": " << answer.Summary();
  }
  // The next one is refused: a 503 in the route's format and a close, or a close at once.
  auto extra = Connect();
  ASSERT_NE(extra, nullptr);
  extra->Send(version);
  const Answer refused = extra->Read(kHeadDeadline);
  EXPECT_FALSE(refused.timed_out) << "connection " << kCap + 1 << " was neither refused nor closed";
  if (refused.status != 0) {
    EXPECT_EQ(refused.status, 503) << refused.Summary();
    EXPECT_TRUE(IsRouteError(refused, "/api/version"));
    EXPECT_TRUE(ClosesSoon(*extra));
  } else {
    EXPECT_TRUE(refused.closed) << refused.Summary();
  }
  // Once one of them closes, a new connection is served.
  held.pop_back();
  EXPECT_TRUE(WaitFor(
      [&] {
        auto next = Connect();
        if (!next) return false;
        next->Send(version);
        return next->Read(kHeadDeadline).status == 200;
      },
      kDeadline, "a new connection to be served once one closed"));
}

// ---- i. the budget of buffered request bodies -------------------------------------------------

TEST_F(FrontDoorTest, PastTheBodyBudgetTheSecondAnnouncedBodyGets503AndTheFirstCompletes) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true, {"--body-budget-mb", "1"}));
  const std::string body = GenerateBodyOfSize(700 * 1024);
  const std::string head =
      "POST /api/generate HTTP/1.1\r\nHost: corral\r\n" + Bearer(kFullToken) +
      "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n";
  std::unique_ptr<RawConnection> conns[2] = {Connect(), Connect()};
  ASSERT_NE(conns[0], nullptr);
  ASSERT_NE(conns[1], nullptr);
  conns[0]->Send(head + body.substr(0, 1024));
  conns[1]->Send(head + body.substr(0, 1024));
  // Together they pass the budget: one of them is refused on its head, whichever the proxy read
  // second.
  pollfd fds[2] = {{conns[0]->fd(), POLLIN, 0}, {conns[1]->fd(), POLLIN, 0}};
  ASSERT_GT(::poll(fds, 2, static_cast<int>(milliseconds(kHeadDeadline).count())), 0)
      << "neither of two 700 KiB bodies within a 1 MiB budget was refused";
  ASSERT_FALSE((fds[0].revents & POLLIN) && (fds[1].revents & POLLIN))
      << "both were answered before their bodies were sent";
  const int refused_index = (fds[0].revents & POLLIN) ? 0 : 1;
  RawConnection& refused_conn = *conns[refused_index];
  RawConnection& admitted = *conns[1 - refused_index];
  const Answer refused = refused_conn.Read(kHeadDeadline);
  EXPECT_EQ(refused.status, 503) << refused.Summary();
  EXPECT_EQ(refused.headers.count("retry-after"), 1u) << refused.Summary();
  EXPECT_TRUE(IsRouteError(refused, "/api/generate"));
  EXPECT_TRUE(ClosesSoon(refused_conn));

  EXPECT_EQ(admitted.Send(body.substr(1024)), body.size() - 1024);
  const Answer served = admitted.Read(kDeadline);
  EXPECT_EQ(served.status, 200) << served.Summary();
  ASSERT_TRUE(node_.WaitForRequests(1, kDeadline, "/api/generate"));
  const auto requests = node_.CompleteRequests("/api/generate");
  ASSERT_EQ(requests.size(), 1u) << Describe(requests);
  EXPECT_EQ(requests[0].body, body);
}

// ---- j. an absolute deadline for the body ----------------------------------------------------

TEST_F(FrontDoorTest, ABodyThatOutlastsTheBodyDeadlineGets408AndClose) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true, {"--body-timeout-s", "2"}));
  const std::string body = GenerateBodyOfSize(64 * 1024);
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  const auto start = Clock::now();
  conn->Send("POST /api/generate HTTP/1.1\r\nHost: corral\r\n" + Bearer(kFullToken) +
             "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n\r\n");
  // 1 KiB every 250 ms: 4 KiB/s, above the proxy's minimum rate, 16 s for the whole body.
  size_t offset = 0;
  uint64_t sent = 0;
  const Answer answer = conn->SendWhileReading(
      [&] {
        if (offset > 0) ::poll(nullptr, 0, 250);  // the trickle's pace
        std::string piece = body.substr(offset, 1024);
        offset += piece.size();
        return piece;
      },
      body.size(), kDeadline, &sent);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(answer.status, 408) << answer.Summary();
  EXPECT_TRUE(IsRouteError(answer, "/api/generate"));
  EXPECT_LT(sent, body.size()) << "the whole body went through";
  EXPECT_LT(took, 2.0 + 5.0) << "the 408 came " << took << " s after the head";
  EXPECT_TRUE(answer.closed || ClosesSoon(*conn));
  ReportMeasured("body deadline", "408 after " + std::to_string(took).substr(0, 4) + " s and " +
                                      std::to_string(sent) + " bytes of a 4 KiB/s trickle");
  EXPECT_TRUE(NothingReachedTheNode());
}

// ---- k. a node's oversized answer ------------------------------------------------------------

// The recording node answers a non-streamed /api/generate with 512 MiB (with a Content-Length,
// or chunked with no length); the client reads it all, counting.
void FrontDoorTest::RelayHalfGigabyte(bool chunked) {
  ASSERT_NO_FATAL_FAILURE(StartProxy(true));
  const std::string request = Request("POST", "/api/generate", kGenerateBody,
                                      Bearer(kFullToken) + "Content-Type: application/json\r\n");
  // One answer first, so the baseline is the proxy's working size.
  ASSERT_EQ(Exchange(request).status, 200);
  const ProcessView before = ReadProcess(proxy_->pid());
  NodeReply reply = NodeReply::LargeGenerate(kLargeAnswerBytes);
  reply.chunked = chunked;
  node_.SetReply("/api/generate", reply);
  node_.Clear();

  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  conn->Send(request);
  const auto large = conn->ReadLarge(seconds(90));
  const ProcessView after = ReadProcess(proxy_->pid());
  ASSERT_TRUE(proxy_->Running()) << "corral-proxy is gone";
  if (large.answer.status == 200) {
    EXPECT_TRUE(large.answer.complete) << large.answer.Summary();
    EXPECT_EQ(large.body_bytes, kLargeAnswerBytes) << large.answer.Summary();
    const std::string end = R"("done_reason":"stop"})";
    EXPECT_TRUE(large.tail.size() >= end.size() &&
                large.tail.compare(large.tail.size() - end.size(), end.size(), end) == 0)
        << "the answer's last bytes: "
        << large.tail.substr(large.tail.size() > 80 ? large.tail.size() - 80 : 0);
  } else {
    EXPECT_EQ(large.answer.status, 502) << large.answer.Summary();
    EXPECT_TRUE(IsRouteError(large.answer, "/api/generate"));
  }
  const int64_t growth_mib = (after.peak_rss_kib - before.peak_rss_kib) / 1024;
  ReportMeasured(std::string("512 MiB node answer") + (chunked ? ", chunked" : ""),
                 "status " + std::to_string(large.answer.status) + ", " +
                     std::to_string(large.body_bytes >> 20) + " MiB relayed; proxy peak memory +" +
                     std::to_string(growth_mib) + " MiB (" + after.Summary() + ")");
  if (kMemoryBounds) {
    EXPECT_LT(growth_mib, kProxyGrowthBoundMiB)
        << "the proxy's peak memory grew by " << growth_mib << " MiB relaying a "
        << (kLargeAnswerBytes >> 20) << " MiB answer; before: " << before.Summary();
  }
}

TEST_F(FrontDoorTest, ANodesHalfGigabyteAnswerLeavesTheProxyWithinItsMemoryBound) {
  RelayHalfGigabyte(false);
}

TEST_F(FrontDoorTest, ANodesHalfGigabyteChunkedAnswerLeavesTheProxyWithinItsMemoryBound) {
  RelayHalfGigabyte(true);
}

// ---- l. a node's oversized /api/tags and the control plane's prober ----------------------------

// Registers the recording node, whose /api/tags lists 64 MiB of models (announced with a
// Content-Length, or chunked with no length), with a real corral-control, and checks what two
// probes of it cost the control plane.
void ProbeHugeModelList(RecordingNode& node, const std::string& dir, bool chunked) {
  NodeReply tags = NodeReply::LargeTags(kLargeTagsBytes);
  tags.chunked = chunked;
  node.SetReply("/api/tags", tags);
  corral::testing::Fleet fleet;  // runs corralctl
  const std::string data_dir = dir + "/control-data";
  std::filesystem::create_directories(data_dir);
  ChildProcess control(corral::testing::BinaryPath("corral-control"),
                       {"--listen", "127.0.0.1:0", "--data-dir", data_dir, "--probe-interval-ms",
                        "500", "--no-discovery", "--http-listen", "off"},
                       dir);
  const int control_port = control.WaitForPort(seconds(15));
  ASSERT_GT(control_port, 0) << "corral-control did not start";
  std::string token;
  ASSERT_TRUE(WaitFor(
      [&] {
        token = corral::testing::ReadFile(data_dir + "/admin.token");
        while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
          token.pop_back();
        }
        return !token.empty();
      },
      seconds(10), "admin.token"));
  const auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> full = {"--control", "127.0.0.1:" + std::to_string(control_port),
                                     "--token", token};
    full.insert(full.end(), args.begin(), args.end());
    return fleet.CtlRaw(full);
  };
  const auto listed = [&] {
    const auto list = ctl({"--json", "node", "list"});
    if (list.exit_code != 0) return false;
    for (const auto& n : list.Json().value("nodes", json::array())) {
      if (n.contains("node") && n["node"].value("name", "") == "huge-tags") return true;
    }
    return false;
  };
  ASSERT_EQ(ctl({"--json", "node", "list"}).exit_code, 0);
  const ProcessView before = ReadProcess(control.pid());

  const auto added = ctl({"node", "add", "huge-tags", node.url()});
  ASSERT_EQ(added.exit_code, 0) << added;
  // Two probes read the whole list (or gave up on it): the second shows whether the first's
  // memory was kept.
  EXPECT_TRUE(node.WaitForRepliesEnded(2, "/api/tags", seconds(60)));
  EXPECT_TRUE(WaitFor(listed, kDeadline, "corral-control to list the node"));
  ASSERT_TRUE(control.Running()) << "corral-control is gone:\n" << control.Log();
  const ProcessView after = ReadProcess(control.pid());
  const int64_t growth_mib = (after.peak_rss_kib - before.peak_rss_kib) / 1024;
  uint64_t sent = 0;
  for (const auto& r : node.SentReplies()) {
    if (r.path == "/api/tags") sent = std::max(sent, r.body_bytes_sent);
  }
  ReportMeasured(std::string("64 MiB /api/tags") + (chunked ? ", chunked" : ""),
                 "corral-control peak memory +" + std::to_string(growth_mib) +
                     " MiB; the node got at most " + std::to_string(sent >> 20) + " MiB of its " +
                     std::to_string(kLargeTagsBytes >> 20) + " MiB model list out before the " +
                     "prober stopped reading (" + after.Summary() + ")");
  if (kMemoryBounds) {
    EXPECT_LT(growth_mib, kControlGrowthBoundMiB)
        << "corral-control's peak memory grew by " << growth_mib << " MiB probing a "
        << (kLargeTagsBytes >> 20) << " MiB /api/tags; before: " << before.Summary();
  }
  if (::testing::Test::HasFailure()) control.DumpLog();
}

TEST_F(FrontDoorTest, ANodesHugeModelListLeavesTheControlPlaneWithinItsMemoryBound) {
  ProbeHugeModelList(node_, dir_, false);
}

TEST_F(FrontDoorTest, ANodesHugeChunkedModelListLeavesTheControlPlaneWithinItsMemoryBound) {
  ProbeHugeModelList(node_, dir_, true);
}

}  // namespace
}  // namespace corral::hostile
