// Model names follow Ollama's grammar and matching rules (shared/ollama-api.md §8).
#include "common/model_name.h"

#include <string>

#include "gtest/gtest.h"

namespace corral {
namespace {

ModelRef Parse(std::string_view name) {
  std::optional<ModelRef> ref = ParseModelName(name);
  EXPECT_TRUE(ref.has_value()) << "expected a valid name: \"" << name << "\"";
  return ref.value_or(ModelRef{});
}

std::string Key(std::string_view name) { return CanonicalModelKey(name).value_or("<invalid>"); }

TEST(ModelName, BareModelGetsAllDefaults) {
  ModelRef ref = Parse("llama3");
  EXPECT_EQ(ref.host, "registry.ollama.ai");
  EXPECT_EQ(ref.namespace_, "library");
  EXPECT_EQ(ref.model, "llama3");
  EXPECT_EQ(ref.tag, "latest");
}

TEST(ModelName, TagIsWhatFollowsTheLastColonAfterTheLastSlash) {
  ModelRef ref = Parse("llama3:8b-instruct-q4_K_M");
  EXPECT_EQ(ref.model, "llama3");
  EXPECT_EQ(ref.tag, "8b-instruct-q4_K_M");
}

TEST(ModelName, HuggingFaceReferenceSplitsIntoAllFourParts) {
  ModelRef ref = Parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
  EXPECT_EQ(ref.host, "hf.co");
  EXPECT_EQ(ref.namespace_, "bartowski");
  EXPECT_EQ(ref.model, "Llama-3.2-1B-Instruct-GGUF");
  EXPECT_EQ(ref.tag, "Q4_K_M");
}

TEST(ModelName, ColonInsideAHostIsAPortNotATag) {
  ModelRef ref = Parse("myregistry:5000/team/model");
  EXPECT_EQ(ref.host, "myregistry:5000");
  EXPECT_EQ(ref.namespace_, "team");
  EXPECT_EQ(ref.model, "model");
  EXPECT_EQ(ref.tag, "latest");

  ModelRef local = Parse("localhost:5000/ns/m");
  EXPECT_EQ(local.host, "localhost:5000");
  EXPECT_EQ(local.tag, "latest");

  ModelRef tagged = Parse("localhost:5000/ns/m:v1");
  EXPECT_EQ(tagged.host, "localhost:5000");
  EXPECT_EQ(tagged.tag, "v1");
}

TEST(ModelName, TwoPartsAreNamespaceAndModel) {
  ModelRef ref = Parse("jmorganca/mistral:7b");
  EXPECT_EQ(ref.host, "registry.ollama.ai");
  EXPECT_EQ(ref.namespace_, "jmorganca");
  EXPECT_EQ(ref.model, "mistral");
  EXPECT_EQ(ref.tag, "7b");
}

TEST(ModelName, SchemeOnTheHostIsAcceptedAndNotPartOfTheHost) {
  ModelRef https = Parse("https://example.com/team/model:1");
  EXPECT_EQ(https.host, "example.com");
  EXPECT_EQ(https.namespace_, "team");
  EXPECT_EQ(https.model, "model");
  EXPECT_EQ(https.tag, "1");
  EXPECT_EQ(Key("http://example.com/team/model:1"), Key("example.com/team/model:1"));
}

TEST(ModelName, SurroundingWhitespaceIsTrimmed) {
  EXPECT_EQ(Key("  llama3 \t\n"), "registry.ollama.ai/library/llama3:latest");
}

TEST(ModelName, AllSpellingsOfOneModelShareOneKey) {
  const std::string key = "registry.ollama.ai/library/llama3:latest";
  for (const char* spelling : {"llama3", "llama3:latest", "library/llama3", "library/llama3:latest",
                               "registry.ollama.ai/library/llama3:latest", "LLaMA3",
                               "Registry.Ollama.AI/Library/LLAMA3:Latest"}) {
    EXPECT_EQ(Key(spelling), key) << spelling;
  }
}

TEST(ModelName, DifferentTagsAreDifferentModels) {
  EXPECT_NE(Key("llama3:8b"), Key("llama3"));
  EXPECT_EQ(Key("llama3:8b"), "registry.ollama.ai/library/llama3:8b");
}

TEST(ModelName, CanonicalKeyIsLowerCaseFullForm) {
  EXPECT_EQ(Key("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
            "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m");
  EXPECT_EQ(Key("myregistry:5000/team/model"), "myregistry:5000/team/model:latest");
}

TEST(ModelName, DisplayIsTheShortestFormAndAlwaysHasTheTag) {
  EXPECT_EQ(DisplayName(Parse("llama3")), "llama3:latest");
  EXPECT_EQ(DisplayName(Parse("registry.ollama.ai/library/llama3:8b")), "llama3:8b");
  EXPECT_EQ(DisplayName(Parse("jmorganca/mistral")), "jmorganca/mistral:latest");
  EXPECT_EQ(DisplayName(Parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
  EXPECT_EQ(DisplayName(Parse("myregistry:5000/team/model")), "myregistry:5000/team/model:latest");
}

TEST(ModelName, DisplayKeepsTheSpellingAndComparesDefaultsCaseInsensitively) {
  EXPECT_EQ(DisplayName(Parse("LLaMA3:Q4")), "LLaMA3:Q4");
  EXPECT_EQ(DisplayName(Parse("REGISTRY.OLLAMA.AI/LIBRARY/Mistral")), "Mistral:latest");
  EXPECT_EQ(DisplayName(Parse("REGISTRY.OLLAMA.AI/Team/Mistral")), "Team/Mistral:latest");
}

TEST(ModelName, ASeparatorWithNothingOnOneSideIsInvalid) {
  for (const char* name : {"a/", "/a", ":x", "a:", "a//b", "host//m", "/", ":", "a/b/"}) {
    EXPECT_FALSE(ParseModelName(name).has_value()) << name;
  }
}

TEST(ModelName, EmptyAndBlankNamesAreInvalid) {
  EXPECT_FALSE(ParseModelName("").has_value());
  EXPECT_FALSE(ParseModelName("   ").has_value());
  EXPECT_FALSE(CanonicalModelKey("").has_value());
}

TEST(ModelName, FirstCharacterMustBeAlphanumericOrUnderscore) {
  EXPECT_TRUE(ParseModelName("_private").has_value());
  EXPECT_TRUE(ParseModelName("9b").has_value());
  EXPECT_FALSE(ParseModelName("-model").has_value());
  EXPECT_FALSE(ParseModelName(".model").has_value());
  EXPECT_FALSE(ParseModelName("model:-tag").has_value());
  EXPECT_FALSE(ParseModelName("-ns/model").has_value());
  EXPECT_FALSE(ParseModelName(".host/ns/model").has_value());
}

TEST(ModelName, CharacterSetsDependOnThePart) {
  EXPECT_TRUE(ParseModelName("my.model-v2_x:1.5-q4_0").has_value());
  EXPECT_FALSE(ParseModelName("my.ns/model").has_value()) << "'.' is not allowed in a namespace";
  EXPECT_TRUE(ParseModelName("my-ns_1/model").has_value());
  EXPECT_FALSE(ParseModelName("model name").has_value());
  EXPECT_FALSE(ParseModelName("model@sha256:abc").has_value());
  EXPECT_FALSE(ParseModelName("mod+el").has_value());
  EXPECT_FALSE(ParseModelName("a/b/c/d").has_value()) << "a host cannot contain '/'";
  EXPECT_FALSE(ParseModelName("modèle").has_value());
  EXPECT_TRUE(ParseModelName("my_host.example.com:443/ns/m").has_value());
}

TEST(ModelName, LengthLimitsAre350ForTheHostAnd80ForTheRest) {
  const std::string p80(80, 'a');
  const std::string p81(81, 'a');
  EXPECT_TRUE(ParseModelName(p80).has_value());
  EXPECT_FALSE(ParseModelName(p81).has_value());
  EXPECT_TRUE(ParseModelName("m:" + p80).has_value());
  EXPECT_FALSE(ParseModelName("m:" + p81).has_value());
  EXPECT_TRUE(ParseModelName(p80 + "/m").has_value());
  EXPECT_FALSE(ParseModelName(p81 + "/m").has_value());
  EXPECT_TRUE(ParseModelName(std::string(350, 'h') + "/ns/m").has_value());
  EXPECT_FALSE(ParseModelName(std::string(351, 'h') + "/ns/m").has_value());
}

TEST(ModelName, LocalMarkerIsDropped) {
  EXPECT_EQ(Key("llama3:local"), "registry.ollama.ai/library/llama3:latest");
  EXPECT_EQ(Key("llama3:8b:local"), "registry.ollama.ai/library/llama3:8b");
  EXPECT_EQ(Key("llama3:8b:LOCAL"), "registry.ollama.ai/library/llama3:8b");
}

TEST(ModelName, CloudReferencesUseTheNameNodesListThemUnder) {
  EXPECT_EQ(DisplayName(Parse("gpt-oss:20b:cloud")), "gpt-oss:20b-cloud");
  EXPECT_EQ(DisplayName(Parse("gpt-oss:120b-cloud")), "gpt-oss:120b-cloud");
  EXPECT_EQ(DisplayName(Parse("glm-4.6:cloud")), "glm-4.6:cloud");
  EXPECT_EQ(DisplayName(Parse("glm-4.6:Cloud")), "glm-4.6:cloud");
  EXPECT_EQ(Key("gpt-oss:20b:cloud"), Key("gpt-oss:20b-cloud"));
}

TEST(ModelName, LocalAndCloudTogetherAreInvalid) {
  EXPECT_FALSE(ParseModelName("gpt-oss:20b:local:cloud").has_value());
  EXPECT_FALSE(ParseModelName("gpt-oss:cloud:local").has_value());
  EXPECT_FALSE(ParseModelName("gpt-oss:120b-cloud:local").has_value());
  EXPECT_FALSE(ParseModelName("m:local:local").has_value());
}

TEST(ModelName, PortLikeHostSuffixIsNotASourceMarker) {
  ModelRef ref = Parse("localhost:5000/ns/cloud");
  EXPECT_EQ(ref.host, "localhost:5000");
  EXPECT_EQ(ref.model, "cloud");
}

}  // namespace
}  // namespace corral
