// The routing rules' validation and pattern matching, rule by rule (common/placement_rules.h).
#include "common/placement_rules.h"

#include <cmath>
#include <initializer_list>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace corral {
namespace {

using corral::v1::ModelAlias;
using corral::v1::ModelMemoryRule;
using corral::v1::PlacementRule;
using corral::v1::QueuePolicy;
using google::protobuf::RepeatedPtrField;

TEST(GlobMatch, LiteralCharactersMatchThemselvesOnly) {
  EXPECT_TRUE(GlobMatch("llama3:8b", "llama3:8b"));
  EXPECT_FALSE(GlobMatch("llama3:8b", "llama3:8"));
  EXPECT_FALSE(GlobMatch("llama3:8", "llama3:8b"));
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("", "a"));
  EXPECT_FALSE(GlobMatch("a", ""));
}

TEST(GlobMatch, StarMatchesAnyRunIncludingNone) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "anything/at:all"));
  EXPECT_TRUE(GlobMatch("llama3*", "llama3"));
  EXPECT_TRUE(GlobMatch("llama3*", "llama3.1:70b"));
  EXPECT_TRUE(GlobMatch("*:70b", "llama3.1:70b"));
  EXPECT_FALSE(GlobMatch("*:70b", "llama3.1:70b-q4"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(GlobMatch("a*b*c", "abc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXXcYYb"));
  EXPECT_TRUE(GlobMatch("**", "x"));
  EXPECT_TRUE(GlobMatch("*a", "aaa"));
}

TEST(GlobMatch, QuestionMarkMatchesExactlyOneCharacter) {
  EXPECT_TRUE(GlobMatch("qwen?:7b", "qwen2:7b"));
  EXPECT_FALSE(GlobMatch("qwen?:7b", "qwen:7b"));
  EXPECT_FALSE(GlobMatch("qwen?:7b", "qwen25:7b"));
  EXPECT_TRUE(GlobMatch("?*", "x"));
  EXPECT_FALSE(GlobMatch("?*", ""));
}

TEST(GlobMatch, ManyStarsOnALongTextFinish) {
  // "*a*a*...*a*b" against "aaaa...a" takes exponential time in a naive backtracking matcher,
  // which would never finish here (the test's timeout); this one does pattern x text steps.
  std::string pattern;
  for (int i = 0; i < 100; ++i) pattern += "*a";
  const std::string text(5000, 'a');
  EXPECT_FALSE(GlobMatch(pattern + "*b", text));
  EXPECT_TRUE(GlobMatch(pattern + "*", text));
  EXPECT_TRUE(GlobMatch(pattern, text));
  EXPECT_FALSE(GlobMatch(pattern + "?", std::string(100, 'a')));
}

// The textbook recursive definition, for short inputs only.
bool ReferenceGlob(std::string_view p, std::string_view t) {
  if (p.empty()) return t.empty();
  if (p[0] == '*')
    return ReferenceGlob(p.substr(1), t) || (!t.empty() && ReferenceGlob(p, t.substr(1)));
  return !t.empty() && (p[0] == '?' || p[0] == t[0]) && ReferenceGlob(p.substr(1), t.substr(1));
}

TEST(GlobMatch, AgreesWithTheRecursiveDefinitionOnRandomInputs) {
  std::mt19937 rng(11);  // fixed seed: the same cases every run
  const std::string pattern_chars = "ab*?";
  const std::string text_chars = "ab";
  for (int i = 0; i < 20000; ++i) {
    std::string pattern, text;
    for (size_t n = rng() % 8; n > 0; --n) pattern += pattern_chars[rng() % pattern_chars.size()];
    for (size_t n = rng() % 10; n > 0; --n) text += text_chars[rng() % text_chars.size()];
    ASSERT_EQ(GlobMatch(pattern, text), ReferenceGlob(pattern, text))
        << "pattern \"" << pattern << "\" text \"" << text << "\"";
  }
}

TEST(ModelPatternMatches, ShortPatternsMatchKeysOfTheDefaultRegistry) {
  EXPECT_TRUE(ModelPatternMatches("llama3*", "registry.ollama.ai/library/llama3:8b"));
  EXPECT_TRUE(ModelPatternMatches("registry.ollama.ai/library/llama3*",
                                  "registry.ollama.ai/library/llama3:8b"));
  EXPECT_TRUE(ModelPatternMatches("jmorganca/*", "registry.ollama.ai/jmorganca/m:v1"));
  EXPECT_TRUE(ModelPatternMatches("hf.co/*", "hf.co/bartowski/x:q4_k_m"));
  EXPECT_FALSE(ModelPatternMatches("bartowski/*", "hf.co/bartowski/x:q4_k_m"));
  EXPECT_FALSE(ModelPatternMatches("qwen*", "registry.ollama.ai/library/llama3:8b"));
  EXPECT_TRUE(ModelPatternMatches("library/llama3:*", "registry.ollama.ai/library/llama3:8b"));
  EXPECT_TRUE(ModelPatternMatches("*/llama3:8b", "registry.ollama.ai/library/llama3:8b"));
  EXPECT_FALSE(ModelPatternMatches("llama3", "registry.ollama.ai/library/llama3:latest"));
  EXPECT_EQ(ShortModelKey("registry.ollama.ai/library/llama3:8b"), "llama3:8b");
  EXPECT_EQ(ShortModelKey("registry.ollama.ai/ns/m:t"), "ns/m:t");
  EXPECT_EQ(ShortModelKey("hf.co/ns/m:t"), "hf.co/ns/m:t");
}

// Whether `status` is InvalidArgument with a message holding every one of `parts`.
::testing::AssertionResult Refused(const absl::Status& status,
                                   std::initializer_list<std::string_view> parts) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected InvalidArgument, got " << status;
  }
  for (std::string_view part : parts) {
    if (std::string(status.message()).find(part) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << status.message() << "\" does not mention \"" << part << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

PlacementRule Rule(std::string pattern, std::vector<std::string> nodes,
                   std::map<std::string, std::string> labels = {}, bool hard = false) {
  PlacementRule r;
  r.set_pattern(std::move(pattern));
  for (auto& n : nodes) r.add_nodes(std::move(n));
  for (auto& [k, v] : labels) (*r.mutable_labels())[k] = v;
  r.set_hard(hard);
  return r;
}

ModelAlias Alias(std::string alias, std::string target) {
  ModelAlias a;
  a.set_alias(std::move(alias));
  a.set_target(std::move(target));
  return a;
}

ModelMemoryRule Memory(std::string pattern, double gb) {
  ModelMemoryRule m;
  m.set_pattern(std::move(pattern));
  m.set_memory_gb(gb);
  return m;
}

absl::Status CheckPlacement(std::vector<PlacementRule> rules) {
  RepeatedPtrField<PlacementRule> field(rules.begin(), rules.end());
  return ValidateRoutingRules(QueuePolicy(), field, {}, {});
}

absl::Status CheckAliases(std::vector<ModelAlias> aliases) {
  RepeatedPtrField<ModelAlias> field(aliases.begin(), aliases.end());
  return ValidateRoutingRules(QueuePolicy(), {}, field, {});
}

absl::Status CheckMemory(std::vector<ModelMemoryRule> rules) {
  RepeatedPtrField<ModelMemoryRule> field(rules.begin(), rules.end());
  return ValidateRoutingRules(QueuePolicy(), {}, {}, field);
}

absl::Status CheckQueue(int max_length, int64_t max_wait_ms) {
  QueuePolicy q;
  q.set_max_length(max_length);
  q.set_max_wait_ms(max_wait_ms);
  return ValidateRoutingRules(q, {}, {}, {});
}

TEST(ValidateModelPattern, AcceptsKeyCharactersAndWildcards) {
  EXPECT_TRUE(ValidateModelPattern("llama3*", "p").ok());
  EXPECT_TRUE(ValidateModelPattern("registry.ollama.ai/library/qwen?.5:7b-q4_k_m", "p").ok());
  EXPECT_TRUE(ValidateModelPattern("localhost:5000/*", "p").ok());
  EXPECT_TRUE(ValidateModelPattern("*", "p").ok());
  EXPECT_TRUE(ValidateModelPattern(std::string(kMaxPatternLength, 'a'), "p").ok());
}

TEST(ValidateModelPattern, RefusesEmptyLongUpperCaseAndForeignCharacters) {
  EXPECT_TRUE(
      Refused(ValidateModelPattern("", "placement pattern"), {"placement pattern", "empty"}));
  EXPECT_TRUE(Refused(ValidateModelPattern(std::string(kMaxPatternLength + 1, 'a'), "p"),
                      {"257 characters", "256"}));
  EXPECT_TRUE(Refused(ValidateModelPattern("Llama3*", "p"), {"\"Llama3*\"", "lower case"}));
  EXPECT_TRUE(Refused(ValidateModelPattern("llama 3", "p"), {"\"llama 3\"", "a-z 0-9"}));
  EXPECT_TRUE(Refused(ValidateModelPattern("llama[3]", "p"), {"\"llama[3]\""}));
  EXPECT_TRUE(Refused(ValidateModelPattern(std::string("a\0b", 3), "p"), {"a-z 0-9"}));
}

TEST(ValidateNumParallel, ZeroToTheCeiling) {
  EXPECT_TRUE(ValidateNumParallel(0).ok());
  EXPECT_TRUE(ValidateNumParallel(4).ok());
  EXPECT_TRUE(ValidateNumParallel(kMaxNodeParallel).ok());
  EXPECT_TRUE(Refused(ValidateNumParallel(-1), {"num_parallel", "-1"}));
  EXPECT_TRUE(Refused(ValidateNumParallel(kMaxNodeParallel + 1), {"num_parallel", "1000001"}));
}

TEST(ValidateQueuePolicy, BoundsOfLengthAndWait) {
  EXPECT_TRUE(CheckQueue(0, 0).ok());
  EXPECT_TRUE(CheckQueue(kMaxQueueLength, kMaxQueueWaitMs).ok());
  EXPECT_TRUE(Refused(CheckQueue(-1, 0), {"max_length", "-1"}));
  EXPECT_TRUE(Refused(CheckQueue(kMaxQueueLength + 1, 0), {"max_length", "100001"}));
  EXPECT_TRUE(Refused(CheckQueue(0, -5), {"max_wait_ms", "-5"}));
  EXPECT_TRUE(Refused(CheckQueue(0, kMaxQueueWaitMs + 1), {"max_wait_ms", "3600001"}));
  QueuePolicy disabled;
  disabled.set_disabled(true);
  EXPECT_TRUE(ValidateQueuePolicy(disabled).ok());
}

TEST(ValidatePlacement, AcceptsRulesByNodeOrLabel) {
  EXPECT_TRUE(CheckPlacement({Rule("llama3*", {"gpu-1", "gpu_2.b"}),
                              Rule("qwen*", {}, {{"gpu", "a100"}}, true),
                              Rule("*", {"gpu-1"}, {{"zone/rack", "r1"}})})
                  .ok());
}

TEST(ValidatePlacement, RefusesARuleThatNamesNothing) {
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {})}), {"\"llama3*\"", "no node"}));
}

TEST(ValidatePlacement, RefusesBadPatternsNodesAndLabels) {
  EXPECT_TRUE(Refused(CheckPlacement({Rule("", {"gpu-1"})}), {"placement pattern", "empty"}));
  EXPECT_TRUE(Refused(CheckPlacement({Rule("LLAMA", {"gpu-1"})}), {"\"LLAMA\""}));
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {"gpu 1"})}),
                      {"\"llama3*\"", "\"gpu 1\"", "[A-Za-z0-9_.-]{1,64}"}));
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {std::string(65, 'n')})}), {"node name"}));
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {}, {{"bad key", "v"}})}),
                      {"\"llama3*\"", "label key \"bad key\""}));
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {}, {{"k", "line\nbreak"}})}),
                      {"\"llama3*\"", "label \"k\" value"}));
  EXPECT_TRUE(
      Refused(CheckPlacement({Rule("llama3*", {}, {{"k", std::string(256, 'v')}})}), {"255"}));
}

TEST(ValidatePlacement, RefusesTheSamePatternTwice) {
  EXPECT_TRUE(Refused(CheckPlacement({Rule("llama3*", {"a"}), Rule("llama3*", {"b"}, {}, true)}),
                      {"\"llama3*\"", "twice"}));
}

TEST(ValidatePlacement, RefusesMoreRulesThanTheCeiling) {
  std::vector<PlacementRule> rules;
  for (int i = 0; i <= kMaxRoutingRules; ++i) {
    rules.push_back(Rule("m" + std::to_string(i), {"a"}));
  }
  EXPECT_TRUE(Refused(CheckPlacement(rules), {"at most 1000 placement rules"}));
}

TEST(ValidateAliases, AcceptsAliasesToRealModelNames) {
  EXPECT_TRUE(CheckAliases({Alias("fast", "llama3.2:1b"), Alias("smart", "qwen2.5:72b"),
                            Alias("team/coder", "hf.co/bartowski/Qwen-Coder:Q4_K_M")})
                  .ok());
}

TEST(ValidateAliases, RefusesInvalidNames) {
  EXPECT_TRUE(Refused(CheckAliases({Alias("", "llama3")}), {"alias \"\"", "not a valid"}));
  EXPECT_TRUE(Refused(CheckAliases({Alias("bad name", "llama3")}), {"\"bad name\""}));
  EXPECT_TRUE(Refused(CheckAliases({Alias("fast", "llama3:")}),
                      {"alias \"fast\"", "target \"llama3:\"", "not a valid"}));
}

TEST(ValidateAliases, RefusesAnAliasOfItself) {
  // "llama3" and "llama3:latest" are one model.
  EXPECT_TRUE(Refused(CheckAliases({Alias("llama3", "LLAMA3:latest")}), {"\"llama3\"", "itself"}));
}

TEST(ValidateAliases, RefusesDuplicatesByCanonicalKey) {
  EXPECT_TRUE(Refused(CheckAliases({Alias("fast", "llama3"), Alias("FAST:latest", "qwen2")}),
                      {"\"FAST:latest\"", "twice", "registry.ollama.ai/library/fast:latest"}));
}

TEST(ValidateAliases, RefusesChains) {
  EXPECT_TRUE(Refused(CheckAliases({Alias("a", "b"), Alias("b", "llama3")}),
                      {"alias \"a\"", "\"b\"", "itself an alias"}));
  // Order does not matter.
  EXPECT_TRUE(Refused(CheckAliases({Alias("b", "llama3"), Alias("a", "b:latest")}),
                      {"alias \"a\"", "itself an alias"}));
}

TEST(ValidateModelMemory, AcceptsPositiveSizes) {
  EXPECT_TRUE(
      CheckMemory({Memory("llama3:70b*", 42.5), Memory("*:7b*", 6), Memory("*", kMaxModelMemoryGb)})
          .ok());
}

TEST(ValidateModelMemory, RefusesZeroNegativeHugeAndNonFiniteSizes) {
  for (double gb :
       {0.0, -1.0, kMaxModelMemoryGb + 1, std::numeric_limits<double>::infinity(), std::nan("")}) {
    EXPECT_TRUE(Refused(CheckMemory({Memory("llama3*", gb)}), {"\"llama3*\"", "memory_gb"})) << gb;
  }
}

TEST(ValidateModelMemory, RefusesBadAndDuplicatePatterns) {
  EXPECT_TRUE(Refused(CheckMemory({Memory("", 4)}), {"model memory pattern", "empty"}));
  EXPECT_TRUE(Refused(CheckMemory({Memory("a*", 4), Memory("a*", 8)}), {"\"a*\"", "twice"}));
}

TEST(ValidateLabel, TheRegistrysNodeLabelRule) {
  EXPECT_TRUE(ValidateLabel("gpu", "a100").ok());
  EXPECT_TRUE(ValidateLabel("topology.kubernetes.io/zone", "").ok());
  EXPECT_TRUE(Refused(ValidateLabel("", "v"), {"label key"}));
  EXPECT_TRUE(Refused(ValidateLabel(std::string(64, 'k'), "v"), {"{1,63}"}));
  EXPECT_TRUE(Refused(ValidateLabel("k", "\t"), {"control characters"}));
}

}  // namespace
}  // namespace corral
