// Body peeking reads the routing fields the way Ollama's Go decoder would, without building a
// document (shared/ollama-api.md §1, §2 notes, §3.4).
#include "dataplane/body_peek.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace corral::dataplane {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

BodyFields Peek(std::string_view body) {
  absl::StatusOr<BodyFields> fields = PeekBody(body);
  EXPECT_TRUE(fields.ok()) << body.substr(0, 200) << ": " << fields.status();
  return fields.ok() ? *fields : BodyFields{};
}

std::string Error(std::string_view body) {
  absl::StatusOr<BodyFields> fields = PeekBody(body);
  EXPECT_FALSE(fields.ok()) << body.substr(0, 200);
  if (fields.ok()) return "";
  EXPECT_EQ(fields.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(fields.status().message());
}

TEST(BodyPeek, ReadsTheRoutingFields) {
  BodyFields f = Peek(R"({"model":"llama3","stream":false,"prompt":"hi"})");
  EXPECT_EQ(f.model, "llama3");
  EXPECT_EQ(f.stream, false);
  EXPECT_FALSE(f.prompt_empty);
  EXPECT_FALSE(f.name.has_value());

  BodyFields copy = Peek(R"({"source":"a","destination":"b"})");
  EXPECT_EQ(copy.source, "a");
  EXPECT_EQ(copy.destination, "b");
}

TEST(BodyPeek, AbsentFieldsStayAbsent) {
  BodyFields f = Peek("{}");
  EXPECT_FALSE(f.model.has_value());
  EXPECT_FALSE(f.stream.has_value()) << "absent stream means the endpoint's default";
  EXPECT_FALSE(f.keep_alive_zero);
  EXPECT_TRUE(f.prompt_empty);
  EXPECT_TRUE(f.messages_empty);
  EXPECT_EQ(f.ModelOrName(), "");
}

TEST(BodyPeek, KeysMatchCaseInsensitivelyLikeGo) {
  BodyFields f = Peek(R"({"Model":"a","STREAM":true,"Keep_Alive":0,"PROMPT":"x"})");
  EXPECT_EQ(f.model, "a");
  EXPECT_EQ(f.stream, true);
  EXPECT_TRUE(f.keep_alive_zero);
  EXPECT_FALSE(f.prompt_empty);
}

TEST(BodyPeek, GoFoldsKelvinSignAndLongSToo) {
  // "\u212A" folds to 'k', "\u017F" to 's' in Go's EqualFold.
  BodyFields f = Peek(
      "{\"\xE2\x84\xAA"
      "eep_alive\":0,\"\xC5\xBF"
      "tream\":false}");
  EXPECT_TRUE(f.keep_alive_zero);
  EXPECT_EQ(f.stream, false);
}

TEST(BodyPeek, EscapedKeysAreDecodedBeforeMatching) {
  EXPECT_EQ(Peek(R"({"mod\u0065l":"m"})").model, "m");
}

TEST(BodyPeek, LastDuplicateWinsAcrossSpellings) {
  EXPECT_EQ(Peek(R"({"model":"a","Model":"b"})").model, "b");
  EXPECT_EQ(Peek(R"({"stream":true,"stream":false})").stream, false);
  EXPECT_FALSE(Peek(R"({"keep_alive":0,"keep_alive":"5m"})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"keep_alive":"5m","keep_alive":0})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"prompt":"x","prompt":""})").prompt_empty);
  EXPECT_TRUE(Peek(R"({"messages":[{}],"messages":[]})").messages_empty);
}

TEST(BodyPeek, NullFollowsGoSemantics) {
  // null leaves a string as it was, and resets pointers and slices.
  EXPECT_EQ(Peek(R"({"model":"a","model":null})").model, "a");
  EXPECT_FALSE(Peek(R"({"stream":true,"stream":null})").stream.has_value());
  EXPECT_FALSE(Peek(R"({"keep_alive":0,"keep_alive":null})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"messages":[{"role":"user"}],"messages":null})").messages_empty);
  EXPECT_FALSE(Peek(R"({"prompt":"x","prompt":null})").prompt_empty);
}

TEST(BodyPeek, WrongTypesAreNotUsableForRouting) {
  EXPECT_FALSE(Peek(R"({"model":5})").model.has_value());
  EXPECT_FALSE(Peek(R"({"model":"a","model":{"x":1}})").model.has_value());
  EXPECT_FALSE(Peek(R"({"stream":"yes"})").stream.has_value());
  EXPECT_FALSE(Peek(R"({"prompt":42})").prompt_empty) << "the node answers 400, no shortcut";
  EXPECT_FALSE(Peek(R"({"messages":"hi"})").messages_empty);
  EXPECT_FALSE(Peek(R"({"keep_alive":[0]})").keep_alive_zero);
}

TEST(BodyPeek, AWrongTypedModelIsNamedInGosWords) {
  EXPECT_EQ(Peek(R"({"model":3.2})").model_type_error, "number");
  EXPECT_EQ(Peek(R"({"model":["llama3.2"]})").model_type_error, "array");
  EXPECT_EQ(Peek(R"({"model":{"name":"llama3.2"}})").model_type_error, "object");
  EXPECT_EQ(Peek(R"({"model":true})").model_type_error, "bool");
  // Go reports the first type error even when a later duplicate is a string.
  EXPECT_EQ(Peek(R"({"model":1,"model":"llama3.2"})").model_type_error, "number");
  EXPECT_FALSE(Peek(R"({"model":null})").model_type_error.has_value());
  EXPECT_FALSE(Peek(R"({"model":"llama3.2"})").model_type_error.has_value());
  EXPECT_FALSE(Peek(R"({"options":{"model":1}})").model_type_error.has_value());
}

TEST(BodyPeek, NestedModelKeysAreIgnored) {
  BodyFields f = Peek(R"({"messages":[{"role":"user","model":"evil"}],
                          "options":{"model":"evil","stream":true},
                          "format":{"properties":{"model":{"type":"string"}}},
                          "tools":[{"function":{"name":"evil"}}],
                          "model":"good"})");
  EXPECT_EQ(f.model, "good");
  EXPECT_FALSE(f.stream.has_value());
  EXPECT_FALSE(f.name.has_value());
  EXPECT_FALSE(f.messages_empty);

  BodyFields only_nested = Peek(R"({"options":{"model":"x"},"messages":[[{"model":"y"}]]})");
  EXPECT_FALSE(only_nested.model.has_value());
}

TEST(BodyPeek, ModelOrNameIsTheFirstNonEmpty) {
  EXPECT_EQ(Peek(R"({"model":"a","name":"b"})").ModelOrName(), "a");
  EXPECT_EQ(Peek(R"({"name":"b"})").ModelOrName(), "b");
  EXPECT_EQ(Peek(R"({"model":"","name":"llama3"})").ModelOrName(), "llama3")
      << "the Go CLI's delete sends an empty model beside the name";
  EXPECT_EQ(Peek(R"({"model":"","name":""})").ModelOrName(), "");
}

TEST(BodyPeek, KeepAliveZeroAsANumber) {
  EXPECT_TRUE(Peek(R"({"keep_alive":0})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"keep_alive":0.0})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"keep_alive":-0})").keep_alive_zero);
  EXPECT_TRUE(Peek(R"({"keep_alive":1e-10})").keep_alive_zero) << "truncates to 0 ns";
  EXPECT_FALSE(Peek(R"({"keep_alive":1})").keep_alive_zero);
  EXPECT_FALSE(Peek(R"({"keep_alive":0.5})").keep_alive_zero);
  EXPECT_FALSE(Peek(R"({"keep_alive":-1})").keep_alive_zero) << "negative keeps it loaded";
}

TEST(BodyPeek, KeepAliveZeroAsAGoDuration) {
  for (const char* zero : {"0", "0s", "0m", "0h", "0ms", "0us", "0ns", "0\xC2\xB5s", "-0s", "+0s",
                           "0.0s", "0h0m0s", ".0s", "0.5ns", "-0"}) {
    EXPECT_TRUE(Peek(std::string(R"({"keep_alive":")") + zero + "\"}").keep_alive_zero) << zero;
  }
  for (const char* nonzero : {"5m", "1s", "0.5s", "1ns", "0h1m", "-1m", "300ms", "", "00", "0x",
                              "s", "0.s0", "abc", "-1", " 0", "0 "}) {
    EXPECT_FALSE(Peek(std::string(R"({"keep_alive":")") + nonzero + "\"}").keep_alive_zero)
        << nonzero;
  }
}

TEST(BodyPeek, PromptAndMessagesEmptinessForTheLoadShortcuts) {
  EXPECT_TRUE(Peek(R"({"model":"m"})").prompt_empty);
  EXPECT_TRUE(Peek(R"({"model":"m","prompt":""})").prompt_empty);
  EXPECT_FALSE(Peek(R"({"model":"m","prompt":" "})").prompt_empty);
  EXPECT_TRUE(Peek(R"({"model":"m"})").messages_empty);
  EXPECT_TRUE(Peek(R"({"model":"m","messages":[]})").messages_empty);
  EXPECT_TRUE(Peek(R"({"model":"m","messages":[ ]})").messages_empty);
  EXPECT_FALSE(Peek(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})").messages_empty);
  EXPECT_FALSE(Peek(R"({"messages":[null]})").messages_empty);
  EXPECT_FALSE(Peek(R"({"messages":[[]]})").messages_empty);
  EXPECT_TRUE(Peek(R"({"images":[1],"messages":[],"context":[1,2]})").messages_empty);
}

TEST(BodyPeek, EmptyBodyIsMissing) {
  EXPECT_EQ(Error(""), "missing request body");
  EXPECT_EQ(Error(" \r\n\t"), "missing request body");
}

TEST(BodyPeek, InvalidJsonIsExplained) {
  EXPECT_THAT(Error("{"), StartsWith("invalid JSON: "));
  EXPECT_THAT(Error("{model:1}"), StartsWith("invalid JSON: "));
  EXPECT_THAT(Error(R"({"model":"a",})"), StartsWith("invalid JSON: "));
  EXPECT_THAT(Error("{\"model\":\"a\""), HasSubstr("line 1"));
  EXPECT_THAT(Error("nope"), StartsWith("invalid JSON: "));
  EXPECT_THAT(Error("{x"), Not(HasSubstr("json.exception")));
}

TEST(BodyPeek, ErrorTextStaysShortAndPrintable) {
  // An unterminated 1 MB string with bytes that are not UTF-8 must not come back verbatim.
  std::string body = "{\"images\":[\"" + std::string(1 << 20, 'A') + "\xff\xfe";
  std::string message = Error(body);
  EXPECT_LT(message.size(), 300u);
  for (char c : message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
}

TEST(BodyPeek, JsonThatIsNotAnObjectIsRejected) {
  EXPECT_EQ(Error("[1,2]"), "invalid request body: expected a JSON object, got an array");
  EXPECT_EQ(Error(R"("llama3")"), "invalid request body: expected a JSON object, got a string");
  EXPECT_EQ(Error("42"), "invalid request body: expected a JSON object, got a number");
  EXPECT_EQ(Error("true"), "invalid request body: expected a JSON object, got a boolean");
  EXPECT_EQ(Error("null"), "invalid request body: expected a JSON object, got null");
}

TEST(BodyPeek, OnlyTheFirstValueIsReadLikeGosDecoder) {
  EXPECT_EQ(Peek(R"({"model":"a"} {"model":"b"})").model, "a");
  EXPECT_EQ(Peek("{\"model\":\"a\"}\ngarbage").model, "a");
  EXPECT_EQ(Peek("  \n{\"model\":\"a\"}").model, "a");
}

TEST(BodyPeek, HugeBodyWithBase64ImagesIsScanned) {
  // 50 MB of base64 in images, the model after it: only the top-level fields are kept.
  std::string image(25 << 20, 'Q');
  std::string body = R"({"prompt":"describe","images":[")" + image + R"(",")" + image +
                     R"("],"model":"llava:13b","stream":true})";
  ASSERT_GT(body.size(), 50u << 20);
  BodyFields f = Peek(body);
  EXPECT_EQ(f.model, "llava:13b");
  EXPECT_EQ(f.stream, true);
  EXPECT_FALSE(f.prompt_empty);
}

TEST(BodyPeek, DeepNestingDoesNotOverflowTheStack) {
  const int depth = 200000;
  std::string body =
      R"({"model":"m","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  EXPECT_EQ(Peek(body).model, "m");
}

TEST(BodyPeek, UnknownAndNonAsciiKeysAreIgnored) {
  BodyFields f = Peek(R"({"modèle":"x","models":"y","mode":"z","":"w","model":"m"})");
  EXPECT_EQ(f.model, "m");
}

}  // namespace
}  // namespace corral::dataplane
