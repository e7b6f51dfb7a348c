// Routing with real processes (docs/routing.md): a corral-proxy started from a snapshot file in
// front of corral-sim nodes. The wait queue serves a burst larger than the fleet's slots, gives
// up with a 503 and Retry-After after its time limit, and drops a client that leaves; placement
// keeps a model on the nodes a hard rule names and off nodes too small for it; an alias reaches
// the node as the model it stands for.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/proxy_harness.h"

namespace corral::proxy_testing {
namespace {

constexpr char kModel[] = "llama3.2:latest";

class RoutingProcessTest : public ProxyTest {
 protected:
  // A node entry with the model loaded and `slots` per-model slots.
  static json LoadedNode(const std::string& name, int port, int slots) {
    json node = Node(name, port, {kModel});
    node["loaded_models"] = json::array({{{"name", kModel}}});
    node["num_parallel"] = slots;
    return node;
  }
  int64_t QueueDepth() { return State()["queue"].value("depth", int64_t{-1}); }
};

TEST_F(RoutingProcessTest, ABurstBeyondTheSlotsWaitsAndEveryRequestSucceeds) {
  // Two nodes with four slots each: eight requests run, two wait for a slot.
  const size_t a = StartSim(
      {"--models", kModel, "--load-delay-ms", "0", "--num-parallel", "4", "--tokens", "2"});
  const size_t b = StartSim(
      {"--models", kModel, "--load-delay-ms", "0", "--num-parallel", "4", "--tokens", "2"});
  SimConfig(a, {{"gated", true}});
  SimConfig(b, {{"gated", true}});
  WriteSnapshot({LoadedNode("a", SimPort(a), 4), LoadedNode("b", SimPort(b), 4)});
  StartProxy({"--max-streams", "64"});

  std::vector<int> statuses(10, 0);
  std::vector<std::thread> clients;
  for (int i = 0; i < 10; ++i) {
    clients.emplace_back([&, i] {
      auto cli = Client();
      auto res = cli->Post("/api/generate", R"({"model":"llama3.2","prompt":"hi","stream":false})",
                           "application/json");
      statuses[i] = res ? res->status : -1;
    });
  }
  ASSERT_TRUE(WaitFor([&] { return QueueDepth() == 2; }, kDeadline,
                      "eight requests on the nodes and two in the queue"));
  EXPECT_EQ(SimStats(a)["active"].get<int>() + SimStats(b)["active"].get<int>(), 8);
  SimConfig(a, {{"gated", false}});
  SimConfig(b, {{"gated", false}});
  for (auto& t : clients) t.join();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(statuses[i], 200) << "request " << i;
  const json queue = State()["queue"];
  EXPECT_EQ(queue["depth"], 0);
  EXPECT_EQ(queue["waited_total"], 2);
  EXPECT_EQ(queue["served_total"], 2);
  EXPECT_LE(std::max(SimStats(a)["max_running"].get<int>(), SimStats(b)["max_running"].get<int>()),
            4);
}

TEST_F(RoutingProcessTest, AWaitPastTheQueuesTimeLimitIsA503WithRetryAfter) {
  const size_t a = StartSim({"--models", kModel, "--load-delay-ms", "0"});
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({LoadedNode("a", SimPort(a), 1)}, 1, {{"queue", {{"max_wait_ms", 300}}}});
  StartProxy();
  RawClient holder(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                      "the first request to hold the model's one slot"));

  auto native =
      Client()->Post("/api/generate", R"({"model":"llama3.2","prompt":"y"})", "application/json");
  ASSERT_TRUE(native);
  EXPECT_EQ(native->status, 503);
  EXPECT_EQ(native->get_header_value("Retry-After"), "5");
  const json error = json::parse(native->body)["error"];
  ASSERT_TRUE(error.is_string()) << native->body;
  EXPECT_NE(error.get<std::string>().find("is busy; waited 0.3 s"), std::string::npos) << error;

  auto openai = Client()->Post("/v1/chat/completions",
                               R"({"model":"llama3.2","messages":[{"role":"user","content":"y"}]})",
                               "application/json");
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->status, 503);
  EXPECT_FALSE(openai->get_header_value("Retry-After").empty());
  const json object = json::parse(openai->body)["error"];
  ASSERT_TRUE(object.is_object()) << openai->body;
  EXPECT_EQ(object["type"], "api_error");
  EXPECT_EQ(State()["queue"]["timed_out_total"], 2);
  EXPECT_EQ(Requests(a, "/api/generate"), 1);  // neither waiter reached the node

  SimConfig(a, {{"gated", false}});
  ASSERT_TRUE(WaitFor([&] { return holder.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the first request to finish"));
}

TEST_F(RoutingProcessTest, AClientThatLeavesTheQueueLeavesAtOnce) {
  const size_t a = StartSim({"--models", kModel, "--load-delay-ms", "0"});
  SimConfig(a, {{"gated", true}});
  WriteSnapshot({LoadedNode("a", SimPort(a), 1)});
  StartProxy();
  RawClient holder(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return SimStats(a)["gate"]["waiting"] == 1; }, kDeadline,
                      "the first request to hold the slot"));
  auto waiter = std::make_unique<RawClient>(
      ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"y"})"));
  ASSERT_TRUE(WaitFor([&] { return QueueDepth() == 1; }, kDeadline, "the second to queue"));
  waiter->Close();
  ASSERT_TRUE(WaitFor([&] { return QueueDepth() == 0; }, kDeadline,
                      "the queue to drop the client that left"));
  EXPECT_EQ(State()["queue"]["client_gone_total"], 1);
  SimConfig(a, {{"gated", false}});
  ASSERT_TRUE(WaitFor([&] { return holder.data().find("\"done\":true") != std::string::npos; },
                      kDeadline, "the first request to finish"));
  EXPECT_EQ(Requests(a, "/api/generate"), 1);  // the one that left never reached the node
}

TEST_F(RoutingProcessTest, PlacementKeepsModelsWhereRulesAndMemoryAllow) {
  const std::string big = "big:latest";
  const std::string models = std::string(kModel) + ",big:latest=42949672960";
  const size_t a = StartSim({"--models", models, "--load-delay-ms", "0", "--num-parallel", "8",
                             "--token-interval-ms", "1"});
  const size_t b = StartSim({"--models", models, "--load-delay-ms", "0", "--num-parallel", "8",
                             "--token-interval-ms", "1"});
  const size_t c = StartSim({"--models", models, "--load-delay-ms", "0", "--num-parallel", "8",
                             "--token-interval-ms", "1"});
  json nodes = json::array();
  for (auto [name, sim, memory] :
       {std::tuple{"a", a, 24.0}, std::tuple{"b", b, 16.0}, std::tuple{"c", c, 80.0}}) {
    json node = Node(name, SimPort(sim), {kModel});
    node["models"].push_back({{"name", big}, {"size", "42949672960"}});  // 40 GiB on disk
    node["max_memory_gb"] = memory;
    node["num_parallel"] = 8;
    nodes.push_back(node);
  }
  json rules = {
      {"placement",
       json::array({{{"pattern", "llama3.2*"}, {"nodes", json::array({"b"})}, {"hard", true}}})}};
  WriteSnapshot(nodes, 1, rules);
  StartProxy();

  std::set<std::string> llama_nodes, big_nodes;
  for (int i = 0; i < 4; ++i) {
    auto res = Client()->Post(
        "/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    llama_nodes.insert(res->get_header_value("X-Corral-Node"));
    res = Client()->Post("/api/generate", R"({"model":"big","prompt":"x","stream":false})",
                         "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    big_nodes.insert(res->get_header_value("X-Corral-Node"));
  }
  EXPECT_EQ(llama_nodes, std::set<std::string>{"b"});  // the hard rule
  EXPECT_EQ(big_nodes, std::set<std::string>{"c"});    // only c has 40 GiB

  // No node may take the model: a 503 that says why.
  nodes[2]["max_memory_gb"] = 32.0;
  WriteSnapshot(nodes, 2, rules);
  ::kill(proxy_->pid(), SIGHUP);  // the proxy re-reads its snapshot file
  ASSERT_TRUE(WaitFor([&] { return State()["snapshot"]["version"] == 2; }, kDeadline,
                      "the proxy to apply snapshot 2"));
  auto refused =
      Client()->Post("/api/generate", R"({"model":"big","prompt":"x"})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(refused->body.find("no node may run model 'big'"), std::string::npos) << refused->body;
  EXPECT_NE(refused->body.find("40.0 GB"), std::string::npos) << refused->body;
}

TEST_F(RoutingProcessTest, AnAliasReachesTheNodeAsItsTarget) {
  const size_t a = StartSim({"--models", kModel, "--load-delay-ms", "0", "--token-interval-ms", "1",
                             "--num-parallel", "4"});
  json node = Node("a", SimPort(a), {kModel});
  node["num_parallel"] = 4;
  WriteSnapshot({node}, 1,
                {{"aliases", json::array({{{"alias", "gpt-4o"}, {"target", "llama3.2"}}})}});
  StartProxy();
  auto res = Client()->Post(
      "/v1/chat/completions",
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.5})",
      "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  auto native = Client()->Post("/api/chat", R"({"Model":"gpt-4o","messages":[],"stream":false})",
                               "application/json");
  ASSERT_TRUE(native);
  EXPECT_EQ(native->status, 200) << native->body;
  EXPECT_EQ(SimStats(a)["models"][kModel]["requests"], 2);
}

}  // namespace
}  // namespace corral::proxy_testing
