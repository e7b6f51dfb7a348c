// corral-proxy against corral-sim nodes, all real processes on 127.0.0.1 port 0. The snapshot is
// a file the test writes (what the control plane would push). Every wait has a deadline; no test
// sleeps for a fixed time or asserts a speed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/proxy_harness.h"
#include "tests/support/process.h"

namespace {

using namespace corral::proxy_testing;

// ---------------------------------------------------------------------------------------------

TEST_F(ProxyTest, TokenReachesTheClientBeforeTheNextIsReleased) {
  const size_t a = StartSim({"--tokens", "3", "--load-delay-ms", "0"});
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  RawClient client(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"why?"})",
                                     "Accept-Encoding: gzip, br\r\n"));
  for (int token = 1; token <= 3; ++token) {
    ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                        "the node to wait for token " + std::to_string(token)));
    SimRelease(a, 1);
    ASSERT_TRUE(WaitFor([&] { return Count(client.data(), "\"done\":false") == size_t(token); },
                        kDeadline, "token " + std::to_string(token) + " at the client"));
    // The next token has not been released, so it cannot have arrived: nothing is held back
    // and nothing is invented.
    EXPECT_EQ(Count(client.data(), "\"done\":false"), size_t(token));
  }
  ASSERT_TRUE(WaitFor([&] { return client.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the final chunk"));
  const std::string head = client.data().substr(0, client.data().find("\r\n\r\n"));
  EXPECT_NE(head.find("Content-Type: application/x-ndjson"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Encoding"), std::string::npos) << head;  // never compressed
  EXPECT_EQ(Count(head, "Transfer-Encoding"), 1u) << head;
  EXPECT_NE(head.find("X-Corral-Node: a"), std::string::npos) << head;
}

class RetryTest : public ProxyTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(RetryTest, MovesToAHealthyNodeBeforeTheFirstByte) {
  const std::string mode = GetParam();
  int bad_port = 0;
  size_t bad = 0;
  if (mode == "dead-port") {
    bad = StartSim({});
    bad_port = SimPort(bad);
    sims_[bad]->Kill();
  } else {
    bad = StartSim({"--fail", mode, "--load-delay-ms", "0"});
    bad_port = SimPort(bad);
  }
  const size_t good = StartSim({"--load-delay-ms", "0", "--token-interval-ms", "1"});
  // Same load everywhere: the tie goes to snapshot order, so the failing node is tried first.
  WriteSnapshot({Node("bad", bad_port, {"llama3.2:latest"}),
                 Node("good", SimPort(good), {"llama3.2:latest"})});
  StartProxy();
  auto res = Client()->Post("/api/chat",
                            R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]})",
                            "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("X-Corral-Node"), "good");
  EXPECT_EQ(res->body.find("error"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\"done\":true"), std::string::npos) << res->body;
  if (mode != "dead-port") {
    EXPECT_EQ(Requests(bad, "/api/chat"), 1);
  }
  const json state = State();
  EXPECT_EQ(NodeState(state, "bad")["failures_total"], 1);
  EXPECT_EQ(NodeState(state, "good")["requests_total"], 1);
}

INSTANTIATE_TEST_SUITE_P(Failures, RetryTest,
                         ::testing::Values("dead-port", "error-500", "busy-503"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST_F(ProxyTest, A4xxIsPassedThroughAndNeverRetried) {
  const size_t a = StartSim({"--models", "llama3.2:latest"});
  const size_t b = StartSim({"--models", "llama3.2:latest"});
  // The snapshot believes node a has "ghost"; the node itself says 404.
  WriteSnapshot({Node("a", SimPort(a), {"ghost:latest"}), Node("b", SimPort(b), {"llama3.2"})});
  StartProxy();
  auto res =
      Client()->Post("/api/generate", R"({"model":"ghost","prompt":"x"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->body, R"({"error":"model 'ghost' not found"})");
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(res->get_header_value("X-Corral-Node"), "a");
  EXPECT_EQ(Requests(a, "/api/generate"), 1);
  EXPECT_EQ(Requests(b, "/api/generate"), 0);
  EXPECT_EQ(NodeState(State(), "a")["failures_total"], 0);
}

class MidStreamTest : public ProxyTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(MidStreamTest, ANodeFailingMidStreamGivesAnErrorLineAndNoDone) {
  const size_t a = StartSim({"--fail", GetParam(), "--fail-after", "2", "--tokens", "6",
                             "--load-delay-ms", "0", "--token-interval-ms", "1"});
  const size_t b = StartSim({});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"}), Node("b", SimPort(b), {"x:latest"})});
  StartProxy();
  RawClient client(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"hi"})",
                                     "Connection: close\r\n"));
  ASSERT_TRUE(WaitFor([&] { return client.eof(); }, kDeadline, "the stream to end"));
  const std::string data = client.data();
  EXPECT_EQ(data.rfind("HTTP/1.1 200", 0), 0u) << data;
  EXPECT_EQ(Count(data, "\"done\":false"), 2u) << data;
  EXPECT_EQ(Count(data, "\"done\":true"), 0u) << data;
  // The error stands on a line of its own and the body then ends properly, as after a node's
  // own error line, so every client reads the error before the connection closes.
  EXPECT_NE(data.find("\n{\"error\":\"node 'a' failed mid-stream"), std::string::npos) << data;
  EXPECT_NE(data.find("\r\n0\r\n\r\n"), std::string::npos) << data;
  EXPECT_EQ(Requests(b, "/api/generate"), 0);  // never retried after the first byte
}

INSTANTIATE_TEST_SUITE_P(Failures, MidStreamTest,
                         ::testing::Values("die-mid-stream", "drop-mid-stream"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST_F(ProxyTest, AClientDisconnectMidStreamCancelsTheNode) {
  const size_t a =
      StartSim({"--tokens", "100000", "--token-interval-ms", "20", "--load-delay-ms", "0"});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  {
    RawClient client(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})"));
    ASSERT_TRUE(WaitFor([&] { return Count(client.data(), "\"done\":false") >= 2; }, kDeadline,
                        "tokens to flow"));
    client.Close();
  }
  EXPECT_TRUE(WaitFor([&] { return SimStats(a)["cancelled"] == 1; }, milliseconds(2000),
                      "the node to see the cancellation"));
  EXPECT_TRUE(WaitFor([&] { return NodeState(State(), "a")["in_flight"] == 0; }, kDeadline,
                      "the proxy to release the slot"));
}

TEST_F(ProxyTest, AClientDisconnectDuringAColdLoadCancelsTheNode) {
  const size_t a = StartSim({"--load-delay-ms", "600000"});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  {
    RawClient client(ProxyPort(),
                     Post("/api/chat", R"({"model":"llama3.2","messages":[{"role":"user",)"
                                       R"("content":"x"}]})"));
    ASSERT_TRUE(WaitFor([&] { return SimStats(a)["active"] == 1; }, kDeadline,
                        "the node to start loading"));
    EXPECT_TRUE(client.data().empty());  // nothing sent yet: the node is still loading
    client.Close();
  }
  EXPECT_TRUE(WaitFor([&] { return SimStats(a)["cancelled"] == 1; }, milliseconds(2000),
                      "the node to see the cancellation"));
  EXPECT_TRUE(WaitFor([&] { return NodeState(State(), "a")["in_flight"] == 0; }, kDeadline,
                      "the proxy to release the slot"));
}

TEST_F(ProxyTest, FleetWideListsMergeTheSnapshot) {
  json a = Node("a", 1, {});
  a["models"] =
      json::array({{{"name", "llama3.2:latest"},
                    {"modified_at", "2025-01-01T00:00:00Z"},
                    {"raw_json", R"({"name":"llama3.2:latest","model":"llama3.2:latest","size":7,)"
                                 R"("details":{"families":null},"capabilities":["completion"]})"}},
                   {{"name", "myteam/coder:v2"}, {"modified_at", "2025-03-01T00:00:00-07:00"}}});
  a["loaded_models"] = json::array(
      {{{"name", "llama3.2:latest"}, {"expires_at", "2026-01-01T00:00:00Z"}, {"size_vram", 5}}});
  a["version"] = "0.12.3";
  json b = Node("b", 2, {});
  b["models"] = json::array({{{"name", "llama3.2"}, {"modified_at", "2024-01-01T00:00:00Z"}},
                             {{"name", "mistral"}, {"modified_at", "2025-02-01T00:00:00Z"}}});
  b["loaded_models"] =
      json::array({{{"name", "mistral:latest"}, {"expires_at", "2027-01-01T00:00:00Z"}}});
  b["version"] = "0.11.0";
  WriteSnapshot({a, b});
  StartProxy();
  auto cli = Client();

  auto tags = cli->Get("/api/tags");
  ASSERT_TRUE(tags);
  EXPECT_EQ(tags->get_header_value("Content-Type"), "application/json; charset=utf-8");
  const json t = json::parse(tags->body);
  ASSERT_EQ(t["models"].size(), 3u) << t;
  EXPECT_EQ(t["models"][0]["name"], "myteam/coder:v2");
  EXPECT_EQ(t["models"][1]["name"], "mistral:latest");
  EXPECT_EQ(t["models"][1]["model"], "mistral:latest");
  EXPECT_EQ(t["models"][2]["name"], "llama3.2:latest");
  EXPECT_EQ(t["models"][2]["model"], "llama3.2:latest");
  EXPECT_EQ(t["models"][2]["capabilities"], json::array({"completion"}));
  EXPECT_TRUE(t["models"][2]["details"]["families"].is_null());
  EXPECT_EQ(t["models"][2]["nodes"], json::array({"a", "b"}));

  auto ps = cli->Get("/api/ps");
  ASSERT_TRUE(ps);
  const json p = json::parse(ps->body);
  ASSERT_EQ(p["models"].size(), 2u);
  EXPECT_EQ(p["models"][0]["name"], "mistral:latest");
  EXPECT_EQ(p["models"][0]["node"], "b");
  EXPECT_EQ(p["models"][1]["node"], "a");

  auto models = cli->Get("/v1/models");
  ASSERT_TRUE(models);
  const json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 3u);
  EXPECT_EQ(m["data"][0]["id"], "myteam/coder:v2");
  EXPECT_EQ(m["data"][0]["owned_by"], "myteam");

  auto version = cli->Get("/api/version");
  ASSERT_TRUE(version);
  EXPECT_EQ(json::parse(version->body)["version"], "0.11.0");
  auto root = cli->Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->body, "Ollama is running");
  EXPECT_EQ(root->get_header_value("Content-Type"), "text/plain; charset=utf-8");
  auto head = cli->Head("/");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
}

TEST_F(ProxyTest, EmptyFleetListsAreEmptyArrays) {
  WriteSnapshot(json::array());
  StartProxy();
  auto cli = Client();
  EXPECT_EQ(cli->Get("/api/tags")->body, R"({"models":[]})");
  EXPECT_EQ(cli->Get("/api/ps")->body, R"({"models":[]})");
  EXPECT_EQ(json::parse(cli->Get("/v1/models")->body)["data"], json::array());
}

TEST_F(ProxyTest, ErrorAnswersHaveTheRightShapes) {
  const size_t a = StartSim({});
  json sick = Node("sick", SimPort(a), {"mistral:latest"});
  sick["health"] = "HEALTH_UNHEALTHY";
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"}), sick});
  StartProxy({"--max-body-mb", "1"});
  auto cli = Client();
  const std::string json_type = "application/json; charset=utf-8";

  auto bad = cli->Post("/api/chat", "{\"model\":", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(bad->get_header_value("Content-Type"), json_type);
  EXPECT_TRUE(json::parse(bad->body)["error"].is_string());
  EXPECT_EQ(bad->body.find('\n'), std::string::npos);

  auto missing = cli->Post("/api/generate", R"({"model":"nope","prompt":"x"})", "text/plain");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, R"({"error":"model 'nope' not found"})");
  EXPECT_EQ(missing->get_header_value("Content-Type"), json_type);

  auto openai =
      cli->Post("/v1/chat/completions", R"({"model":"nope","messages":[]})", "application/json");
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->status, 404);
  const json oe = json::parse(openai->body);
  EXPECT_EQ(oe["error"]["message"], "model 'nope' not found");
  EXPECT_EQ(oe["error"]["type"], "not_found_error");
  EXPECT_TRUE(oe["error"].contains("param"));
  EXPECT_TRUE(oe["error"].contains("code"));

  const std::string huge = R"({"model":"llama3.2","prompt":")" + std::string(2 << 20, 'x') + "\"}";
  auto too_big = Client()->Post("/api/generate", huge, "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  EXPECT_EQ(too_big->get_header_value("Content-Type"), json_type);
  EXPECT_TRUE(json::parse(too_big->body)["error"].is_string());

  auto unhealthy =
      cli->Post("/api/generate", R"({"model":"mistral","prompt":"x"})", "application/json");
  ASSERT_TRUE(unhealthy);
  EXPECT_EQ(unhealthy->status, 503);
  EXPECT_EQ(unhealthy->get_header_value("Content-Type"), json_type);
  EXPECT_FALSE(unhealthy->get_header_value("Retry-After").empty());
  EXPECT_TRUE(json::parse(unhealthy->body)["error"].is_string());
  EXPECT_EQ(Requests(a, "/api/generate"), 0);
}

TEST_F(ProxyTest, OverMaxStreamsIsAnImmediate503) {
  const size_t a = StartSim({"--load-delay-ms", "0", "--num-parallel", "4"});
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy({"--max-streams", "1"});
  RawClient first(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                      "the first stream to hold its slot"));
  auto res =
      Client()->Post("/api/generate", R"({"model":"llama3.2","prompt":"y"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_FALSE(res->get_header_value("Retry-After").empty());
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("limit"), std::string::npos);
  SimConfig(a, {{"gated", false}});
  ASSERT_TRUE(WaitFor([&] { return first.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the first stream to finish"));
}

TEST_F(ProxyTest, HeadersAreFilteredBothWays) {
  const size_t a = StartSim({"--load-delay-ms", "0", "--token-interval-ms", "1"});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  RawClient client(ProxyPort(),
                   Post("/api/generate?ts=123", R"({"model":"llama3.2","prompt":"x"})",
                        "Origin: http://localhost:3000\r\nX-Custom: kept\r\nUser-Agent: test/1\r\n"
                        "Connection: close\r\n"));
  ASSERT_TRUE(WaitFor([&] { return client.eof(); }, kDeadline, "the answer"));
  const std::string data = client.data();
  const std::string head = data.substr(0, data.find("\r\n\r\n"));
  EXPECT_EQ(Count(head, "Transfer-Encoding"), 1u) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  // Ollama's own default origins are allowed, and the answer names the origin it allows.
  EXPECT_NE(head.find("Access-Control-Allow-Origin: http://localhost:3000"), std::string::npos)
      << head;
  EXPECT_NE(head.find("Vary: Origin"), std::string::npos) << head;

  const json seen = SimStats(a)["last_requests"].back();
  EXPECT_EQ(seen["target"], "/api/generate?ts=123");
  const json& h = seen["headers"];
  EXPECT_EQ(h["host"], "127.0.0.1:" + std::to_string(SimPort(a)));
  EXPECT_FALSE(h.contains("origin"));
  EXPECT_FALSE(h.contains("remote_addr"));
  EXPECT_FALSE(h.contains("remote_port"));
  EXPECT_FALSE(h.contains("local_addr"));
  EXPECT_EQ(h["x-custom"], "kept");
  EXPECT_EQ(h["user-agent"], "test/1");
  EXPECT_EQ(h["x-forwarded-for"], "127.0.0.1");
  EXPECT_EQ(h["x-forwarded-proto"], "http");

  auto preflight = Client()->Options(
      "/api/chat", {{"Origin", "app://desktop"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Origin"), "app://desktop");
  EXPECT_NE(preflight->get_header_value("Access-Control-Allow-Methods").find("POST"),
            std::string::npos);

  // An origin outside the defaults gets what a node answers it, and nothing reaches the node.
  const size_t seen_before = SimStats(a)["last_requests"].size();
  auto foreign = Client()->Post("/api/generate", {{"Origin", "http://example.com"}},
                                R"({"model":"llama3.2","prompt":"x"})", "application/json");
  ASSERT_TRUE(foreign);
  EXPECT_EQ(foreign->status, 403);
  EXPECT_TRUE(foreign->body.empty());
  EXPECT_EQ(SimStats(a)["last_requests"].size(), seen_before);
}

TEST_F(ProxyTest, AnyOriginWhenAllowOriginsIsAStar) {
  const size_t a = StartSim({"--load-delay-ms", "0"});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy({"--allow-origins", "*"});
  auto res = Client()->Get("/api/tags", {{"Origin", "http://example.com"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Access-Control-Allow-Origin"), "*");
}

TEST_F(ProxyTest, BodiesArriveByteForByte) {
  const size_t a = StartSim({"--load-delay-ms", "0", "--token-interval-ms", "1"});
  const size_t b = StartSim({});
  WriteSnapshot(
      {Node("a", SimPort(a), {"llama3.2:latest"}), Node("b", SimPort(b), {"llama3.2:latest"})});
  StartProxy();
  std::string image;
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < 700000; ++i) image.push_back(alphabet[(i * 7919 + i / 64) % 64]);
  const std::string body = R"({"model":"llama3.2","prompt":"describe","stream":false,)"
                           R"("images":[")" +
                           image + R"("],"options":{"num_ctx":4096}})";
  auto res = Client()->Post("/api/generate", body, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  const std::string node = res->get_header_value("X-Corral-Node");
  const json seen = SimStats(node == "a" ? a : b)["last_requests"].back();
  EXPECT_EQ(seen["body_size"], body.size());
  EXPECT_EQ(seen["body"], body);

  // DELETE carries its body to every node that has the model; success is an empty 200.
  const std::string del = R"({"model":"","name":"llama3.2"})";
  auto deleted = Client()->Delete("/api/delete", del, "application/json");
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 200) << deleted->body;
  EXPECT_TRUE(deleted->body.empty());
  for (size_t sim : {a, b}) {
    const json last = SimStats(sim)["last_requests"].back();
    EXPECT_EQ(last["method"], "DELETE");
    EXPECT_EQ(last["body"], del);
  }
}

TEST_F(ProxyTest, MaxParallelIsRespectedAndInFlightReturnsToZero) {
  const size_t a = StartSim({"--load-delay-ms", "0", "--num-parallel", "4"});
  const size_t b = StartSim({"--load-delay-ms", "0", "--num-parallel", "4"});
  SimConfig(a, {{"gated", true}});
  SimConfig(b, {{"gated", true}});
  json na = Node("a", SimPort(a), {"llama3.2:latest"});
  json nb = Node("b", SimPort(b), {"llama3.2:latest"});
  na["max_parallel"] = 1;
  nb["max_parallel"] = 1;
  // Without the wait queue a request over every node's limit is refused at once (with it, it
  // would wait: tests/routing covers that).
  WriteSnapshot({na, nb}, 1, {{"queue", {{"disabled", true}}}});
  StartProxy();
  const std::string request = Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  RawClient one(ProxyPort(), request);
  RawClient two(ProxyPort(), request);
  ASSERT_TRUE(WaitFor(
      [&] {
        const json s = State();
        return NodeState(s, "a")["in_flight"] == 1 && NodeState(s, "b")["in_flight"] == 1;
      },
      kDeadline, "one stream per node"));
  auto third =
      Client()->Post("/api/generate", R"({"model":"llama3.2","prompt":"y"})", "application/json");
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 503) << third->body;
  // The proxy counts a request in flight before the node has read it: wait for the nodes to
  // count both, then see that the third never reached them.
  auto generates = [&] {
    return SimStats(a)["requests"].value("/api/generate", 0) +
           SimStats(b)["requests"].value("/api/generate", 0);
  };
  EXPECT_TRUE(WaitFor([&] { return generates() >= 2; }, kDeadline, "both nodes to count theirs"));
  EXPECT_EQ(generates(), 2);
  SimConfig(a, {{"gated", false}});
  SimConfig(b, {{"gated", false}});
  EXPECT_TRUE(WaitFor(
      [&] {
        const json s = State();
        return NodeState(s, "a")["in_flight"] == 0 && NodeState(s, "b")["in_flight"] == 0 &&
               s["proxy"]["active_requests"] == 0;
      },
      kDeadline, "in-flight counts back to zero"));
}

TEST_F(ProxyTest, ProxyHealthAndStateFollowTheSnapshot) {
  const size_t a = StartSim({});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})}, 1,
                {{"strategy", "STRATEGY_ROUND_ROBIN"}});
  StartProxy();
  auto ok = Client()->Get("/api/proxy");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(json::parse(ok->body), json({{"status", "ok"}, {"available_nodes", 1}}));

  json state = State();
  EXPECT_EQ(state["snapshot"]["version"], 1);
  EXPECT_EQ(state["snapshot"]["source"], "file:" + dir_ + "/snapshot.json");
  EXPECT_EQ(state["strategy"], "round_robin");
  const json node = NodeState(state, "a");
  EXPECT_EQ(node["admin_state"], "ADMIN_STATE_ENABLED");
  EXPECT_EQ(node["health"], "HEALTH_HEALTHY");
  EXPECT_EQ(node["in_flight"], 0);
  EXPECT_EQ(node["models"], json::array({"llama3.2:latest"}));
  EXPECT_EQ(node["ejected"], false);

  // A newer snapshot with the node disabled, picked up on SIGHUP.
  json disabled = Node("a", SimPort(a), {"llama3.2:latest"});
  disabled["admin_state"] = "ADMIN_STATE_DISABLED";
  WriteSnapshot({disabled}, 2);
  ::kill(proxy_->pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return State()["snapshot"]["version"] == 2; }, kDeadline,
                      "the reloaded snapshot"));
  auto down = Client()->Get("/api/proxy");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503);
  const json body = json::parse(down->body);
  EXPECT_EQ(body["available_nodes"], 0);
  EXPECT_TRUE(body["error"].is_string());

  // An older snapshot is refused and the served one stays.
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})}, 1);
  ::kill(proxy_->pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return proxy_->Log().find("older than") != std::string::npos; },
                      kDeadline, "the refusal in the log"));
  EXPECT_EQ(State()["snapshot"]["version"], 2);
}

TEST_F(ProxyTest, AFleetThatRequiresTokensStaysClosedWithNoneDefined) {
  const size_t a = StartSim({"--load-delay-ms", "0"});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})}, 1, {{"require_tokens", true}});
  StartProxy();
  auto cli = Client();
  EXPECT_EQ(cli->Get("/")->status, 200);
  auto tags = cli->Get("/api/tags");
  ASSERT_TRUE(tags);
  EXPECT_EQ(tags->status, 401);
  EXPECT_NE(json::parse(tags->body)["error"].get<std::string>().find("none defined"),
            std::string::npos);
  // Even the state view needs a token then; the log says why at WARN.
  EXPECT_EQ(cli->Get("/api/proxy/state")->status, 401);
  EXPECT_NE(proxy_->Log().find("closes the proxy"), std::string::npos) << proxy_->Log();
}

TEST_F(ProxyTest, InferenceTokensGateTheEndpointWhenTheSnapshotDefinesThem) {
  const size_t a = StartSim({"--models", "llama3.2:latest,mistral:latest", "--tokens", "2",
                             "--load-delay-ms", "0", "--token-interval-ms", "1"});
  // Hashes of "secret-all" and "secret-llama"; only hashes ever reach a proxy.
  json tokens = json::array(
      {{{"name", "all"},
        {"sha256_hex", "29b966933827787e189bd9f467e53140aa55a3d2a1362c15d7b3f1f4db80a708"}},
       {{"name", "llama-only"},
        {"sha256_hex", "3cc83b775ac3d89bb02dafeffee7d11232f8f8edb40893d848501d562a3dbeb4"},
        {"models", {"registry.ollama.ai/library/llama3.2:latest"}}}});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest", "mistral:latest"})}, 1,
                {{"tokens", tokens}});
  StartProxy();
  auto cli = Client();
  const std::string chat =
      R"({"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]})";
  const std::string other =
      R"({"model":"mistral","stream":false,"messages":[{"role":"user","content":"hi"}]})";

  // Liveness stays open; everything else needs a token.
  EXPECT_EQ(cli->Get("/")->status, 200);
  EXPECT_EQ(cli->Get("/api/proxy")->status, 200);
  auto none = cli->Post("/api/chat", chat, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_NE(json::parse(none->body)["error"].get<std::string>().find("unauthorized"),
            std::string::npos);
  EXPECT_EQ(cli->Get("/api/tags")->status, 401);
  auto v1 = cli->Post("/v1/chat/completions", chat, "application/json");
  ASSERT_TRUE(v1);
  EXPECT_EQ(v1->status, 401);
  EXPECT_TRUE(json::parse(v1->body)["error"]["message"].is_string());  // OpenAI's shape
  EXPECT_EQ(Requests(a, "/api/chat"), 0);

  httplib::Headers wrong = {{"Authorization", "Bearer secret-wrong"}};
  EXPECT_EQ(cli->Post("/api/chat", wrong, chat, "application/json")->status, 401);

  httplib::Headers all = {{"Authorization", "Bearer secret-all"}};
  EXPECT_EQ(cli->Post("/api/chat", all, chat, "application/json")->status, 200);
  EXPECT_EQ(cli->Post("/api/chat", all, other, "application/json")->status, 200);
  EXPECT_EQ(cli->Get("/api/tags", all)->status, 200);

  // A model-limited token runs its models only, and manages nothing on the nodes.
  httplib::Headers llama = {{"Authorization", "Bearer secret-llama"}};
  EXPECT_EQ(cli->Post("/api/chat", llama, chat, "application/json")->status, 200);
  auto denied = cli->Post("/api/chat", llama, other, "application/json");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_NE(denied->body.find("mistral"), std::string::npos);
  EXPECT_EQ(cli->Post("/api/pull", llama, R"({"model":"llama3.2"})", "application/json")->status,
            403);
  EXPECT_EQ(Requests(a, "/api/chat"), 3);
  EXPECT_EQ(Requests(a, "/api/pull"), 0);
}

TEST_F(ProxyTest, SigtermLetsAnOpenStreamFinish) {
  const size_t a = StartSim({"--load-delay-ms", "0", "--tokens", "2"});
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({Node("a", SimPort(a), {"llama3.2:latest"})});
  StartProxy();
  RawClient client(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})",
                                     "Connection: close\r\n"));
  ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                      "the stream to start"));
  ::kill(proxy_->pid(), SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return proxy_->Log().find("stopping") != std::string::npos; },
                      kDeadline, "the proxy to start stopping"));
  SimConfig(a, {{"gated", false}});
  ASSERT_TRUE(WaitFor([&] { return client.eof(); }, kDeadline, "the stream to end"));
  EXPECT_NE(client.data().find("\"done\":true"), std::string::npos) << client.data();
  EXPECT_TRUE(WaitFor([&] { return !proxy_->Running(); }, kDeadline, "the proxy to exit"));
}

}  // namespace
