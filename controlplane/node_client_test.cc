// NodeClient (and the prober's HTTP transport built on it) against real nodes: corral-sim processes
// on loopback ports, a listening socket that never answers (a hung node), and a port where nothing
// listens.
#include "controlplane/node_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
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

}  // namespace
}  // namespace corral::control
