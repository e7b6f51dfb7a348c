// FleetAdmin on its own, with no gRPC and no HTTP: a real registry (SQLite in a temp dir), a
// proxy tracker fed a report, and pulls and deletes against real corral-sim processes. It reads as
// the specification of what every admin front end does.
#include "controlplane/fleet_admin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/model_name.h"
#include "controlplane/auth.h"
#include "controlplane/prober.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::MakeTempDir;
using corral::testing::WaitFor;

class FleetAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("fleet-admin");
    absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Open(dir_ + "/corral.db");
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    fleet_ = std::make_unique<FleetAdmin>(registry_.get(), &tracker_, nullptr, nullptr);
  }

  corral::v1::NodeInfo Create(const std::string& name, const std::string& url) {
    corral::v1::CreateNodeRequest req;
    req.set_name(name);
    req.set_url(url);
    absl::StatusOr<corral::v1::NodeInfo> created = fleet_->CreateNode(req);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.value_or(corral::v1::NodeInfo());
  }

  std::string dir_;
  std::unique_ptr<Registry> registry_;
  ProxyTracker tracker_;
  std::unique_ptr<FleetAdmin> fleet_;
};

TEST_F(FleetAdminTest, ANodeIsCreatedReadUpdatedDrainedAndRemoved) {
  Create("gpu-a", "http://127.0.0.1:11434");
  absl::StatusOr<corral::v1::NodeInfo> read = fleet_->GetNode("gpu-a");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);

  corral::v1::UpdateNodeRequest update;
  update.set_name("gpu-a");
  update.set_weight(5);
  (*update.mutable_set_labels())["rack"] = "r1";
  absl::StatusOr<corral::v1::NodeInfo> updated = fleet_->UpdateNode(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->node().weight(), 5);
  EXPECT_EQ(updated->node().labels().at("rack"), "r1");

  EXPECT_EQ(fleet_->DrainNode("gpu-a")->node().admin_state(), corral::v1::ADMIN_STATE_DRAINING);
  EXPECT_EQ(fleet_->DisableNode("gpu-a")->node().admin_state(), corral::v1::ADMIN_STATE_DISABLED);
  EXPECT_EQ(fleet_->EnableNode("gpu-a")->node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);

  const uint64_t before = registry_->version();
  absl::StatusOr<corral::v1::RemoveNodeResponse> removed = fleet_->RemoveNode("gpu-a");
  ASSERT_TRUE(removed.ok());
  EXPECT_GT(removed->snapshot_version(), before);
  EXPECT_EQ(fleet_->GetNode("gpu-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fleet_->ListNodes()->nodes_size(), 0);
}

TEST_F(FleetAdminTest, BadInputIsRefusedWithAMessageAndChangesNothing) {
  Create("gpu-a", "http://127.0.0.1:11434");
  const uint64_t version = registry_->version();

  corral::v1::CreateNodeRequest dup;
  dup.set_name("gpu-a");
  dup.set_url("http://127.0.0.1:1");
  EXPECT_EQ(fleet_->CreateNode(dup).status().code(), absl::StatusCode::kAlreadyExists);
  corral::v1::CreateNodeRequest bad_url;
  bad_url.set_name("gpu-b");
  bad_url.set_url("not a url");
  EXPECT_EQ(fleet_->CreateNode(bad_url).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fleet_->DrainNode("nobody").status().code(), absl::StatusCode::kNotFound);

  corral::v1::SetTokenPolicyRequest silent;
  absl::Status policy = fleet_->SetTokenPolicy(silent).status();
  EXPECT_EQ(policy.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(policy.message().find("require_tokens"), absl::string_view::npos);

  corral::v1::CreateTokenRequest short_token;
  short_token.set_name("t");
  short_token.set_token("short");
  EXPECT_EQ(fleet_->CreateToken(short_token).status().code(), absl::StatusCode::kInvalidArgument);
  corral::v1::CreateTokenRequest bad_model;
  bad_model.set_name("t");
  bad_model.add_models("::");
  EXPECT_EQ(fleet_->CreateToken(bad_model).status().code(), absl::StatusCode::kInvalidArgument);

  corral::v1::GetUsageRequest usage;
  usage.set_by("colour");
  EXPECT_EQ(fleet_->GetUsage(usage).status().code(), absl::StatusCode::kInvalidArgument);
  usage.set_by("model");
  usage.set_since_seconds(-1);
  EXPECT_EQ(fleet_->GetUsage(usage).status().code(), absl::StatusCode::kInvalidArgument);

  corral::v1::PullModelRequest pull;
  pull.set_model("llama3.2");
  EXPECT_EQ(fleet_->PullTargets(pull).status().code(), absl::StatusCode::kInvalidArgument);
  pull.set_node("gpu-a");
  pull.set_all(true);
  EXPECT_EQ(fleet_->PullTargets(pull).status().code(), absl::StatusCode::kInvalidArgument);
  pull.set_all(false);
  pull.set_model("::bad::");
  EXPECT_EQ(fleet_->PullTargets(pull).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(fleet_->DisableNode("gpu-a").ok());
  const uint64_t disabled = registry_->version();
  pull.set_model("llama3.2");
  pull.set_node("");
  pull.set_all(true);
  EXPECT_EQ(fleet_->PullTargets(pull).status().code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(disabled, version + 1);  // only the disable changed anything
  EXPECT_EQ(registry_->version(), disabled);
  EXPECT_EQ(fleet_->ListTokens()->tokens_size(), 0);
}

TEST_F(FleetAdminTest, TokensAreCreatedOnceListedByHashAndRevoked) {
  corral::v1::CreateTokenRequest req;
  req.set_name("team-a");
  req.add_models("llama3");
  absl::StatusOr<corral::v1::CreateTokenResponse> created = fleet_->CreateToken(req);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->token_text().size(), 64u);
  EXPECT_EQ(created->token().sha256_hex(), Sha256Hex(created->token_text()));
  EXPECT_EQ(created->token().models(0), "registry.ollama.ai/library/llama3:latest");

  absl::StatusOr<corral::v1::ListTokensResponse> list = fleet_->ListTokens();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->tokens_size(), 1);
  EXPECT_EQ(list->tokens(0).name(), "team-a");
  EXPECT_FALSE(list->open());
  EXPECT_EQ(fleet_->CreateToken(req).status().code(), absl::StatusCode::kAlreadyExists);

  ASSERT_TRUE(fleet_->RevokeToken("team-a").ok());
  EXPECT_EQ(fleet_->RevokeToken("team-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fleet_->ListTokens()->tokens_size(), 0);
}

TEST_F(FleetAdminTest, NodeViewsFoldInTheLoadProxiesReport) {
  Create("gpu-a", "http://127.0.0.1:11434");
  tracker_.WatchStarted("proxy-a", "127.0.0.1:5000");
  corral::v1::ReportRequest report;
  report.set_proxy_id("proxy-a");
  corral::v1::NodeLoad* load = report.add_nodes();
  load->set_node("gpu-a");
  load->set_in_flight(3);
  tracker_.Report(report, "127.0.0.1:5000");

  EXPECT_EQ(fleet_->GetNode("gpu-a")->in_flight(), 3);
  EXPECT_EQ(fleet_->ListNodes()->nodes(0).in_flight(), 3);
  EXPECT_EQ(fleet_->GetFleetState()->nodes(0).in_flight(), 3);
  absl::StatusOr<corral::v1::ListProxiesResponse> proxies = fleet_->ListProxies();
  ASSERT_TRUE(proxies.ok());
  ASSERT_EQ(proxies->proxies_size(), 1);
  EXPECT_EQ(proxies->proxies(0).id(), "proxy-a");
}

TEST_F(FleetAdminTest, StrategyAndDiscoveryAreSetAndReadBack) {
  corral::v1::SetStrategyRequest req;
  req.set_strategy(corral::v1::STRATEGY_ROUND_ROBIN);
  req.set_set_aliases(true);
  corral::v1::ModelAlias* alias = req.add_aliases();
  alias->set_alias("fast");
  alias->set_target("llama3.2:1b");
  ASSERT_TRUE(fleet_->SetStrategy(req).ok());
  absl::StatusOr<corral::v1::StrategyConfig> config = fleet_->GetStrategy();
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->strategy(), corral::v1::STRATEGY_ROUND_ROBIN);
  ASSERT_EQ(config->aliases_size(), 1);

  corral::v1::SetDiscoveryRequest discovery;
  corral::v1::DiscoveryRange* range = discovery.add_ranges();
  range->set_host("127.0.0.1");
  range->set_port_from(20000);
  range->set_port_to(20010);
  ASSERT_TRUE(fleet_->SetDiscovery(discovery).ok());
  EXPECT_EQ(fleet_->GetDiscovery()->ranges_size(), 1);
}

TEST_F(FleetAdminTest, APullHandsOverEveryNodesProgressAndEndsEachNode) {
  std::vector<std::unique_ptr<ChildProcess>> sims;
  for (int i = 0; i < 2; ++i) {
    sims.push_back(std::make_unique<ChildProcess>(
        BinaryPath("corral-sim"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--models", "llama3.2"}, dir_));
    ASSERT_NE(sims.back()->WaitForPort(), 0) << sims.back()->Log();
    Create("gpu-" + std::to_string(i), "http://127.0.0.1:" + std::to_string(sims.back()->port()));
  }
  Create("gone", "http://127.0.0.1:1");

  corral::v1::PullModelRequest req;
  req.set_model("mistral");
  req.set_all(true);
  std::map<std::string, std::vector<corral::v1::PullProgress>> lines;
  absl::Status result = fleet_->PullModel(
      req,
      [&](const corral::v1::PullProgress& p) {
        lines[p.node()].push_back(p);
        return true;
      },
      [] { return false; });
  // One node cannot be reached: the pull fails naming it, the others succeed.
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.message().find("gone"), absl::string_view::npos) << result;
  EXPECT_NE(result.message().find("1 of 3"), absl::string_view::npos) << result;
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& [node, progress] : lines) {
    ASSERT_FALSE(progress.empty());
    EXPECT_TRUE(progress.back().done()) << node;
    EXPECT_EQ(progress.back().status(), node == "gone" ? "error" : "success") << node;
  }
  EXPECT_GE(lines["gpu-0"].size(), 2u);  // progress lines before the last

  // A reader that goes away stops the pull: CANCELLED.
  req.set_all(false);
  req.set_node("gpu-0");
  absl::Status cancelled = fleet_->PullModel(
      req, [](const corral::v1::PullProgress&) { return false; }, [] { return false; });
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
}

// The nodes whose models `fleet` lists `model` on, sorted.
std::vector<std::string> NodesWith(FleetAdmin& fleet, const std::string& model) {
  std::vector<std::string> nodes;
  absl::StatusOr<corral::v1::ListModelsResponse> models = fleet.ListModels();
  if (!models.ok()) return nodes;
  for (const auto& m : models->models()) {
    if (CanonicalModelKey(m.name()) != CanonicalModelKey(model)) continue;
    for (const auto& where : m.locations()) nodes.push_back(where.node());
  }
  std::sort(nodes.begin(), nodes.end());
  return nodes;
}

TEST_F(FleetAdminTest, ADeleteRemovesTheModelFromTheNodesNamedAndTheProberSeesIt) {
  // A real prober whose own rounds are an hour apart: only the create's ProbeNow and the delete's
  // ProbeSoon can bring the model list up to date within the test.
  ProberOptions options;
  options.interval = std::chrono::hours(1);
  options.refresh_interval = std::chrono::hours(1);
  options.jitter = 0;
  Prober prober(registry_.get(), options);
  prober.Start();
  FleetAdmin fleet(registry_.get(), &tracker_, &prober, nullptr);
  std::vector<std::unique_ptr<ChildProcess>> sims;
  for (int i = 0; i < 2; ++i) {
    sims.push_back(std::make_unique<ChildProcess>(
        BinaryPath("corral-sim"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--models", "llama3.2,mistral"}, dir_));
    ASSERT_NE(sims.back()->WaitForPort(), 0) << sims.back()->Log();
    corral::v1::CreateNodeRequest create;
    create.set_name("gpu-" + std::to_string(i));
    create.set_url("http://127.0.0.1:" + std::to_string(sims.back()->port()));
    ASSERT_TRUE(fleet.CreateNode(create).ok());
  }
  const std::vector<std::string> both = {"gpu-0", "gpu-1"};
  ASSERT_TRUE(WaitFor([&] { return NodesWith(fleet, "llama3.2") == both; },
                      std::chrono::seconds(10), "llama3.2 probed on both nodes"));

  // Bad input changes nothing.
  auto request = [](const std::string& model, const std::string& node, bool all) {
    corral::v1::DeleteModelRequest req;
    req.set_model(model);
    req.set_node(node);
    req.set_all(all);
    return req;
  };
  EXPECT_EQ(fleet.DeleteModel(request("bad name!", "gpu-0", false)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fleet.DeleteModel(request("llama3.2", "", false)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fleet.DeleteModel(request("llama3.2", "gpu-0", true)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fleet.DeleteModel(request("llama3.2", "nope", false)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(NodesWith(fleet, "llama3.2"), both);

  // One node: gone from it once the prober has looked again, still on the other.
  absl::StatusOr<corral::v1::DeleteModelResponse> one =
      fleet.DeleteModel(request("llama3.2", "gpu-0", false));
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->results_size(), 1);
  EXPECT_EQ(one->results(0).node(), "gpu-0");
  EXPECT_TRUE(one->results(0).ok());
  EXPECT_TRUE(
      WaitFor([&] { return NodesWith(fleet, "llama3.2") == std::vector<std::string>{"gpu-1"}; },
              std::chrono::seconds(10), "llama3.2 gone from gpu-0"));
  EXPECT_EQ(NodesWith(fleet, "mistral"), both);  // the other model stays

  // Again on the same node: the node's own "not found".
  absl::StatusOr<corral::v1::DeleteModelResponse> again =
      fleet.DeleteModel(request("llama3.2", "gpu-0", false));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(again.status().message().find("not found"), absl::string_view::npos) << again.status();

  // Every node that lists the model ("mistral:latest" is the same model), then none is left.
  absl::StatusOr<corral::v1::DeleteModelResponse> all =
      fleet.DeleteModel(request("mistral:latest", "", true));
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->results_size(), 2);
  EXPECT_EQ(all->results(0).node(), "gpu-0");
  EXPECT_EQ(all->results(1).node(), "gpu-1");
  EXPECT_TRUE(all->results(0).ok() && all->results(1).ok()) << all->DebugString();
  EXPECT_TRUE(WaitFor([&] { return NodesWith(fleet, "mistral").empty(); }, std::chrono::seconds(10),
                      "mistral gone from the fleet"));
  EXPECT_EQ(fleet.DeleteModel(request("mistral", "", true)).status().code(),
            absl::StatusCode::kNotFound);

  // A node that cannot be reached fails alone: the answer still lists it, with its error.
  corral::v1::CreateNodeRequest gone;
  gone.set_name("gone");
  gone.set_url("http://127.0.0.1:1");
  ASSERT_TRUE(fleet.CreateNode(gone).ok());
  absl::StatusOr<corral::v1::DeleteModelResponse> unreachable =
      fleet.DeleteModel(request("llama3.2", "gone", false));
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable) << unreachable.status();
  prober.Stop();
}

}  // namespace
}  // namespace corral::control
