// The endpoints of the proxies Corral replaces, on a real corral-proxy in front of real
// corral-sim nodes (docs/migrating.md): the base URL /api/proxy for Ollama clients (every route
// below it reaches the node as the route without it) and its short forms, the requests in
// flight at /api/proxy/active-requests, the health checks /api/health, /__proxy/health and
// /health, the node list /__proxy/backends, and the token rules of the routes they mirror.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/proxy/proxy_harness.h"

namespace {

using namespace corral::proxy_testing;

// Hashes of "secret-all" and "secret-some": only hashes ever reach a proxy.
constexpr const char* kAllHash = "29b966933827787e189bd9f467e53140aa55a3d2a1362c15d7b3f1f4db80a708";
constexpr const char* kSomeHash =
    "c486d812678f64fb836ed133b4c62d8eb8865baefcef3d3a19244ef229b04f3d";
const httplib::Headers kAll = {{"Authorization", "Bearer secret-all"}};
const httplib::Headers kSome = {{"Authorization", "Bearer secret-some"}};

constexpr const char* kChat =
    R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false})";
constexpr const char* kGenerate = R"({"model":"llama3.2","prompt":"why?","stream":false})";
constexpr const char* kEmbed = R"({"model":"llama3.2","input":"hi"})";
constexpr const char* kEmbeddings = R"({"model":"llama3.2","prompt":"hi"})";

class SeedsTest : public ProxyTest {
 protected:
  // One node "a" with llama3.2, quick answers.
  size_t StartOneNode(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--models", "llama3.2:latest",     "--tokens", "3", "--load-delay-ms",
        "0",        "--token-interval-ms", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartSim(args);
  }
  httplib::Result Post(const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {}) {
    return Client()->Post(path, headers, body, "application/json");
  }
  httplib::Result Get(const std::string& path, const httplib::Headers& headers = {}) {
    return Client()->Get(path, headers);
  }
  json GetJson(const std::string& path, const httplib::Headers& headers = {}) {
    auto res = Get(path, headers);
    EXPECT_TRUE(res) << path;
    if (!res) return json::object();
    EXPECT_EQ(res->status, 200) << path << ": " << res->body;
    return json::parse(res->body, nullptr, false);
  }
};

// ---- the base URL /api/proxy ------------------------------------------------------------------

TEST_F(SeedsTest, EveryOllamaRouteUnderTheBaseUrlReachesTheNodeWithoutIt) {
  const size_t a = StartOneNode();
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();

  struct Call {
    std::string path;  // asked of the proxy
    std::string body;
    std::string node_path;  // what the node must see
  };
  const std::vector<Call> calls = {
      {"/api/proxy/api/chat", kChat, "/api/chat"},
      {"/api/proxy/api/generate", kGenerate, "/api/generate"},
      {"/api/proxy/api/embed", kEmbed, "/api/embed"},
      {"/api/proxy/api/embeddings", kEmbeddings, "/api/embeddings"},
      {"/api/proxy/api/show", R"({"model":"llama3.2"})", "/api/show"},
      {"/api/proxy/v1/chat/completions",
       R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]})",
       "/v1/chat/completions"},
      // The short forms.
      {"/api/proxy/chat", kChat, "/api/chat"},
      {"/api/proxy/generate", kGenerate, "/api/generate"},
      {"/api/proxy/embed", kEmbed, "/api/embed"},
      {"/api/proxy/embeddings", kEmbeddings, "/api/embeddings"},
  };
  for (const Call& call : calls) {
    const int64_t before = Requests(a, call.node_path);
    auto res = Post(call.path, call.body);
    ASSERT_TRUE(res) << call.path;
    EXPECT_EQ(res->status, 200) << call.path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("X-Corral-Node"), "a") << call.path;
    EXPECT_EQ(Requests(a, call.node_path), before + 1) << call.path;
  }
  const json seen = SimStats(a)["requests"];
  for (const auto& [path, count] : seen.items()) {
    EXPECT_EQ(path.find("/api/proxy"), std::string::npos) << "the node saw " << path;
  }

  // The same answers as without the prefix, for the routes the proxy answers itself.
  EXPECT_EQ(GetJson("/api/proxy/api/tags"), GetJson("/api/tags"));
  EXPECT_EQ(GetJson("/api/proxy/tags"), GetJson("/api/tags"));
  EXPECT_EQ(GetJson("/api/proxy/api/version"), GetJson("/api/version"));
  EXPECT_EQ(GetJson("/api/proxy/api/ps"), GetJson("/api/ps"));
  EXPECT_EQ(GetJson("/api/proxy/v1/models"), GetJson("/v1/models"));
  auto root = Get("/api/proxy/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->body, "Ollama is running");

  // A streamed chat through the prefix streams.
  RawClient stream(ProxyPort(),
                   ::corral::proxy_testing::Post(
                       "/api/proxy/api/chat",
                       R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]})"));
  ASSERT_TRUE(WaitFor([&] { return stream.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the streamed chat's last chunk"));
  EXPECT_NE(stream.data().find("application/x-ndjson"), std::string::npos) << stream.data();
  EXPECT_EQ(Count(stream.data(), "\"done\":false"), 3u) << stream.data();
}

TEST_F(SeedsTest, TheBaseUrlItselfAndItsStateKeepTheirMeaningAndUnknownPathsAre404) {
  const size_t a = StartOneNode();
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  const json health = GetJson("/api/proxy");
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["available_nodes"], 1);
  const json state = GetJson("/api/proxy/state");
  EXPECT_EQ(NodeState(state, "a")["name"], "a");
  for (const char* path : {"/api/proxy/other", "/api/proxy/api/unknown", "/api/proxy/metrics",
                           "/api/proxy/api/proxy/state", "/api/proxy/health"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_EQ(res->body, "404 page not found") << path;
  }
  auto res = Post("/api/proxy/show", R"({"model":"llama3.2"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404) << "only the five short forms exist";
  EXPECT_EQ(Requests(a, "/api/show"), 0);
}

// ---- /api/proxy/active-requests ----------------------------------------------------------------

TEST_F(SeedsTest, ActiveRequestsListsAStreamUntilItEnds) {
  const size_t a = StartOneNode();
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  EXPECT_EQ(GetJson("/api/proxy/active-requests")["requests"], json::array());

  RawClient client(ProxyPort(),
                   ::corral::proxy_testing::Post(
                       "/api/proxy/api/chat",
                       R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]})",
                       "X-Request-Id: seeds-stream-1\r\n"));
  // Listed from its head on, while the node holds its first token.
  ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                      "the node to hold the first token"));
  json listed = GetJson("/api/proxy/active-requests");
  ASSERT_EQ(listed["requests"].size(), 1u) << listed;
  EXPECT_EQ(listed["requests"][0]["id"], "seeds-stream-1");
  EXPECT_EQ(listed["requests"][0]["route"], "chat");
  EXPECT_EQ(listed["requests"][0]["method"], "POST");
  EXPECT_EQ(listed["requests"][0]["client"], "127.0.0.1");
  EXPECT_GE(listed["requests"][0]["elapsed_ms"].get<double>(), 0);
  EXPECT_EQ(listed["in_flight"], 1);
  ASSERT_EQ(listed["nodes"].size(), 1u);
  EXPECT_EQ(listed["nodes"][0]["name"], "a");
  EXPECT_EQ(listed["nodes"][0]["active_requests"], 1);
  EXPECT_EQ(listed["nodes"][0]["status"], "active");
  EXPECT_EQ(listed["total_active_requests"], 1);

  // Once its stream runs, the model and the node show.
  SimRelease(a, 1);
  ASSERT_TRUE(WaitFor(
      [&] {
        const json now = GetJson("/api/proxy/active-requests");
        return now["requests"].size() == 1 && now["requests"][0]["model"] == "llama3.2" &&
               now["requests"][0]["node"] == "a";
      },
      kDeadline, "the stream's model and node in the view"));
  EXPECT_EQ(GetJson("/api/proxy/active-requests?node_id=a")["requests"].size(), 1u);
  auto unknown = Get("/api/proxy/active-requests?node_id=zz");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(json::parse(unknown->body)["error"], "node not found: zz");

  SimRelease(a, 100);
  ASSERT_TRUE(WaitFor([&] { return client.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the stream's end"));
  ASSERT_TRUE(WaitFor([&] { return GetJson("/api/proxy/active-requests")["requests"].empty(); },
                      kDeadline, "the ended stream to leave the view"));
  EXPECT_EQ(GetJson("/api/proxy/active-requests")["total_active_requests"], 0);
}

// ---- health checks and the node list -----------------------------------------------------------

TEST_F(SeedsTest, HealthChecksAndBackendsDescribeTheFleet) {
  const size_t a = StartOneNode();
  const size_t b = StartOneNode();
  const size_t c = StartOneNode();
  json node_b = Node("b", SimPort(b), {"llama3.2:latest"});
  node_b["health"] = "HEALTH_UNHEALTHY";
  json node_c = Node("c", SimPort(c), {"llama3.2:latest"});
  node_c["admin_state"] = "ADMIN_STATE_DISABLED";
  json node_a = Node("a", SimPort(a), {"llama3.2:latest"});
  node_a["priority"] = 2;
  node_a["latency_ms"] = 3.5;
  WriteSnapshot({node_a, node_b, node_c});
  StartProxy();

  EXPECT_EQ(GetJson("/api/health"), json({{"status", "ok"}}));
  EXPECT_EQ(GetJson("/__proxy/health"), json({{"status", "ok"}, {"healthy_backends", 1}}));

  const json backends = GetJson("/__proxy/backends")["backends"];
  ASSERT_EQ(backends.size(), 3u) << backends;
  std::vector<int> ports;
  for (const json& backend : backends) {
    ports.push_back(backend["port"].get<int>());
    const std::string name = backend["name"];
    EXPECT_EQ(backend["healthy"], name == "a") << backend;
    EXPECT_EQ(backend["in_flight"], 0);
    EXPECT_EQ(backend["url"], "http://127.0.0.1:" + std::to_string(backend["port"].get<int>()));
  }
  EXPECT_TRUE(std::is_sorted(ports.begin(), ports.end())) << backends;

  const json health = GetJson("/health");
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["timestamp"].get<std::string>().size(), 20u) << health;
  EXPECT_EQ(health["external_hosts"], json::object());
  ASSERT_EQ(health["servers"].size(), 2u) << "the disabled node is left out: " << health;
  EXPECT_EQ(health["servers"]["a"]["status"], "healthy");
  EXPECT_EQ(health["servers"]["a"]["priority"], 2);
  EXPECT_EQ(health["servers"]["a"]["response_time_ms"], 3.5);
  EXPECT_EQ(health["servers"]["b"]["status"], "unhealthy");

  // HEAD answers like GET, without the body.
  for (const char* path : {"/api/health", "/__proxy/health", "/__proxy/backends", "/health",
                           "/api/proxy/active-requests"}) {
    auto res = Client()->Head(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->body, "") << path;
  }
}

TEST_F(SeedsTest, WithNoHealthyNodeTheSeedsHealthChecksStayOkAndSaySo) {
  const size_t a = StartOneNode();
  json node_a = Node("a", SimPort(a), {"llama3.2:latest"});
  node_a["health"] = "HEALTH_UNHEALTHY";
  WriteSnapshot({node_a});
  StartProxy();
  // What the replaced proxies answered: 200 with the count (or the node's status) saying it.
  EXPECT_EQ(GetJson("/__proxy/health"), json({{"status", "ok"}, {"healthy_backends", 0}}));
  EXPECT_EQ(GetJson("/api/health"), json({{"status", "ok"}}));
  EXPECT_EQ(GetJson("/health")["servers"]["a"]["status"], "unhealthy");
  // Readiness stays where it was: /api/proxy says 503.
  auto ready = Get("/api/proxy");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
}

// ---- tokens ------------------------------------------------------------------------------------

TEST_F(SeedsTest, AClosedFleetAsksForTokensWhereTheMirroredRoutesDo) {
  const size_t a = StartOneNode();
  WriteSnapshot(
      {Node("a", SimPort(a), {"llama3.2:latest"})}, 1,
      {{"tokens", json::array({{{"name", "all"}, {"sha256_hex", kAllHash}},
                               {{"name", "some"},
                                {"sha256_hex", kSomeHash},
                                {"models", {"registry.ollama.ai/library/llama3.2:latest"}}}})}});
  StartProxy();
  // Health checks are open, as /api/proxy is.
  for (const char* path : {"/api/health", "/__proxy/health", "/health", "/api/proxy"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path << ": " << res->body;
  }
  // Views of the fleet, as /api/proxy/state, and every Ollama route under the base URL, as
  // without it, need a token.
  for (const char* path : {"/__proxy/backends", "/api/proxy/active-requests", "/api/proxy/tags",
                           "/api/proxy/api/tags"}) {
    auto refused = Get(path);
    ASSERT_TRUE(refused) << path;
    EXPECT_EQ(refused->status, 401) << path;
    EXPECT_EQ(refused->get_header_value("WWW-Authenticate"), "Bearer") << path;
    auto allowed = Get(path, kAll);
    ASSERT_TRUE(allowed) << path;
    EXPECT_EQ(allowed->status, 200) << path << ": " << allowed->body;
  }
  for (const char* path : {"/api/proxy/api/chat", "/api/proxy/chat"}) {
    auto refused = Post(path, kChat);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 401) << path;
    auto allowed = Post(path, kChat, kSome);
    ASSERT_TRUE(allowed);
    EXPECT_EQ(allowed->status, 200) << path << ": " << allowed->body;
  }
  EXPECT_EQ(Requests(a, "/api/chat"), 2) << "refused requests reach no node";
  // A token limited to some models does not manage models, under the base URL either.
  auto pull = Post("/api/proxy/api/pull", R"({"model":"llama3.2"})", kSome);
  ASSERT_TRUE(pull);
  EXPECT_EQ(pull->status, 403) << pull->body;
  EXPECT_EQ(Requests(a, "/api/pull"), 0);
}

}  // namespace
