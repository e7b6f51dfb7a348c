// RoutingTable: what a snapshot must satisfy, and what the table derives from it.
#include "dataplane/routing_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <limits>
#include <string>

namespace corral::dataplane {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using v1::Node;
using v1::Snapshot;

constexpr char kSha[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

Node* AddNode(Snapshot& snapshot, const std::string& name, const std::string& url) {
  Node* node = snapshot.add_nodes();
  node->set_name(name);
  node->set_url(url);
  node->set_admin_state(v1::ADMIN_STATE_ENABLED);
  node->set_health(v1::HEALTH_HEALTHY);
  return node;
}

// Two healthy nodes and a token: the baseline every validation case breaks in one place.
Snapshot ValidSnapshot() {
  Snapshot snapshot;
  snapshot.set_version(7);
  AddNode(snapshot, "gpu-1", "http://10.0.0.1:11434");
  AddNode(snapshot, "gpu-2", "http://10.0.0.2:11434");
  auto* token = snapshot.add_tokens();
  token->set_name("ci");
  token->set_sha256_hex(kSha);
  return snapshot;
}

std::string ErrorOf(const Snapshot& snapshot) {
  absl::Status status = ValidateSnapshot(snapshot);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

std::shared_ptr<const RoutingTable> MustBuild(Snapshot snapshot) {
  auto table = RoutingTable::Build(std::move(snapshot));
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : nullptr;
}

// ---- validation ----

TEST(ValidateSnapshotTest, AcceptsAValidSnapshot) {
  EXPECT_TRUE(ValidateSnapshot(ValidSnapshot()).ok());
}

TEST(ValidateSnapshotTest, AcceptsAnEmptySnapshot) {
  EXPECT_TRUE(ValidateSnapshot(Snapshot()).ok());
}

TEST(ValidateSnapshotTest, AcceptsEveryNodeNameCharacterAndSixtyFourCharacters) {
  Snapshot snapshot;
  AddNode(snapshot, "A-z_0.9", "http://h:1");
  AddNode(snapshot, std::string(64, 'n'), "http://h:2");
  EXPECT_TRUE(ValidateSnapshot(snapshot).ok());
}

TEST(ValidateSnapshotTest, RejectsAnEmptyNodeNameByIndex) {
  Snapshot snapshot = ValidSnapshot();
  AddNode(snapshot, "", "http://h:1");
  AddNode(snapshot, "", "http://h:1");
  EXPECT_THAT(ErrorOf(snapshot), StartsWith("nodes[2]: name \"\" "));
}

TEST(ValidateSnapshotTest, RejectsANodeNameOverSixtyFourCharacters) {
  Snapshot snapshot;
  AddNode(snapshot, std::string(65, 'n'), "http://h:1");
  EXPECT_THAT(ErrorOf(snapshot), StartsWith("nodes[0]: name \"nnnn"));
}

TEST(ValidateSnapshotTest, RejectsANodeNameWithABadCharacter) {
  for (const char* name : {"gpu 1", "gpu/1", "gpu:1", "gpü", "a\nb"}) {
    Snapshot snapshot;
    AddNode(snapshot, name, "http://h:1");
    EXPECT_THAT(ErrorOf(snapshot), StartsWith("nodes[0]: name ")) << name;
  }
}

TEST(ValidateSnapshotTest, EscapesAControlCharacterInARejectedName) {
  Snapshot snapshot;
  AddNode(snapshot, "a\nb", "http://h:1");
  EXPECT_THAT(ErrorOf(snapshot), HasSubstr("\"a\\nb\""));
}

TEST(ValidateSnapshotTest, RejectsADuplicateNodeNameNamingTheFirstUse) {
  Snapshot snapshot = ValidSnapshot();
  AddNode(snapshot, "gpu-1", "http://10.0.0.3:11434");
  EXPECT_EQ(ErrorOf(snapshot), "nodes[2]: name \"gpu-1\" is already used by nodes[0]");
}

TEST(ValidateSnapshotTest, NodeNamesAreCaseSensitive) {
  Snapshot snapshot = ValidSnapshot();
  AddNode(snapshot, "GPU-1", "http://10.0.0.3:11434");
  EXPECT_TRUE(ValidateSnapshot(snapshot).ok());
}

TEST(ValidateSnapshotTest, RejectsABadUrlNamingTheNode) {
  for (const char* url :
       {"", "ftp://h:1", "http://h:1/api", "http://h:0", "http://h:70000", "http://:11434"}) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.mutable_nodes(1)->set_url(url);
    EXPECT_THAT(ErrorOf(snapshot), StartsWith("node \"gpu-2\": url: ")) << url;
  }
}

TEST(ValidateSnapshotTest, AcceptsTheUrlFormsParseNodeUrlAccepts) {
  for (const char* url : {"http://h:1", "h:1", "http://h", "http://h:1/", "http://[::1]:11434"}) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.mutable_nodes(0)->set_url(url);
    EXPECT_TRUE(ValidateSnapshot(snapshot).ok()) << url;
  }
}

TEST(ValidateSnapshotTest, RejectsAnUnspecifiedAdminState) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_admin_state(v1::ADMIN_STATE_UNSPECIFIED);
  EXPECT_EQ(ErrorOf(snapshot),
            "node \"gpu-1\": admin_state: must be ENABLED, DRAINING or DISABLED, got 0");
}

TEST(ValidateSnapshotTest, RejectsAnOutOfRangeAdminState) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(1)->set_admin_state(static_cast<v1::AdminState>(9));
  EXPECT_EQ(ErrorOf(snapshot),
            "node \"gpu-2\": admin_state: must be ENABLED, DRAINING or DISABLED, got 9");
}

TEST(ValidateSnapshotTest, AcceptsEveryKnownAdminStateAndHealth) {
  for (auto state : {v1::ADMIN_STATE_ENABLED, v1::ADMIN_STATE_DRAINING, v1::ADMIN_STATE_DISABLED}) {
    for (auto health : {v1::HEALTH_UNKNOWN, v1::HEALTH_HEALTHY, v1::HEALTH_UNHEALTHY}) {
      Snapshot snapshot = ValidSnapshot();
      snapshot.mutable_nodes(0)->set_admin_state(state);
      snapshot.mutable_nodes(0)->set_health(health);
      EXPECT_TRUE(ValidateSnapshot(snapshot).ok()) << state << " " << health;
    }
  }
}

TEST(ValidateSnapshotTest, RejectsAnOutOfRangeHealth) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_health(static_cast<v1::Health>(5));
  EXPECT_EQ(ErrorOf(snapshot), "node \"gpu-1\": health: unknown value 5");
}

TEST(ValidateSnapshotTest, RejectsNegativeNodeLimitsNamingTheField) {
  struct Case {
    const char* field;
    void (*set)(Node*);
  };
  const Case cases[] = {
      {"priority", [](Node* n) { n->set_priority(-1); }},
      {"weight", [](Node* n) { n->set_weight(-1); }},
      {"max_parallel", [](Node* n) { n->set_max_parallel(-1); }},
      {"max_memory_gb", [](Node* n) { n->set_max_memory_gb(-0.5); }},
      {"latency_ms", [](Node* n) { n->set_latency_ms(-2); }},
  };
  for (const auto& c : cases) {
    Snapshot snapshot = ValidSnapshot();
    c.set(snapshot.mutable_nodes(1));
    EXPECT_THAT(ErrorOf(snapshot), StartsWith(std::string("node \"gpu-2\": ") + c.field + ": "))
        << c.field;
  }
}

TEST(ValidateSnapshotTest, NegativeIntegerLimitSaysWhatItGot) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_max_parallel(-3);
  EXPECT_EQ(ErrorOf(snapshot), "node \"gpu-1\": max_parallel: must not be negative, got -3");
}

TEST(ValidateSnapshotTest, RejectsNonFiniteMemoryAndLatency) {
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.mutable_nodes(0)->set_max_memory_gb(bad);
    EXPECT_THAT(ErrorOf(snapshot), StartsWith("node \"gpu-1\": max_memory_gb: "));
    snapshot = ValidSnapshot();
    snapshot.mutable_nodes(0)->set_latency_ms(bad);
    EXPECT_THAT(ErrorOf(snapshot), StartsWith("node \"gpu-1\": latency_ms: "));
  }
}

TEST(ValidateSnapshotTest, AcceptsZeroForEveryLimit) {
  Snapshot snapshot = ValidSnapshot();
  Node* node = snapshot.mutable_nodes(0);
  node->set_priority(0);
  node->set_weight(0);
  node->set_max_parallel(0);
  node->set_max_memory_gb(0);
  snapshot.mutable_retry()->set_max_attempts(0);
  EXPECT_TRUE(ValidateSnapshot(snapshot).ok());
}

TEST(ValidateSnapshotTest, RejectsAnOutOfRangeStrategy) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.set_strategy(static_cast<v1::Strategy>(6));
  EXPECT_EQ(ErrorOf(snapshot), "strategy: unknown value 6");
  snapshot.set_strategy(static_cast<v1::Strategy>(-1));
  EXPECT_EQ(ErrorOf(snapshot), "strategy: unknown value -1");
}

TEST(ValidateSnapshotTest, AcceptsEveryKnownStrategy) {
  for (int s = v1::Strategy_MIN; s <= v1::Strategy_MAX; ++s) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.set_strategy(static_cast<v1::Strategy>(s));
    EXPECT_TRUE(ValidateSnapshot(snapshot).ok()) << s;
  }
}

TEST(ValidateSnapshotTest, MaxAttemptsIsBetweenZeroAndTen) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_retry()->set_max_attempts(10);
  EXPECT_TRUE(ValidateSnapshot(snapshot).ok());
  snapshot.mutable_retry()->set_max_attempts(11);
  EXPECT_EQ(ErrorOf(snapshot), "retry.max_attempts: must be between 0 and 10, got 11");
  snapshot.mutable_retry()->set_max_attempts(-1);
  EXPECT_EQ(ErrorOf(snapshot), "retry.max_attempts: must be between 0 and 10, got -1");
}

TEST(ValidateSnapshotTest, RejectsNegativeRetryAndTimeoutValuesNamingTheField) {
  struct Case {
    const char* field;
    void (*set)(Snapshot*);
  };
  const Case cases[] = {
      {"retry.eject_after_failures",
       [](Snapshot* s) { s->mutable_retry()->set_eject_after_failures(-1); }},
      {"retry.eject_base_ms", [](Snapshot* s) { s->mutable_retry()->set_eject_base_ms(-1); }},
      {"retry.eject_max_ms", [](Snapshot* s) { s->mutable_retry()->set_eject_max_ms(-1); }},
      {"timeouts.connect_ms", [](Snapshot* s) { s->mutable_timeouts()->set_connect_ms(-1); }},
      {"timeouts.first_byte_ms", [](Snapshot* s) { s->mutable_timeouts()->set_first_byte_ms(-1); }},
      {"timeouts.idle_ms", [](Snapshot* s) { s->mutable_timeouts()->set_idle_ms(-1); }},
  };
  for (const auto& c : cases) {
    Snapshot snapshot = ValidSnapshot();
    c.set(&snapshot);
    EXPECT_EQ(ErrorOf(snapshot), std::string(c.field) + ": must not be negative, got -1");
  }
}

TEST(ValidateSnapshotTest, RejectsATokenHashThatIsNotSixtyFourHexDigits) {
  for (const std::string& bad :
       {std::string(), std::string(kSha).substr(1), std::string(kSha) + "0",
        "g" + std::string(kSha).substr(1), std::string("the token itself")}) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.mutable_tokens(0)->set_sha256_hex(bad);
    EXPECT_THAT(ErrorOf(snapshot), StartsWith("tokens[0] \"ci\": sha256_hex: must be 64 lower-case hex"))
        << bad;
  }
}

// The front door compares hashes byte for byte, as the registry writes them: an upper-case hash
// would be applied and then match no token.
TEST(ValidateSnapshotTest, RejectsUpperCaseHexInATokenHash) {
  Snapshot snapshot = ValidSnapshot();
  std::string upper = kSha;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  snapshot.mutable_tokens(0)->set_sha256_hex(upper);
  EXPECT_THAT(ErrorOf(snapshot), StartsWith("tokens[0] \"ci\": sha256_hex: must be 64 lower-case"));
}

TEST(ValidateSnapshotTest, ReportsTheFirstOffendingNode) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_weight(-1);
  snapshot.mutable_nodes(1)->set_url("nope://");
  EXPECT_THAT(ErrorOf(snapshot), StartsWith("node \"gpu-1\": weight: "));
}

TEST(RoutingTableTest, BuildFailsWithTheValidationStatus) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_priority(-4);
  auto table = RoutingTable::Build(snapshot);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status(), ValidateSnapshot(snapshot));
}

// ---- what Build derives ----

TEST(RoutingTableTest, KeepsTheSnapshotAndItsVersion) {
  auto table = MustBuild(ValidSnapshot());
  ASSERT_TRUE(table);
  EXPECT_EQ(table->version(), 7u);
  EXPECT_EQ(table->snapshot().nodes_size(), 2);
  EXPECT_EQ(table->snapshot().tokens(0).name(), "ci");
}

TEST(RoutingTableTest, NodesKeepSnapshotOrderAndPointIntoTheSnapshot) {
  Snapshot snapshot = ValidSnapshot();
  AddNode(snapshot, "cpu-0", "10.0.0.9:8080");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  ASSERT_EQ(table->nodes().size(), 3u);
  EXPECT_EQ(table->nodes()[0].name, "gpu-1");
  EXPECT_EQ(table->nodes()[1].name, "gpu-2");
  EXPECT_EQ(table->nodes()[2].name, "cpu-0");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(table->nodes()[i].proto, &table->snapshot().nodes(i));
  }
}

TEST(RoutingTableTest, HostAndPortComeFromTheUrl) {
  Snapshot snapshot;
  AddNode(snapshot, "a", "http://gpu-a.lan:11434");
  AddNode(snapshot, "b", "10.1.2.3:8080");
  AddNode(snapshot, "c", "http://gpu-c");
  AddNode(snapshot, "d", "http://[::1]:9000/");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_EQ(table->nodes()[0].host, "gpu-a.lan");
  EXPECT_EQ(table->nodes()[0].port, 11434);
  EXPECT_EQ(table->nodes()[1].host, "10.1.2.3");
  EXPECT_EQ(table->nodes()[1].port, 8080);
  EXPECT_EQ(table->nodes()[2].host, "gpu-c");
  EXPECT_EQ(table->nodes()[2].port, 80);
  EXPECT_EQ(table->nodes()[3].host, "::1");
  EXPECT_EQ(table->nodes()[3].port, 9000);
}

TEST(RoutingTableTest, EndpointAndHostHeaderAuthorityComeFromHostAndPort) {
  Snapshot snapshot;
  AddNode(snapshot, "a", "http://gpu-a.lan:11434");
  AddNode(snapshot, "d", "http://[::1]:9000/");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_EQ(table->nodes()[0].endpoint, "gpu-a.lan:11434");
  EXPECT_EQ(table->nodes()[0].authority, "gpu-a.lan:11434");
  EXPECT_EQ(table->nodes()[1].endpoint, "::1:9000");
  EXPECT_EQ(table->nodes()[1].authority, "[::1]:9000");
}

TEST(RoutingTableTest, RoutableIsAdminEnabledAndNotUnhealthy) {
  struct Case {
    v1::AdminState state;
    v1::Health health;
    bool routable;
  };
  const Case cases[] = {
      {v1::ADMIN_STATE_ENABLED, v1::HEALTH_HEALTHY, true},
      {v1::ADMIN_STATE_ENABLED, v1::HEALTH_UNKNOWN, true},  // a fresh fleet serves at once
      {v1::ADMIN_STATE_ENABLED, v1::HEALTH_UNHEALTHY, false},
      {v1::ADMIN_STATE_DRAINING, v1::HEALTH_HEALTHY, false},
      {v1::ADMIN_STATE_DRAINING, v1::HEALTH_UNKNOWN, false},
      {v1::ADMIN_STATE_DRAINING, v1::HEALTH_UNHEALTHY, false},
      {v1::ADMIN_STATE_DISABLED, v1::HEALTH_HEALTHY, false},
      {v1::ADMIN_STATE_DISABLED, v1::HEALTH_UNKNOWN, false},
      {v1::ADMIN_STATE_DISABLED, v1::HEALTH_UNHEALTHY, false},
  };
  for (const auto& c : cases) {
    Snapshot snapshot;
    Node* node = AddNode(snapshot, "n", "http://h:1");
    node->set_admin_state(c.state);
    node->set_health(c.health);
    auto table = MustBuild(snapshot);
    ASSERT_TRUE(table);
    EXPECT_EQ(table->nodes()[0].routable, c.routable)
        << v1::AdminState_Name(c.state) << " " << v1::Health_Name(c.health);
  }
}

TEST(RoutingTableTest, FindNodeByExactName) {
  auto table = MustBuild(ValidSnapshot());
  ASSERT_TRUE(table);
  ASSERT_NE(table->FindNode("gpu-2"), nullptr);
  EXPECT_EQ(table->FindNode("gpu-2")->name, "gpu-2");
  EXPECT_EQ(table->FindNode("gpu-2"), &table->nodes()[1]);
  EXPECT_EQ(table->FindNode("GPU-2"), nullptr);
  EXPECT_EQ(table->FindNode("gpu-3"), nullptr);
  EXPECT_EQ(table->FindNode(""), nullptr);
}

TEST(RoutingTableTest, IndexesInstalledModelsByCanonicalKey) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->add_models()->set_name("llama3.2:latest");
  snapshot.mutable_nodes(0)->add_models()->set_name("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M");
  snapshot.mutable_nodes(1)->add_models()->set_name("LLaMA3.2");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_THAT(table->nodes()[0].model_keys,
              UnorderedElementsAre("registry.ollama.ai/library/llama3.2:latest",
                                   "hf.co/bartowski/llama-3.2-1b-gguf:q4_k_m"));
  EXPECT_THAT(table->nodes()[0].loaded_keys, IsEmpty());
  EXPECT_EQ(table->NodesWithModel("registry.ollama.ai/library/llama3.2:latest"),
            (std::vector<size_t>{0, 1}));
  EXPECT_EQ(table->NodesWithModel("hf.co/bartowski/llama-3.2-1b-gguf:q4_k_m"),
            (std::vector<size_t>{0}));
}

TEST(RoutingTableTest, EquivalentSpellingsOnOneNodeIndexItOnce) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(1)->add_models()->set_name("llama3");
  snapshot.mutable_nodes(1)->add_models()->set_name("library/llama3:latest");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_EQ(table->NodesWithModel("registry.ollama.ai/library/llama3:latest"),
            (std::vector<size_t>{1}));
}

TEST(RoutingTableTest, DifferentTagsAreDifferentModels) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->add_models()->set_name("llama3:8b");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_THAT(table->NodesWithModel("registry.ollama.ai/library/llama3:latest"), IsEmpty());
  EXPECT_EQ(table->NodesWithModel("registry.ollama.ai/library/llama3:8b"),
            (std::vector<size_t>{0}));
}

TEST(RoutingTableTest, LoadedModelsAreIndexedAndMarkedWarm) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->add_models()->set_name("qwen3:4b");
  snapshot.mutable_nodes(0)->add_loaded_models()->set_name("qwen3:4b");
  // Loaded but missing from the tag list (the two are probed at different instants).
  snapshot.mutable_nodes(1)->add_loaded_models()->set_name("Qwen3:4B");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  const std::string key = "registry.ollama.ai/library/qwen3:4b";
  EXPECT_THAT(table->nodes()[0].loaded_keys, UnorderedElementsAre(key));
  EXPECT_THAT(table->nodes()[1].loaded_keys, UnorderedElementsAre(key));
  EXPECT_THAT(table->nodes()[1].model_keys, UnorderedElementsAre(key));
  EXPECT_EQ(table->NodesWithModel(key), (std::vector<size_t>{0, 1}));
}

TEST(RoutingTableTest, SkipsModelNamesThatDoNotParse) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->add_models()->set_name("");
  snapshot.mutable_nodes(0)->add_models()->set_name("bad name!");
  snapshot.mutable_nodes(0)->add_models()->set_name("ok");
  snapshot.mutable_nodes(0)->add_loaded_models()->set_name(":x");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_THAT(table->nodes()[0].model_keys,
              UnorderedElementsAre("registry.ollama.ai/library/ok:latest"));
  EXPECT_THAT(table->nodes()[0].loaded_keys, IsEmpty());
}

TEST(RoutingTableTest, NodesWithModelListsNonRoutableNodesToo) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.mutable_nodes(0)->set_admin_state(v1::ADMIN_STATE_DISABLED);
  snapshot.mutable_nodes(0)->add_models()->set_name("m");
  snapshot.mutable_nodes(1)->set_health(v1::HEALTH_UNHEALTHY);
  snapshot.mutable_nodes(1)->add_models()->set_name("m");
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  EXPECT_EQ(table->NodesWithModel("registry.ollama.ai/library/m:latest"),
            (std::vector<size_t>{0, 1}));
}

TEST(RoutingTableTest, NodesWithModelIsEmptyForAnUnknownKey) {
  auto table = MustBuild(ValidSnapshot());
  ASSERT_TRUE(table);
  EXPECT_THAT(table->NodesWithModel("registry.ollama.ai/library/nothing:latest"), IsEmpty());
  EXPECT_THAT(table->NodesWithModel(""), IsEmpty());
  // The same empty vector each time: callers may hold the reference.
  EXPECT_EQ(&table->NodesWithModel("a"), &table->NodesWithModel("b"));
}

// ---- policy defaults (snapshot.proto) ----

TEST(EffectivePolicyTest, ZeroValuesMeanTheDocumentedDefaults) {
  auto table = MustBuild(ValidSnapshot());
  ASSERT_TRUE(table);
  const EffectivePolicy& policy = table->policy();
  EXPECT_EQ(policy.strategy, v1::STRATEGY_LEAST_ACTIVE);
  EXPECT_EQ(policy.max_attempts, 3);
  EXPECT_EQ(policy.eject_after_failures, 3);
  EXPECT_EQ(policy.eject_base_ms, 5000);
  EXPECT_EQ(policy.eject_max_ms, 60000);
  EXPECT_EQ(policy.connect_ms, 2000);
  EXPECT_EQ(policy.first_byte_ms, 600000);
  EXPECT_EQ(policy.idle_ms, 300000);
}

TEST(EffectivePolicyTest, SetValuesWin) {
  Snapshot snapshot = ValidSnapshot();
  snapshot.set_strategy(v1::STRATEGY_WEIGHTED);
  snapshot.mutable_retry()->set_max_attempts(1);
  snapshot.mutable_retry()->set_eject_after_failures(5);
  snapshot.mutable_retry()->set_eject_base_ms(100);
  snapshot.mutable_retry()->set_eject_max_ms(800);
  snapshot.mutable_timeouts()->set_connect_ms(50);
  snapshot.mutable_timeouts()->set_first_byte_ms(1000);
  snapshot.mutable_timeouts()->set_idle_ms(2000);
  auto table = MustBuild(snapshot);
  ASSERT_TRUE(table);
  const EffectivePolicy& policy = table->policy();
  EXPECT_EQ(policy.strategy, v1::STRATEGY_WEIGHTED);
  EXPECT_EQ(policy.max_attempts, 1);
  EXPECT_EQ(policy.eject_after_failures, 5);
  EXPECT_EQ(policy.eject_base_ms, 100);
  EXPECT_EQ(policy.eject_max_ms, 800);
  EXPECT_EQ(policy.connect_ms, 50);
  EXPECT_EQ(policy.first_byte_ms, 1000);
  EXPECT_EQ(policy.idle_ms, 2000);
}

TEST(EffectivePolicyTest, EachStrategyIsKept) {
  for (auto strategy : {v1::STRATEGY_LEAST_ACTIVE, v1::STRATEGY_LOWEST_LATENCY,
                        v1::STRATEGY_ROUND_ROBIN, v1::STRATEGY_WEIGHTED, v1::STRATEGY_PRIORITY}) {
    Snapshot snapshot = ValidSnapshot();
    snapshot.set_strategy(strategy);
    auto table = MustBuild(snapshot);
    ASSERT_TRUE(table);
    EXPECT_EQ(table->policy().strategy, strategy);
  }
}

}  // namespace
}  // namespace corral::dataplane
