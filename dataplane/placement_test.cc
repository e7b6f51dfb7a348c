// Placement: memory fit, hard and soft rules, and the model's memory, from fixed snapshots.
#include "dataplane/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace corral::dataplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using v1::Node;
using v1::Snapshot;

constexpr char kKey[] = "registry.ollama.ai/library/llama3:70b";
constexpr int64_t kGb = int64_t{1} << 30;

class PlacementTest : public ::testing::Test {
 protected:
  Node* AddNode(const std::string& name, double max_memory_gb = 0) {
    Node* node = snapshot_.add_nodes();
    node->set_name(name);
    node->set_max_memory_gb(max_memory_gb);
    listed_.push_back(static_cast<size_t>(snapshot_.nodes_size() - 1));
    loaded_.push_back(false);
    return node;
  }
  ModelPlacement Place(ModelSizes sizes = {}) {
    return PlaceModel(snapshot_, kKey, listed_, loaded_, sizes);
  }

  Snapshot snapshot_;
  std::vector<size_t> listed_;
  std::vector<bool> loaded_;
};

TEST_F(PlacementTest, WithoutRulesEveryListedNodeIsAllowedInOrder) {
  AddNode("a");
  AddNode("b");
  ModelPlacement p = Place({.vram = 0, .disk = 40 * kGb});
  EXPECT_THAT(p.nodes, ElementsAre(0, 1));
  EXPECT_EQ(p.preferred, 0u);
  EXPECT_EQ(p.memory_bytes, 40 * kGb);
}

TEST_F(PlacementTest, ANodeTakesOnlyModelsThatFitItsMemory) {
  AddNode("small", 24);
  AddNode("big", 80);
  AddNode("unset");
  EXPECT_THAT(Place({.vram = 0, .disk = 40 * kGb}).nodes, ElementsAre(1, 2));
  EXPECT_THAT(Place({.vram = 0, .disk = 24 * kGb}).nodes, ElementsAre(0, 1, 2));  // exactly fits
  EXPECT_THAT(Place().nodes, ElementsAre(0, 1, 2));  // unknown size fits everywhere
}

TEST_F(PlacementTest, VramBeatsAMemoryRuleWhichBeatsTheDiskSize) {
  AddNode("a");
  v1::ModelMemoryRule* rule = snapshot_.add_model_memory();
  rule->set_pattern("llama3:70b");
  rule->set_memory_gb(48);
  v1::ModelMemoryRule* later = snapshot_.add_model_memory();
  later->set_pattern("*");
  later->set_memory_gb(1);
  EXPECT_EQ(ModelMemoryBytes(snapshot_, kKey, {.vram = 45 * kGb, .disk = 40 * kGb}), 45 * kGb);
  EXPECT_EQ(ModelMemoryBytes(snapshot_, kKey, {.vram = 0, .disk = 40 * kGb}), 48 * kGb);
  snapshot_.clear_model_memory();
  EXPECT_EQ(ModelMemoryBytes(snapshot_, kKey, {.vram = 0, .disk = 40 * kGb}), 40 * kGb);
}

TEST_F(PlacementTest, ANodeWhereTheModelIsLoadedFitsIt) {
  AddNode("small", 8);
  loaded_[0] = true;
  EXPECT_THAT(Place({.vram = 0, .disk = 40 * kGb}).nodes, ElementsAre(0));
}

TEST_F(PlacementTest, TooLargeForEveryNodeSaysSo) {
  AddNode("a", 24);
  AddNode("b", 16);
  ModelPlacement p = Place({.vram = 0, .disk = 40 * kGb});
  EXPECT_TRUE(p.nodes.empty());
  EXPECT_THAT(p.refusal, HasSubstr("40.0 GB"));
  EXPECT_THAT(p.refusal, HasSubstr("max_memory_gb"));
}

TEST_F(PlacementTest, TheFirstMatchingHardRuleLimitsToNamedOrLabelledNodes) {
  AddNode("a");
  (*AddNode("b")->mutable_labels())["gpu"] = "h100";
  AddNode("c");
  v1::PlacementRule* other = snapshot_.add_placement();
  other->set_pattern("qwen*");
  other->set_hard(true);
  other->add_nodes("a");
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("llama3:70b");
  rule->set_hard(true);
  rule->add_nodes("c");
  (*rule->mutable_labels())["gpu"] = "h100";
  v1::PlacementRule* later = snapshot_.add_placement();
  later->set_pattern("llama3*");
  later->set_hard(true);
  later->add_nodes("a");
  EXPECT_THAT(Place().nodes, ElementsAre(1, 2));
}

TEST_F(PlacementTest, AllLabelsOfARuleMustMatch) {
  Node* a = AddNode("a");
  (*a->mutable_labels())["gpu"] = "h100";
  Node* b = AddNode("b");
  (*b->mutable_labels())["gpu"] = "h100";
  (*b->mutable_labels())["zone"] = "eu";
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("*");
  rule->set_hard(true);
  (*rule->mutable_labels())["gpu"] = "h100";
  (*rule->mutable_labels())["zone"] = "eu";
  EXPECT_THAT(Place().nodes, ElementsAre(1));
}

TEST_F(PlacementTest, AHardRuleToNodesWithoutTheModelRefusesWithItsPattern) {
  AddNode("a");
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("llama3*");
  rule->set_hard(true);
  rule->add_nodes("elsewhere");
  ModelPlacement p = Place();
  EXPECT_TRUE(p.nodes.empty());
  EXPECT_THAT(p.refusal, HasSubstr("'llama3*'"));
}

TEST_F(PlacementTest, SoftRulesPutPreferredNodesFirst) {
  AddNode("a");
  AddNode("b");
  AddNode("c");
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("llama3:*");
  rule->add_nodes("c");
  rule->add_nodes("b");
  ModelPlacement p = Place();
  EXPECT_THAT(p.nodes, ElementsAre(1, 2, 0));
  EXPECT_EQ(p.preferred, 2u);
}

TEST_F(PlacementTest, MemoryFitAppliesBeforeTheRules) {
  AddNode("small", 8);
  AddNode("big", 80);
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("*");
  rule->add_nodes("small");
  ModelPlacement p = Place({.vram = 0, .disk = 40 * kGb});
  EXPECT_THAT(p.nodes, ElementsAre(1));
  EXPECT_EQ(p.preferred, 0u);
}

}  // namespace
}  // namespace corral::dataplane
