// Registry on real SQLite files in a temp dir: CRUD, validation that changes nothing, versions that
// only go up (across threads, two connections and reopening), and migration of an old schema.
#include "controlplane/registry.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::v1::CreateNodeRequest;

CreateNodeRequest NodeReq(const std::string& name, const std::string& url) {
  CreateNodeRequest req;
  req.set_name(name);
  req.set_url(url);
  return req;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = corral::testing::MakeTempDir("registry");
    path_ = dir_ + "/corral.db";
    registry_ = Open();
  }

  std::unique_ptr<Registry> Open() {
    auto r = Registry::Open(path_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  size_t NodeCount() { return registry_->ListNodes()->size(); }

  std::string dir_;
  std::string path_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, CreateGetListUpdateRemove) {
  EXPECT_EQ(registry_->version(), 0u);
  CreateNodeRequest req = NodeReq("gpu-1", "10.0.0.5:11434/");
  req.set_priority(2);
  req.set_max_parallel(4);
  (*req.mutable_labels())["zone"] = "a";
  auto created = registry_->CreateNode(req);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->node().url(), "http://10.0.0.5:11434");  // normalised
  EXPECT_EQ(created->node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);
  EXPECT_EQ(created->node().health(), corral::v1::HEALTH_UNKNOWN);
  EXPECT_EQ(created->node().weight(), 1);  // 0 means 1
  EXPECT_EQ(created->node().labels().at("zone"), "a");
  EXPECT_FALSE(created->created_at().empty());
  EXPECT_EQ(registry_->version(), 1u);

  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-0", "http://10.0.0.6:11434")).ok());
  auto list = registry_->ListNodes();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].node().name(), "gpu-0");  // sorted by name

  corral::v1::UpdateNodeRequest update;
  update.set_name("gpu-1");
  update.set_weight(5);
  (*update.mutable_set_labels())["rack"] = "r1";
  update.add_remove_labels("zone");
  auto updated = registry_->UpdateNode(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->node().weight(), 5);
  EXPECT_EQ(updated->node().priority(), 2);  // untouched
  EXPECT_EQ(updated->node().labels().size(), 1u);
  EXPECT_EQ(updated->node().labels().at("rack"), "r1");
  EXPECT_EQ(registry_->version(), 3u);

  // Same values again: nothing changes, no new version.
  ASSERT_TRUE(registry_->UpdateNode(update).ok());
  EXPECT_EQ(registry_->version(), 3u);

  auto drained = registry_->SetAdminState("gpu-1", corral::v1::ADMIN_STATE_DRAINING);
  ASSERT_TRUE(drained.ok());
  EXPECT_EQ(drained->node().admin_state(), corral::v1::ADMIN_STATE_DRAINING);
  EXPECT_EQ(registry_->version(), 4u);
  ASSERT_TRUE(registry_->SetAdminState("gpu-1", corral::v1::ADMIN_STATE_DRAINING).ok());
  EXPECT_EQ(registry_->version(), 4u);

  ASSERT_TRUE(registry_->RemoveNode("gpu-1").ok());
  EXPECT_EQ(registry_->GetNode("gpu-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->version(), 5u);
}

TEST_F(RegistryTest, RejectionsChangeNothing) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.5:11434")).ok());
  const uint64_t version = registry_->version();

  struct Case {
    CreateNodeRequest req;
    absl::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({NodeReq("a b", "http://10.0.0.9:1"), absl::StatusCode::kInvalidArgument,
                   "node name \"a b\" must match [A-Za-z0-9_.-]{1,64}"});
  cases.push_back({NodeReq(std::string(65, 'x'), "http://10.0.0.9:1"),
                   absl::StatusCode::kInvalidArgument, "must match"});
  cases.push_back({NodeReq("", "http://10.0.0.9:1"), absl::StatusCode::kInvalidArgument, ""});
  cases.push_back(
      {NodeReq("ok", "ftp://10.0.0.9:1"), absl::StatusCode::kInvalidArgument, "node URL"});
  cases.push_back(
      {NodeReq("ok", "http://10.0.0.9:99999"), absl::StatusCode::kInvalidArgument, "node URL"});
  cases.push_back(
      {NodeReq("ok", "http://10.0.0.9:1/api"), absl::StatusCode::kInvalidArgument, "node URL"});
  cases.push_back(
      {NodeReq("gpu-1", "http://10.0.0.9:1"), absl::StatusCode::kAlreadyExists, "already exists"});
  // The same address spelled differently is still a duplicate.
  cases.push_back({NodeReq("other", "10.0.0.5:11434/"), absl::StatusCode::kAlreadyExists,
                   "already registered as node \"gpu-1\""});
  CreateNodeRequest neg_parallel = NodeReq("ok", "http://10.0.0.9:1");
  neg_parallel.set_max_parallel(-1);
  cases.push_back({neg_parallel, absl::StatusCode::kInvalidArgument, "max_parallel"});
  CreateNodeRequest neg_weight = NodeReq("ok", "http://10.0.0.9:1");
  neg_weight.set_weight(-3);
  cases.push_back({neg_weight, absl::StatusCode::kInvalidArgument, "weight"});
  CreateNodeRequest neg_mem = NodeReq("ok", "http://10.0.0.9:1");
  neg_mem.set_max_memory_gb(-1);
  cases.push_back({neg_mem, absl::StatusCode::kInvalidArgument, "max_memory_gb"});
  CreateNodeRequest neg_prio = NodeReq("ok", "http://10.0.0.9:1");
  neg_prio.set_priority(-1);
  cases.push_back({neg_prio, absl::StatusCode::kInvalidArgument, "priority"});
  CreateNodeRequest bad_label = NodeReq("ok", "http://10.0.0.9:1");
  (*bad_label.mutable_labels())["bad key"] = "v";
  cases.push_back({bad_label, absl::StatusCode::kInvalidArgument, "label key"});

  for (const Case& c : cases) {
    auto result = registry_->CreateNode(c.req);
    EXPECT_EQ(result.status().code(), c.code) << c.req.ShortDebugString();
    EXPECT_NE(result.status().message().find(c.says), std::string::npos)
        << result.status().message();
    EXPECT_EQ(NodeCount(), 1u);
    EXPECT_EQ(registry_->version(), version);
  }

  // Updates, state changes and removals that fail leave the node as it was.
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-2", "http://10.0.0.7:11434")).ok());
  const uint64_t v2 = registry_->version();
  corral::v1::UpdateNodeRequest steal;
  steal.set_name("gpu-2");
  steal.set_url("http://10.0.0.5:11434");
  steal.set_weight(9);
  EXPECT_EQ(registry_->UpdateNode(steal).status().code(), absl::StatusCode::kAlreadyExists);
  corral::v1::UpdateNodeRequest negative;
  negative.set_name("gpu-2");
  negative.set_max_parallel(-5);
  EXPECT_EQ(registry_->UpdateNode(negative).status().code(), absl::StatusCode::kInvalidArgument);
  corral::v1::UpdateNodeRequest unknown;
  unknown.set_name("nope");
  unknown.set_weight(2);
  EXPECT_EQ(registry_->UpdateNode(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->RemoveNode("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->SetAdminState("gpu-2", corral::v1::ADMIN_STATE_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->SetAdminState("nope", corral::v1::ADMIN_STATE_DISABLED).status().code(),
            absl::StatusCode::kNotFound);
  auto node = registry_->GetNode("gpu-2");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->node().url(), "http://10.0.0.7:11434");
  EXPECT_EQ(node->node().weight(), 1);
  EXPECT_EQ(node->node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);
  EXPECT_EQ(registry_->version(), v2);
}

TEST_F(RegistryTest, StrategyValidationAndNoOpKeepsVersion) {
  auto initial = registry_->GetStrategy();
  ASSERT_TRUE(initial.ok());
  EXPECT_EQ(initial->strategy(), corral::v1::STRATEGY_LEAST_ACTIVE);

  corral::v1::SetStrategyRequest bad;
  bad.set_strategy(static_cast<corral::v1::Strategy>(42));
  EXPECT_EQ(registry_->SetStrategy(bad).status().code(), absl::StatusCode::kInvalidArgument);
  corral::v1::SetStrategyRequest bad_retry;
  bad_retry.mutable_retry()->set_max_attempts(-1);
  EXPECT_EQ(registry_->SetStrategy(bad_retry).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->version(), 0u);

  corral::v1::SetStrategyRequest set;
  set.set_strategy(corral::v1::STRATEGY_PRIORITY);
  set.mutable_timeouts()->set_connect_ms(1500);
  auto after = registry_->SetStrategy(set);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->strategy(), corral::v1::STRATEGY_PRIORITY);
  EXPECT_EQ(registry_->version(), 1u);
  // Unspecified keeps the strategy; an absent policy keeps the policy.
  corral::v1::SetStrategyRequest keep;
  auto kept = registry_->SetStrategy(keep);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->strategy(), corral::v1::STRATEGY_PRIORITY);
  EXPECT_EQ(kept->timeouts().connect_ms(), 1500);
  EXPECT_EQ(registry_->version(), 1u);

  auto snapshot = registry_->BuildSnapshot();
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->strategy(), corral::v1::STRATEGY_PRIORITY);
  EXPECT_EQ(snapshot->timeouts().connect_ms(), 1500);
  EXPECT_EQ(snapshot->version(), 1u);
}

TEST_F(RegistryTest, NumParallelIsStoredValidatedAndInTheSnapshot) {
  CreateNodeRequest req = NodeReq("gpu-1", "http://10.0.0.5:11434");
  req.set_num_parallel(4);
  req.set_max_parallel(8);
  auto created = registry_->CreateNode(req);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->node().num_parallel(), 4);
  EXPECT_EQ(registry_->version(), 1u);

  CreateNodeRequest negative = NodeReq("gpu-2", "http://10.0.0.6:11434");
  negative.set_num_parallel(-1);
  auto refused = registry_->CreateNode(negative);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("num_parallel"), std::string::npos) << refused.status();
  EXPECT_EQ(NodeCount(), 1u);

  corral::v1::UpdateNodeRequest too_many;
  too_many.set_name("gpu-1");
  too_many.set_num_parallel(1000001);
  EXPECT_EQ(registry_->UpdateNode(too_many).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->GetNode("gpu-1")->node().num_parallel(), 4);
  EXPECT_EQ(registry_->version(), 1u);

  // Naming the current value changes nothing; an update without it keeps it.
  corral::v1::UpdateNodeRequest same;
  same.set_name("gpu-1");
  same.set_num_parallel(4);
  ASSERT_TRUE(registry_->UpdateNode(same).ok());
  EXPECT_EQ(registry_->version(), 1u);
  corral::v1::UpdateNodeRequest weight;
  weight.set_name("gpu-1");
  weight.set_weight(3);
  ASSERT_TRUE(registry_->UpdateNode(weight).ok());
  EXPECT_EQ(registry_->GetNode("gpu-1")->node().num_parallel(), 4);
  corral::v1::UpdateNodeRequest two;
  two.set_name("gpu-1");
  two.set_num_parallel(2);
  ASSERT_TRUE(registry_->UpdateNode(two).ok());
  EXPECT_EQ(registry_->version(), 3u);

  registry_.reset();
  registry_ = Open();
  auto snapshot = registry_->BuildSnapshot();
  ASSERT_TRUE(snapshot.ok());
  ASSERT_EQ(snapshot->nodes_size(), 1);
  EXPECT_EQ(snapshot->nodes(0).num_parallel(), 2);
  EXPECT_EQ(snapshot->nodes(0).max_parallel(), 8);
}

corral::v1::SetStrategyRequest RoutingRules() {
  corral::v1::SetStrategyRequest req;
  req.mutable_queue()->set_max_length(64);
  req.mutable_queue()->set_max_wait_ms(5000);
  req.set_set_placement(true);
  auto* hard = req.add_placement();
  hard->set_pattern("llama3:70b*");
  hard->add_nodes("gpu-big");
  hard->set_hard(true);
  auto* soft = req.add_placement();
  soft->set_pattern("qwen*");
  (*soft->mutable_labels())["gpu"] = "a100";
  req.set_set_aliases(true);
  auto* alias = req.add_aliases();
  alias->set_alias("fast");
  alias->set_target("llama3.2:1b");
  req.set_set_model_memory(true);
  auto* memory = req.add_model_memory();
  memory->set_pattern("*:70b*");
  memory->set_memory_gb(42.5);
  return req;
}

TEST_F(RegistryTest, RoutingRulesSurviveARestartAndReachTheSnapshot) {
  auto set = registry_->SetStrategy(RoutingRules());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(registry_->version(), 1u);
  // Setting the same rules again is no change.
  ASSERT_TRUE(registry_->SetStrategy(RoutingRules()).ok());
  EXPECT_EQ(registry_->version(), 1u);

  registry_.reset();
  registry_ = Open();
  auto got = registry_->GetStrategy();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->queue().max_length(), 64);
  EXPECT_EQ(got->queue().max_wait_ms(), 5000);
  ASSERT_EQ(got->placement_size(), 2);
  EXPECT_EQ(got->placement(0).pattern(), "llama3:70b*");  // order kept
  EXPECT_TRUE(got->placement(0).hard());
  EXPECT_EQ(got->placement(0).nodes(0), "gpu-big");
  EXPECT_EQ(got->placement(1).labels().at("gpu"), "a100");
  EXPECT_FALSE(got->placement(1).hard());
  ASSERT_EQ(got->aliases_size(), 1);
  EXPECT_EQ(got->aliases(0).target(), "llama3.2:1b");
  ASSERT_EQ(got->model_memory_size(), 1);
  EXPECT_EQ(got->model_memory(0).memory_gb(), 42.5);

  auto snapshot = registry_->BuildSnapshot();
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->version(), 1u);
  EXPECT_EQ(snapshot->queue().max_length(), 64);
  ASSERT_EQ(snapshot->placement_size(), 2);
  EXPECT_EQ(snapshot->placement(1).pattern(), "qwen*");
  ASSERT_EQ(snapshot->aliases_size(), 1);
  EXPECT_EQ(snapshot->aliases(0).alias(), "fast");
  ASSERT_EQ(snapshot->model_memory_size(), 1);
  EXPECT_EQ(snapshot->model_memory(0).pattern(), "*:70b*");
  auto state = registry_->GetFleetState();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->strategy().placement_size(), 2);
}

TEST_F(RegistryTest, EachListIsReplacedOnlyWhenItsFlagIsSet) {
  ASSERT_TRUE(registry_->SetStrategy(RoutingRules()).ok());
  // Strategy alone keeps every rule.
  corral::v1::SetStrategyRequest strategy;
  strategy.set_strategy(corral::v1::STRATEGY_ROUND_ROBIN);
  strategy.add_aliases()->set_alias("ignored without set_aliases");
  auto after = registry_->SetStrategy(strategy);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->placement_size(), 2);
  EXPECT_EQ(after->aliases_size(), 1);
  EXPECT_EQ(after->model_memory_size(), 1);
  EXPECT_EQ(after->queue().max_length(), 64);
  // An empty list with its flag clears that list only.
  corral::v1::SetStrategyRequest clear;
  clear.set_set_placement(true);
  after = registry_->SetStrategy(clear);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->placement().empty());
  EXPECT_EQ(after->aliases_size(), 1);
  EXPECT_EQ(after->strategy(), corral::v1::STRATEGY_ROUND_ROBIN);
  EXPECT_TRUE(registry_->BuildSnapshot()->placement().empty());
}

TEST_F(RegistryTest, BadRoutingRulesChangeNothing) {
  ASSERT_TRUE(registry_->SetStrategy(RoutingRules()).ok());
  const uint64_t version = registry_->version();

  struct Case {
    corral::v1::SetStrategyRequest req;
    std::string says;
  };
  std::vector<Case> cases;
  {
    corral::v1::SetStrategyRequest r;
    r.set_strategy(corral::v1::STRATEGY_PRIORITY);  // valid, but goes with a bad queue
    r.mutable_queue()->set_max_wait_ms(-1);
    cases.push_back({r, "max_wait_ms"});
  }
  {
    corral::v1::SetStrategyRequest r;
    r.set_set_placement(true);
    r.add_placement()->set_pattern("llama3*");
    cases.push_back({r, "placement rule \"llama3*\" names no node"});
  }
  {
    corral::v1::SetStrategyRequest r;
    r.set_set_placement(true);
    auto* rule = r.add_placement();
    rule->set_pattern("Llama3*");
    rule->add_nodes("gpu-1");
    cases.push_back({r, "lower case"});
  }
  {
    // A chain through the alias already stored: the new list replaces the old, so "fast" is
    // gone; a chain inside the new list is refused.
    corral::v1::SetStrategyRequest r;
    r.set_set_aliases(true);
    auto* a = r.add_aliases();
    a->set_alias("quick");
    a->set_target("fast");
    auto* b = r.add_aliases();
    b->set_alias("fast");
    b->set_target("llama3");
    cases.push_back({r, "itself an alias"});
  }
  {
    corral::v1::SetStrategyRequest r;
    r.set_set_model_memory(true);
    auto* m = r.add_model_memory();
    m->set_pattern("big*");
    m->set_memory_gb(0);
    cases.push_back({r, "memory_gb"});
  }
  for (const Case& c : cases) {
    auto result = registry_->SetStrategy(c.req);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_NE(result.status().message().find(c.says), std::string::npos)
        << result.status().message();
    EXPECT_EQ(registry_->version(), version);
  }
  auto kept = registry_->GetStrategy();
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->strategy(), corral::v1::STRATEGY_LEAST_ACTIVE);
  EXPECT_EQ(kept->queue().max_wait_ms(), 5000);
  EXPECT_EQ(kept->placement_size(), 2);
  EXPECT_EQ(kept->aliases_size(), 1);
  EXPECT_EQ(kept->model_memory(0).memory_gb(), 42.5);
}

TEST_F(RegistryTest, RecordProbeBumpsOnlyForRoutingChanges) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.5:11434")).ok());
  ProbeResult probe;
  probe.reachable = true;
  probe.version = "0.12.3";
  probe.latency_ms = 3.5;
  corral::v1::Model model;
  model.set_name("llama3.2:latest");
  model.set_size(2000);
  model.set_digest(std::string(64, 'a'));
  probe.models = std::vector<corral::v1::Model>{model};
  corral::v1::LoadedModel loaded;
  loaded.set_name("llama3.2:latest");
  loaded.set_size_vram(1000);
  loaded.set_expires_at("2025-01-01T00:00:00Z");
  probe.loaded_models = std::vector<corral::v1::LoadedModel>{loaded};
  ASSERT_TRUE(registry_->RecordProbe("gpu-1", probe, corral::v1::HEALTH_HEALTHY).ok());
  EXPECT_EQ(registry_->version(), 2u);
  auto node = registry_->GetNode("gpu-1");
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(node->node().health(), corral::v1::HEALTH_HEALTHY);
  ASSERT_EQ(node->node().models_size(), 1);
  EXPECT_EQ(node->node().models(0).digest(), std::string(64, 'a'));
  EXPECT_EQ(node->node().loaded_models(0).size_vram(), 1000);

  // Latency and expiry move on every probe: stored, no new snapshot.
  probe.latency_ms = 9;
  probe.loaded_models->at(0).set_expires_at("2025-01-01T00:05:00Z");
  ASSERT_TRUE(registry_->RecordProbe("gpu-1", probe, corral::v1::HEALTH_HEALTHY).ok());
  EXPECT_EQ(registry_->version(), 2u);
  EXPECT_EQ(registry_->GetNode("gpu-1")->node().latency_ms(), 9);

  // A failed round keeps the model lists (absent = unknown) and records the error.
  ProbeResult failed;
  failed.error = "connection refused";
  ASSERT_TRUE(registry_->RecordProbe("gpu-1", failed, corral::v1::HEALTH_UNHEALTHY).ok());
  EXPECT_EQ(registry_->version(), 3u);
  node = registry_->GetNode("gpu-1");
  EXPECT_EQ(node->node().models_size(), 1);
  EXPECT_EQ(node->last_error(), "connection refused");
  EXPECT_EQ(registry_->RecordProbe("nope", failed, corral::v1::HEALTH_UNHEALTHY).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RegistryTest, SnapshotHoldsEverythingRoutingNeeds) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("b", "http://10.0.0.2:11434")).ok());
  ASSERT_TRUE(registry_->CreateNode(NodeReq("a", "http://10.0.0.1:11434")).ok());
  corral::v1::InferenceToken token;
  token.set_name("team-a");
  token.set_sha256_hex(std::string(64, 'f'));
  token.add_models("registry.ollama.ai/library/llama3:latest");
  ASSERT_TRUE(registry_->AddInferenceToken(token).ok());
  EXPECT_EQ(registry_->AddInferenceToken(token).code(), absl::StatusCode::kAlreadyExists);
  auto snapshot = registry_->BuildSnapshot();
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->version(), 3u);
  ASSERT_EQ(snapshot->nodes_size(), 2);
  EXPECT_EQ(snapshot->nodes(0).name(), "a");
  ASSERT_EQ(snapshot->tokens_size(), 1);
  EXPECT_EQ(snapshot->tokens(0).models(0), "registry.ollama.ai/library/llama3:latest");
  EXPECT_FALSE(snapshot->created_at().empty());
}

corral::v1::InferenceToken TokenNamed(const std::string& name, char hash_char) {
  corral::v1::InferenceToken token;
  token.set_name(name);
  token.set_sha256_hex(std::string(64, hash_char));
  return token;
}

TEST_F(RegistryTest, AFreshFleetIsOpenAndItsFirstTokenClosesIt) {
  auto policy = registry_->GetTokenPolicy();
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_FALSE(policy->require_tokens());
  EXPECT_TRUE(policy->open());
  EXPECT_EQ(policy->token_count(), 0);
  EXPECT_FALSE(registry_->BuildSnapshot()->require_tokens());

  ASSERT_TRUE(registry_->AddInferenceToken(TokenNamed("ci", 'a')).ok());
  policy = registry_->GetTokenPolicy();
  EXPECT_TRUE(policy->require_tokens());
  EXPECT_FALSE(policy->open());
  EXPECT_EQ(policy->token_count(), 1);
  EXPECT_EQ(policy->snapshot_version(), registry_->version());
  EXPECT_TRUE(registry_->BuildSnapshot()->require_tokens());
}

TEST_F(RegistryTest, RevokingTheLastTokenKeepsTheFleetClosed) {
  ASSERT_TRUE(registry_->AddInferenceToken(TokenNamed("ci", 'a')).ok());
  ASSERT_TRUE(registry_->AddInferenceToken(TokenNamed("web", 'b')).ok());
  ASSERT_TRUE(registry_->RemoveInferenceToken("ci").ok());
  ASSERT_TRUE(registry_->RemoveInferenceToken("web").ok());
  auto policy = registry_->GetTokenPolicy();
  EXPECT_TRUE(policy->require_tokens());
  EXPECT_FALSE(policy->open());
  EXPECT_EQ(policy->token_count(), 0);
  auto snapshot = registry_->BuildSnapshot();
  EXPECT_TRUE(snapshot->require_tokens());
  EXPECT_EQ(snapshot->tokens_size(), 0);
}

TEST_F(RegistryTest, TokenPolicyIsSetExplicitlyAndBumpsOnlyOnChange) {
  const uint64_t v0 = registry_->version();
  auto on = registry_->SetRequireTokens(true);
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE(on->require_tokens());
  EXPECT_FALSE(on->open());  // closed with no token: every request needing one is refused
  EXPECT_EQ(on->snapshot_version(), v0 + 1);
  ASSERT_TRUE(registry_->SetRequireTokens(true).ok());
  EXPECT_EQ(registry_->version(), v0 + 1) << "no change, no new snapshot";

  // Off while tokens exist: the tokens still apply.
  ASSERT_TRUE(registry_->AddInferenceToken(TokenNamed("ci", 'a')).ok());
  auto off = registry_->SetRequireTokens(false);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->require_tokens());
  EXPECT_FALSE(off->open());
  // Off with no token: open. Revoking stays open now that the operator said so.
  ASSERT_TRUE(registry_->RemoveInferenceToken("ci").ok());
  EXPECT_TRUE(registry_->GetTokenPolicy()->open());
  EXPECT_FALSE(registry_->BuildSnapshot()->require_tokens());
}

TEST_F(RegistryTest, TokenPolicySurvivesReopen) {
  ASSERT_TRUE(registry_->SetRequireTokens(true).ok());
  registry_.reset();
  registry_ = Open();
  ASSERT_NE(registry_, nullptr);
  EXPECT_TRUE(registry_->GetTokenPolicy()->require_tokens());
  EXPECT_TRUE(registry_->BuildSnapshot()->require_tokens());
  ASSERT_TRUE(registry_->SetRequireTokens(false).ok());
  registry_.reset();
  registry_ = Open();
  EXPECT_FALSE(registry_->GetTokenPolicy()->require_tokens());
}

// Each snapshot that opens or closes the fleet is logged at WARN, once per change.
TEST_F(RegistryTest, SnapshotsThatOpenOrCloseTheFleetAreLogged) {
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(registry_->BuildSnapshot().ok());  // open from the start
  ASSERT_TRUE(registry_->BuildSnapshot().ok());
  ASSERT_TRUE(registry_->AddInferenceToken(TokenNamed("ci", 'a')).ok());
  ASSERT_TRUE(registry_->BuildSnapshot().ok());  // closes
  ASSERT_TRUE(registry_->RemoveInferenceToken("ci").ok());
  ASSERT_TRUE(registry_->BuildSnapshot().ok());  // still closed: required
  ASSERT_TRUE(registry_->SetRequireTokens(false).ok());
  ASSERT_TRUE(registry_->BuildSnapshot().ok());  // opens
  const std::string log = ::testing::internal::GetCapturedStderr();
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count("the fleet is open"), 1u) << log;
  EXPECT_EQ(count("closes the fleet"), 1u) << log;
  EXPECT_EQ(count("opens the fleet"), 1u) << log;
  EXPECT_EQ(count("WARN"), 3u) << log;
}

TEST_F(RegistryTest, DiscoveryConfigRoundTripsAndValidates) {
  corral::v1::SetDiscoveryRequest req;
  auto* r = req.add_ranges();
  r->set_host("127.0.0.1");
  r->set_port_from(11434);
  r->set_port_to(11440);
  req.set_interval_ms(5000);
  auto set = registry_->SetDiscovery(req);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->ranges_size(), 1);
  EXPECT_EQ(registry_->GetDiscovery()->interval_ms(), 5000);

  corral::v1::SetDiscoveryRequest bad = req;
  bad.mutable_ranges(0)->set_port_to(10);
  EXPECT_EQ(registry_->SetDiscovery(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = req;
  bad.mutable_ranges(0)->set_host("");
  EXPECT_EQ(registry_->SetDiscovery(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->GetDiscovery()->ranges(0).port_to(), 11440);
}

TEST_F(RegistryTest, VersionSurvivesReopen) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.5:11434")).ok());
  ASSERT_TRUE(registry_->RemoveNode("gpu-1").ok());
  EXPECT_EQ(registry_->version(), 2u);
  registry_.reset();
  registry_ = Open();
  ASSERT_NE(registry_, nullptr);
  EXPECT_EQ(registry_->version(), 2u);
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.5:11434")).ok());
  EXPECT_EQ(registry_->version(), 3u);  // never reuses 1 or 2
}

TEST_F(RegistryTest, ListenersSeeEveryBumpAfterCommit) {
  std::vector<uint64_t> seen;
  std::mutex mu;
  Registry* r = registry_.get();
  registry_->AddChangeListener([&](uint64_t v) {
    // After the commit: the registry already shows the new state, and may be called.
    EXPECT_EQ(r->version(), v);
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(v);
  });
  ASSERT_TRUE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.5:11434")).ok());
  EXPECT_FALSE(registry_->CreateNode(NodeReq("gpu-1", "http://10.0.0.6:11434")).ok());
  ASSERT_TRUE(registry_->SetAdminState("gpu-1", corral::v1::ADMIN_STATE_DISABLED).ok());
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2}));
}

TEST_F(RegistryTest, ConcurrentWritersNeverLoseWritesOrReuseVersions) {
  // Threads on one Registry plus a second Registry (connection) on the same file.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::mutex mu;
  std::vector<uint64_t> versions;
  for (Registry* r : {registry_.get(), other.get()}) {
    r->AddChangeListener([&](uint64_t v) {
      std::lock_guard<std::mutex> lock(mu);
      versions.push_back(v);
    });
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Registry* r = (t % 2 == 0) ? registry_.get() : other.get();
      for (int i = 0; i < kPerThread; ++i) {
        const std::string name = "n" + std::to_string(t) + "-" + std::to_string(i);
        const std::string url =
            "http://10.1." + std::to_string(t) + "." + std::to_string(i) + ":11434";
        if (!r->CreateNode(NodeReq(name, url)).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(NodeCount(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(registry_->version(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(other->version(), registry_->version());
  // Every commit got its own version: no duplicates, none skipped.
  std::set<uint64_t> unique(versions.begin(), versions.end());
  EXPECT_EQ(unique.size(), versions.size());
  EXPECT_EQ(*unique.begin(), 1u);
  EXPECT_EQ(*unique.rbegin(), static_cast<uint64_t>(kThreads * kPerThread));
}

// A database written by the first release (schema 1): no labels, no discovery.
// ---- usage ----

constexpr int64_t kHour0 = 1700000000 - 1700000000 % 3600;  // an hour start, Nov 2023
constexpr int64_t kNow = kHour0 + 5 * 3600 + 60;            // the registry's "now" in these tests

corral::v1::UsageEntry UsageAt(int64_t hour, const std::string& token, const std::string& model,
                               const std::string& node, uint64_t requests, uint64_t in,
                               uint64_t out, uint64_t errors = 0) {
  corral::v1::UsageEntry e;
  e.set_hour_start(hour);
  e.set_token(token);
  e.set_model(model);
  e.set_node(node);
  e.set_requests(requests);
  e.set_errors(errors);
  e.set_input_tokens(in);
  e.set_output_tokens(out);
  return e;
}

corral::v1::UsageBatch Batch(const std::string& instance, uint64_t sequence,
                             std::vector<corral::v1::UsageEntry> entries) {
  corral::v1::UsageBatch b;
  b.set_instance_id(instance);
  b.set_sequence(sequence);
  for (auto& e : entries) *b.add_entries() = std::move(e);
  return b;
}

std::string Row(const corral::v1::UsageRow& r) {
  return r.token() + "|" + r.model() + "|" + r.node() + " " + std::to_string(r.requests()) + "/" +
         std::to_string(r.errors()) + " " + std::to_string(r.input_tokens()) + "+" +
         std::to_string(r.output_tokens());
}

std::vector<std::string> Rows(Registry& r, Registry::UsageGrouping by, int64_t since = 0) {
  auto rows = r.GetUsage(by, since);
  EXPECT_TRUE(rows.ok()) << rows.status();
  std::vector<std::string> out;
  if (rows.ok()) {
    for (const auto& row : *rows) out.push_back(Row(row));
  }
  return out;
}

TEST_F(RegistryTest, UsageBatchIsAppliedOnceHoweverOftenItIsSent) {
  const uint64_t version = registry_->version();
  const auto batch =
      Batch("inst-a", 1, {UsageAt(kHour0, "alice", "llama3:latest", "gpu1", 2, 10, 20, 1)});
  auto applied = registry_->ApplyUsage("proxy-1", batch, nullptr, kNow);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_TRUE(*applied);
  // The same Report again (its answer was lost), then an older one arriving late: both are
  // acknowledged as applied without counting again.
  EXPECT_FALSE(*registry_->ApplyUsage("proxy-1", batch, nullptr, kNow));
  EXPECT_FALSE(*registry_->ApplyUsage("proxy-1", Batch("inst-a", 1, {}), nullptr, kNow));
  EXPECT_EQ(Rows(*registry_, Registry::UsageGrouping::kAll),
            std::vector<std::string>{"alice|llama3:latest|gpu1 2/1 10+20"});

  // The next sequence adds; another instance (the proxy restarted) starts its own sequence at 1.
  EXPECT_TRUE(*registry_->ApplyUsage(
      "proxy-1", Batch("inst-a", 2, {UsageAt(kHour0, "alice", "llama3:latest", "gpu1", 1, 1, 1)}),
      nullptr, kNow));
  EXPECT_TRUE(*registry_->ApplyUsage(
      "proxy-1", Batch("inst-b", 1, {UsageAt(kHour0, "alice", "llama3:latest", "gpu1", 1, 1, 1)}),
      nullptr, kNow));
  EXPECT_FALSE(*registry_->ApplyUsage("proxy-1", Batch("inst-a", 1, {}), nullptr, kNow));
  EXPECT_EQ(Rows(*registry_, Registry::UsageGrouping::kAll),
            std::vector<std::string>{"alice|llama3:latest|gpu1 4/1 12+22"});
  EXPECT_EQ(registry_->version(), version) << "usage is not routing state";
}

TEST_F(RegistryTest, UsageSurvivesReopenAndSoDoesTheAppliedSequence) {
  const auto batch = Batch("inst-a", 7, {UsageAt(kHour0, "", "qwen3:8b", "gpu2", 3, 30, 300)});
  ASSERT_TRUE(*registry_->ApplyUsage("proxy-1", batch, nullptr, kNow));
  registry_.reset();
  registry_ = Open();
  EXPECT_FALSE(*registry_->ApplyUsage("proxy-1", batch, nullptr, kNow))
      << "a retry after a control-plane restart must not count again";
  EXPECT_EQ(Rows(*registry_, Registry::UsageGrouping::kAll),
            std::vector<std::string>{"|qwen3:8b|gpu2 3/0 30+300"});
}

TEST_F(RegistryTest, UsageIsKeptPerHourAndSummedByEachKey) {
  ASSERT_TRUE(*registry_->ApplyUsage(
      "p",
      Batch("i", 1,
            {UsageAt(kHour0, "alice", "llama3:latest", "gpu1", 5, 50, 500),
             UsageAt(kHour0 + 1234, "alice", "llama3:latest", "gpu1", 1, 1, 1),  // same hour
             UsageAt(kHour0 + 3600, "alice", "qwen3:8b", "gpu2", 2, 20, 200),
             UsageAt(kHour0 + 3 * 3600, "bob", "llama3:latest", "gpu2", 4, 40, 400, 2),
             UsageAt(kHour0 + 5 * 3600, "", "llama3:latest", "gpu1", 1, 7, 0)}),
      nullptr, kNow));
  using G = Registry::UsageGrouping;
  EXPECT_EQ(Rows(*registry_, G::kToken),
            (std::vector<std::string>{"alice|| 8/0 71+701", "bob|| 4/2 40+400", "|| 1/0 7+0"}));
  EXPECT_EQ(Rows(*registry_, G::kModel),
            (std::vector<std::string>{"|llama3:latest| 11/2 98+901", "|qwen3:8b| 2/0 20+200"}));
  EXPECT_EQ(Rows(*registry_, G::kNode),
            (std::vector<std::string>{"||gpu1 7/0 58+501", "||gpu2 6/2 60+600"}));
  EXPECT_EQ(Rows(*registry_, G::kAll),
            (std::vector<std::string>{
                "alice|llama3:latest|gpu1 6/0 51+501", "bob|llama3:latest|gpu2 4/2 40+400",
                "alice|qwen3:8b|gpu2 2/0 20+200", "|llama3:latest|gpu1 1/0 7+0"}));
  // A window counts whole hours: from the hour its start falls in.
  EXPECT_EQ(Rows(*registry_, G::kToken, kHour0 + 3 * 3600 + 59),
            (std::vector<std::string>{"bob|| 4/2 40+400", "|| 1/0 7+0"}));
  EXPECT_EQ(Rows(*registry_, G::kToken, kHour0 + 5 * 3600),
            (std::vector<std::string>{"|| 1/0 7+0"}));
  EXPECT_TRUE(Rows(*registry_, G::kToken, kHour0 + 6 * 3600).empty());
}

TEST_F(RegistryTest, UsageBatchesAreValidatedAndBadEntriesSkipped) {
  EXPECT_EQ(registry_->ApplyUsage("p", Batch("", 1, {}), nullptr, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->ApplyUsage("p", Batch("i", 0, {}), nullptr, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  int skipped = 0;
  ASSERT_TRUE(
      *registry_->ApplyUsage("p",
                             Batch("i", 1,
                                   {UsageAt(-3600, "t", "m", "n", 1, 1, 1),
                                    UsageAt(kHour0, std::string(513, 'x'), "m", "n", 1, 1, 1),
                                    UsageAt(kHour0, "t", "m", "n", uint64_t{1} << 63, 1, 1),
                                    UsageAt(kHour0, "t", "m", "n", 1, 1, 1)}),
                             &skipped, kNow));
  EXPECT_EQ(skipped, 3);
  EXPECT_EQ(Rows(*registry_, Registry::UsageGrouping::kAll),
            std::vector<std::string>{"t|m|n 1/0 1+1"});
}

TEST_F(RegistryTest, UsageOlderThanTheRetentionIsDropped) {
  const int64_t old_hour = kHour0 - Registry::kUsageRetentionSeconds - 3600;
  ASSERT_TRUE(*registry_->ApplyUsage(
      "p",
      Batch("i", 1,
            {UsageAt(old_hour, "t", "m", "n", 1, 1, 1), UsageAt(kHour0, "t", "m", "n", 2, 2, 2)}),
      nullptr, kHour0));
  EXPECT_EQ(Rows(*registry_, Registry::UsageGrouping::kAll),
            std::vector<std::string>{"t|m|n 2/0 2+2"});
}

TEST(RegistryMigrationTest, OpensAndMigratesASchemaOneDatabase) {
  const std::string dir = corral::testing::MakeTempDir("registry-migrate");
  const std::string path = dir + "/corral.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const char* v1 = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('snapshot_version', 41);
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, url TEXT NOT NULL UNIQUE,
  admin_state INTEGER NOT NULL DEFAULT 1, health INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL DEFAULT 0, weight INTEGER NOT NULL DEFAULT 1,
  max_parallel INTEGER NOT NULL DEFAULT 0, max_memory_gb REAL NOT NULL DEFAULT 0,
  models TEXT NOT NULL DEFAULT '[]', loaded TEXT NOT NULL DEFAULT '[]',
  version TEXT NOT NULL DEFAULT '', latency_ms REAL NOT NULL DEFAULT 0,
  last_probe_at TEXT NOT NULL DEFAULT '', last_error TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE config (id INTEGER PRIMARY KEY CHECK (id = 1), strategy INTEGER NOT NULL,
  retry TEXT NOT NULL DEFAULT '{}', timeouts TEXT NOT NULL DEFAULT '{}');
INSERT INTO config (id, strategy) VALUES (1, 3);
CREATE TABLE inference_tokens (name TEXT PRIMARY KEY, sha256_hex TEXT NOT NULL UNIQUE,
  models TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL);
INSERT INTO nodes (name, url, admin_state, models, created_at, updated_at)
  VALUES ('old-1', 'http://10.0.0.1:11434', 2,
          '[{"name":"llama3:latest","size":"5","digest":"d"}]', '2024-01-01T00:00:00Z',
          '2024-01-01T00:00:00Z');
INSERT INTO inference_tokens (name, sha256_hex, created_at)
  VALUES ('old-token', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
          '2024-01-01T00:00:00Z');
PRAGMA user_version = 1;
)sql";
  ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto registry = Registry::Open(path);
  ASSERT_TRUE(registry.ok()) << registry.status();
  Registry& r = **registry;
  EXPECT_EQ(r.version(), 41u);  // the old version carries on
  auto node = r.GetNode("old-1");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->node().admin_state(), corral::v1::ADMIN_STATE_DRAINING);
  ASSERT_EQ(node->node().models_size(), 1);
  EXPECT_EQ(node->node().models(0).name(), "llama3:latest");
  EXPECT_TRUE(node->node().labels().empty());
  EXPECT_FALSE(node->discovered());
  EXPECT_EQ(r.GetStrategy()->strategy(), corral::v1::STRATEGY_ROUND_ROBIN);
  // Migration 3: a fleet that had a token is closed, so revoking it does not open the fleet.
  EXPECT_TRUE(r.GetTokenPolicy()->require_tokens());

  // What migration 2 added works on the old rows.
  corral::v1::UpdateNodeRequest label;
  label.set_name("old-1");
  (*label.mutable_set_labels())["gpu"] = "a100";
  ASSERT_TRUE(r.UpdateNode(label).ok());
  EXPECT_EQ(r.GetNode("old-1")->node().labels().at("gpu"), "a100");
  EXPECT_EQ(r.version(), 42u);
  corral::v1::SetDiscoveryRequest discovery;
  auto* range = discovery.add_ranges();
  range->set_host("10.0.0.1");
  range->set_port_from(11434);
  range->set_port_to(11435);
  ASSERT_TRUE(r.SetDiscovery(discovery).ok());

  // Migration 4: usage rollups start empty and take a batch.
  EXPECT_TRUE(r.GetUsage(Registry::UsageGrouping::kAll, 0)->empty());

  // Migration 5: old nodes have the default per-model slots, the fleet no routing rules, and
  // both can be set.
  EXPECT_EQ(r.GetNode("old-1")->node().num_parallel(), 0);
  auto rules = r.GetStrategy();
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ(rules->queue().max_length(), 0);
  EXPECT_TRUE(rules->placement().empty());
  EXPECT_TRUE(rules->aliases().empty());
  EXPECT_TRUE(rules->model_memory().empty());
  corral::v1::UpdateNodeRequest slots;
  slots.set_name("old-1");
  slots.set_num_parallel(4);
  ASSERT_TRUE(r.UpdateNode(slots).ok());
  EXPECT_EQ(r.GetNode("old-1")->node().num_parallel(), 4);
  corral::v1::SetStrategyRequest alias;
  alias.set_set_aliases(true);
  auto* a = alias.add_aliases();
  a->set_alias("fast");
  a->set_target("llama3");
  ASSERT_TRUE(r.SetStrategy(alias).ok());
  EXPECT_EQ(r.GetStrategy()->strategy(), corral::v1::STRATEGY_ROUND_ROBIN);  // kept

  // The file now says schema 5, and a newer schema than we know is refused.
  registry->reset();
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 5);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = Registry::Open(path);
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);
}

TEST(RegistryOpenTest, UnwritablePathIsAClearError) {
  auto r = Registry::Open("/nonexistent-dir/for/sure/corral.db");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent-dir/for/sure/corral.db"), std::string::npos);
}

}  // namespace
}  // namespace corral::control
