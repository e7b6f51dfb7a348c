#include "dataplane/answer_usage.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>

namespace corral::dataplane {

void PrintTo(const AnswerUsage& u, std::ostream* os) {
  auto opt = [](const std::optional<int64_t>& v) {
    return v ? std::to_string(*v) : std::string("absent");
  };
  *os << "{in=" << opt(u.input_tokens) << " out=" << opt(u.output_tokens)
      << " load=" << opt(u.load_duration_ns) << " prompt_eval=" << opt(u.prompt_eval_duration_ns)
      << " eval=" << opt(u.eval_duration_ns) << " total=" << opt(u.total_duration_ns)
      << " done=" << u.done << " error=" << u.error << " first_token=" << u.first_token << "@"
      << u.first_token_offset << " objects=" << u.objects << " malformed=" << u.malformed << "}";
}

namespace {

AnswerUsage Read(AnswerFormat format, std::string_view answer) {
  AnswerUsageReader reader(format);
  reader.Feed(answer);
  reader.Finish();
  return reader.usage();
}

// Every cut into two pieces, and one byte at a time, reads the same as the whole answer; in the
// byte-at-a-time read, Feed returns true exactly on the byte that ends the first token's object.
void ExpectSameUnderEverySplit(AnswerFormat format, std::string_view answer) {
  const AnswerUsage whole = Read(format, answer);
  for (size_t cut = 0; cut <= answer.size(); ++cut) {
    AnswerUsageReader reader(format);
    const bool first = reader.Feed(answer.substr(0, cut));
    const bool second = reader.Feed(answer.substr(cut));
    const bool last = reader.Finish();
    ASSERT_EQ(reader.usage(), whole) << "cut at " << cut;
    ASSERT_EQ(first + second + last, whole.first_token ? 1 : 0) << "cut at " << cut;
    ASSERT_TRUE(!first || whole.first_token_offset <= cut) << "cut at " << cut;
    ASSERT_TRUE(!second || whole.first_token_offset > cut) << "cut at " << cut;
  }
  AnswerUsageReader reader(format);
  int signals = 0;
  for (size_t i = 0; i < answer.size(); ++i) {
    if (reader.Feed(answer.substr(i, 1))) {
      ++signals;
      ASSERT_EQ(whole.first_token_offset, i + 1) << "byte " << i;
    }
  }
  signals += reader.Finish();
  ASSERT_EQ(reader.usage(), whole);
  ASSERT_EQ(signals, whole.first_token ? 1 : 0);
}

// An Ollama /api/generate stream as a node sends it (ollama-api.md §3.2).
constexpr std::string_view kGenerateStream =
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.1Z","response":"","done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.2Z","response":"The","done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.3Z","response":" sky é","done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:23.9Z","response":"","done":true,)"
    R"("done_reason":"stop","context":[128006,9125,882],"total_duration":1762335291,)"
    R"("load_duration":20113125,"prompt_eval_count":26,"prompt_eval_duration":41223000,)"
    R"("eval_count":98,"eval_duration":1690420000})"
    "\n";

constexpr std::string_view kChatStream =
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.5Z","message":{"role":"assistant","content":""},"done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.6Z","message":{"role":"assistant","content":"Hel"},"done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:22.7Z","message":{"role":"assistant","content":"lo"},"done":false})"
    "\n"
    R"({"model":"llama3.2","created_at":"2026-08-21T18:48:23Z","message":{"role":"assistant","content":""},)"
    R"("done":true,"done_reason":"stop","total_duration":900,"load_duration":100,)"
    R"("prompt_eval_count":12,"prompt_eval_duration":200,"eval_count":2,"eval_duration":500})"
    "\n";

// /v1/chat/completions with stream_options.include_usage (ollama-api.md §7.1).
constexpr std::string_view kSseWithUsage =
    "data: "
    R"({"id":"chatcmpl-417","object":"chat.completion.chunk","created":1755820102,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]})"
    "\n\n"
    "data: "
    R"({"id":"chatcmpl-417","object":"chat.completion.chunk","created":1755820102,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]})"
    "\n\n"
    "data: "
    R"({"id":"chatcmpl-417","object":"chat.completion.chunk","created":1755820102,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"
    "\n\n"
    "data: "
    R"({"id":"chatcmpl-417","object":"chat.completion.chunk","created":1755820102,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":2,"total_tokens":28}})"
    "\n\n"
    "data: [DONE]\n\n";

constexpr std::string_view kSseWithoutUsage =
    "data: "
    R"({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]})"
    "\n\n"
    "data: "
    R"({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"
    "\n\n"
    "data: [DONE]\n\n";

size_t EndOfLine(std::string_view text, int line) {
  size_t pos = 0;
  for (int i = 0; i <= line; ++i) pos = text.find('\n', pos) + 1;
  return pos;
}

// --- Choosing the format ---

TEST(AnswerFormatFor, InferenceRoutesByContentType) {
  EXPECT_EQ(AnswerFormatFor(Endpoint::kGenerate, "application/x-ndjson"), AnswerFormat::kNdjson);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kChat, "application/json; charset=utf-8"),
            AnswerFormat::kJson);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kOpenAIChat, "text/event-stream"), AnswerFormat::kSse);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kOpenAICompletions, " Text/Event-Stream ;charset=utf-8"),
            AnswerFormat::kSse);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kEmbed, "application/json"), AnswerFormat::kJson);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kOpenAIEmbeddings, "application/json"), AnswerFormat::kJson);
}

TEST(AnswerFormatFor, OtherContentTypesAreNotRead) {
  EXPECT_EQ(AnswerFormatFor(Endpoint::kGenerate, "text/plain; charset=utf-8"), AnswerFormat::kNone);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kGenerate, ""), AnswerFormat::kNone);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kGenerate, "application/jsonx"), AnswerFormat::kNone);
}

TEST(AnswerFormatFor, RoutesWithoutUsageAreNotRead) {
  EXPECT_EQ(AnswerFormatFor(Endpoint::kPull, "application/x-ndjson"), AnswerFormat::kNone);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kShow, "application/json"), AnswerFormat::kNone);
  EXPECT_EQ(AnswerFormatFor(Endpoint::kTags, "application/json"), AnswerFormat::kNone);
}

TEST(AnswerUsageReader, FormatNoneReadsNothing) {
  const AnswerUsage usage = Read(AnswerFormat::kNone, kGenerateStream);
  EXPECT_EQ(usage, AnswerUsage{});
}

// --- NDJSON ---

TEST(AnswerUsageReader, NdjsonGenerateCountsAndDurations) {
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, kGenerateStream);
  EXPECT_EQ(usage.input_tokens, 26);
  EXPECT_EQ(usage.output_tokens, 98);
  EXPECT_EQ(usage.load_duration_ns, 20113125);
  EXPECT_EQ(usage.prompt_eval_duration_ns, 41223000);
  EXPECT_EQ(usage.eval_duration_ns, 1690420000);
  EXPECT_EQ(usage.total_duration_ns, 1762335291);
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.error);
  EXPECT_EQ(usage.objects, 4u);
  EXPECT_EQ(usage.malformed, 0u);
}

TEST(AnswerUsageReader, NdjsonGenerateFirstTokenIsTheFirstNonEmptyResponse) {
  AnswerUsageReader reader(AnswerFormat::kNdjson);
  EXPECT_FALSE(reader.Feed(kGenerateStream.substr(0, EndOfLine(kGenerateStream, 0))));
  EXPECT_TRUE(reader.Feed(kGenerateStream.substr(EndOfLine(kGenerateStream, 0))));
  EXPECT_TRUE(reader.usage().first_token);
  EXPECT_EQ(reader.usage().first_token_offset, EndOfLine(kGenerateStream, 1));
}

TEST(AnswerUsageReader, NdjsonGenerateUnderEverySplit) {
  ExpectSameUnderEverySplit(AnswerFormat::kNdjson, kGenerateStream);
}

TEST(AnswerUsageReader, NdjsonChatCountsAndFirstToken) {
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, kChatStream);
  EXPECT_EQ(usage.input_tokens, 12);
  EXPECT_EQ(usage.output_tokens, 2);
  EXPECT_EQ(usage.total_duration_ns, 900);
  EXPECT_TRUE(usage.done);
  EXPECT_TRUE(usage.first_token);
  EXPECT_EQ(usage.first_token_offset, EndOfLine(kChatStream, 1));
}

TEST(AnswerUsageReader, NdjsonChatUnderEverySplit) {
  ExpectSameUnderEverySplit(AnswerFormat::kNdjson, kChatStream);
}

TEST(AnswerUsageReader, NdjsonThinkingAndToolCallsAreTokens) {
  EXPECT_TRUE(Read(AnswerFormat::kNdjson, R"({"response":"","thinking":"Hm","done":false})"
                                          "\n")
                  .first_token);
  EXPECT_TRUE(Read(AnswerFormat::kNdjson,
                   R"({"message":{"role":"assistant","content":"","thinking":"Let"}})"
                   "\n")
                  .first_token);
  EXPECT_TRUE(Read(AnswerFormat::kNdjson,
                   R"({"message":{"content":"","tool_calls":[{"function":{"name":"f"}}]}})"
                   "\n")
                  .first_token);
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"message":{"content":"","tool_calls":[]}})"
                                           "\n")
                   .first_token);
}

TEST(AnswerUsageReader, NdjsonTextInTheFinalChunkIsAToken) {
  const AnswerUsage usage =
      Read(AnswerFormat::kNdjson, R"({"response":"All at once","done":true,"eval_count":3})"
                                  "\n");
  EXPECT_TRUE(usage.first_token);
  EXPECT_TRUE(usage.done);
  EXPECT_EQ(usage.output_tokens, 3);
}

TEST(AnswerUsageReader, NdjsonLoadShortcutHasNoCountsAndNoToken) {
  const AnswerUsage usage = Read(
      AnswerFormat::kNdjson,
      R"({"model":"m","created_at":"2026-01-01T00:00:00Z","response":"","done":true,"done_reason":"load"})"
      "\n");
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.input_tokens.has_value());
  EXPECT_FALSE(usage.output_tokens.has_value());
  EXPECT_FALSE(usage.first_token);
}

TEST(AnswerUsageReader, NdjsonZeroIsAValueNotAbsence) {
  const AnswerUsage usage =
      Read(AnswerFormat::kNdjson, R"({"done":true,"prompt_eval_count":0,"eval_count":0})"
                                  "\n");
  EXPECT_EQ(usage.input_tokens, 0);
  EXPECT_EQ(usage.output_tokens, 0);
}

TEST(AnswerUsageReader, NdjsonErrorLineMidStream) {
  const std::string answer = std::string(kGenerateStream.substr(0, EndOfLine(kGenerateStream, 2))) +
                             R"({"error":"an error was encountered while running the model"})"
                             "\n";
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, answer);
  EXPECT_TRUE(usage.error);
  EXPECT_FALSE(usage.done);
  EXPECT_TRUE(usage.first_token);
  EXPECT_FALSE(usage.input_tokens.has_value());
  EXPECT_FALSE(usage.output_tokens.has_value());
  EXPECT_EQ(usage.objects, 4u);
  ExpectSameUnderEverySplit(AnswerFormat::kNdjson, answer);
}

TEST(AnswerUsageReader, NdjsonNullErrorIsNotAnError) {
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"error":null,"done":true})"
                                           "\n")
                   .error);
}

TEST(AnswerUsageReader, NdjsonMalformedLineIsSkippedAndTheRestRead) {
  const std::string answer = R"({"response":"a","done":false)"  // cut short
                             "\n"
                             R"(not json at all)"
                             "\n"
                             R"({"done":true,"eval_count":7})"
                             "\n";
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, answer);
  EXPECT_EQ(usage.malformed, 2u);
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.output_tokens, 7);
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.first_token);  // the cut-short line's token does not count
}

TEST(AnswerUsageReader, NdjsonLastLineWithoutNewlineIsReadAtFinish) {
  AnswerUsageReader reader(AnswerFormat::kNdjson);
  EXPECT_FALSE(reader.Feed(R"({"response":"a","done":true,"prompt_eval_count":5,"eval_count":6})"));
  EXPECT_FALSE(reader.usage().done);
  EXPECT_TRUE(reader.Finish());  // the first token was in that line
  EXPECT_TRUE(reader.usage().first_token);
  EXPECT_TRUE(reader.usage().done);
  EXPECT_EQ(reader.usage().input_tokens, 5);
  EXPECT_EQ(reader.usage().output_tokens, 6);
}

TEST(AnswerUsageReader, NdjsonLongFinalLineIsReadWithoutBeingKept) {
  // A final chunk with a 128k-token context array and a long _debug_info: about 1.5 MB.
  std::string line = R"({"response":"","done":true,"context":[)";
  for (int i = 0; i < 128 * 1024; ++i) line += (i ? "," : "") + std::to_string(100000 + i);
  line += R"(],"_debug_info":{"rendered":")" + std::string(500000, 'x') + R"("},)";
  line += R"("prompt_eval_count":131072,"eval_count":1})"
          "\n";
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, line);
  EXPECT_EQ(usage.input_tokens, 131072);
  EXPECT_EQ(usage.output_tokens, 1);
  EXPECT_TRUE(usage.done);
  EXPECT_LT(sizeof(AnswerUsageReader), 1024u);
}

TEST(AnswerUsageReader, NdjsonCrLfLineEnds) {
  const AnswerUsage usage =
      Read(AnswerFormat::kNdjson, "{\"response\":\"a\"}\r\n{\"done\":true}\r\n");
  EXPECT_EQ(usage.objects, 2u);
  EXPECT_TRUE(usage.done);
  EXPECT_TRUE(usage.first_token);
}

TEST(AnswerUsageReader, NdjsonBlankLinesAreNeitherObjectsNorMalformed) {
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, "\n \t\r\n{\"done\":true}\n\n");
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.malformed, 0u);
}

TEST(AnswerUsageReader, NdjsonLaterCountsReplaceEarlierOnes) {
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, R"({"eval_count":1,"prompt_eval_count":4})"
                                                        "\n"
                                                        R"({"eval_count":9})"
                                                        "\n");
  EXPECT_EQ(usage.output_tokens, 9);
  EXPECT_EQ(usage.input_tokens, 4);  // absent in the later object: the earlier value stays
}

// --- Numbers ---

TEST(AnswerUsageReader, AbsurdNumbersAreAbsent) {
  for (std::string_view value :
       {"-5", "-0", "3.5", "26.0", "2.6e1", "1E2", "99999999999999999999999999", "1e400", "\"26\"",
        "null", "true", "[26]", "{\"n\":26}", "4294967296"}) {
    const std::string line = R"({"done":true,"prompt_eval_count":)" + std::string(value) +
                             R"(,"eval_count":)" + std::string(value) + "}\n";
    const AnswerUsage usage = Read(AnswerFormat::kNdjson, line);
    EXPECT_EQ(usage.objects, 1u) << value;
    EXPECT_FALSE(usage.input_tokens.has_value()) << value;
    EXPECT_FALSE(usage.output_tokens.has_value()) << value;
  }
}

TEST(AnswerUsageReader, NumbersAtTheLimitsAreTaken) {
  const std::string line = R"({"prompt_eval_count":4294967295,"eval_count":0,)"
                           R"("total_duration":9007199254740991,"load_duration":9007199254740992})"
                           "\n";
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, line);
  EXPECT_EQ(usage.input_tokens, kMaxTokenCount);
  EXPECT_EQ(usage.output_tokens, 0);
  EXPECT_EQ(usage.total_duration_ns, kMaxDurationNs);
  EXPECT_FALSE(usage.load_duration_ns.has_value());
}

TEST(AnswerUsageReader, LastDuplicateKeyWins) {
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"eval_count":5,"eval_count":"x"})"
                                           "\n")
                   .output_tokens.has_value());
  EXPECT_EQ(Read(AnswerFormat::kNdjson, R"({"eval_count":"x","eval_count":5})"
                                        "\n")
                .output_tokens,
            5);
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"usage":{"prompt_tokens":5},"usage":null})"
                                           "\n")
                   .input_tokens.has_value());
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"response":"a","response":""})"
                                           "\n")
                   .first_token);
  EXPECT_FALSE(Read(AnswerFormat::kNdjson, R"({"done":true,"done":false})"
                                           "\n")
                   .done);
}

TEST(AnswerUsageReader, NestedKeysWithTheSameNamesAreNotCounts) {
  const AnswerUsage usage = Read(
      AnswerFormat::kNdjson,
      R"({"options":{"eval_count":5,"prompt_eval_count":6},"message":{"eval_count":7},"done":false})"
      "\n");
  EXPECT_FALSE(usage.input_tokens.has_value());
  EXPECT_FALSE(usage.output_tokens.has_value());
}

TEST(AnswerUsageReader, EscapedKeysMatchLikeAnyJsonParser) {
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, R"({"eval\u005fcount":5,"d\u006fne":true})"
                                                        "\n");
  EXPECT_EQ(usage.output_tokens, 5);
  EXPECT_TRUE(usage.done);
}

// --- Malformed JSON ---

TEST(AnswerUsageReader, MalformedJsonChangesNothing) {
  for (std::string_view line : {
           R"({"eval_count":5,})",              // trailing comma
           R"({"eval_count":5)",                // unclosed
           R"({"eval_count":5]})",              // wrong close
           R"({"eval_count":05})",              // leading zero
           R"({"eval_count":5.})",              // fraction without digits
           R"({"eval_count":-})",               // minus alone
           R"({"eval_count" 5})",               // missing colon
           R"({eval_count:5})",                 // unquoted key
           R"({"eval_count":5}{"done":true})",  // two values on one line
           R"({"eval_count":5,"s":"\ud800"})",  // lone high surrogate
           R"({"eval_count":5,"s":"\udc00"})",  // lone low surrogate
           R"({"eval_count":5,"s":"\x"})",      // bad escape
           R"({"eval_count":5,"s":"a)"
           "\t"
           R"(b"})",                          // raw control character in a string
           R"({"eval_count":5,"ok":tru})",    // broken literal
           R"({"eval_count":5,"ok":truex})",  // literal followed by junk
           R"([{"eval_count":5}])",           // not an object
           R"("eval_count")",                 // not an object
           "\xef\xbb\xbf{\"eval_count\":5}",  // byte order mark
       }) {
    const AnswerUsage usage = Read(AnswerFormat::kNdjson, std::string(line) + "\n");
    EXPECT_EQ(usage.malformed, 1u) << line;
    EXPECT_EQ(usage.objects, 0u) << line;
    EXPECT_FALSE(usage.output_tokens.has_value()) << line;
    EXPECT_FALSE(usage.done) << line;
  }
}

TEST(AnswerUsageReader, ValidSurrogatePairsAndEscapesAreAccepted) {
  const AnswerUsage usage =
      Read(AnswerFormat::kNdjson,
           R"({"response":"\ud83d\ude00 \" \\ \/ \b\f\n\r\t \u00e9","eval_count":5})"
           "\n");
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.output_tokens, 5);
  EXPECT_TRUE(usage.first_token);
}

TEST(AnswerUsageReader, NestingUpToTheLimitIsRead) {
  const int inner = kMaxAnswerDepth - 1;  // the top-level object is one level
  const std::string ok =
      R"({"eval_count":5,"deep":)" + std::string(inner, '[') + std::string(inner, ']') + "}\n";
  EXPECT_EQ(Read(AnswerFormat::kNdjson, ok).output_tokens, 5);
  const std::string deep = R"({"eval_count":5,"deep":)" + std::string(inner + 1, '[') +
                           std::string(inner + 1, ']') + "}\n";
  const AnswerUsage usage = Read(AnswerFormat::kNdjson, deep);
  EXPECT_EQ(usage.malformed, 1u);
  EXPECT_FALSE(usage.output_tokens.has_value());
}

// --- SSE ---

TEST(AnswerUsageReader, SseWithIncludeUsage) {
  const AnswerUsage usage = Read(AnswerFormat::kSse, kSseWithUsage);
  EXPECT_EQ(usage.input_tokens, 26);
  EXPECT_EQ(usage.output_tokens, 2);
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.error);
  EXPECT_EQ(usage.objects, 4u);
  EXPECT_EQ(usage.malformed, 0u);
  EXPECT_TRUE(usage.first_token);
  EXPECT_EQ(usage.first_token_offset, kSseWithUsage.find("\n\n") + 2);
}

TEST(AnswerUsageReader, SseWithIncludeUsageUnderEverySplit) {
  ExpectSameUnderEverySplit(AnswerFormat::kSse, kSseWithUsage);
}

TEST(AnswerUsageReader, SseWithoutIncludeUsageHasNoCounts) {
  const AnswerUsage usage = Read(AnswerFormat::kSse, kSseWithoutUsage);
  EXPECT_FALSE(usage.input_tokens.has_value());
  EXPECT_FALSE(usage.output_tokens.has_value());
  EXPECT_TRUE(usage.done);
  EXPECT_TRUE(usage.first_token);
  ExpectSameUnderEverySplit(AnswerFormat::kSse, kSseWithoutUsage);
}

TEST(AnswerUsageReader, SseWithoutDoneIsNotDone) {
  const std::string_view cut = kSseWithoutUsage.substr(0, kSseWithoutUsage.find("data: [DONE]"));
  const AnswerUsage usage = Read(AnswerFormat::kSse, cut);
  EXPECT_FALSE(usage.done);
  EXPECT_EQ(usage.objects, 2u);
}

TEST(AnswerUsageReader, SseCompletionsZeroedUsageThenTheRealOne) {
  const std::string answer =
      "data: "
      R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"Hi","index":0,"finish_reason":null}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}})"
      "\n\n"
      "data: "
      R"({"id":"cmpl-1","object":"text_completion","choices":[{"text":"","index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}})"
      "\n\n"
      "data: "
      R"({"id":"cmpl-1","object":"text_completion","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}})"
      "\n\n"
      "data: [DONE]\n\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, answer);
  EXPECT_EQ(usage.input_tokens, 9);
  EXPECT_EQ(usage.output_tokens, 1);
  EXPECT_TRUE(usage.first_token);
  EXPECT_EQ(usage.first_token_offset, answer.find("\n\n") + 2);
}

TEST(AnswerUsageReader, SseCrLfAndCrLineEnds) {
  const std::string crlf =
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\r\n\r\n"
      "data: [DONE]\r\n\r\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, crlf);
  EXPECT_EQ(usage.input_tokens, 3);
  EXPECT_TRUE(usage.done);
  EXPECT_EQ(usage.first_token_offset, crlf.find("\r\n\r\n") + 3);  // the blank line's CR
  ExpectSameUnderEverySplit(AnswerFormat::kSse, crlf);

  std::string cr = crlf;
  std::erase(cr, '\n');
  EXPECT_EQ(Read(AnswerFormat::kSse, cr).input_tokens, 3);
  ExpectSameUnderEverySplit(AnswerFormat::kSse, cr);
}

TEST(AnswerUsageReader, SseDataLinesOfOneEventAreJoined) {
  const std::string answer =
      "data: {\"usage\":\n"
      "data:{\"prompt_tokens\":4,\n"
      "data:  \"completion_tokens\":2}}\n"
      "\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, answer);
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.input_tokens, 4);
  EXPECT_EQ(usage.output_tokens, 2);
  ExpectSameUnderEverySplit(AnswerFormat::kSse, answer);
}

TEST(AnswerUsageReader, SseCommentsAndOtherFieldsAreIgnored) {
  const std::string answer =
      ": keep-alive\n"
      "event: message\n"
      "id: 7\n"
      "retry: 1000\n"
      "database: {\"usage\":{\"prompt_tokens\":99}}\n"
      "data: {\"usage\":{\"prompt_tokens\":4}}\n"
      "\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, answer);
  EXPECT_EQ(usage.input_tokens, 4);
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.malformed, 0u);
}

TEST(AnswerUsageReader, SseEventCutOffByTheEndIsDropped) {
  const AnswerUsage usage =
      Read(AnswerFormat::kSse, "data: {\"usage\":{\"prompt_tokens\":4}}\n");  // no blank line
  EXPECT_FALSE(usage.input_tokens.has_value());
  EXPECT_EQ(usage.objects, 0u);
}

TEST(AnswerUsageReader, SseDoneMustBeExact) {
  EXPECT_TRUE(Read(AnswerFormat::kSse, "data:[DONE]\n\n").done);
  for (std::string_view event : {"data: [DONE] \n\n", "data:  [DONE]\n\n", "data: [DONE\n\n",
                                 "data: [DONE]x\n\n", "data: [DO\ndata: NE]\n\n"}) {
    const AnswerUsage usage = Read(AnswerFormat::kSse, event);
    EXPECT_FALSE(usage.done) << event;
    EXPECT_EQ(usage.malformed, 1u) << event;
  }
}

TEST(AnswerUsageReader, SseErrorEvent) {
  const AnswerUsage usage =
      Read(AnswerFormat::kSse,
           "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
           "data: {\"error\":{\"message\":\"node failed\",\"type\":\"api_error\"}}\n\n");
  EXPECT_TRUE(usage.error);
  EXPECT_FALSE(usage.done);
}

TEST(AnswerUsageReader, SseEmptyDeltasAreNotTokens) {
  const AnswerUsage usage =
      Read(AnswerFormat::kSse,
           "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
           "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
  EXPECT_FALSE(usage.first_token);
}

TEST(AnswerUsageReader, SseReasoningAndToolCallDeltasAreTokens) {
  EXPECT_TRUE(
      Read(AnswerFormat::kSse, "data: {\"choices\":[{\"delta\":{\"reasoning\":\"Hm\"}}]}\n\n")
          .first_token);
  EXPECT_TRUE(Read(AnswerFormat::kSse,
                   "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"call_1\"}]}}]}\n\n")
                  .first_token);
  EXPECT_TRUE(Read(AnswerFormat::kSse,
                   "data: {\"choices\":[{\"delta\":{}},{\"delta\":{\"content\":\"b\"}}]}\n\n")
                  .first_token);
}

TEST(AnswerUsageReader, SseResponsesApiStream) {
  const std::string answer =
      "event: response.created\n"
      "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n"
      "event: response.output_text.delta\n"
      "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
      "event: response.completed\n"
      "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"error\":null,"
      "\"usage\":{\"input_tokens\":11,\"output_tokens\":3,\"total_tokens\":14}}}\n\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, answer);
  EXPECT_EQ(usage.input_tokens, 11);
  EXPECT_EQ(usage.output_tokens, 3);
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.error);
  EXPECT_TRUE(usage.first_token);
  ExpectSameUnderEverySplit(AnswerFormat::kSse, answer);
}

TEST(AnswerUsageReader, SseMessagesApiStream) {
  const std::string answer =
      "event: message_start\n"
      "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],"
      "\"usage\":{\"input_tokens\":21,\"output_tokens\":1}}}\n\n"
      "event: content_block_delta\n"
      "data: {\"type\":\"content_block_delta\",\"index\":0,"
      "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
      "event: message_delta\n"
      "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
      "\"usage\":{\"output_tokens\":15}}\n\n"
      "event: message_stop\n"
      "data: {\"type\":\"message_stop\"}\n\n";
  const AnswerUsage usage = Read(AnswerFormat::kSse, answer);
  EXPECT_EQ(usage.input_tokens, 21);
  EXPECT_EQ(usage.output_tokens, 15);
  EXPECT_TRUE(usage.done);
  EXPECT_TRUE(usage.first_token);
  EXPECT_EQ(usage.first_token_offset, answer.find("message_delta") - std::string("event: ").size());
}

// --- Whole bodies ---

TEST(AnswerUsageReader, JsonOllamaNonStreamGenerate) {
  const std::string_view body =
      R"({"model":"llama3.2","created_at":"2026-08-21T18:48:23.9Z","response":"The sky is blue.",)"
      R"("done":true,"done_reason":"stop","context":[1,2,3],"total_duration":5000,)"
      R"("load_duration":1000,"prompt_eval_count":26,"prompt_eval_duration":2000,)"
      R"("eval_count":5,"eval_duration":1500})";
  const AnswerUsage usage = Read(AnswerFormat::kJson, body);
  EXPECT_EQ(usage.input_tokens, 26);
  EXPECT_EQ(usage.output_tokens, 5);
  EXPECT_EQ(usage.load_duration_ns, 1000);
  EXPECT_EQ(usage.eval_duration_ns, 1500);
  EXPECT_TRUE(usage.done);
  EXPECT_FALSE(usage.first_token);  // a whole body has no time to first token of its own
  ExpectSameUnderEverySplit(AnswerFormat::kJson, body);
}

TEST(AnswerUsageReader, JsonOpenAINonStreamChat) {
  const std::string_view body =
      R"({"id":"chatcmpl-417","object":"chat.completion","created":1755820102,"model":"llama3.2",
 "system_fingerprint":"fp_ollama",
 "choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],
 "usage":{"prompt_tokens":26,"completion_tokens":3,"total_tokens":29}}
)";
  const AnswerUsage usage = Read(AnswerFormat::kJson, body);
  EXPECT_EQ(usage.input_tokens, 26);
  EXPECT_EQ(usage.output_tokens, 3);
  EXPECT_TRUE(usage.done);
  EXPECT_EQ(usage.objects, 1u);
  ExpectSameUnderEverySplit(AnswerFormat::kJson, body);
}

TEST(AnswerUsageReader, JsonEmbedHasInputOnly) {
  const AnswerUsage usage = Read(
      AnswerFormat::kJson,
      R"({"model":"all-minilm","embeddings":[[0.0101,-0.0017,0.0500]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8})");
  EXPECT_EQ(usage.input_tokens, 8);
  EXPECT_FALSE(usage.output_tokens.has_value());
  EXPECT_EQ(usage.total_duration_ns, 14143917);
  EXPECT_TRUE(usage.done);
}

TEST(AnswerUsageReader, JsonOpenAIEmbeddingsHasInputOnly) {
  const AnswerUsage usage = Read(
      AnswerFormat::kJson,
      R"({"object":"list","data":[{"object":"embedding","embedding":[0.01,-0.02],"index":0}],"model":"all-minilm","usage":{"prompt_tokens":8,"total_tokens":8}})");
  EXPECT_EQ(usage.input_tokens, 8);
  EXPECT_FALSE(usage.output_tokens.has_value());
}

TEST(AnswerUsageReader, JsonErrorBodyIsAnErrorNotDone) {
  for (
      std::string_view body :
      {R"({"error":"model 'x' not found"})",
       R"({"error":{"message":"model 'x' not found","type":"not_found_error","param":null,"code":null}})"}) {
    const AnswerUsage usage = Read(AnswerFormat::kJson, body);
    EXPECT_TRUE(usage.error) << body;
    EXPECT_FALSE(usage.done) << body;
  }
}

TEST(AnswerUsageReader, JsonBodyCutShortIsMalformed) {
  const AnswerUsage usage =
      Read(AnswerFormat::kJson, R"({"prompt_eval_count":8,"embeddings":[[0.1,0.2)");
  EXPECT_EQ(usage.malformed, 1u);
  EXPECT_FALSE(usage.done);
  EXPECT_FALSE(usage.input_tokens.has_value());
}

// --- Lifecycle ---

TEST(AnswerUsageReader, FinishIsIdempotentAndLaterBytesAreIgnored) {
  AnswerUsageReader reader(AnswerFormat::kNdjson);
  reader.Feed(R"({"eval_count":1})");
  reader.Finish();
  const AnswerUsage once = reader.usage();
  reader.Finish();
  EXPECT_FALSE(reader.Feed("\n{\"response\":\"a\",\"eval_count\":2}\n"));
  reader.Finish();
  EXPECT_EQ(reader.usage(), once);
  EXPECT_EQ(once.output_tokens, 1);
}

// The scanner skips runs of string content eight bytes at a time and whole ",<integer>,"
// elements of arrays that mean nothing; every byte those runs must stop at is still checked.
TEST(AnswerUsageReader, LongContextArraysAndTextAreReadExactly) {
  const std::string_view body =
      R"({"response":"Rayleigh scattering makes the sky look blue \"mostly\" \u00e9\ud83d\ude00!",)"
      R"("context":[128006, 9125 ,128007,0,271,38766,1303,33025,2696 , 25,6790,220,0],)"
      R"("nested":[[1,2,[3,4]],{"a":[5,6]},[]],"done":true,"eval_count":18,)"
      R"("prompt_eval_count":26})";
  const AnswerUsage usage = Read(AnswerFormat::kJson, body);
  EXPECT_EQ(usage.objects, 1u);
  EXPECT_EQ(usage.malformed, 0u);
  EXPECT_EQ(usage.input_tokens, 26);
  EXPECT_EQ(usage.output_tokens, 18);
  ExpectSameUnderEverySplit(AnswerFormat::kJson, body);
}

TEST(AnswerUsageReader, MalformedArrayElementsAndStringBytesAreCaughtInRuns) {
  // Each is malformed at one byte deep inside a run the fast paths cover.
  const std::string_view bad[] = {
      R"({"context":[1,2,3,01,5],"eval_count":1})",
      R"({"context":[1,2,3,1-,5],"eval_count":1})",
      R"({"context":[1,2,3,,5],"eval_count":1})",
      R"({"context":[1,2,3,4,],"eval_count":1})",
      R"({"context":[1,2,3 4,5],"eval_count":1})",
      R"({"context":[1,2,3,4}],"eval_count":1})",
      "{\"response\":\"0123456789abcdef\x01ghijklmnop\",\"eval_count\":1}",
      "{\"response\":\"0123456789abcdef\x1fghijklmnop\",\"eval_count\":1}",
      R"({"response":"0123456789abcdef\xghijklmnop","eval_count":1})",
      R"({"response":"0123456789abcdef\ud800ghijklmnop","eval_count":1})",
  };
  for (std::string_view body : bad) {
    const AnswerUsage usage = Read(AnswerFormat::kJson, body);
    EXPECT_EQ(usage.malformed, 1u) << body;
    EXPECT_EQ(usage.objects, 0u) << body;
    EXPECT_FALSE(usage.output_tokens.has_value()) << body;
    ExpectSameUnderEverySplit(AnswerFormat::kJson, body);
  }
  // Numbers with a sign, a fraction or an exponent are fine inside arrays, and still validated.
  const std::string_view good = R"({"context":[1,-2,3.5,4e2,0,1E+3,-0.0],"eval_count":7})";
  EXPECT_EQ(Read(AnswerFormat::kJson, good).output_tokens, 7);
  ExpectSameUnderEverySplit(AnswerFormat::kJson, good);
}

TEST(AnswerUsageReader, KeysMatchWhetherReadInPlaceOrAcrossChunks) {
  // A key is matched where it lies when the whole of it is in one chunk, else from its capture;
  // an escaped key is always captured. Both must give the same member.
  const std::string_view body =
      R"({"eval_count":3,"prompt_eval\u005fcount":4,"a_key_much_longer_than_any_capture":1,)"
      R"("usage":{"prompt_tokens":9,"completion_tokens":8},"done":true})";
  const AnswerUsage usage = Read(AnswerFormat::kJson, body);
  EXPECT_EQ(usage.input_tokens, 4);
  EXPECT_EQ(usage.output_tokens, 3);
  ExpectSameUnderEverySplit(AnswerFormat::kJson, body);
}

TEST(AnswerUsageReader, FirstTokenIsSignalledOnce) {
  AnswerUsageReader reader(AnswerFormat::kNdjson);
  EXPECT_TRUE(reader.Feed("{\"response\":\"a\"}\n"));
  EXPECT_FALSE(reader.Feed("{\"response\":\"b\"}\n"));
  EXPECT_EQ(reader.usage().first_token_offset, 17u);
}

}  // namespace
}  // namespace corral::dataplane
