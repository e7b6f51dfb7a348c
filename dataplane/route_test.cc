// Route classification mirrors the node's router (shared/ollama-api.md §2) and sorts every
// endpoint into the class that decides how the proxy serves it (§11).
#include "dataplane/route.h"

#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace corral::dataplane {
namespace {

struct Case {
  const char* method;
  const char* path;
  Endpoint endpoint;
  RouteClass route_class;
  bool openai;
};

const std::vector<Case>& EveryRoute() {
  using E = Endpoint;
  using C = RouteClass;
  static const std::vector<Case> cases = {
      {"GET", "/", E::kRoot, C::kFleet, false},
      {"HEAD", "/", E::kRoot, C::kFleet, false},
      {"GET", "/api/version", E::kVersion, C::kFleet, false},
      {"HEAD", "/api/version", E::kVersion, C::kFleet, false},
      {"GET", "/api/tags", E::kTags, C::kFleet, false},
      {"HEAD", "/api/tags", E::kTags, C::kFleet, false},
      {"GET", "/api/ps", E::kPs, C::kFleet, false},
      {"GET", "/v1/models", E::kOpenAIModels, C::kFleet, true},
      {"POST", "/api/generate", E::kGenerate, C::kInference, false},
      {"POST", "/api/chat", E::kChat, C::kInference, false},
      {"POST", "/api/embed", E::kEmbed, C::kInference, false},
      {"POST", "/api/embeddings", E::kEmbeddings, C::kInference, false},
      {"POST", "/v1/chat/completions", E::kOpenAIChat, C::kInference, true},
      {"POST", "/v1/completions", E::kOpenAICompletions, C::kInference, true},
      {"POST", "/v1/embeddings", E::kOpenAIEmbeddings, C::kInference, true},
      {"POST", "/v1/responses", E::kOpenAIResponses, C::kInference, true},
      {"POST", "/v1/messages", E::kOpenAIMessages, C::kInference, true},
      {"POST", "/api/show", E::kShow, C::kNodeLocal, false},
      {"GET", "/v1/models/llama3:8b", E::kOpenAIModel, C::kNodeLocal, true},
      {"POST", "/api/pull", E::kPull, C::kNodeLocal, false},
      {"POST", "/api/push", E::kPush, C::kNodeLocal, false},
      {"POST", "/api/create", E::kCreate, C::kNodeLocal, false},
      {"POST", "/api/copy", E::kCopy, C::kNodeLocal, false},
      {"DELETE", "/api/delete", E::kDelete, C::kNodeLocal, false},
      {"HEAD", "/api/blobs/sha256:abc", E::kBlobHead, C::kNodeLocal, false},
      {"POST", "/api/blobs/sha256:abc", E::kBlobUpload, C::kNodeLocal, false},
      {"GET", "/api/proxy", E::kProxyHealth, C::kProxy, false},
      {"HEAD", "/api/proxy", E::kProxyHealth, C::kProxy, false},
      {"GET", "/api/proxy/state", E::kProxyState, C::kProxy, false},
      {"HEAD", "/api/proxy/state", E::kProxyState, C::kProxy, false},
      {"GET", "/metrics", E::kMetrics, C::kProxy, false},
      {"HEAD", "/metrics", E::kMetrics, C::kProxy, false},
  };
  return cases;
}

TEST(Route, EveryEndpointHasItsMethodPathAndClass) {
  for (const Case& c : EveryRoute()) {
    Route route = ClassifyRoute(c.method, c.path);
    EXPECT_EQ(route.endpoint, c.endpoint) << c.method << " " << c.path;
    EXPECT_EQ(route.route_class, c.route_class) << c.method << " " << c.path;
    EXPECT_EQ(route.openai, c.openai) << c.method << " " << c.path;
  }
}

TEST(Route, EveryOtherMethodOnAKnownPathIs405) {
  const std::vector<std::string> methods = {"GET",   "HEAD",   "POST",    "PUT",
                                            "PATCH", "DELETE", "OPTIONS", "get"};
  std::set<std::tuple<std::string, std::string>> served;
  for (const Case& c : EveryRoute()) served.emplace(c.method, c.path);
  for (const Case& c : EveryRoute()) {
    for (const std::string& method : methods) {
      if (served.count({method, c.path})) continue;
      Route route = ClassifyRoute(method, c.path);
      EXPECT_EQ(route.endpoint, Endpoint::kMethodNotAllowed) << method << " " << c.path;
      EXPECT_EQ(route.route_class, RouteClass::kError);
    }
  }
}

TEST(Route, HeadFollowsOllamasOwnHeadRoutes) {
  EXPECT_EQ(ClassifyRoute("HEAD", "/").endpoint, Endpoint::kRoot);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/version").endpoint, Endpoint::kVersion);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/tags").endpoint, Endpoint::kTags);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/blobs/sha256:00").endpoint, Endpoint::kBlobHead);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/ps").endpoint, Endpoint::kMethodNotAllowed);
  EXPECT_EQ(ClassifyRoute("HEAD", "/v1/models").endpoint, Endpoint::kMethodNotAllowed);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/generate").endpoint, Endpoint::kMethodNotAllowed);
}

TEST(Route, BlobRoutesCaptureTheDigest) {
  const std::string digest =
      "sha256:29fdb92e57cf0827ded04ae6461b5931d01fa595843f55d36f5b275a52087dd2";
  Route upload = ClassifyRoute("POST", "/api/blobs/" + digest);
  EXPECT_EQ(upload.endpoint, Endpoint::kBlobUpload);
  EXPECT_EQ(upload.param, digest);
  Route head = ClassifyRoute("HEAD", "/api/blobs/" + digest);
  EXPECT_EQ(head.param, digest);
  EXPECT_EQ(ClassifyRoute("GET", "/api/blobs/" + digest).endpoint, Endpoint::kMethodNotAllowed);
}

TEST(Route, BlobRouteNeedsOneNonEmptySegment) {
  EXPECT_EQ(ClassifyRoute("POST", "/api/blobs").endpoint, Endpoint::kNotFound);
  EXPECT_EQ(ClassifyRoute("POST", "/api/blobs/").endpoint, Endpoint::kNotFound);
  EXPECT_EQ(ClassifyRoute("POST", "/api/blobs/sha256:a/b").endpoint, Endpoint::kNotFound);
}

TEST(Route, OpenAIModelRetrieveCapturesTheModelSegment) {
  Route route = ClassifyRoute("GET", "/v1/models/LLaMA3:8b");
  EXPECT_EQ(route.endpoint, Endpoint::kOpenAIModel);
  EXPECT_EQ(route.param, "LLaMA3:8b") << "the segment exactly as requested";
  EXPECT_EQ(ClassifyRoute("GET", "/v1/models/hf.co/x/y").endpoint, Endpoint::kNotFound)
      << "a name with '/' cannot be addressed through this route";
}

TEST(Route, TrailingSlashRedirectsToTheKnownPath) {
  Route get = ClassifyRoute("GET", "/api/tags/");
  EXPECT_EQ(get.endpoint, Endpoint::kRedirect);
  EXPECT_EQ(get.route_class, RouteClass::kError);
  EXPECT_EQ(get.param, "/api/tags");
  EXPECT_EQ(RedirectStatus("GET"), 301);

  Route post = ClassifyRoute("POST", "/api/chat/");
  EXPECT_EQ(post.endpoint, Endpoint::kRedirect);
  EXPECT_EQ(post.param, "/api/chat");
  EXPECT_EQ(RedirectStatus("POST"), 307);
  EXPECT_EQ(RedirectStatus("HEAD"), 307);
  EXPECT_EQ(RedirectStatus("DELETE"), 307);

  Route v1 = ClassifyRoute("POST", "/v1/chat/completions/");
  EXPECT_EQ(v1.endpoint, Endpoint::kRedirect);
  EXPECT_EQ(v1.param, "/v1/chat/completions");
  EXPECT_TRUE(v1.openai);

  EXPECT_EQ(ClassifyRoute("GET", "/v1/models/").param, "/v1/models");
  EXPECT_EQ(ClassifyRoute("POST", "/api/blobs/sha256:ab/").param, "/api/blobs/sha256:ab");
  EXPECT_EQ(ClassifyRoute("DELETE", "/api/delete/").param, "/api/delete");
}

TEST(Route, TrailingSlashOnAPathTheMethodDoesNotServeIsNotFound) {
  EXPECT_EQ(ClassifyRoute("POST", "/api/tags/").endpoint, Endpoint::kNotFound);
  EXPECT_EQ(ClassifyRoute("GET", "/api/chat/").endpoint, Endpoint::kNotFound);
}

TEST(Route, OnlyOneTrailingSlashIsForgiven) {
  EXPECT_EQ(ClassifyRoute("GET", "/api/tags//").endpoint, Endpoint::kNotFound);
}

TEST(Route, UnknownPathsAreNotFound) {
  for (const char* path : {"/api", "/api/", "/api/unknown", "/API/TAGS", "/api/tagsx", "", "/v1",
                           "/v1/", "/v1/audio/transcriptions", "/api/status", "//api/tags",
                           "/api/proxy/other", "/favicon.ico"}) {
    Route route = ClassifyRoute("GET", path);
    EXPECT_EQ(route.endpoint, Endpoint::kNotFound) << path;
    EXPECT_EQ(route.route_class, RouteClass::kError) << path;
  }
}

TEST(Route, OpenAIFlagFollowsTheV1PrefixEvenForErrors) {
  EXPECT_TRUE(ClassifyRoute("GET", "/v1/unknown").openai);
  EXPECT_TRUE(ClassifyRoute("GET", "/v1/chat/completions").openai);
  EXPECT_FALSE(ClassifyRoute("POST", "/api/chat").openai);
  EXPECT_FALSE(ClassifyRoute("GET", "/v1x/models").openai);
}

TEST(Route, EndpointNamesAreStableAndDistinct) {
  EXPECT_STREQ(EndpointName(Endpoint::kGenerate), "generate");
  EXPECT_STREQ(EndpointName(Endpoint::kOpenAIChat), "v1.chat");
  std::set<std::string> names;
  for (int e = static_cast<int>(Endpoint::kRoot); e <= static_cast<int>(Endpoint::kNotFound); ++e) {
    names.insert(EndpointName(static_cast<Endpoint>(e)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(Endpoint::kNotFound) + 1);
  EXPECT_EQ(names.count("unknown"), 0u);
}

TEST(Route, OpenAIPathsAreV1AndBelow) {
  for (const char* path : {"/v1", "/v1/", "/v1/chat/completions", "/v1/models"}) {
    EXPECT_TRUE(IsOpenAIPath(path)) << path;
  }
  for (const char* path : {"/", "/api/chat", "/v10/x", "/v1x", "/api/v1/x", ""}) {
    EXPECT_FALSE(IsOpenAIPath(path)) << path;
  }
  // The routes' own flag follows the same rule.
  EXPECT_TRUE(ClassifyRoute("POST", "/v1/chat/completions").openai);
  EXPECT_TRUE(ClassifyRoute("GET", "/v1").openai);
  EXPECT_FALSE(ClassifyRoute("POST", "/api/chat").openai);
}

}  // namespace
}  // namespace corral::dataplane
