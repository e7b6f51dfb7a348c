// Proxy-made replies: shapes clients parse, and JSON text line-splitting clients survive.
#include "dataplane/replies.h"

#include <gtest/gtest.h>

namespace corral::dataplane {
namespace {

TEST(RepliesTest, OllamaErrorIsOneLine) {
  EXPECT_EQ(OllamaErrorBody("model 'x' not found"), R"({"error":"model 'x' not found"})");
  EXPECT_EQ(OllamaErrorBody("a\nb").find('\n'), std::string::npos);
}

TEST(RepliesTest, OpenAIErrorTypeFollowsStatus) {
  EXPECT_EQ(OpenAIErrorBody("nope", 404),
            R"({"error":{"code":null,"message":"nope","param":null,"type":"not_found_error"}})");
  EXPECT_NE(OpenAIErrorBody("bad", 400).find("invalid_request_error"), std::string::npos);
  EXPECT_NE(OpenAIErrorBody("down", 503).find("\"api_error\""), std::string::npos);
}

TEST(RepliesTest, StreamErrorChunks) {
  EXPECT_EQ(StreamErrorChunk("node died", false), "{\"error\":\"node died\"}\n");
  EXPECT_EQ(StreamErrorChunk("node died", true),
            "data: {\"error\":{\"message\":\"node died\",\"type\":\"api_error\"}}\n\n");
}

TEST(RepliesTest, LineSeparatorsAreEscaped) {
  const std::string text =
      "a\xE2\x80\xA8"
      "b\xE2\x80\xA9"
      "c\xC2\x85"
      "d";
  EXPECT_EQ(DumpJson(nlohmann::json{{"t", text}}), R"({"t":"a\u2028b\u2029c\u0085d"})");
}

TEST(RepliesTest, InvalidUtf8DoesNotThrow) {
  EXPECT_NO_THROW(DumpJson(nlohmann::json{{"t", std::string("\xff\xfe")}}));
}

TEST(RepliesTest, SetErrorReplyUsesJsonContentType) {
  httplib::Response res;
  SetErrorReply(res, 413, "too big", false);
  EXPECT_EQ(res.status, 413);
  EXPECT_EQ(res.get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(res.body, R"({"error":"too big"})");
}

}  // namespace
}  // namespace corral::dataplane
