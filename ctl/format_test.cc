#include "ctl/format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace corral::ctl {
namespace {

namespace v1 = corral::v1;

v1::NodeInfo MakeNode(const std::string& name, v1::Health health) {
  v1::NodeInfo info;
  auto* n = info.mutable_node();
  n->set_name(name);
  n->set_url("http://127.0.0.1:11435");
  n->set_admin_state(v1::ADMIN_STATE_ENABLED);
  n->set_health(health);
  n->set_priority(1);
  n->set_max_parallel(4);
  n->set_latency_ms(1.234);
  auto* m = n->add_models();
  m->set_name("llama3.2:latest");
  m->set_size(2019393189);
  m->set_digest("a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72");
  n->add_models()->set_name("qwen3:8b");
  n->add_loaded_models()->set_name("llama3.2:latest");
  (*n->mutable_labels())["zone"] = "a";
  info.set_in_flight(3);
  return info;
}

TEST(FormatTest, TableAlignsColumns) {
  std::string t = RenderTable({"A", "LONGER"}, {{"wide-cell", "x"}, {"b", "yy"}});
  EXPECT_EQ(t,
            "A          LONGER\n"
            "wide-cell  x\n"
            "b          yy\n");
}

v1::UsageRow UsageRowOf(const std::string& token, const std::string& model, const std::string& node,
                        uint64_t requests, uint64_t in, uint64_t out) {
  v1::UsageRow r;
  r.set_token(token);
  r.set_model(model);
  r.set_node(node);
  r.set_requests(requests);
  r.set_input_tokens(in);
  r.set_output_tokens(out);
  return r;
}

TEST(FormatTest, UsageByTokenWithTotalAndNoToken) {
  v1::GetUsageResponse usage;
  usage.set_by("token");
  usage.set_window_start(1700000000 - 1700000000 % 3600);
  *usage.add_rows() = UsageRowOf("alice", "", "", 12, 1200, 3400);
  *usage.add_rows() = UsageRowOf("", "", "", 3, 30, 40);
  *usage.mutable_total() = UsageRowOf("", "", "", 15, 1230, 3440);
  usage.mutable_rows(0)->set_errors(2);
  usage.mutable_total()->set_errors(2);
  EXPECT_EQ(FormatUsage(usage),
            "usage since 2023-11-14 22:00 UTC, by token\n"
            "\n"
            "TOKEN   REQUESTS  ERRORS  INPUT_TOKENS  OUTPUT_TOKENS\n"
            "alice   12        2       1200          3400\n"
            "(none)  3         0       30            40\n"
            "TOTAL   15        2       1230          3440\n");
}

TEST(FormatTest, UsageByAllKeysAndEmpty) {
  v1::GetUsageResponse usage;
  usage.set_by("all");
  *usage.add_rows() = UsageRowOf("bob", "llama3:latest", "gpu1", 1, 2, 3);
  *usage.mutable_total() = UsageRowOf("", "", "", 1, 2, 3);
  const std::string out = FormatUsage(usage);
  EXPECT_EQ(out.substr(0, out.find('\n')), "all usage kept, by token, model and node");
  EXPECT_NE(out.find("TOKEN  MODEL          NODE  REQUESTS"), std::string::npos) << out;
  EXPECT_NE(out.find("bob    llama3:latest  gpu1  1"), std::string::npos) << out;

  v1::GetUsageResponse by_node;
  by_node.set_by("node");
  EXPECT_EQ(FormatUsage(by_node), "all usage kept, by node\nno requests recorded\n");
  *by_node.add_rows() = UsageRowOf("", "", "gpu2", 4, 0, 0);
  *by_node.mutable_total() = UsageRowOf("", "", "", 4, 0, 0);
  EXPECT_NE(FormatUsage(by_node).find("TOTAL  4"), std::string::npos) << FormatUsage(by_node);

  // --json is the API's own answer: snake_case names, 64-bit counts as strings.
  const std::string json = ToJson(usage);
  EXPECT_NE(json.find("\"input_tokens\":\"2\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"by\":\"all\""), std::string::npos) << json;
}

TEST(FormatTest, NodeListHasTheDesignedColumns) {
  v1::ListNodesResponse list;
  *list.add_nodes() = MakeNode("gpu1", v1::HEALTH_HEALTHY);
  *list.add_nodes() = MakeNode("gpu2-long-name", v1::HEALTH_UNHEALTHY);
  std::string out = FormatNodeList(list);
  EXPECT_EQ(out.substr(0, out.find('\n')).find("NAME"), 0u);
  std::string header = out.substr(0, out.find('\n'));
  size_t pos = 0;
  for (const char* col : {"NAME", "URL", "STATE", "HEALTH", "PRIORITY", "WEIGHT", "MAX_PAR",
                          "NUM_PAR", "MODELS", "LOADED", "LATENCY", "INFLIGHT"}) {
    size_t at = header.find(col, pos);
    ASSERT_NE(at, std::string::npos) << col << " in " << header;
    pos = at + 1;
  }
  EXPECT_NE(out.find("gpu1            http://127.0.0.1:11435  enabled  healthy"), std::string::npos)
      << out;
  EXPECT_NE(out.find("unhealthy"), std::string::npos);
  EXPECT_NE(out.find("1.23ms"), std::string::npos) << out;
  EXPECT_EQ(FormatNodeList(v1::ListNodesResponse()), "no nodes registered\n");
}

TEST(FormatTest, NodeDetailShowsLimitsLabelsAndModels) {
  std::string out = FormatNodeDetail(MakeNode("gpu1", v1::HEALTH_HEALTHY));
  EXPECT_NE(out.find("name:"), std::string::npos);
  EXPECT_NE(out.find("healthy (active pool)"), std::string::npos) << out;
  EXPECT_NE(out.find("zone=a"), std::string::npos);
  EXPECT_NE(out.find("max parallel:     4"), std::string::npos) << out;
  EXPECT_NE(out.find("num parallel:     1 (default)"), std::string::npos) << out;
  v1::NodeInfo four = MakeNode("gpu1", v1::HEALTH_HEALTHY);
  four.mutable_node()->set_num_parallel(4);
  EXPECT_NE(FormatNodeDetail(four).find("num parallel:     4 per model"), std::string::npos);
  EXPECT_NE(out.find("llama3.2:latest  2.0 GB  a80c4f17acd5  loaded"), std::string::npos) << out;
}

TEST(FormatTest, StateShowsVersionPoolsAndModels) {
  v1::FleetState state;
  state.set_snapshot_version(42);
  state.mutable_strategy()->set_strategy(v1::STRATEGY_ROUND_ROBIN);
  *state.add_nodes() = MakeNode("gpu1", v1::HEALTH_HEALTHY);
  *state.add_nodes() = MakeNode("gpu2", v1::HEALTH_UNHEALTHY);
  std::string out = FormatFleetState(state);
  EXPECT_NE(out.find("snapshot version 42, strategy round_robin, 2 nodes (1 active, 1 standby)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("gpu2  standby"), std::string::npos) << out;
  EXPECT_NE(out.find("llama3.2:latest,qwen3:8b"), std::string::npos) << out;
}

TEST(FormatTest, StrategyShowsDefaultsForZero) {
  v1::StrategyConfig config;
  config.set_strategy(v1::STRATEGY_PRIORITY);
  config.mutable_retry()->set_max_attempts(2);
  std::string out = FormatStrategy(config);
  EXPECT_NE(out.find("strategy:           priority"), std::string::npos) << out;
  EXPECT_NE(out.find("max attempts:       2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("first byte timeout: 600000 ms (default)"), std::string::npos) << out;
}

TEST(FormatTest, NodeListShowsNumParallelBesideMaxParallel) {
  v1::ListNodesResponse list;
  *list.add_nodes() = MakeNode("gpu1", v1::HEALTH_HEALTHY);  // max 4, num_parallel unset = 1
  v1::NodeInfo two = MakeNode("gpu2", v1::HEALTH_HEALTHY);
  two.mutable_node()->set_num_parallel(2);
  *list.add_nodes() = two;
  std::string out = FormatNodeList(list);
  EXPECT_NE(out.find("MAX_PAR  NUM_PAR"), std::string::npos) << out;
  EXPECT_NE(out.find("4        1        2"), std::string::npos) << out;  // gpu1: 2 models
  EXPECT_NE(out.find("4        2        2"), std::string::npos) << out;
}

TEST(FormatTest, StrategyShowsTheQueueAndRuleCounts) {
  v1::StrategyConfig config;
  std::string out = FormatStrategy(config);
  EXPECT_NE(out.find("queue:              on\n"), std::string::npos) << out;
  EXPECT_NE(out.find("queue length:       1024 requests (default)"), std::string::npos) << out;
  EXPECT_NE(out.find("queue wait:         30000 ms (default)"), std::string::npos) << out;
  EXPECT_NE(out.find("placement rules:    0"), std::string::npos) << out;
  config.mutable_queue()->set_disabled(true);
  config.mutable_queue()->set_max_length(16);
  config.add_aliases()->set_alias("fast");
  out = FormatStrategy(config);
  EXPECT_NE(out.find("queue:              off"), std::string::npos) << out;
  EXPECT_NE(out.find("queue length:       16 requests\n"), std::string::npos) << out;
  EXPECT_NE(out.find("aliases:            1"), std::string::npos) << out;
}

TEST(FormatTest, PlacementAliasAndMemoryLists) {
  v1::StrategyConfig config;
  EXPECT_EQ(FormatPlacement(config), "no placement rules: every model may run on any node\n");
  EXPECT_EQ(FormatAliases(config), "no model aliases\n");
  EXPECT_EQ(FormatModelMemory(config),
            "no model memory rules: models' sizes come from the nodes\n");
  auto* hard = config.add_placement();
  hard->set_pattern("llama3:70b*");
  hard->add_nodes("gpu-big");
  hard->add_nodes("gpu-big2");
  hard->set_hard(true);
  auto* soft = config.add_placement();
  soft->set_pattern("qwen*");
  (*soft->mutable_labels())["zone"] = "b";
  (*soft->mutable_labels())["gpu"] = "a100";
  EXPECT_EQ(FormatPlacement(config),
            "PATTERN      MODE  NODES             LABELS\n"
            "llama3:70b*  hard  gpu-big,gpu-big2  -\n"
            "qwen*        soft  -                 gpu=a100,zone=b\n");
  auto* alias = config.add_aliases();
  alias->set_alias("fast");
  alias->set_target("llama3.2:1b");
  EXPECT_EQ(FormatAliases(config), "ALIAS  TARGET\nfast   llama3.2:1b\n");
  auto* memory = config.add_model_memory();
  memory->set_pattern("*:70b*");
  memory->set_memory_gb(42.5);
  EXPECT_EQ(FormatModelMemory(config), "PATTERN  MEMORY\n*:70b*   42.5 GB\n");

  // --json is the StrategyConfig the API answers with: every list under its proto name, and the
  // policies, which the control plane always fills in.
  config.mutable_queue();
  auto json = nlohmann::json::parse(ToJson(config));
  EXPECT_EQ(json["placement"][0]["pattern"], "llama3:70b*");
  EXPECT_EQ(json["placement"][0]["hard"], true);
  EXPECT_EQ(json["placement"][1]["labels"]["gpu"], "a100");
  EXPECT_EQ(json["aliases"][0]["target"], "llama3.2:1b");
  EXPECT_EQ(json["model_memory"][0]["memory_gb"], 42.5);
  EXPECT_EQ(json["queue"]["max_length"], 0);
  EXPECT_EQ(json["queue"]["max_wait_ms"], "0");
  EXPECT_EQ(json["queue"]["disabled"], false);
}

TEST(FormatTest, ModelsProxiesDiscoveryAndPull) {
  v1::ListModelsResponse models;
  auto* m = models.add_models();
  m->set_name("llama3.2:latest");
  auto* a = m->add_locations();
  a->set_node("gpu1");
  a->set_size(2000000000);
  a->set_loaded(true);
  m->add_locations()->set_node("gpu2");
  std::string out = FormatModels(models);
  EXPECT_NE(out.find("llama3.2:latest  2.0 GB  gpu1,gpu2  gpu1"), std::string::npos) << out;

  v1::ListProxiesResponse proxies;
  proxies.set_snapshot_version(7);
  auto* p = proxies.add_proxies();
  p->set_id("edge-1");
  p->set_applied_version(7);
  p->set_connected(true);
  out = FormatProxies(proxies);
  EXPECT_NE(out.find("snapshot version 7, 1 proxy"), std::string::npos) << out;
  EXPECT_NE(out.find("edge-1  -     yes        7        yes"), std::string::npos) << out;

  v1::DiscoveryConfig discovery;
  EXPECT_EQ(FormatDiscovery(discovery), "discovery off\n");
  auto* r = discovery.add_ranges();
  r->set_host("::1");
  r->set_port_from(1);
  r->set_port_to(5);
  EXPECT_NE(FormatDiscovery(discovery).find("[::1]:1-5"), std::string::npos);

  v1::PullProgress progress;
  progress.set_node("gpu1");
  progress.set_status("pulling 6a0746a1ec1a");
  progress.set_total(1000);
  progress.set_completed(500);
  EXPECT_EQ(FormatPullProgress(progress), "gpu1: pulling 6a0746a1ec1a  50% (500 B / 1.0 KB)\n");
  progress.set_error("pull model manifest: file does not exist");
  EXPECT_EQ(FormatPullProgress(progress),
            "gpu1: error: pull model manifest: file does not exist\n");
}

TEST(FormatTest, Tokens) {
  EXPECT_EQ(FormatTokens(v1::ListTokensResponse()),
            "no inference tokens\nrequire_tokens: off (OPEN: proxies serve every request without "
            "a token)\n");
  v1::ListTokensResponse required;
  required.set_require_tokens(true);
  EXPECT_NE(FormatTokens(required).find("require_tokens: on (closed: no token is defined, so "
                                        "proxies refuse every request that needs one)"),
            std::string::npos)
      << FormatTokens(required);
  v1::ListTokensResponse list;
  auto* t = list.add_tokens();
  t->set_name("team-a");
  t->set_sha256_hex(std::string(64, 'a'));
  t->add_models("llama3.2:latest");
  std::string out = FormatTokens(list);
  EXPECT_NE(out.find("team-a  aaaaaaaaaaaaaaaa  llama3.2:latest"), std::string::npos) << out;
  EXPECT_NE(out.find("require_tokens: off (closed: proxies require one of the tokens)"),
            std::string::npos)
      << out;

  v1::CreateTokenResponse created;
  created.mutable_token()->set_name("ci");
  created.set_token_text("0123abcd");
  created.set_snapshot_version(9);
  out = FormatTokenCreated(created);
  EXPECT_NE(out.find("token \"ci\" created (models: all; snapshot version 9)\n0123abcd\n"),
            std::string::npos)
      << out;
}

TEST(FormatTest, TokenPolicy) {
  v1::TokenPolicy policy;
  policy.set_snapshot_version(12);
  policy.set_open(true);
  EXPECT_EQ(FormatTokenPolicy(policy),
            "require_tokens: off (OPEN: proxies serve every request without a token)\n"
            "snapshot version 12\n");
  policy.set_require_tokens(true);
  policy.set_open(false);
  policy.set_token_count(2);
  EXPECT_EQ(
      FormatTokenPolicy(policy),
      "require_tokens: on (closed: proxies require one of the tokens)\nsnapshot version 12\n");
  // --json: the stable field names, defaults included.
  auto json = nlohmann::json::parse(ToJson(v1::ListTokensResponse()));
  EXPECT_EQ(json["require_tokens"], false);
  EXPECT_EQ(json["open"], false);
  EXPECT_TRUE(json["tokens"].is_array());
}

TEST(FormatTest, JsonKeepsProtoFieldNamesAndPrintsDefaults) {
  v1::NodeInfo info = MakeNode("gpu1", v1::HEALTH_HEALTHY);
  std::string text = ToJson(info);
  ASSERT_EQ(text.back(), '\n');
  auto json = nlohmann::json::parse(text);
  EXPECT_EQ(json["node"]["name"], "gpu1");
  EXPECT_EQ(json["node"]["admin_state"], "ADMIN_STATE_ENABLED");
  EXPECT_EQ(json["node"]["health"], "HEALTH_HEALTHY");
  EXPECT_EQ(json["node"]["max_parallel"], 4);
  EXPECT_EQ(json["node"]["num_parallel"], 0);
  EXPECT_EQ(json["node"]["weight"], 0);  // printed although default
  EXPECT_EQ(json["last_error"], "");     // printed although empty
  EXPECT_EQ(json["in_flight"], "3");     // int64 is a string in protobuf's JSON
  EXPECT_EQ(json["node"]["models"][0]["size"], "2019393189");
  EXPECT_EQ(text.find('\n'), text.size() - 1);  // one line

  v1::FleetState empty;
  auto state = nlohmann::json::parse(ToJson(empty));
  EXPECT_EQ(state["snapshot_version"], "0");
  EXPECT_TRUE(state["nodes"].is_array());
}

}  // namespace
}  // namespace corral::ctl
