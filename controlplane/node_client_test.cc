// NodeClient (and the prober's HTTP transport built on it) against real nodes: corral-sim processes
// on loopback ports, a listening socket that never answers (a hung node), a port where nothing
// listens, and hostile nodes (an HTTP server or a raw socket on loopback) that answer too much,
// too slowly, or with absurd numbers.
#include "controlplane/node_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/prober.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::MakeTempDir;
using std::chrono::milliseconds;

std::string UrlOf(int port) { return "http://127.0.0.1:" + std::to_string(port); }

// A sim with no artificial delays unless `extra` asks for some.
std::unique_ptr<ChildProcess> StartSim(const std::string& log_dir,
                                       std::vector<std::string> extra = {}, bool fast = true) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--models",
                                   "llama3.2:latest,qwen3:8b"};
  if (fast) args.push_back("--fast");
  args.insert(args.end(), extra.begin(), extra.end());
  auto sim = std::make_unique<ChildProcess>(BinaryPath("corral-sim"), args, log_dir);
  EXPECT_GT(sim->WaitForPort(), 0) << sim->Log();
  return sim;
}

// A TCP listener that never accepts: connections complete in the kernel's backlog and requests
// are never answered, which is what a wedged node looks like from outside.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 64), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// An HTTP node on a loopback port that answers whatever a test registers on server(). Streaming
// handlers must end when stopping() turns true: the server joins its workers on stop.
class ScriptedNode {
 public:
  ~ScriptedNode() {
    stopping_ = true;
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server& server() { return server_; }
  void Start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    ASSERT_TRUE(corral::testing::WaitFor([&] { return server_.is_running(); },
                                         std::chrono::seconds(10), "listening"));
  }
  bool stopping() const { return stopping_; }
  std::string url() const { return UrlOf(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  int port_ = 0;
};

// A raw TCP node that accepts connections one at a time and, on each, sends the start of an
// HTTP head and then one more byte every `every` until the client goes away: a head that never
// ends but never goes quiet either, so no per-read timeout fires.
class TricklingHeadNode {
 public:
  explicit TricklingHeadNode(milliseconds every) : every_(every) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TricklingHeadNode() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void Serve() {
    while (!stopping_) {
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      ++connections_;
      const std::string start = "HTTP/1.1 200 OK\r\nX-Slow: ";
      bool alive = ::send(conn, start.data(), start.size(), MSG_NOSIGNAL) > 0;
      while (alive && !stopping_) {
        std::this_thread::sleep_for(every_);  // the node's pace, not the test's synchronisation
        alive = ::send(conn, "a", 1, MSG_NOSIGNAL) == 1;
      }
      ::close(conn);
    }
  }

  milliseconds every_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

class NodeClientTest : public ::testing::Test {
 protected:
  void SetUp() override { log_dir_ = MakeTempDir("node-client"); }
  std::string log_dir_;
};

TEST_F(NodeClientTest, ReadsVersionModelsAndLoadedModelsOfARealNode) {
  auto sim = StartSim(log_dir_, {"--version", "0.12.3"});
  NodeClient client(UrlOf(sim->port()));

  EXPECT_TRUE(client.Root().ok());
  absl::StatusOr<std::string> version = client.Version();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, "0.12.3");

  absl::StatusOr<std::vector<corral::v1::Model>> tags = client.Tags();
  ASSERT_TRUE(tags.ok()) << tags.status();
  std::vector<std::string> names;
  for (const auto& m : *tags) {
    names.push_back(m.name());
    EXPECT_GT(m.size(), 0) << m.name();
    EXPECT_EQ(m.digest().size(), 64u) << m.name();
    EXPECT_FALSE(m.modified_at().empty()) << m.name();
    // The entry is kept verbatim, details included, for the fleet-wide list.
    auto raw = nlohmann::json::parse(m.raw_json(), nullptr, false);
    ASSERT_TRUE(raw.is_object()) << m.raw_json();
    EXPECT_EQ(raw.value("name", ""), m.name());
    EXPECT_TRUE(raw.contains("details"));
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"llama3.2:latest", "qwen3:8b"}));

  absl::StatusOr<std::vector<corral::v1::LoadedModel>> ps = client.Ps();
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_TRUE(ps->empty());

  // Load a model (an empty generate is Ollama's load shortcut); /api/ps then lists it.
  httplib::Client http("127.0.0.1", sim->port());
  auto loaded = http.Post("/api/generate", R"({"model":"llama3.2"})", "application/json");
  ASSERT_TRUE(loaded) << httplib::to_string(loaded.error());
  ASSERT_EQ(loaded->status, 200) << loaded->body;
  ps = client.Ps();
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_EQ(ps->size(), 1u);
  EXPECT_EQ((*ps)[0].name(), "llama3.2:latest");
  EXPECT_GT((*ps)[0].size(), 0);
  EXPECT_FALSE((*ps)[0].expires_at().empty());
  auto raw = nlohmann::json::parse((*ps)[0].raw_json(), nullptr, false);
  ASSERT_TRUE(raw.is_object());
  EXPECT_TRUE(raw.contains("size_vram"));
}

TEST_F(NodeClientTest, PullStreamsProgressUntilSuccess) {
  auto sim = StartSim(log_dir_);
  NodeClient client(UrlOf(sim->port()));
  std::vector<corral::v1::PullProgress> lines;
  absl::Status pulled = client.Pull(
      "mistral", /*insecure=*/false, [&](const corral::v1::PullProgress& p) { lines.push_back(p); },
      nullptr);
  ASSERT_TRUE(pulled.ok()) << pulled;
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.front().status(), "pulling manifest");
  EXPECT_EQ(lines.back().status(), "success");
  bool saw_layer = false;
  for (const auto& p : lines) {
    EXPECT_TRUE(p.error().empty());
    if (absl::StartsWith(p.digest(), "sha256:") && p.total() > 0) saw_layer = true;
  }
  EXPECT_TRUE(saw_layer);

  absl::StatusOr<std::vector<corral::v1::Model>> tags = client.Tags();
  ASSERT_TRUE(tags.ok());
  EXPECT_TRUE(std::any_of(tags->begin(), tags->end(),
                          [](const auto& m) { return m.name() == "mistral:latest"; }));
}

TEST_F(NodeClientTest, PullOfAnUnknownModelReturnsTheNodesError) {
  auto sim = StartSim(log_dir_);
  NodeClient client(UrlOf(sim->port()));
  std::vector<corral::v1::PullProgress> lines;
  absl::Status pulled = client.Pull(
      "no-such-model-anywhere", false,
      [&](const corral::v1::PullProgress& p) { lines.push_back(p); }, nullptr);
  ASSERT_FALSE(pulled.ok());
  EXPECT_TRUE(absl::StrContains(pulled.message(), "file does not exist")) << pulled;
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front().status(), "pulling manifest");
  EXPECT_TRUE(absl::StrContains(lines.back().error(), "file does not exist"));
}

TEST_F(NodeClientTest, PullCanBeCancelledBetweenProgressLines) {
  // Slow progress so the pull is still running when it is cancelled.
  auto sim = StartSim(log_dir_, {"--pull-interval-ms", "200"}, /*fast=*/false);
  NodeClient client(UrlOf(sim->port()));
  std::atomic<int> seen{0};
  absl::Status pulled = client.Pull(
      "gemma3", false, [&](const corral::v1::PullProgress&) { ++seen; }, [&] { return seen >= 1; });
  EXPECT_TRUE(absl::IsCancelled(pulled)) << pulled;
  EXPECT_GE(seen, 1);
}

// A node that says nothing (a wedged node, or one verifying a huge blob) cannot hold a cancelled
// pull: the default idle timeout is ten minutes, far beyond this test's limit.
TEST_F(NodeClientTest, ACancelledPullOfASilentNodeEndsWithoutWaitingForData) {
  SilentListener silent;
  NodeClient client(UrlOf(silent.port()));
  // Nothing ever arrives, so only the silent-node watch can notice the cancellation.
  absl::Status pulled = client.Pull("llama3.2", false, nullptr, [] { return true; });
  EXPECT_TRUE(absl::IsCancelled(pulled)) << pulled;
}

TEST_F(NodeClientTest, ANodeThatIsGoneIsUnavailable) {
  auto sim = StartSim(log_dir_);
  const int port = sim->port();
  sim->Kill();
  NodeClient client(UrlOf(port));
  absl::StatusOr<std::string> version = client.Version();
  ASSERT_FALSE(version.ok());
  EXPECT_TRUE(absl::IsUnavailable(version.status())) << version.status();
  EXPECT_FALSE(client.Tags().ok());
  EXPECT_FALSE(client.Ps().ok());
  EXPECT_FALSE(client.Pull("llama3.2", false, nullptr, nullptr).ok());
}

TEST_F(NodeClientTest, AHungNodeTimesOutInsteadOfBlocking) {
  SilentListener hung;
  NodeClientOptions options;
  options.liveness_timeout = milliseconds(300);
  options.tags_timeout = milliseconds(300);
  options.ps_timeout = milliseconds(300);
  NodeClient client(UrlOf(hung.port()), options);
  absl::StatusOr<std::string> version = client.Version();
  ASSERT_FALSE(version.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(version.status())) << version.status();
  EXPECT_TRUE(absl::IsDeadlineExceeded(client.Ps().status())) << client.Ps().status();
}

TEST_F(NodeClientTest, SomethingElseOnThePortIsNotOllama) {
  httplib::Server other;
  other.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>router admin</html>", "text/html");
  });
  const int port = other.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { other.listen_after_bind(); });
  ASSERT_TRUE(corral::testing::WaitFor([&] { return other.is_running(); }, std::chrono::seconds(10),
                                       "listening"));
  NodeClient client(UrlOf(port));
  absl::Status root = client.Root();
  EXPECT_TRUE(absl::IsFailedPrecondition(root)) << root;
  EXPECT_FALSE(client.Version().ok());
  other.stop();
  serving.join();
}

// ---- hostile nodes ----

// 64 MiB of /api/tags, streamed: the client stops reading at the 8 MiB cap, says so, and the node
// could not push much more than the cap plus the sockets' buffers before its writes failed.
TEST(HostileNodeTest, AnOversizedTagsAnswerStopsAtTheCap) {
  constexpr size_t kChunk = 64 << 10;
  constexpr size_t kTotal = size_t{64} << 20;
  ScriptedNode node;
  std::atomic<size_t> written{0};
  std::atomic<bool> ended{false};
  node.server().Get("/api/tags", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
      std::string chunk = "{\"models\":[";
      while (chunk.size() < kChunk) chunk += "{\"name\":\"m:latest\",\"size\":1},";
      while (written < kTotal && !node.stopping()) {
        if (!sink.write(chunk.data(), chunk.size())) break;
        written += chunk.size();
      }
      ended = true;
      return false;
    });
  });
  node.Start();

  NodeClientOptions options;
  options.tags_timeout = milliseconds(20000);
  NodeClient client(node.url(), options);
  const auto start = std::chrono::steady_clock::now();
  ListStats stats;
  absl::StatusOr<std::vector<corral::v1::Model>> tags = client.Tags(&stats);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(tags.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(tags.status())) << tags.status();
  EXPECT_TRUE(
      absl::StrContains(tags.status().message(), "the node answered more than 8 MiB to /api/tags"))
      << tags.status();
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  ASSERT_TRUE(corral::testing::WaitFor([&] { return ended.load(); }, std::chrono::seconds(20),
                                       "the node's writes to fail"));
  EXPECT_LT(written.load(), size_t{32} << 20) << "the client kept reading past its cap";
}

// A length announced past the cap is refused on the head, before any of the body is read.
TEST(HostileNodeTest, AnAnnouncedLengthPastTheCapIsRefusedOnTheHead) {
  ScriptedNode node;
  std::atomic<size_t> written{0};
  node.server().Get("/api/ps", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content_provider(size_t{64} << 20, "application/json",
                             [&](size_t offset, size_t length, httplib::DataSink& sink) {
                               std::string chunk(std::min<size_t>(length, 64 << 10), ' ');
                               if (node.stopping() || !sink.write(chunk.data(), chunk.size())) {
                                 return false;
                               }
                               written = offset + chunk.size();
                               return true;
                             });
  });
  node.Start();
  NodeClient client(node.url());
  absl::StatusOr<std::vector<corral::v1::LoadedModel>> ps = client.Ps();
  ASSERT_FALSE(ps.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(ps.status())) << ps.status();
  EXPECT_TRUE(absl::StrContains(ps.status().message(), "more than 8 MiB to /api/ps"))
      << ps.status();
}

TEST(HostileNodeTest, AVersionAnswerPastItsSmallCapIsRefused) {
  ScriptedNode node;
  node.server().Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(absl::StrCat("{\"version\":\"", std::string(100 << 10, '9'), "\"}"),
                    "application/json");
  });
  node.Start();
  NodeClient client(node.url());
  absl::StatusOr<std::string> version = client.Version();
  ASSERT_FALSE(version.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(version.status())) << version.status();
  EXPECT_TRUE(absl::StrContains(version.status().message(), "more than 64 KiB to /api/version"))
      << version.status();
}

// A body that arrives a few bytes at a time never trips a per-read timeout; the call's timeout
// bounds the whole exchange instead.
TEST(HostileNodeTest, ATricklingBodyHitsTheTotalDeadline) {
  ScriptedNode node;
  node.server().Get("/api/tags", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
      if (!sink.write("{\"models\":[", 11)) return false;
      while (!node.stopping()) {
        std::this_thread::sleep_for(milliseconds(20));  // the node's pace
        if (!sink.write(" ", 1)) return false;
      }
      return false;
    });
  });
  node.Start();
  NodeClientOptions options;
  options.tags_timeout = milliseconds(500);
  NodeClient client(node.url(), options);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<corral::v1::Model>> tags = client.Tags();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(tags.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(tags.status())) << tags.status();
  EXPECT_TRUE(absl::StrContains(tags.status().message(), "no complete answer within 500 ms"))
      << tags.status();
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST(HostileNodeTest, ATricklingHeadHitsTheTotalDeadline) {
  TricklingHeadNode node(milliseconds(20));
  NodeClientOptions options;
  options.liveness_timeout = milliseconds(500);
  NodeClient client(UrlOf(node.port()), options);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> version = client.Version();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(version.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(version.status())) << version.status();
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  EXPECT_EQ(node.connections(), 1);
}

// Sizes a node cannot mean (a string, a negative, 1e300, 2^70, past int64) read as 0; the entries
// themselves are kept.
TEST(HostileNodeTest, AbsurdNumbersReadAsZeroOverTheWire) {
  ScriptedNode node;
  node.server().Get("/api/tags", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"models":[
        {"name":"huge:1","size":1e300},
        {"name":"negative:1","size":-5},
        {"name":"text:1","size":"x"},
        {"name":"pow70:1","size":1180591620717411303424},
        {"name":"u64max:1","size":18446744073709551615},
        {"name":"int64max:1","size":9223372036854775807},
        {"name":"fraction:1","size":1.5},
        {"name":"float:1","size":4e9},
        {"name":"plain:1","size":4294967296}]})",
                    "application/json");
  });
  node.server().Get("/api/ps", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(absl::StrCat(R"({"models":[{"name":"m:1","size":-1,"size_vram":1e300,)",
                                 R"("context_length":"8192","expires_at":")",
                                 std::string(1000, 'x'), R"("}]})"),
                    "application/json");
  });
  node.Start();
  NodeClient client(node.url());
  absl::StatusOr<std::vector<corral::v1::Model>> tags = client.Tags();
  ASSERT_TRUE(tags.ok()) << tags.status();
  std::map<std::string, int64_t> sizes;
  for (const auto& m : *tags) sizes[m.name()] = m.size();
  EXPECT_EQ(sizes, (std::map<std::string, int64_t>{{"huge:1", 0},
                                                   {"negative:1", 0},
                                                   {"text:1", 0},
                                                   {"pow70:1", 0},
                                                   {"u64max:1", 0},
                                                   {"int64max:1", INT64_MAX},
                                                   {"fraction:1", 0},
                                                   {"float:1", 4000000000},
                                                   {"plain:1", 4294967296}}));
  absl::StatusOr<std::vector<corral::v1::LoadedModel>> ps = client.Ps();
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_EQ(ps->size(), 1u);
  EXPECT_EQ((*ps)[0].size(), 0);
  EXPECT_EQ((*ps)[0].size_vram(), 0);
  EXPECT_EQ((*ps)[0].context_length(), 0);
  EXPECT_EQ((*ps)[0].expires_at(), "");
}

// The prober's transport keeps liveness within its timeout against the same wedged node.
TEST(HttpProbeTransportTest, AWedgedNodeFailsLivenessWithinTheTimeout) {
  SilentListener wedged;
  ProberOptions options;
  options.liveness_timeout = milliseconds(300);
  HttpProbeTransport transport(options);
  ProbeResult result = transport.Probe("http://127.0.0.1:" + std::to_string(wedged.port()));
  EXPECT_FALSE(result.reachable);
  EXPECT_TRUE(absl::StrContains(result.error, "no answer within 300 ms")) << result.error;
  EXPECT_FALSE(result.models.has_value());
  EXPECT_FALSE(result.loaded_models.has_value());
}

TEST(NodeClientParseTest, ToleratesOddEntriesAndEmptyLists) {
  auto tags = ParseTags(R"({"models":[{"name":"a:latest","size":5},7,{"size":1},
                                      {"model":"b:1","digest":"d"}]})");
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 2u);
  EXPECT_EQ((*tags)[0].name(), "a:latest");
  EXPECT_EQ((*tags)[0].size(), 5);
  EXPECT_EQ((*tags)[1].name(), "b:1");
  EXPECT_TRUE(ParseTags(R"({"models":[]})")->empty());
  EXPECT_TRUE(ParseTags(R"({"models":null})")->empty());
  EXPECT_FALSE(ParseTags("not json").ok());
  EXPECT_FALSE(ParseTags(R"({"models":{}})").ok());
  auto ps = ParsePs(R"({"models":[{"name":"m:latest","size":10,"size_vram":4,
                                   "expires_at":"2318-01-01T00:00:00Z","context_length":8192}]})");
  ASSERT_TRUE(ps.ok());
  ASSERT_EQ(ps->size(), 1u);
  EXPECT_EQ((*ps)[0].size_vram(), 4);
  EXPECT_EQ((*ps)[0].context_length(), 8192);
}

TEST(NodeClientParseTest, KeepsAtMostTheModelLimitPerNode) {
  std::string body = "{\"models\":[";
  const size_t listed = kMaxModelsPerNode + 904;
  for (size_t i = 0; i < listed; ++i) {
    absl::StrAppend(&body, i ? "," : "", "{\"name\":\"m", i, ":latest\",\"size\":1}");
  }
  // Two more that carry no usable name: one with none, one far too long.
  absl::StrAppend(&body, ",{\"size\":1},{\"name\":\"", std::string(kMaxModelNameBytes + 1, 'n'),
                  "\"}]}");
  ListStats stats;
  auto tags = ParseTags(body, &stats);
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(tags->size(), kMaxModelsPerNode);
  EXPECT_EQ(tags->front().name(), "m0:latest");
  EXPECT_EQ(stats.listed, listed + 2);
  EXPECT_EQ(stats.skipped, 2u);
  EXPECT_EQ(stats.dropped, 904u);
  auto ps = ParsePs(body, &stats);
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(ps->size(), kMaxModelsPerNode);
  EXPECT_EQ(stats.dropped, 904u);
}

TEST(NodeClientParseTest, RefusesNestingDeeperThanTheLimit) {
  const std::string deep =
      absl::StrCat("{\"models\":[{\"name\":\"a\",\"x\":", std::string(100000, '['),
                   std::string(100000, ']'), "}]}");
  auto tags = ParseTags(deep);
  ASSERT_FALSE(tags.ok());
  EXPECT_TRUE(absl::StrContains(tags.status().message(), "nests deeper than 64")) << tags.status();
  EXPECT_TRUE(JsonDepthAtMost(R"({"a":[1,{"b":2}]})", 3));
  EXPECT_FALSE(JsonDepthAtMost(R"({"a":[1,{"b":2}]})", 2));
  // Brackets inside strings, escaped quotes included, are text.
  EXPECT_TRUE(JsonDepthAtMost(R"({"a":"[[[[{{{{","b":"\"[[[["})", 1));
}

TEST(NodeClientParseTest, LongStringsReadAsEmpty) {
  auto tags = ParseTags(absl::StrCat(R"({"models":[{"name":"a:1","digest":")",
                                     std::string(kMaxFieldBytes + 1, 'f'),
                                     R"(","modified_at":"2025-01-01T00:00:00Z"}]})"));
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 1u);
  EXPECT_EQ((*tags)[0].digest(), "");
  EXPECT_EQ((*tags)[0].modified_at(), "2025-01-01T00:00:00Z");
}

}  // namespace
}  // namespace corral::control
