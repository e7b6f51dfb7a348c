// The request head as the front door reads it: one test per rule of common/request_head.h,
// what it accepts, the head it forwards, and the chunked-body decoder.
#include "common/request_head.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace corral {
namespace {

using namespace std::string_literals;

HeadParse Parse(std::string_view bytes, const HeadLimits& limits = {}) {
  return ParseRequestHead(bytes, limits);
}

RequestHead Accept(std::string_view bytes) {
  HeadParse parse = Parse(bytes);
  EXPECT_TRUE(parse.head.has_value())
      << "refused (" << parse.error.status << "): " << parse.error.message;
  return parse.head.value_or(RequestHead{});
}

// The head is refused with `status` and a message that contains `message`.
void ExpectRefused(std::string_view bytes, int status, std::string_view message,
                   const HeadLimits& limits = {}) {
  HeadParse parse = Parse(bytes, limits);
  ASSERT_FALSE(parse.head.has_value()) << "accepted: " << bytes;
  EXPECT_EQ(parse.error.status, status) << parse.error.message;
  EXPECT_NE(parse.error.message.find(message), std::string::npos)
      << "message: " << parse.error.message << "\nexpected to contain: " << message;
  for (char c : parse.error.message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in message: " << parse.error.message;
  }
}

// A GET with a Host and the given extra lines (each without its CRLF).
std::string Get(std::vector<std::string> lines, std::string_view request_line = "GET / HTTP/1.1") {
  std::string head(request_line);
  head += "\r\nHost: corral.test\r\n";
  for (const std::string& line : lines) head += line + "\r\n";
  return head + "\r\n";
}

std::vector<HeaderField> Fields(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<HeaderField> fields;
  for (auto& [name, value] : pairs) fields.push_back(HeaderField{name, value});
  return fields;
}

// ---- Refusals: line endings ----

TEST(RequestHeadRefuses, BareLfEndingTheRequestLine) {
  ExpectRefused("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF line ending");
}

TEST(RequestHeadRefuses, BareLfEndingAHeaderLine) {
  ExpectRefused("GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400, "bare LF line ending");
}

TEST(RequestHeadRefuses, BareLfEndingTheHead) {
  ExpectRefused("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF line ending");
}

TEST(RequestHeadRefuses, BareLfAsALeadingEmptyLine) {
  ExpectRefused("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF line ending");
}

TEST(RequestHeadRefuses, BareCrInAHeaderValue) {
  ExpectRefused(Get({"X-A: a\rContent-Length: 5"}), 400,
                "header value contains a control character (0x0d) in field \"X-A\"");
}

TEST(RequestHeadRefuses, BareCrInTheRequestLine) {
  ExpectRefused("GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "request target contains a control character (0x0d)");
}

TEST(RequestHeadRefuses, BareCrBeforeTheCrlf) {
  ExpectRefused(Get({"X-A: a\r"}), 400,
                "header value contains a control character (0x0d) in field \"X-A\"");
}

// ---- Refusals: header values ----

TEST(RequestHeadRefuses, NulInAHeaderValue) {
  ExpectRefused(Get({"X-A: a\0b"s}), 400,
                "header value contains a control character (0x00) in field \"X-A\"");
}

TEST(RequestHeadRefuses, OtherC0InAHeaderValue) {
  ExpectRefused(Get({"X-A: a\x01"}), 400, "control character (0x01) in field \"X-A\"");
  ExpectRefused(Get({"X-A: \x1b[31m"}), 400, "control character (0x1b) in field \"X-A\"");
  ExpectRefused(Get({"X-A: a\x0b"}), 400, "control character (0x0b) in field \"X-A\"");
}

TEST(RequestHeadRefuses, DelInAHeaderValue) {
  ExpectRefused(Get({"X-A: a\x7f"}), 400, "control character (0x7f) in field \"X-A\"");
}

TEST(RequestHeadRefuses, ControlCharacterAtAnyPlaceOfALongValue) {
  // Values are checked eight bytes at a time: every offset within and across those words.
  for (size_t at = 0; at < 40; ++at) {
    for (char c : {'\0', '\x01', '\x0b', '\x1f', '\x7f', '\r', '\n'}) {
      std::string value(40, 'v');
      value[at] = c;
      HeadParse parse = Parse(Get({"X-A: w" + value}));
      EXPECT_FALSE(parse.head.has_value()) << "byte " << int(c) << " at " << at;
    }
  }
}

TEST(RequestHeadAccepts, TabsAndObsTextAtAnyPlaceOfALongValue) {
  for (size_t at = 0; at < 40; ++at) {
    for (char c : {'\t', ' ', '\x80', '\xff', '\x7e', '\x20'}) {
      std::string value = "w" + std::string(40, 'v') + "w";
      value[1 + at] = c;
      HeadParse parse = Parse(Get({"X-A: " + value}));
      ASSERT_TRUE(parse.head.has_value())
          << "byte " << int(c) << " at " << at << ": " << parse.error.message;
      EXPECT_EQ(*parse.head->Find("X-A"), value);
    }
  }
}

// ---- Refusals: header names ----

TEST(RequestHeadRefuses, ControlCharacterInAHeaderName) {
  ExpectRefused(Get({"X-\x01: a"}), 400, "header name contains a control character (0x01)");
  ExpectRefused(Get({"X-A\rB: a"}), 400, "header name contains a control character (0x0d)");
}

TEST(RequestHeadRefuses, InvalidCharacterInAHeaderName) {
  ExpectRefused(Get({"X(A): a"}), 400, "header name contains an invalid character (0x28)");
  ExpectRefused(Get({"X\xc3\xa9: a"}), 400, "header name contains an invalid character (0xc3)");
  ExpectRefused(Get({"X/A: a"}), 400, "header name contains an invalid character (0x2f)");
}

TEST(RequestHeadRefuses, WhitespaceBetweenNameAndColon) {
  ExpectRefused(Get({"Content-Length : 5"}), 400,
                "whitespace between the header name and the colon in field \"Content-Length\"");
  ExpectRefused(Get({"X-A\t: 5"}), 400, "whitespace between the header name and the colon");
}

TEST(RequestHeadRefuses, EmptyHeaderName) { ExpectRefused(Get({": a"}), 400, "empty header name"); }

TEST(RequestHeadRefuses, HeaderLineWithoutAColon) {
  ExpectRefused(Get({"X-A"}), 400, "header line without a colon");
}

TEST(RequestHeadRefuses, ObsFoldWithSpace) {
  ExpectRefused(Get({"X-A: a", " continued"}), 400,
                "obs-fold (a header line starting with whitespace) is not allowed");
}

TEST(RequestHeadRefuses, ObsFoldWithTab) {
  ExpectRefused(Get({"X-A: a", "\tcontinued"}), 400,
                "obs-fold (a header line starting with whitespace) is not allowed");
}

// ---- Refusals: framing ----

TEST(RequestHeadRefuses, ContentLengthWithTransferEncoding) {
  ExpectRefused(Get({"Content-Length: 5", "Transfer-Encoding: chunked"}, "POST / HTTP/1.1"), 400,
                "Content-Length and Transfer-Encoding together");
  ExpectRefused(Get({"Transfer-Encoding: chunked", "Content-Length: 5"}, "POST / HTTP/1.1"), 400,
                "Content-Length and Transfer-Encoding together");
}

TEST(RequestHeadRefuses, ConflictingContentLengths) {
  ExpectRefused(Get({"Content-Length: 5", "Content-Length: 6"}, "POST / HTTP/1.1"), 400,
                "conflicting Content-Length values");
  // The same number in other text is refused too: the rule compares what was sent.
  ExpectRefused(Get({"Content-Length: 5", "Content-Length: 05"}, "POST / HTTP/1.1"), 400,
                "conflicting Content-Length values");
}

TEST(RequestHeadRefuses, ContentLengthThatIsNotDigits) {
  for (const char* value : {"-1", "+5", "5,5", "5, 5", "0x10", "1e3", "5 5", ""}) {
    SCOPED_TRACE(value);
    ExpectRefused(Get({"Content-Length: "s + value}, "POST / HTTP/1.1"), 400,
                  "invalid Content-Length");
  }
}

TEST(RequestHeadRefuses, ContentLengthPast63Bits) {
  ExpectRefused(Get({"Content-Length: 9223372036854775808"}, "POST / HTTP/1.1"), 400,
                "invalid Content-Length \"9223372036854775808\"");
  ExpectRefused(Get({"Content-Length: 99999999999999999999999"}, "POST / HTTP/1.1"), 400,
                "invalid Content-Length");
}

TEST(RequestHeadRefuses, TransferEncodingOtherThanChunked) {
  ExpectRefused(Get({"Transfer-Encoding: gzip"}, "POST / HTTP/1.1"), 400,
                "Transfer-Encoding \"gzip\" is not supported (only chunked)");
  ExpectRefused(Get({"Transfer-Encoding: gzip, chunked"}, "POST / HTTP/1.1"), 400,
                "Transfer-Encoding \"gzip, chunked\" is not supported (only chunked)");
  ExpectRefused(Get({"Transfer-Encoding: chunked, chunked"}, "POST / HTTP/1.1"), 400,
                "is not supported (only chunked)");
  ExpectRefused(Get({"Transfer-Encoding: xchunked"}, "POST / HTTP/1.1"), 400,
                "is not supported (only chunked)");
  ExpectRefused(Get({"Transfer-Encoding:"}, "POST / HTTP/1.1"), 400,
                "Transfer-Encoding \"\" is not supported");
}

TEST(RequestHeadRefuses, TransferEncodingInTwoHeaders) {
  ExpectRefused(
      Get({"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"}, "POST / HTTP/1.1"), 400,
      "more than one Transfer-Encoding header");
}

TEST(RequestHeadRefuses, TransferEncodingOnHttp10) {
  ExpectRefused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                "Transfer-Encoding on HTTP/1.0");
}

// ---- Refusals: Host and Expect ----

TEST(RequestHeadRefuses, MissingHostOnHttp11) {
  ExpectRefused("GET / HTTP/1.1\r\nX-A: a\r\n\r\n", 400, "missing required Host header");
}

TEST(RequestHeadRefuses, TwoHosts) {
  ExpectRefused(Get({"Host: other.test"}), 400, "more than one Host header");
  ExpectRefused("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, "more than one Host header");
}

TEST(RequestHeadRefuses, ExpectOtherThan100ContinueWith417) {
  ExpectRefused(Get({"Expect: 200-ok"}), 417,
                "Expect \"200-ok\" is not supported (only 100-continue)");
  ExpectRefused(Get({"Expect: 100-continue, foo"}), 417, "is not supported (only 100-continue)");
}

TEST(RequestHeadRefuses, MalformedBeforeAnUnsupportedExpectation) {
  // 400 wins over 417: the head is broken whatever it expects.
  ExpectRefused(Get({"Expect: foo", "Content-Length: x"}), 400, "invalid Content-Length");
}

// ---- Refusals: the request line ----

TEST(RequestHeadRefuses, MethodWithNonTokenCharacters) {
  ExpectRefused("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "method contains an invalid character (0x28)");
  ExpectRefused("GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "method contains a control character (0x01)");
  ExpectRefused("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character (0xc3)");
}

TEST(RequestHeadRefuses, EmptyMethod) {
  ExpectRefused(" / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty method");
}

TEST(RequestHeadRefuses, RequestLineOfTheWrongShape) {
  ExpectRefused("GET\r\nHost: a\r\n\r\n", 400, "request line is not");
  ExpectRefused("GET /\r\nHost: a\r\n\r\n", 400, "request line is not");
  ExpectRefused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty request target");
  ExpectRefused("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
  ExpectRefused("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
  ExpectRefused("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method contains a control character");
}

TEST(RequestHeadRefuses, TargetNotInOriginForm) {
  ExpectRefused("GET http://node/api/tags HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "is not a path starting with '/' (origin form)");
  ExpectRefused("CONNECT node:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "origin form");
  ExpectRefused("GET api/tags HTTP/1.1\r\nHost: a\r\n\r\n", 400, "origin form");
}

TEST(RequestHeadRefuses, AsteriskTargetWithoutOptions) {
  ExpectRefused("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "request target \"*\" is only allowed with OPTIONS");
}

TEST(RequestHeadRefuses, TargetWithNonVisibleCharacters) {
  ExpectRefused("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "request target contains a control character (0x01)");
  ExpectRefused("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                "request target contains an invalid character (0xc3)");
  ExpectRefused("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "control character (0x7f)");
}

TEST(RequestHeadRefuses, UnsupportedHttpVersionWith505) {
  for (const char* version : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"}) {
    SCOPED_TRACE(version);
    ExpectRefused("GET / "s + version + "\r\nHost: a\r\n\r\n", 505,
                  "\" is not supported (only HTTP/1.0 and HTTP/1.1)");
  }
}

TEST(RequestHeadRefuses, MalformedHttpVersion) {
  for (const char* version :
       {"http/1.1", "HTTP/1.10", "HTTP/1", "HTTP/2", "HTTP/a.b", "HTTPS/1.1"}) {
    SCOPED_TRACE(version);
    ExpectRefused("GET / "s + version + "\r\nHost: a\r\n\r\n", 400, "malformed HTTP version");
  }
}

// ---- Refusals: limits ----

TEST(RequestHeadRefuses, RequestLineOverItsLimitWith414) {
  HeadLimits limits;
  limits.max_request_line = 32;
  const std::string fits = "GET /" + std::string(18, 'a') + " HTTP/1.1";  // 32 bytes
  ASSERT_EQ(fits.size(), 32u);
  EXPECT_TRUE(Parse(fits + "\r\nHost: a\r\n\r\n", limits).head.has_value());
  const std::string over = "GET /" + std::string(19, 'a') + " HTTP/1.1";
  ExpectRefused(over + "\r\nHost: a\r\n\r\n", 414, "request line longer than 32 bytes", limits);
}

TEST(RequestHeadRefuses, HeaderLineOverItsLimitWith431) {
  HeadLimits limits;
  limits.max_header_line = 20;
  EXPECT_TRUE(Parse(Get({"X-A: " + std::string(15, 'v')}), limits).head.has_value());
  ExpectRefused(Get({"X-A: " + std::string(16, 'v')}), 431, "header line longer than 20 bytes",
                limits);
}

TEST(RequestHeadRefuses, HeadOverItsLimitWith431) {
  HeadLimits limits;
  const std::string head = Get({"X-A: " + std::string(100, 'v')});
  limits.max_head = head.size();
  EXPECT_TRUE(Parse(head, limits).head.has_value());
  limits.max_head = head.size() - 1;
  ExpectRefused(head, 431, "request head larger than", limits);
}

TEST(RequestHeadRefuses, TooManyFieldsWith431) {
  HeadLimits limits;
  limits.max_headers = 3;
  EXPECT_TRUE(Parse(Get({"X-A: 1", "X-B: 2"}), limits).head.has_value());  // Host is the third
  ExpectRefused(Get({"X-A: 1", "X-B: 2", "X-C: 3"}), 431, "more than 3 header fields", limits);
}

// ---- Refusals: the extent of the head ----

TEST(RequestHeadRefuses, HeadWithoutItsEmptyLine) {
  ExpectRefused("GET / HTTP/1.1\r\nHost: a\r\n", 400, "incomplete head");
  ExpectRefused("GET / HTTP/1.1", 400, "incomplete head");
  ExpectRefused("", 400, "incomplete head");
}

TEST(RequestHeadRefuses, BytesAfterTheHead) {
  ExpectRefused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", 400,
                "2 bytes follow the empty line that ends the head");
}

// ---- Acceptance ----

TEST(RequestHeadAccepts, AnOrdinaryRequest) {
  RequestHead head = Accept(
      "POST /api/chat?x=1 HTTP/1.1\r\nHost: corral.test:11434\r\nUser-Agent: ollama-js/0.5\r\n"
      "Content-Type: application/json\r\nContent-Length: 42\r\n\r\n");
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.target, "/api/chat?x=1");
  EXPECT_EQ(head.path(), "/api/chat");
  EXPECT_EQ(head.minor_version, 1);
  EXPECT_EQ(head.headers, Fields({{"Host", "corral.test:11434"},
                                  {"User-Agent", "ollama-js/0.5"},
                                  {"Content-Type", "application/json"},
                                  {"Content-Length", "42"}}));
  EXPECT_EQ(head.framing, BodyFraming::kLength);
  EXPECT_EQ(head.content_length, 42u);
  EXPECT_TRUE(head.has_body());
  EXPECT_TRUE(head.keep_alive);
  EXPECT_FALSE(head.expect_continue);
  EXPECT_TRUE(head.connection_options.empty());
  ASSERT_NE(head.Find("content-TYPE"), nullptr);
  EXPECT_EQ(*head.Find("content-TYPE"), "application/json");
  EXPECT_EQ(head.Find("Authorization"), nullptr);
}

TEST(RequestHeadAccepts, AGetWithoutBody) {
  RequestHead head = Accept(Get({}));
  EXPECT_EQ(head.framing, BodyFraming::kNone);
  EXPECT_FALSE(head.has_body());
  EXPECT_EQ(head.path(), "/");
}

TEST(RequestHeadAccepts, ContentLengthZeroIsNoBody) {
  RequestHead head = Accept(Get({"Content-Length: 0"}, "POST / HTTP/1.1"));
  EXPECT_EQ(head.framing, BodyFraming::kLength);
  EXPECT_FALSE(head.has_body());
}

TEST(RequestHeadAccepts, LargestContentLength) {
  RequestHead head = Accept(Get({"Content-Length: 9223372036854775807"}, "POST / HTTP/1.1"));
  EXPECT_EQ(head.content_length, 9223372036854775807u);
}

TEST(RequestHeadAccepts, RepeatedEqualContentLengths) {
  RequestHead head = Accept(Get({"Content-Length: 7", "content-length: 7"}, "POST / HTTP/1.1"));
  EXPECT_EQ(head.framing, BodyFraming::kLength);
  EXPECT_EQ(head.content_length, 7u);
}

TEST(RequestHeadAccepts, ChunkedInAnyCase) {
  RequestHead head = Accept(Get({"Transfer-Encoding: Chunked"}, "POST / HTTP/1.1"));
  EXPECT_EQ(head.framing, BodyFraming::kChunked);
  EXPECT_TRUE(head.has_body());
}

TEST(RequestHeadAccepts, Http10ClosesUnlessAskedToKeepAlive) {
  RequestHead plain = Accept("GET /api/tags HTTP/1.0\r\n\r\n");  // no Host needed
  EXPECT_EQ(plain.minor_version, 0);
  EXPECT_FALSE(plain.keep_alive);
  RequestHead kept = Accept("GET /api/tags HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(kept.keep_alive);
  EXPECT_EQ(kept.connection_options, std::vector<std::string>{"keep-alive"});
  RequestHead both = Accept("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
  EXPECT_FALSE(both.keep_alive);
}

TEST(RequestHeadAccepts, Http11KeepsAliveUnlessClosed) {
  EXPECT_TRUE(Accept(Get({"Connection: keep-alive"})).keep_alive);
  RequestHead closed = Accept(Get({"Connection: X-Trace,  CLOSE ,", "Connection: te"}));
  EXPECT_FALSE(closed.keep_alive);
  EXPECT_EQ(closed.connection_options, (std::vector<std::string>{"x-trace", "close", "te"}));
}

TEST(RequestHeadAccepts, LeadingEmptyLines) {
  RequestHead head = Accept("\r\n\r\nGET /api/ps HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(head.target, "/api/ps");
}

TEST(RequestHeadAccepts, OptionalWhitespaceAroundValuesTrimmed) {
  RequestHead head = Accept(Get({"X-A: \t v a l \t ", "X-B:tight", "X-C:   ", "X-D:"}));
  EXPECT_EQ(*head.Find("X-A"), "v a l");
  EXPECT_EQ(*head.Find("X-B"), "tight");
  EXPECT_EQ(*head.Find("X-C"), "");
  EXPECT_EQ(*head.Find("X-D"), "");
}

TEST(RequestHeadAccepts, ObsTextInValues) {
  RequestHead head = Accept(Get({"X-Name: caf\xc3\xa9 \xff\x80"}));
  EXPECT_EQ(*head.Find("X-Name"), "caf\xc3\xa9 \xff\x80");
}

TEST(RequestHeadAccepts, PercentSignsKeptVerbatim) {
  RequestHead head = Accept(Get({"X-A: a%0d%0ab"}));
  EXPECT_EQ(*head.Find("X-A"), "a%0d%0ab");
  EXPECT_EQ(head.Find("X-A")->size(), 8u);
}

TEST(RequestHeadAccepts, TheSmugglingPayloadAsOneOrdinaryValue) {
  const std::string payload =
      "a%0d%0aContent-Length:%200%0d%0a%0d%0aDELETE /api/delete HTTP/1.1%0d%0a";
  RequestHead head = Accept(Get({"X-A: " + payload}, "POST /api/generate HTTP/1.1"));
  EXPECT_EQ(*head.Find("X-A"), payload);
  EXPECT_EQ(head.framing, BodyFraming::kNone);
}

TEST(RequestHeadAccepts, TargetAsSentNeverDecoded) {
  RequestHead head = Accept("GET /api/show%3Fa%0d%0a?q=%20x&y=~ HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(head.target, "/api/show%3Fa%0d%0a?q=%20x&y=~");
  EXPECT_EQ(head.path(), "/api/show%3Fa%0d%0a");
}

TEST(RequestHeadAccepts, AsteriskWithOptions) {
  EXPECT_EQ(Accept("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target, "*");
}

TEST(RequestHeadAccepts, AnyTokenAsMethod) {
  EXPECT_EQ(Accept("m-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n").method, "m-SEARCH!");
}

TEST(RequestHeadAccepts, Expect100Continue) {
  EXPECT_TRUE(Accept(Get({"Expect: 100-Continue"}, "POST / HTTP/1.1")).expect_continue);
  // HTTP/1.0 clients' expectation is ignored (RFC 9110 §10.1.1); an empty one is none.
  EXPECT_FALSE(Accept("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
  EXPECT_FALSE(Accept(Get({"Expect:"})).expect_continue);
}

TEST(RequestHeadAccepts, EveryFieldInOrderWithRepeats) {
  RequestHead head = Accept(Get({"Accept: a", "X-A: 1", "accept: b"}));
  EXPECT_EQ(head.headers,
            Fields({{"Host", "corral.test"}, {"Accept", "a"}, {"X-A", "1"}, {"accept", "b"}}));
  EXPECT_EQ(*head.Find("ACCEPT"), "a");
}

// ---- FindHeadEnd ----

TEST(FindHeadEnd, EndsAfterTheEmptyLine) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(FindHeadEnd(head), head.size());
  EXPECT_EQ(FindHeadEnd(head + "body bytes"), head.size());
  EXPECT_EQ(FindHeadEnd("GET / HTTP/1.1\r\n\r\n"), 18u);
}

TEST(FindHeadEnd, NposUntilTheEmptyLineArrives) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t n = 0; n < head.size(); ++n) {
    EXPECT_EQ(FindHeadEnd(std::string_view(head).substr(0, n)), std::string_view::npos) << n;
  }
}

TEST(FindHeadEnd, LfEndingsCountSoTheParserCanRefuseThem) {
  EXPECT_EQ(FindHeadEnd("GET / HTTP/1.1\nHost: a\n\nrest"), 24u);
  EXPECT_EQ(FindHeadEnd("GET / HTTP/1.1\r\nHost: a\n\r\n"), 26u);
}

TEST(FindHeadEnd, LeadingEmptyLinesArePartOfTheHead) {
  EXPECT_EQ(FindHeadEnd("\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 22u);
  EXPECT_EQ(FindHeadEnd("\r\n\r\n"), std::string_view::npos);
  EXPECT_EQ(FindHeadEnd("\r\n\r"), std::string_view::npos);
  EXPECT_EQ(FindHeadEnd("\n\n"), std::string_view::npos);
}

// ---- Connection options and hop-by-hop headers ----

TEST(ConnectionOptions, SplitTrimmedLowerCasedEmptiesDropped) {
  EXPECT_EQ(ConnectionOptions(" Keep-Alive ,, X-Trace\t,close, "),
            (std::vector<std::string>{"keep-alive", "x-trace", "close"}));
  EXPECT_TRUE(ConnectionOptions("").empty());
  EXPECT_TRUE(ConnectionOptions(" , ,").empty());
}

TEST(IsHopByHop, TheStandardSetInAnyCase) {
  for (const char* name :
       {"Connection", "keep-alive", "Proxy-Connection", "TRANSFER-ENCODING", "TE", "Trailer",
        "Upgrade", "Proxy-Authorization", "Proxy-Authenticate", "proxy-anything"}) {
    EXPECT_TRUE(IsHopByHop(name, {})) << name;
  }
  for (const char* name : {"Host", "Content-Length", "Authorization", "X-Forwarded-For", "Trailers",
                           "TEE", "Proxy", "Keep"}) {
    EXPECT_FALSE(IsHopByHop(name, {})) << name;
  }
}

TEST(IsHopByHop, HeadersNamedInConnection) {
  const std::vector<std::string> options = ConnectionOptions("close, X-Trace");
  EXPECT_TRUE(IsHopByHop("x-trace", options));
  EXPECT_TRUE(IsHopByHop("X-TRACE", options));
  EXPECT_FALSE(IsHopByHop("X-Trace-Id", options));
}

// ---- BuildForwardHead ----

ForwardSpec Spec(const RequestHead& head) {
  ForwardSpec spec;
  spec.authority = "10.0.0.5:11434";
  spec.client_address = "192.0.2.7";
  spec.body = head.framing;
  spec.body_length = head.content_length;
  return spec;
}

TEST(BuildForwardHead, AnOrdinaryRequest) {
  RequestHead head = Accept(
      "POST /api/chat HTTP/1.1\r\nHost: corral.test\r\nUser-Agent: curl/8\r\n"
      "Content-Length: 42\r\n\r\n");
  EXPECT_EQ(BuildForwardHead(head, Spec(head)),
            "POST /api/chat HTTP/1.1\r\nHost: 10.0.0.5:11434\r\nUser-Agent: curl/8\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nContent-Length: 42\r\n\r\n");
}

TEST(BuildForwardHead, HopByHopHeadersRemovedWithThoseConnectionNames) {
  RequestHead head =
      Accept(Get({"Connection: keep-alive, X-Secret", "Keep-Alive: timeout=5",
                  "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic x", "TE: trailers",
                  "Trailer: X-T", "Upgrade: websocket", "x-secret: 1", "X-Kept: 2"}));
  const std::string out = BuildForwardHead(head, Spec(head));
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: 10.0.0.5:11434\r\nX-Kept: 2\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n");
}

TEST(BuildForwardHead, AuthorizationDroppedOnlyWhenAsked) {
  RequestHead head = Accept(Get({"Authorization: Bearer corral-token"}));
  ForwardSpec spec = Spec(head);
  EXPECT_NE(BuildForwardHead(head, spec).find("Authorization: Bearer corral-token\r\n"),
            std::string::npos);
  spec.drop_authorization = true;
  EXPECT_EQ(BuildForwardHead(head, spec).find("Authorization"), std::string::npos);
}

TEST(BuildForwardHead, DropListCaseInsensitive) {
  RequestHead head = Accept(Get({"X-Corral-Node: gpu-1", "X-Other: 1"}));
  ForwardSpec spec = Spec(head);
  spec.drop = {"x-corral-node"};
  const std::string out = BuildForwardHead(head, spec);
  EXPECT_EQ(out.find("X-Corral-Node"), std::string::npos);
  EXPECT_NE(out.find("X-Other: 1\r\n"), std::string::npos);
}

TEST(BuildForwardHead, XForwardedForMergedIntoOneField) {
  RequestHead head = Accept(Get({"X-Forwarded-For: 203.0.113.1", "X-A: 1",
                                 "x-forwarded-for: 198.51.100.2, 10.1.1.1", "X-Forwarded-For:"}));
  const std::string out = BuildForwardHead(head, Spec(head));
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: 10.0.0.5:11434\r\nX-A: 1\r\n"
            "X-Forwarded-For: 203.0.113.1, 198.51.100.2, 10.1.1.1, 192.0.2.7\r\n"
            "X-Forwarded-Proto: http\r\n\r\n");
}

TEST(BuildForwardHead, ClientsForwardedProtoKept) {
  RequestHead head = Accept(Get({"X-Forwarded-Proto: https"}));
  const std::string out = BuildForwardHead(head, Spec(head));
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
  EXPECT_EQ(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
}

TEST(BuildForwardHead, FramingFromTheSpecNotTheClient) {
  RequestHead head = Accept(Get({"Transfer-Encoding: chunked", "Expect: 100-continue"},
                                "POST /api/blobs/sha256:ab HTTP/1.1"));
  ForwardSpec spec = Spec(head);
  std::string out = BuildForwardHead(head, spec);
  EXPECT_NE(out.find("\r\nTransfer-Encoding: chunked\r\n\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Expect"), std::string::npos);
  // The proxy may re-frame a body it has read whole.
  spec.body = BodyFraming::kLength;
  spec.body_length = 1234;
  out = BuildForwardHead(head, spec);
  EXPECT_NE(out.find("\r\nContent-Length: 1234\r\n\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Transfer-Encoding"), std::string::npos);
}

TEST(BuildForwardHead, Http10ClientGetsAnHttp11HeadWithHost) {
  RequestHead head = Accept("GET /api/tags HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(BuildForwardHead(head, Spec(head)),
            "GET /api/tags HTTP/1.1\r\nHost: 10.0.0.5:11434\r\nX-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: http\r\n\r\n");
}

TEST(BuildForwardHead, RoundTripsThroughTheParser) {
  const std::string payload =
      "a%0d%0aContent-Length:%200%0d%0a%0d%0aDELETE /api/delete HTTP/1.1%0d%0a";
  RequestHead head = Accept(Get({"X-A: " + payload, "Content-Length: 12", "Accept: */*",
                                 "X-Obs: caf\xc3\xa9", "Connection: close", "Empty:"},
                                "POST /api/generate?x=%0d%0a HTTP/1.1"));
  const std::string out = BuildForwardHead(head, Spec(head));
  EXPECT_EQ(FindHeadEnd(out), out.size());
  RequestHead back = Accept(out);
  EXPECT_EQ(back.method, "POST");
  EXPECT_EQ(back.target, "/api/generate?x=%0d%0a");
  EXPECT_EQ(back.framing, BodyFraming::kLength);
  EXPECT_EQ(back.content_length, 12u);
  EXPECT_TRUE(back.keep_alive);
  EXPECT_EQ(back.headers, Fields({{"Host", "10.0.0.5:11434"},
                                  {"X-A", payload},
                                  {"Accept", "*/*"},
                                  {"X-Obs", "caf\xc3\xa9"},
                                  {"Empty", ""},
                                  {"X-Forwarded-For", "192.0.2.7"},
                                  {"X-Forwarded-Proto", "http"},
                                  {"Content-Length", "12"}}));
}

// ---- ChunkedDecoder ----

struct Decoded {
  ChunkedDecoder::Status status = ChunkedDecoder::Status::kNeedMore;
  size_t consumed = 0;
  std::string out;
  std::string error;
};

// Feeds `in` in pieces of `piece` bytes (all at once when 0), stopping at kDone or kError.
Decoded Decode(std::string_view in, size_t piece = 0, ChunkLimits limits = {}) {
  ChunkedDecoder decoder(limits);
  Decoded d;
  if (piece == 0) piece = in.size() + 1;
  size_t at = 0;
  do {
    const std::string_view part = in.substr(at, piece);
    size_t consumed = 0;
    d.status = decoder.Feed(part, &consumed, &d.out);
    d.consumed += consumed;
    at += part.size();
    if (d.status != ChunkedDecoder::Status::kNeedMore) break;
  } while (at < in.size());
  d.error = decoder.error();
  EXPECT_EQ(decoder.decoded(), d.out.size());
  return d;
}

// Decodes `in` whole and byte by byte and expects both to agree; returns the whole decoding.
Decoded DecodeEveryWay(std::string_view in, ChunkLimits limits = {}) {
  Decoded whole = Decode(in, 0, limits);
  for (size_t piece : {1, 2, 3, 7}) {
    Decoded split = Decode(in, piece, limits);
    EXPECT_EQ(split.status, whole.status) << "piece " << piece;
    EXPECT_EQ(split.consumed, whole.consumed) << "piece " << piece;
    EXPECT_EQ(split.out, whole.out) << "piece " << piece;
    EXPECT_EQ(split.error, whole.error) << "piece " << piece;
  }
  return whole;
}

void ExpectChunkError(std::string_view in, std::string_view message, size_t consumed,
                      ChunkLimits limits = {}) {
  Decoded d = DecodeEveryWay(in, limits);
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kError);
  EXPECT_NE(d.error.find(message), std::string::npos) << d.error;
  EXPECT_EQ(d.consumed, consumed) << d.error;
}

TEST(ChunkedDecoder, DecodesChunksAndStopsAtTheEnd) {
  const std::string body = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
  Decoded d = DecodeEveryWay(body + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone);
  EXPECT_EQ(d.out, "hello, world");
  EXPECT_EQ(d.consumed, body.size());  // the next request's bytes are not consumed
}

TEST(ChunkedDecoder, NeedsMoreUntilTheLastChunkAndTrailers) {
  const std::string body = "3\r\nabc\r\n0\r\n\r\n";
  for (size_t n = 0; n < body.size(); ++n) {
    Decoded d = Decode(std::string_view(body).substr(0, n));
    EXPECT_EQ(d.status, ChunkedDecoder::Status::kNeedMore) << n;
    EXPECT_EQ(d.consumed, n);
  }
}

TEST(ChunkedDecoder, HexSizesWithLeadingZerosAndEitherCase) {
  Decoded d = DecodeEveryWay("000A\r\n0123456789\r\n0000b\r\nabcdefghijk\r\n00\r\n\r\n");
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone);
  EXPECT_EQ(d.out, "0123456789abcdefghijk");
}

TEST(ChunkedDecoder, ExtensionsReadAndIgnored) {
  Decoded d = DecodeEveryWay(
      "3;name=value\r\nabc\r\n2 ; a=\"quoted; \\\"x\\\"\"\t;b\r\nde\r\n0;last\r\n\r\n");
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone);
  EXPECT_EQ(d.out, "abcde");
}

TEST(ChunkedDecoder, TrailersCheckedAndDropped) {
  const std::string body = "2\r\nok\r\n0\r\nX-Checksum: abc\r\nX-Other:\t1 \r\n\r\n";
  Decoded d = DecodeEveryWay(body + "next");
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone);
  EXPECT_EQ(d.out, "ok");
  EXPECT_EQ(d.consumed, body.size());
}

TEST(ChunkedDecoder, SizeThatIsNotHex) {
  ExpectChunkError("g\r\n", "chunk size is not a hexadecimal number", 3);
  ExpectChunkError("\r\n", "chunk size is not a hexadecimal number", 2);
  ExpectChunkError("-1\r\n", "chunk size is not a hexadecimal number", 4);
  ExpectChunkError("0x5\r\nhello\r\n", "invalid character after the chunk size", 5);
}

TEST(ChunkedDecoder, WhitespaceWithoutAnExtension) {
  ExpectChunkError("5 \r\nhello\r\n", "invalid character after the chunk size", 4);
}

TEST(ChunkedDecoder, SizeOverflowing63Bits) {
  Decoded largest = DecodeEveryWay("7fffffffffffffff\r\nab");
  EXPECT_EQ(largest.status, ChunkedDecoder::Status::kNeedMore);
  EXPECT_EQ(largest.out, "ab");
  ExpectChunkError("8000000000000000\r\n", "chunk size larger than 2^63-1", 18);
}

TEST(ChunkedDecoder, LeadingZerosBeyondSixteenDigitsStillFit) {
  Decoded d = DecodeEveryWay("0000000000000000000000000000002\r\nab\r\n0\r\n\r\n");
  EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone);
  EXPECT_EQ(d.out, "ab");
}

TEST(ChunkedDecoder, BareLfAfterTheSize) {
  ExpectChunkError("5\nhello\r\n", "bare LF line ending in a chunked body", 2);
}

TEST(ChunkedDecoder, BareLfInTheTrailers) {
  ExpectChunkError("0\r\nX-A: 1\n\r\n", "bare LF line ending in a chunked body", 10);
  ExpectChunkError("0\r\n\n", "bare LF line ending in a chunked body", 4);
}

TEST(ChunkedDecoder, ControlCharacterInAnExtension) {
  ExpectChunkError("5;a=\x01\r\nhello\r\n", "chunk extension contains a control character (0x01)",
                   7);
  ExpectChunkError("5;a\rb\r\nhello\r\n", "chunk extension contains a control character (0x0d)", 7);
}

TEST(ChunkedDecoder, ChunkNotFollowedByCrlf) {
  ExpectChunkError("3\r\nabcd\r\n", "chunk data not followed by CRLF", 7);
  ExpectChunkError("3\r\nabc\rX", "chunk data not followed by CRLF", 8);
  ExpectChunkError("3\r\nabc\n", "chunk data not followed by CRLF", 7);
}

TEST(ChunkedDecoder, InvalidTrailerField) {
  ExpectChunkError("0\r\nX-A\r\n\r\n", "trailer line without a colon", 8);
  ExpectChunkError("0\r\nX A: 1\r\n\r\n", "whitespace between the trailer name and the colon", 11);
  ExpectChunkError("0\r\nX-A: a\x01\r\n\r\n", "trailer value contains a control character (0x01)",
                   12);
  ExpectChunkError("0\r\n folded\r\n\r\n", "obs-fold", 12);
}

TEST(ChunkedDecoder, SizeLineOverItsLimit) {
  ChunkLimits limits;
  limits.max_size_line = 8;
  Decoded fits = DecodeEveryWay("1;abcd\r\nx\r\n0\r\n\r\n", limits);  // 8 bytes with CRLF
  EXPECT_EQ(fits.status, ChunkedDecoder::Status::kDone);
  // The 8th byte of a line must be its LF: the error is found there, however it arrives.
  ExpectChunkError("1;abcde\r\nx\r\n0\r\n\r\n", "chunk-size line longer than 8 bytes", 8, limits);
  ExpectChunkError("1;abcdefghijklmnop", "chunk-size line longer than 8 bytes", 8, limits);
  ExpectChunkError("000000000000001\r\n", "chunk-size line longer than 8 bytes", 8, limits);
}

TEST(ChunkedDecoder, TrailersOverTheirLimit) {
  ChunkLimits limits;
  limits.max_trailer_bytes = 12;
  // The closing CRLF counts: "X-A: 123\r\n\r\n" is 12 bytes, "X-A: 12345\r\n\r\n" 14.
  Decoded fits = DecodeEveryWay("0\r\nX-A: 123\r\n\r\n", limits);
  EXPECT_EQ(fits.status, ChunkedDecoder::Status::kDone);
  ExpectChunkError("0\r\nX-A: 12345\r\n\r\n", "chunked trailers larger than 12 bytes", 16, limits);
  ExpectChunkError("0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", "chunked trailers larger than 12 bytes", 3 + 12,
                   limits);
}

TEST(ChunkedDecoder, NothingMoreAfterTheEndOrAnError) {
  ChunkedDecoder decoder;
  std::string out;
  size_t consumed = 0;
  EXPECT_EQ(decoder.Feed("0\r\n\r\nrest", &consumed, &out), ChunkedDecoder::Status::kDone);
  EXPECT_EQ(consumed, 5u);
  EXPECT_EQ(decoder.Feed("1\r\nx\r\n", &consumed, &out), ChunkedDecoder::Status::kDone);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(out, "");

  ChunkedDecoder failed;
  EXPECT_EQ(failed.Feed("z\r\n", &consumed, &out), ChunkedDecoder::Status::kError);
  const std::string error = failed.error();
  EXPECT_EQ(failed.Feed("0\r\n\r\n", &consumed, &out), ChunkedDecoder::Status::kError);
  EXPECT_EQ(consumed, 0u);
  EXPECT_EQ(failed.error(), error);
}

TEST(ChunkedDecoder, ALargeChunkInAnySplit) {
  std::string data(100000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  const std::string body = "186a0\r\n" + data + "\r\n0\r\n\r\n";
  for (size_t piece : {0, 1, 4096, 65536}) {
    Decoded d = Decode(body, piece);
    EXPECT_EQ(d.status, ChunkedDecoder::Status::kDone) << piece;
    EXPECT_EQ(d.out, data) << piece;
    EXPECT_EQ(d.consumed, body.size()) << piece;
  }
}

}  // namespace
}  // namespace corral
