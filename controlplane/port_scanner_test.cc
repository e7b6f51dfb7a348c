// PortScanner against real listeners: two corral-sim nodes and two impostors (a web server, and
// one that says "Ollama is running" but has no /api/version) inside the discovery ranges, with a
// real Registry on a temp SQLite file.
#include "controlplane/port_scanner.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/prober.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::MakeTempDir;
using corral::testing::WaitFor;
using std::chrono::seconds;

TEST(DiscoveredNodeNameTest, IsHostDashPortWithUnsafeCharactersReplaced) {
  EXPECT_EQ(DiscoveredNodeName("127.0.0.1", 11434), "127.0.0.1-11434");
  EXPECT_EQ(DiscoveredNodeName("gpu-box.lan", 8080), "gpu-box.lan-8080");
  EXPECT_EQ(DiscoveredNodeName("fd00::1", 11434), "fd00--1-11434");
  const std::string long_host(80, 'h');
  const std::string name = DiscoveredNodeName(long_host, 11434);
  EXPECT_EQ(name.size(), 64u);
  EXPECT_EQ(name.substr(name.size() - 6), "-11434");
}

// An HTTP server in the test process that answers GET / with `root` and, when `version` is
// set, GET /api/version with it.
class Impostor {
 public:
  Impostor(std::string root, std::string version) {
    server_.Get("/", [root](const httplib::Request&, httplib::Response& res) {
      res.set_content(root, "text/plain");
    });
    if (!version.empty()) {
      server_.Get("/api/version", [version](const httplib::Request&, httplib::Response& res) {
        res.set_content(version, "application/json");
      });
    }
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    EXPECT_TRUE(corral::testing::WaitFor([this] { return server_.is_running(); },
                                         std::chrono::seconds(10), "impostor listening"));
  }
  ~Impostor() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

class PortScannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("port-scanner");
    auto registry = Registry::Open(dir_ + "/registry.db");
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
    for (int i = 0; i < 2; ++i) {
      sims_.push_back(std::make_unique<ChildProcess>(
          BinaryPath("corral-sim"),
          std::vector<std::string>{"--listen", "127.0.0.1:0", "--fast", "--models",
                                   "llama3.2:latest"},
          dir_));
      ASSERT_GT(sims_.back()->WaitForPort(), 0) << sims_.back()->Log();
    }
    web_ = std::make_unique<Impostor>("<html>printer admin</html>", "");
    half_ = std::make_unique<Impostor>("Ollama is running", "not json");
    // Small ranges around each listener: ports are picked by the kernel, never guessed, so the
    // ranges follow them.
    corral::v1::SetDiscoveryRequest req;
    for (int port : {sims_[0]->port(), sims_[1]->port(), web_->port(), half_->port()}) {
      corral::v1::DiscoveryRange* range = req.add_ranges();
      range->set_host("127.0.0.1");
      range->set_port_from(port - 1);
      range->set_port_to(port + 1);
    }
    req.set_interval_ms(60000);
    auto set = registry_->SetDiscovery(req);
    ASSERT_TRUE(set.ok()) << set.status();
  }

  std::string NameOf(int port) { return DiscoveredNodeName("127.0.0.1", port); }
  std::string UrlOf(int port) { return "http://127.0.0.1:" + std::to_string(port); }
  bool Registered(const std::string& name) { return registry_->GetNode(name).ok(); }

  std::string dir_;
  std::unique_ptr<Registry> registry_;
  std::vector<std::unique_ptr<ChildProcess>> sims_;
  std::unique_ptr<Impostor> web_;
  std::unique_ptr<Impostor> half_;
};

TEST_F(PortScannerTest, OllamaPortsJoinAsDiscoveredNodesAndImpostorsDoNot) {
  PortScanner scanner(registry_.get(), nullptr);
  auto joined = scanner.ScanOnce();
  ASSERT_TRUE(joined.ok()) << joined.status();
  for (const auto& sim : sims_) {
    const std::string name = NameOf(sim->port());
    EXPECT_NE(std::find(joined->begin(), joined->end(), name), joined->end()) << name;
    auto node = registry_->GetNode(name);
    ASSERT_TRUE(node.ok()) << node.status();
    EXPECT_TRUE(node->discovered());
    EXPECT_EQ(node->node().url(), UrlOf(sim->port()));
  }
  EXPECT_FALSE(Registered(NameOf(web_->port())));
  EXPECT_FALSE(Registered(NameOf(half_->port())));

  // A second pass finds nothing new: registered URLs are not knocked on again.
  auto again = scanner.ScanOnce();
  ASSERT_TRUE(again.ok()) << again.status();
  for (const auto& sim : sims_) {
    EXPECT_EQ(std::find(again->begin(), again->end(), NameOf(sim->port())), again->end());
  }
}

TEST_F(PortScannerTest, AURLAlreadyRegisteredUnderAnotherNameIsSkipped) {
  corral::v1::CreateNodeRequest req;
  req.set_name("gpu-a");
  req.set_url(UrlOf(sims_[0]->port()));
  ASSERT_TRUE(registry_->CreateNode(req).ok());
  PortScanner scanner(registry_.get(), nullptr);
  auto joined = scanner.ScanOnce();
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_FALSE(Registered(NameOf(sims_[0]->port())));
  EXPECT_TRUE(Registered(NameOf(sims_[1]->port())));
}

TEST_F(PortScannerTest, NoRangesMeansNoScan) {
  ASSERT_TRUE(registry_->SetDiscovery(corral::v1::SetDiscoveryRequest()).ok());
  PortScanner scanner(registry_.get(), nullptr);
  auto joined = scanner.ScanOnce();
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_TRUE(joined->empty());
  EXPECT_FALSE(Registered(NameOf(sims_[0]->port())));
}

// The background loop with the prober: a discovered node is probed at once and joins the active
// pool; when it dies it goes to standby and stays registered.
TEST_F(PortScannerTest, DiscoveredNodesAreProbedAndNeverRemovedAutomatically) {
  ProberOptions options;
  options.interval = std::chrono::milliseconds(100);
  options.refresh_interval = std::chrono::minutes(10);  // ProbeNow alone brings new nodes in
  Prober prober(registry_.get(), options);
  prober.Start();
  PortScanner scanner(registry_.get(), &prober);
  scanner.Start();
  const std::string name = NameOf(sims_[0]->port());
  auto health = [&] {
    auto node = registry_->GetNode(name);
    return node.ok() ? node->node().health() : corral::v1::HEALTH_UNKNOWN;
  };
  ASSERT_TRUE(WaitFor([&] { return health() == corral::v1::HEALTH_HEALTHY; }, seconds(15),
                      "discovered and healthy"));
  sims_[0]->Kill();
  ASSERT_TRUE(
      WaitFor([&] { return health() == corral::v1::HEALTH_UNHEALTHY; }, seconds(15), "standby"));
  // Another pass neither removes the silent node nor adds it again.
  auto pass = scanner.ScanOnce();
  ASSERT_TRUE(pass.ok()) << pass.status();
  EXPECT_EQ(std::find(pass->begin(), pass->end(), name), pass->end());
  EXPECT_TRUE(Registered(name));
  EXPECT_TRUE(Registered(NameOf(sims_[1]->port())));
  scanner.Stop();
  prober.Stop();
}

}  // namespace
}  // namespace corral::control
