#include "bench/response_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace corral::bench {
namespace {

using Result = ResponseReader::Result;

// Feeds `wire` in pieces of `step` bytes; returns the last result and the body seen.
Result FeedInPieces(ResponseReader& reader, std::string_view wire, size_t step, std::string* body) {
  Result r = Result::kNeedMore;
  for (size_t at = 0; at < wire.size(); at += step) {
    r = reader.Feed(wire.substr(at, step), [&](std::string_view d) { body->append(d); });
    if (r != Result::kNeedMore) break;
  }
  return r;
}

TEST(ResponseReaderTest, ContentLengthBodyInAnyPieces) {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
      "{\"done\":1}\n";
  for (size_t step : {1, 3, 7, 1000}) {
    ResponseReader reader;
    std::string body;
    EXPECT_EQ(FeedInPieces(reader, wire, step, &body), Result::kComplete) << step;
    EXPECT_EQ(body, "{\"done\":1}\n");
    EXPECT_EQ(reader.status(), 200);
    EXPECT_TRUE(reader.keep_alive());
  }
}

TEST(ResponseReaderTest, ChunkedBodyWithExtensionsAndTrailers) {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6;x=y\r\nline1\n\r\n6\r\nline2\n\r\n0\r\nTrailer: z\r\n\r\n";
  for (size_t step : {1, 5, 1000}) {
    ResponseReader reader;
    std::string body;
    EXPECT_EQ(FeedInPieces(reader, wire, step, &body), Result::kComplete) << step;
    EXPECT_EQ(body, "line1\nline2\n");
  }
}

TEST(ResponseReaderTest, ConnectionCloseAndBodyUntilClose) {
  ResponseReader reader;
  std::string body;
  EXPECT_EQ(FeedInPieces(reader, "HTTP/1.0 503 Busy\r\n\r\nbusy", 4, &body), Result::kNeedMore);
  EXPECT_FALSE(reader.keep_alive());
  EXPECT_EQ(reader.FeedEof(), Result::kComplete);
  EXPECT_EQ(reader.status(), 503);
  EXPECT_EQ(body, "busy");

  ResponseReader closing;
  EXPECT_EQ(closing.Feed("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", nullptr),
            Result::kComplete);
  EXPECT_FALSE(closing.keep_alive());
}

TEST(ResponseReaderTest, TruncatedAndMalformedResponsesAreErrors) {
  ResponseReader cut;
  EXPECT_EQ(cut.Feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", nullptr),
            Result::kNeedMore);
  EXPECT_EQ(cut.FeedEof(), Result::kError);

  ResponseReader garbage;
  EXPECT_EQ(garbage.Feed("SSH-2.0-OpenSSH_9.2\r\n", nullptr), Result::kError);

  ResponseReader bad_chunk;
  EXPECT_EQ(bad_chunk.Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", nullptr),
            Result::kError);

  ResponseReader extra;
  EXPECT_EQ(extra.Feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", nullptr), Result::kError);
}

TEST(ResponseReaderTest, ResetReadsTheNextResponse) {
  ResponseReader reader;
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  EXPECT_EQ(reader.Feed(wire, nullptr), Result::kComplete);
  reader.Reset();
  EXPECT_FALSE(reader.head_done());
  EXPECT_EQ(reader.Feed(wire, nullptr), Result::kComplete);
}

}  // namespace
}  // namespace corral::bench
