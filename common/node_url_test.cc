// Node URLs: the accepted spellings, their one normalised form, and errors a person can act on.
#include "common/node_url.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace corral {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Normalized(std::string_view text) {
  absl::StatusOr<NodeUrl> url = ParseNodeUrl(text);
  EXPECT_TRUE(url.ok()) << text << ": " << url.status();
  return url.ok() ? url->Normalized() : "<error>";
}

std::string Error(std::string_view text) {
  absl::StatusOr<NodeUrl> url = ParseNodeUrl(text);
  EXPECT_FALSE(url.ok()) << text << " was accepted as " << (url.ok() ? url->Normalized() : "");
  if (url.ok()) return "";
  EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(url.status().message());
}

TEST(NodeUrl, HttpWithHostAndPort) {
  absl::StatusOr<NodeUrl> url = ParseNodeUrl("http://10.0.0.5:11434");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "10.0.0.5");
  EXPECT_EQ(url->port, 11434);
  EXPECT_EQ(url->Normalized(), "http://10.0.0.5:11434");
}

TEST(NodeUrl, AllAcceptedSpellingsNormaliseToOneForm) {
  EXPECT_EQ(Normalized("http://gpu1.lan:11434/"), "http://gpu1.lan:11434");
  EXPECT_EQ(Normalized("gpu1.lan:11434"), "http://gpu1.lan:11434");
  EXPECT_EQ(Normalized("HTTP://GPU1.Lan:11434"), "http://gpu1.lan:11434");
  EXPECT_EQ(Normalized("127.0.0.1:8080/"), "http://127.0.0.1:8080");
}

TEST(NodeUrl, DefaultPortsFollowOllamaHostRules) {
  EXPECT_EQ(Normalized("http://gpu1.lan"), "http://gpu1.lan:80") << "explicit http: HTTP's port";
  EXPECT_EQ(Normalized("http://gpu1.lan/"), "http://gpu1.lan:80");
  EXPECT_EQ(Normalized("gpu1.lan"), "http://gpu1.lan:11434") << "bare host: Ollama's port";
}

TEST(NodeUrl, Ipv6LiteralsAreBracketed) {
  absl::StatusOr<NodeUrl> url = ParseNodeUrl("http://[::1]:11434");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->Normalized(), "http://[::1]:11434");
  EXPECT_EQ(Normalized("[FE80::1]:9000"), "http://[fe80::1]:9000");
  EXPECT_THAT(Error("http://::1:11434"), HasSubstr("[addr]:port"));
  EXPECT_THAT(Error("http://[::1"), HasSubstr("unclosed"));
  EXPECT_THAT(Error("http://[zz]:1"), HasSubstr("IPv6"));
  EXPECT_THAT(Error("http://[::1]x"), HasSubstr("after the ']'"));
}

TEST(NodeUrl, PortBoundsAreOneTo65535) {
  EXPECT_EQ(Normalized("h:1"), "http://h:1");
  EXPECT_EQ(Normalized("h:65535"), "http://h:65535");
  EXPECT_THAT(Error("h:0"), HasSubstr("outside 1-65535"));
  EXPECT_THAT(Error("h:65536"), HasSubstr("outside 1-65535"));
  EXPECT_THAT(Error("h:123456"), HasSubstr("invalid port \"123456\""));
  EXPECT_THAT(Error("h:-1"), HasSubstr("invalid port"));
  EXPECT_THAT(Error("h:+80"), HasSubstr("invalid port"));
  EXPECT_THAT(Error("h:http"), HasSubstr("invalid port \"http\""));
  EXPECT_THAT(Error("http://h:"), HasSubstr("empty port"));
}

TEST(NodeUrl, OtherSchemesAreRejectedByName) {
  EXPECT_EQ(Error("ftp://x"), "node URL \"ftp://x\" must use http (e.g. http://10.0.0.5:11434)");
  EXPECT_THAT(Error("https://gpu1:11434"),
              StartsWith("node URL \"https://gpu1:11434\" must use http"));
  EXPECT_THAT(Error("://gpu1:11434"), HasSubstr("must use http"));
}

TEST(NodeUrl, PathsQueriesAndUserInfoAreRejected) {
  EXPECT_THAT(Error("http://gpu1:11434/ollama"), HasSubstr("must not have a path"));
  EXPECT_THAT(Error("http://gpu1:11434//"), HasSubstr("must not have a path"));
  EXPECT_THAT(Error("http://gpu1:11434/?x=1"), HasSubstr("query"));
  EXPECT_THAT(Error("http://gpu1:11434#frag"), HasSubstr("query or fragment"));
  EXPECT_THAT(Error("http://user:pw@gpu1:11434"), HasSubstr("user info"));
}

TEST(NodeUrl, EmptyOrMalformedHostsAreRejected) {
  EXPECT_EQ(Error(""), "node URL is empty");
  EXPECT_THAT(Error("http://"), HasSubstr("has no host"));
  EXPECT_THAT(Error("http://:11434"), HasSubstr("has no host"));
  EXPECT_THAT(Error(":11434"), HasSubstr("has no host"));
  EXPECT_THAT(Error("http://gpu 1:11434"), HasSubstr("spaces"));
  EXPECT_THAT(Error(" http://gpu1:11434"), HasSubstr("spaces"));
  EXPECT_THAT(Error("http://gp!u:11434"), HasSubstr("invalid host \"gp!u\""));
  EXPECT_THAT(Error("http://-gpu:11434"), HasSubstr("invalid host"));
  EXPECT_THAT(Error("http://" + std::string(254, 'a') + ":1"), HasSubstr("253"));
}

TEST(NodeUrl, EveryMessageQuotesTheInput) {
  for (const char* bad : {"ftp://x", "http://h/p", "h:0", "http://u@h:1", "http://[::1"}) {
    EXPECT_THAT(Error(bad), StartsWith(std::string("node URL \"") + bad + "\"")) << bad;
  }
}

}  // namespace
}  // namespace corral
