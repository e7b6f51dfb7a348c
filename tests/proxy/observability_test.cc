// What corral-proxy tells about the requests it served: after known traffic against corral-sim
// nodes (a streamed chat, an unstreamed generate, a request retried past a dead node, refusals,
// a client that leaves mid-stream) the access log holds exactly those requests, one line each,
// with their nodes, statuses, outcomes and token counts; GET /metrics holds the matching
// counters; and the request id goes from the client (or the proxy) to the node and back.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/proxy/proxy_harness.h"

namespace {

using namespace corral::proxy_testing;

// Hash of "secret-all": only hashes ever reach a proxy.
constexpr const char* kTokenHash =
    "29b966933827787e189bd9f467e53140aa55a3d2a1362c15d7b3f1f4db80a708";
const httplib::Headers kAuth = {{"Authorization", "Bearer secret-all"}};

class ObservabilityTest : public ProxyTest {
 protected:
  std::string LogPath() { return dir_ + "/access.log"; }
  std::vector<json> LogLines() {
    std::ifstream in(LogPath());
    std::vector<json> lines;
    for (std::string line; std::getline(in, line);) {
      lines.push_back(json::parse(line, nullptr, false));
    }
    return lines;
  }
  // The line of the request with `id`; an empty object when there is none.
  static json LineWithId(const std::vector<json>& lines, const std::string& id) {
    for (const json& line : lines) {
      if (line.is_object() && line["request_id"] == id) return line;
    }
    return json::object();
  }
  // The request a sim saw last for `path`.
  json LastRequest(size_t sim, const std::string& path) {
    json last = {{"headers", json::object()}};
    const json stats = SimStats(sim);
    for (const json& r : stats["last_requests"]) {
      if (r["path"] == path) last = r;
    }
    return last;
  }
};

// The value of the sample of `name` whose labels contain every one of `labels` (`key="value"`);
// -1 when there is none.
double Sample(const std::string& text, const std::string& name,
              const std::vector<std::string>& labels) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "{", 0) != 0) continue;
    bool all = true;
    for (const std::string& label : labels) all = all && line.find(label) != std::string::npos;
    if (all) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

bool IsHex32(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST_F(ObservabilityTest, KnownTrafficIsInTheAccessLogAndTheMetrics) {
  const size_t good = StartSim({"--models", "llama3.2:latest,mistral:latest", "--tokens", "3",
                                "--load-delay-ms", "0", "--token-interval-ms", "1"});
  SimConfig(good, {{"keep_requests", 20}});  // the sim keeps the requests it saw, headers too
  const size_t dead = StartSim({});
  const int dead_port = SimPort(dead);
  sims_[dead]->Kill();
  const size_t endless = StartSim({"--models", "qwen:latest", "--tokens", "100000",
                                   "--token-interval-ms", "20", "--load-delay-ms", "0"});
  // The dead node comes first in the snapshot: at equal load it is tried first for mistral.
  WriteSnapshot({Node("dead", dead_port, {"mistral:latest"}),
                 Node("good", SimPort(good), {"llama3.2:latest", "mistral:latest"}),
                 Node("endless", SimPort(endless), {"qwen:latest"})},
                1, {{"tokens", json::array({{{"name", "all"}, {"sha256_hex", kTokenHash}}})}});
  StartProxy({"--access-log", LogPath()});
  auto cli = Client();

  // 1. A streamed chat; the proxy makes its id.
  auto chat = cli->Post("/api/chat", kAuth,
                        R"({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]})",
                        "application/json");
  ASSERT_TRUE(chat);
  ASSERT_EQ(chat->status, 200) << chat->body;
  const std::string chat_id = chat->get_header_value("X-Request-Id");
  EXPECT_TRUE(IsHex32(chat_id)) << chat_id;
  EXPECT_EQ(chat->get_header_value("X-Corral-Attempts"), "1");
  EXPECT_EQ(LastRequest(good, "/api/chat")["headers"].value("x-request-id", ""), chat_id);
  const std::string chat_last = chat->body.substr(chat->body.rfind("{\"model\""));
  const json chat_final = json::parse(chat_last);

  // 2. An unstreamed generate with the client's own id.
  httplib::Headers with_id = kAuth;
  with_id.emplace("X-Request-Id", "client-id-42");
  auto generate =
      cli->Post("/api/generate", with_id, R"({"model":"llama3.2","prompt":"why?","stream":false})",
                "application/json");
  ASSERT_TRUE(generate);
  ASSERT_EQ(generate->status, 200) << generate->body;
  EXPECT_EQ(generate->get_header_value("X-Request-Id"), "client-id-42");
  EXPECT_EQ(LastRequest(good, "/api/generate")["headers"].value("x-request-id", ""),
            "client-id-42");
  const json generate_body = json::parse(generate->body);

  // 3. Retried: the dead node first, then the good one.
  auto retried =
      cli->Post("/api/chat", kAuth,
                R"({"model":"mistral","stream":false,"messages":[{"role":"user","content":"hi"}]})",
                "application/json");
  ASSERT_TRUE(retried);
  ASSERT_EQ(retried->status, 200) << retried->body;
  EXPECT_EQ(retried->get_header_value("X-Corral-Node"), "good");
  EXPECT_EQ(retried->get_header_value("X-Corral-Attempts"), "2");
  const std::string retried_id = retried->get_header_value("X-Request-Id");

  // 4. Refused on its head: no token. The listener's refusal carries the id too.
  auto refused = cli->Post("/api/chat", R"({"model":"llama3.2"})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  const std::string refused_id = refused->get_header_value("X-Request-Id");
  EXPECT_TRUE(IsHex32(refused_id)) << refused_id;

  // 5. No node has the model; a client id too long to keep is replaced.
  httplib::Headers long_id = kAuth;
  long_id.emplace("X-Request-Id", std::string(200, 'x'));
  auto unknown =
      cli->Post("/api/generate", long_id, R"({"model":"nosuch","prompt":"x"})", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  const std::string unknown_id = unknown->get_header_value("X-Request-Id");
  EXPECT_TRUE(IsHex32(unknown_id)) << unknown_id;

  // 6. A client that leaves mid-stream.
  std::string gone_head;
  {
    RawClient client(ProxyPort(), Post("/api/generate", R"({"model":"qwen","prompt":"x"})",
                                       "Authorization: Bearer secret-all\r\n"));
    ASSERT_TRUE(WaitFor([&] { return Count(client.data(), "\"done\":false") >= 2; }, kDeadline,
                        "tokens to flow"));
    gone_head = client.data().substr(0, client.data().find("\r\n\r\n"));
    client.Close();
  }
  const size_t at = gone_head.find("X-Request-Id: ");
  ASSERT_NE(at, std::string::npos) << gone_head;
  const std::string gone_id = gone_head.substr(at + 14, 32);

  ASSERT_TRUE(WaitFor([&] { return LogLines().size() >= 6; }, kDeadline, "six log lines"));
  const std::vector<json> lines = LogLines();
  ASSERT_EQ(lines.size(), 6u);
  for (const json& line : lines) ASSERT_TRUE(line.is_object());

  const json l1 = LineWithId(lines, chat_id);
  EXPECT_EQ(l1["route"], "chat");
  EXPECT_EQ(l1["status"], 200);
  EXPECT_EQ(l1["outcome"], "answered");
  EXPECT_EQ(l1["node"], "good");
  EXPECT_EQ(l1["token"], "all");
  EXPECT_EQ(l1["streamed"], true);
  EXPECT_EQ(l1["output_tokens"], chat_final["eval_count"]);
  EXPECT_EQ(l1["input_tokens"], chat_final["prompt_eval_count"]);
  EXPECT_GE(l1["first_token_ms"].get<double>(), 0);
  EXPECT_GE(l1["proxy_ms"].get<double>(), 0);

  const json l2 = LineWithId(lines, "client-id-42");
  EXPECT_EQ(l2["route"], "generate");
  EXPECT_EQ(l2["outcome"], "answered");
  EXPECT_EQ(l2["node"], "good");
  EXPECT_EQ(l2["streamed"], false);
  EXPECT_EQ(l2["output_tokens"], generate_body["eval_count"]);
  EXPECT_EQ(l2["input_tokens"], generate_body["prompt_eval_count"]);
  EXPECT_EQ(l2["bytes_out"], generate->body.size());

  const json l3 = LineWithId(lines, retried_id);
  EXPECT_EQ(l3["outcome"], "answered");
  EXPECT_EQ(l3["node"], "good");
  ASSERT_EQ(l3["nodes_tried"].size(), 2u) << l3.dump();
  EXPECT_EQ(l3["nodes_tried"][0]["node"], "dead");
  EXPECT_NE(l3["nodes_tried"][0]["error"], "");
  EXPECT_EQ(l3["nodes_tried"][1]["node"], "good");
  EXPECT_EQ(l3["nodes_tried"][1]["status"], 200);

  const json l4 = LineWithId(lines, refused_id);
  EXPECT_EQ(l4["status"], 401);
  EXPECT_EQ(l4["outcome"], "refused");
  EXPECT_EQ(l4["token"], "");
  EXPECT_EQ(l4["attempts"], 0);

  const json l5 = LineWithId(lines, unknown_id);
  EXPECT_EQ(l5["status"], 404);
  EXPECT_EQ(l5["outcome"], "no_node");
  EXPECT_EQ(l5["model"], "nosuch");

  const json l6 = LineWithId(lines, gone_id);
  EXPECT_EQ(l6["outcome"], "client_gone") << l6.dump();
  EXPECT_EQ(l6["node"], "endless");
  EXPECT_EQ(l6["streamed"], true);
  EXPECT_GT(l6["bytes_out"].get<int64_t>(), 0);

  // The metrics, scraped with the fleet's token (the fleet is closed).
  auto scraped = cli->Get("/metrics", kAuth);
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200);
  EXPECT_EQ(scraped->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = scraped->body;
  const std::string requests = "corral_requests_total";
  EXPECT_EQ(
      Sample(text, requests, {"route=\"chat\"", "llama3.2:latest\"", "node=\"good\"", "=\"2xx\""}),
      1)
      << text;
  EXPECT_EQ(Sample(text, requests,
                   {"route=\"generate\"", "llama3.2:latest\"", "node=\"good\"", "=\"2xx\""}),
            1);
  EXPECT_EQ(
      Sample(text, requests, {"route=\"chat\"", "mistral:latest\"", "node=\"good\"", "=\"2xx\""}),
      1);
  EXPECT_EQ(
      Sample(text, requests, {"route=\"chat\"", "model=\"none\"", "node=\"none\"", "=\"4xx\""}), 1);
  EXPECT_EQ(Sample(text, requests,
                   {"route=\"generate\"", "model=\"other\"", "node=\"none\"", "=\"4xx\""}),
            1);
  EXPECT_EQ(Sample(text, requests, {"route=\"generate\"", "qwen:latest\"", "node=\"endless\""}), 1);
  EXPECT_EQ(Sample(text, "corral_retries_total",
                   {"mistral:latest\"", "node=\"dead\"", "reason=\"connect\""}),
            1);
  EXPECT_EQ(Sample(text, "gen_ai_client_token_usage_count",
                   {"gen_ai_operation_name=\"chat\"", "llama3.2:latest\"", "node=\"good\"",
                    "gen_ai_token_type=\"output\""}),
            1);
  EXPECT_EQ(Sample(text, "gen_ai_server_time_to_first_token_seconds_count",
                   {"gen_ai_operation_name=\"text_completion\"", "llama3.2:latest\""}),
            1);
  EXPECT_GE(Sample(text, "corral_proxy_overhead_seconds_count", {"route=\"chat\""}), 2);
  EXPECT_EQ(Sample(text, "corral_node_in_flight_requests", {"node=\"good\""}), 0);
  EXPECT_NE(text.find("corral_snapshot_version 1\n"), std::string::npos);
  EXPECT_NE(text.find("corral_control_plane_connected 0\n"), std::string::npos);
}

// The ends of a stream the client did not choose: its node cut it, its node fell silent, the
// proxy stopped. Each is one line, with its own outcome, written when the stream ended.
TEST_F(ObservabilityTest, StreamsEndedByTheirNodeOrByTheStopAreRecordedOnceEach) {
  const size_t dies =
      StartSim({"--models", "llama3.2:latest", "--fail", "drop-mid-stream", "--fail-after", "2",
                "--tokens", "6", "--load-delay-ms", "0", "--token-interval-ms", "1"});
  const size_t stalls = StartSim({"--models", "mistral:latest", "--fail", "stall-mid-stream",
                                  "--fail-after", "1", "--tokens", "6", "--load-delay-ms", "0"});
  const size_t endless = StartSim({"--models", "qwen:latest", "--tokens", "100000",
                                   "--token-interval-ms", "20", "--load-delay-ms", "0"});
  // One attempt per request (a node failing before any byte would be retried otherwise), and a
  // short idle limit so the stalled stream ends within the test.
  WriteSnapshot({Node("dies", SimPort(dies), {"llama3.2:latest"}),
                 Node("stalls", SimPort(stalls), {"mistral:latest"}),
                 Node("endless", SimPort(endless), {"qwen:latest"})},
                1, {{"timeouts", {{"idle_ms", 500}}}});
  StartProxy({"--access-log", LogPath(), "--grace-s", "0"});

  RawClient cut(ProxyPort(), Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return cut.data().find("\"error\"") != std::string::npos; }, kDeadline,
                      "the cut stream's error line"));
  RawClient stalled(ProxyPort(), Post("/api/generate", R"({"model":"mistral","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return stalled.data().find("\"error\"") != std::string::npos; },
                      kDeadline, "the stalled stream's error line"));
  RawClient open(ProxyPort(), Post("/api/generate", R"({"model":"qwen","prompt":"x"})"));
  ASSERT_TRUE(WaitFor([&] { return open.data().find("\"done\":false") != std::string::npos; },
                      kDeadline, "the endless stream's first tokens"));
  ASSERT_TRUE(
      WaitFor([&] { return LogLines().size() == 2; }, kDeadline, "the two ended streams' lines"));
  // The stop: no grace, so the open stream is ended at once, and its line is written before the
  // process exits.
  EXPECT_EQ(proxy_->Signal(SIGTERM, kDeadline), 0);

  const std::vector<json> lines = LogLines();
  ASSERT_EQ(lines.size(), 3u);
  std::map<std::string, json> by_node;
  for (const json& line : lines) by_node[line.value("node", "")] = line;
  ASSERT_EQ(by_node.size(), 3u) << lines[0].dump() << lines[1].dump() << lines[2].dump();
  EXPECT_EQ(by_node["dies"]["outcome"], "node_failed") << by_node["dies"].dump();
  EXPECT_EQ(by_node["stalls"]["outcome"], "idle_timeout") << by_node["stalls"].dump();
  EXPECT_EQ(by_node["endless"]["outcome"], "proxy_stopping") << by_node["endless"].dump();
  for (const auto& [node, line] : by_node) {
    EXPECT_EQ(line["status"], 200) << line.dump();  // the head had gone out: the node's status
    EXPECT_TRUE(line["streamed"].get<bool>()) << line.dump();
    EXPECT_GT(line["bytes_out"].get<int64_t>(), 0) << line.dump();
    EXPECT_FALSE(line["error"].get<std::string>().empty()) << line.dump();
  }
}

TEST_F(ObservabilityTest, MetricsNeedTheTokenOfAClosedFleetAndAreOpenOtherwise) {
  WriteSnapshot(json::array(), 1,
                {{"tokens", json::array({{{"name", "all"}, {"sha256_hex", kTokenHash}}})}});
  StartProxy();
  auto cli = Client();
  auto anonymous = cli->Get("/metrics");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto with_token = cli->Get("/metrics", kAuth);
  ASSERT_TRUE(with_token);
  EXPECT_EQ(with_token->status, 200);
  // The refused scrape is a request like any other.
  EXPECT_NE(with_token->body.find("route=\"metrics\""), std::string::npos) << with_token->body;
}

}  // namespace
