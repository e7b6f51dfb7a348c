// Fleet-wide answers built from a snapshot.
#include "dataplane/fleet.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace corral::dataplane {
namespace {

using nlohmann::json;

corral::v1::Node MakeNode(const std::string& name, int port) {
  corral::v1::Node node;
  node.set_name(name);
  node.set_url("http://127.0.0.1:" + std::to_string(port));
  node.set_admin_state(corral::v1::ADMIN_STATE_ENABLED);
  node.set_health(corral::v1::HEALTH_HEALTHY);
  return node;
}

void AddModel(corral::v1::Node* node, const std::string& name, const std::string& modified,
              const std::string& raw = "") {
  auto* m = node->add_models();
  m->set_name(name);
  m->set_modified_at(modified);
  m->set_size(100);
  m->set_digest(std::string(64, 'a'));
  m->set_raw_json(raw);
}

std::shared_ptr<const RoutingTable> Table(corral::v1::Snapshot snapshot) {
  snapshot.set_version(1);
  auto table = RoutingTable::Build(std::move(snapshot));
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : nullptr;
}

TEST(FleetTest, Rfc3339) {
  EXPECT_EQ(ParseRfc3339Nanos("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseRfc3339Nanos("1970-01-01T00:00:01.5Z"), 1500000000);
  EXPECT_EQ(ParseRfc3339Nanos("1970-01-01T00:00:00-07:00"), int64_t{7} * 3600 * 1000000000);
  EXPECT_EQ(*ParseRfc3339Nanos("2025-05-04T17:37:44.706015396-07:00"),
            *ParseRfc3339Nanos("2025-05-05T00:37:44.706015396Z"));
  EXPECT_FALSE(ParseRfc3339Nanos("yesterday").has_value());
}

TEST(FleetTest, Versions) {
  EXPECT_LT(CompareVersions("0.9.9", "0.12.0"), 0);
  EXPECT_EQ(CompareVersions("v0.12.3-rc1", "0.12.3"), 0);
  EXPECT_GT(CompareVersions("1.0", "0.99.99"), 0);
}

TEST(FleetTest, TagsMergeDedupeAndPreserveFields) {
  corral::v1::Snapshot s;
  auto a = MakeNode("a", 1);
  AddModel(&a, "llama3.2:latest", "2025-01-01T00:00:00Z",
           R"({"name":"llama3.2:latest","model":"llama3.2:latest","size":100,)"
           R"("capabilities":["completion"],"details":{"families":null}})");
  AddModel(&a, "qwen3:8b", "2025-03-01T00:00:00Z");
  auto b = MakeNode("b", 2);
  AddModel(&b, "library/llama3.2", "2025-02-01T00:00:00Z",
           R"({"name":"llama3.2:latest","digest":"newer","size":100})");
  *s.add_nodes() = a;
  *s.add_nodes() = b;
  auto table = Table(s);
  ASSERT_NE(table, nullptr);
  const json tags = json::parse(FleetTagsBody(*table));
  ASSERT_EQ(tags["models"].size(), 2u);
  // Newest first: qwen3 (March), then llama3.2 (February, node b's entry wins).
  EXPECT_EQ(tags["models"][0]["name"], "qwen3:8b");
  EXPECT_EQ(tags["models"][0]["model"], "qwen3:8b");
  EXPECT_EQ(tags["models"][0]["nodes"], json::array({"a"}));
  const json& llama = tags["models"][1];
  EXPECT_EQ(llama["name"], "llama3.2:latest");
  EXPECT_EQ(llama["model"], "llama3.2:latest");
  EXPECT_EQ(llama["digest"], "newer");
  EXPECT_EQ(llama["nodes"], json::array({"a", "b"}));
}

TEST(FleetTest, UnroutableNodesAreLeftOutAndEmptyListsAreArrays) {
  corral::v1::Snapshot s;
  auto a = MakeNode("a", 1);
  a.set_health(corral::v1::HEALTH_UNHEALTHY);
  AddModel(&a, "llama3.2:latest", "2025-01-01T00:00:00Z");
  *s.add_nodes() = a;
  auto table = Table(s);
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(FleetTagsBody(*table), R"({"models":[]})");
  EXPECT_EQ(FleetPsBody(*table), R"({"models":[]})");
  EXPECT_EQ(FleetOpenAIModelsBody(*table), R"({"data":[],"object":"list"})");
  EXPECT_EQ(json::parse(FleetVersionBody(*table))["version"], kFallbackOllamaVersion);
}

TEST(FleetTest, PsOpenAIAndVersion) {
  corral::v1::Snapshot s;
  auto a = MakeNode("a", 1);
  a.set_version("0.12.3");
  AddModel(&a, "myteam/coder:v2", "1970-01-01T00:01:40Z");
  auto* l1 = a.add_loaded_models();
  l1->set_name("myteam/coder:v2");
  l1->set_expires_at("2026-01-01T00:00:00Z");
  auto b = MakeNode("b", 2);
  b.set_version("0.11.10");
  auto* l2 = b.add_loaded_models();
  l2->set_name("llama3.2:latest");
  l2->set_expires_at("2027-01-01T00:00:00Z");
  l2->set_raw_json(R"({"name":"llama3.2:latest","model":"llama3.2:latest","size_vram":7})");
  *s.add_nodes() = a;
  *s.add_nodes() = b;
  auto table = Table(s);
  ASSERT_NE(table, nullptr);
  const json ps = json::parse(FleetPsBody(*table));
  ASSERT_EQ(ps["models"].size(), 2u);
  EXPECT_EQ(ps["models"][0]["name"], "llama3.2:latest");
  EXPECT_EQ(ps["models"][0]["node"], "b");
  EXPECT_EQ(ps["models"][0]["size_vram"], 7);
  EXPECT_EQ(ps["models"][1]["node"], "a");
  const json models = json::parse(FleetOpenAIModelsBody(*table));
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "myteam/coder:v2");
  EXPECT_EQ(models["data"][0]["owned_by"], "myteam");
  EXPECT_EQ(models["data"][0]["created"], 100);
  EXPECT_EQ(json::parse(FleetVersionBody(*table))["version"], "0.11.10");
}

}  // namespace
}  // namespace corral::dataplane
