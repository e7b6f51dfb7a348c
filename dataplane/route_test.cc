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
      // The endpoints of the proxies Corral replaces (docs/migrating.md).
      {"GET", "/api/proxy/active-requests", E::kProxyActiveRequests, C::kProxy, false},
      {"HEAD", "/api/proxy/active-requests", E::kProxyActiveRequests, C::kProxy, false},
      {"GET", "/api/health", E::kApiHealth, C::kProxy, false},
      {"HEAD", "/api/health", E::kApiHealth, C::kProxy, false},
      {"GET", "/__proxy/health", E::kBackendsHealth, C::kProxy, false},
      {"HEAD", "/__proxy/health", E::kBackendsHealth, C::kProxy, false},
      {"GET", "/__proxy/backends", E::kBackends, C::kProxy, false},
      {"HEAD", "/__proxy/backends", E::kBackends, C::kProxy, false},
      {"GET", "/health", E::kHealth, C::kProxy, false},
      {"HEAD", "/health", E::kHealth, C::kProxy, false},
      // The short forms under the base URL /api/proxy.
      {"POST", "/api/proxy/generate", E::kGenerate, C::kInference, false},
      {"POST", "/api/proxy/chat", E::kChat, C::kInference, false},
      {"POST", "/api/proxy/embed", E::kEmbed, C::kInference, false},
      {"POST", "/api/proxy/embeddings", E::kEmbeddings, C::kInference, false},
      {"GET", "/api/proxy/tags", E::kTags, C::kFleet, false},
      {"HEAD", "/api/proxy/tags", E::kTags, C::kFleet, false},
  };
  return cases;
}

// The routes of a node: everything EveryRoute lists that is not the proxy's own.
std::vector<Case> OllamaRoutes() {
  std::vector<Case> routes;
  for (const Case& c : EveryRoute()) {
    const std::string path = c.path;
    if (c.route_class != RouteClass::kProxy && path.rfind("/api/proxy/", 0) != 0) {
      routes.push_back(c);
    }
  }
  return routes;
}

TEST(Route, EveryEndpointHasItsMethodPathAndClass) {
  for (const Case& c : EveryRoute()) {
    Route route = ClassifyRoute(c.method, c.path);
    EXPECT_EQ(route.endpoint, c.endpoint) << c.method << " " << c.path;
    EXPECT_EQ(route.route_class, c.route_class) << c.method << " " << c.path;
    EXPECT_EQ(route.openai, c.openai) << c.method << " " << c.path;
  }
}

TEST(Route, OrdinaryPathsAreSentToTheNodeAsTheClientSentThem) {
  for (const Case& c : OllamaRoutes()) {
    EXPECT_EQ(ClassifyRoute(c.method, c.path).node_path, "") << c.method << " " << c.path;
  }
}

TEST(Route, EveryOllamaRouteUnderTheBaseUrlIsTheRouteWithoutIt) {
  ASSERT_GT(OllamaRoutes().size(), 20u);
  for (const Case& c : OllamaRoutes()) {
    const std::string prefixed = std::string(kProxyBasePath) + c.path;
    const Route plain = ClassifyRoute(c.method, c.path);
    const Route route = ClassifyRoute(c.method, prefixed);
    EXPECT_EQ(route.endpoint, c.endpoint) << c.method << " " << prefixed;
    EXPECT_EQ(route.route_class, c.route_class) << c.method << " " << prefixed;
    EXPECT_EQ(route.openai, c.openai) << c.method << " " << prefixed;
    EXPECT_EQ(route.param, plain.param) << c.method << " " << prefixed;
    EXPECT_EQ(route.node_path, c.path) << c.method << " " << prefixed;
  }
}

TEST(Route, ShortFormsAreSentToTheNodeAsTheirOllamaPath) {
  for (const char* form : {"generate", "chat", "embed", "embeddings"}) {
    const Route route = ClassifyRoute("POST", std::string("/api/proxy/") + form);
    EXPECT_EQ(route.node_path, std::string("/api/") + form);
    EXPECT_EQ(route.endpoint, ClassifyRoute("POST", std::string("/api/") + form).endpoint);
    EXPECT_EQ(ClassifyRoute("GET", std::string("/api/proxy/") + form).endpoint,
              Endpoint::kMethodNotAllowed)
        << form;
  }
  EXPECT_EQ(ClassifyRoute("POST", "/api/proxy/tags").endpoint, Endpoint::kMethodNotAllowed);
  // Only the five short forms: the node-local routes need their full path.
  for (const char* form : {"show", "pull", "ps", "version", "delete", "push", "create", "copy"}) {
    EXPECT_EQ(ClassifyRoute("POST", std::string("/api/proxy/") + form).endpoint,
              Endpoint::kNotFound)
        << form;
  }
}

TEST(Route, TheBaseUrlAndItsOwnEndpointsKeepTheirMeaning) {
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy").endpoint, Endpoint::kProxyHealth);
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/state").endpoint, Endpoint::kProxyState);
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/state").node_path, "");
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/active-requests").endpoint,
            Endpoint::kProxyActiveRequests);
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/state/").param, "/api/proxy/state");
  // The base URL with its slash is the node's root, as an Ollama client that checks for
  // "Ollama is running" there expects.
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/").endpoint, Endpoint::kRoot);
  EXPECT_EQ(ClassifyRoute("HEAD", "/api/proxy/").endpoint, Endpoint::kRoot);
}

TEST(Route, TrailingSlashUnderTheBaseUrlRedirectsWithinIt) {
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/api/tags/").param, "/api/proxy/api/tags");
  EXPECT_EQ(ClassifyRoute("POST", "/api/proxy/chat/").param, "/api/proxy/chat");
  const Route v1 = ClassifyRoute("POST", "/api/proxy/v1/chat/completions/");
  EXPECT_EQ(v1.endpoint, Endpoint::kRedirect);
  EXPECT_EQ(v1.param, "/api/proxy/v1/chat/completions");
  EXPECT_TRUE(v1.openai);
  EXPECT_EQ(ClassifyRoute("GET", "/api/proxy/api/chat/").endpoint, Endpoint::kNotFound);
}

TEST(Route, UnknownPathsUnderTheBaseUrlAreNotFoundAsOnANode) {
  for (const char* path :
       {"/api/proxy/other", "/api/proxy/api/unknown", "/api/proxy/api", "/api/proxy/v1",
        "/api/proxy/v1/unknown", "/api/proxy/API/TAGS", "/api/proxy//api/tags",
        "/api/proxy/api/tags//", "/api/proxyapi/tags", "/api/proxy/state/x",
        // The proxy's own and the seeds' endpoints are not repeated under it.
        "/api/proxy/api/proxy", "/api/proxy/api/proxy/state", "/api/proxy/metrics",
        "/api/proxy/health", "/api/proxy/api/health", "/api/proxy/__proxy/health",
        "/api/proxy/__proxy/backends", "/api/proxy/api/proxy/active-requests",
        "/api/proxy/api/proxy/api/tags"}) {
    const Route route = ClassifyRoute("GET", path);
    EXPECT_EQ(route.endpoint, Endpoint::kNotFound) << path;
    EXPECT_EQ(route.route_class, RouteClass::kError) << path;
    EXPECT_EQ(ClassifyRoute("POST", path).endpoint, Endpoint::kNotFound) << path;
  }
  EXPECT_TRUE(ClassifyRoute("GET", "/api/proxy/v1/unknown").openai);
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
  // Under the base URL, what is below it decides.
  EXPECT_TRUE(IsOpenAIPath("/api/proxy/v1/chat/completions"));
  EXPECT_TRUE(IsOpenAIPath("/api/proxy/v1"));
  EXPECT_FALSE(IsOpenAIPath("/api/proxy/api/chat"));
  EXPECT_FALSE(IsOpenAIPath("/api/proxyv1/x"));
  // The routes' own flag follows the same rule.
  EXPECT_TRUE(ClassifyRoute("POST", "/v1/chat/completions").openai);
  EXPECT_TRUE(ClassifyRoute("GET", "/v1").openai);
  EXPECT_FALSE(ClassifyRoute("POST", "/api/chat").openai);
}

}  // namespace
}  // namespace corral::dataplane
