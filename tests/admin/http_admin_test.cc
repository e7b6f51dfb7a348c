// The HTTP admin API against a real corral-control over real sockets: every path of the OpenAPI
// document answers with its documented status (the proxy's paths against a real corral-proxy),
// /v1 refuses a missing or wrong token, bad input is a 400 that changes nothing, a pull streams
// each real corral-sim node's progress as NDJSON, a delete removes the model from the nodes named
// and the fleet's model list follows, and an operation through HTTP reads the same through gRPC
// and the other way round.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "corral/v1/control.grpc.pb.h"
#include "tests/support/process.h"

namespace corral::testing {
namespace {

using nlohmann::json;

class HttpAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("http-admin");
    for (int i = 0; i < 2; ++i) {
      sims_.push_back(std::make_unique<ChildProcess>(
          BinaryPath("corral-sim"),
          std::vector<std::string>{"--listen", "127.0.0.1:0", "--models", "llama3.2",
                                   "--load-delay-ms", "0"},
          dir_));
      ASSERT_NE(sims_.back()->WaitForPort(), 0) << sims_.back()->Log();
    }
    control_ = std::make_unique<ChildProcess>(
        BinaryPath("corral-control"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--data-dir", dir_ + "/var",
                                 "--probe-interval-ms", "200", "--no-discovery", "--http-listen",
                                 "127.0.0.1:0", "--http-port-file", dir_ + "/http.port"},
        dir_);
    ASSERT_NE(control_->WaitForPort(), 0) << control_->Log();
    ASSERT_TRUE(WaitFor([&] { return !ReadFile(dir_ + "/http.port").empty(); },
                        std::chrono::seconds(10), "the HTTP port file"));
    http_port_ = std::atoi(ReadFile(dir_ + "/http.port").c_str());
    token_ = std::string(absl::StripAsciiWhitespace(ReadFile(dir_ + "/var/admin.token")));
    ASSERT_GT(http_port_, 0);
    ASSERT_FALSE(token_.empty());
  }

  void TearDown() override {
    if (HasFailure()) {
      control_->DumpLog();
      if (proxy_ != nullptr) proxy_->DumpLog();
    }
  }

  std::string SimUrl(size_t i) const {
    return "http://127.0.0.1:" + std::to_string(sims_[i]->port());
  }

  // One request to the HTTP port; `token` empty sends none.
  httplib::Result Call(const std::string& method, const std::string& path,
                       const std::string& body = "", const std::string& token = "<admin>",
                       int port = 0) const {
    httplib::Client client("127.0.0.1", port == 0 ? http_port_ : port);
    client.set_read_timeout(30, 0);
    httplib::Headers headers;
    const std::string bearer = token == "<admin>" ? token_ : token;
    if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
    if (method == "GET") return client.Get(path.c_str(), headers);
    if (method == "DELETE") return client.Delete(path.c_str(), headers);
    if (method == "POST") return client.Post(path.c_str(), headers, body, "application/json");
    if (method == "PUT") return client.Put(path.c_str(), headers, body, "application/json");
    return client.Patch(path.c_str(), headers, body, "application/json");
  }

  json CallJson(const std::string& method, const std::string& path, const std::string& body = "",
                int expect = 200) {
    httplib::Result r = Call(method, path, body);
    EXPECT_TRUE(r) << method << " " << path;
    if (!r) return nullptr;
    EXPECT_EQ(r->status, expect) << method << " " << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  std::unique_ptr<corral::v1::Admin::Stub> Grpc() const {
    return corral::v1::Admin::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(control_->port()), grpc::InsecureChannelCredentials()));
  }
  void Authorize(grpc::ClientContext* context) const {
    context->AddMetadata("authorization", "Bearer " + token_);
  }

  std::string dir_;
  std::vector<std::unique_ptr<ChildProcess>> sims_;
  std::unique_ptr<ChildProcess> control_;
  std::unique_ptr<ChildProcess> proxy_;
  int http_port_ = 0;
  std::string token_;
};

std::string NodeBody(const std::string& name, const std::string& url) {
  return json{{"name", name}, {"url", url}}.dump();
}

TEST_F(HttpAdminTest, EveryDocumentedPathAnswersWithItsDocumentedStatus) {
  // A node and a token for the paths that name one, and a proxy for the proxy's own paths.
  CallJson("POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(0)));
  proxy_ = std::make_unique<ChildProcess>(
      BinaryPath("corral-proxy"),
      std::vector<std::string>{"--listen", "127.0.0.1:0", "--control",
                               "127.0.0.1:" + std::to_string(control_->port()),
                               "--control-token-file", dir_ + "/var/proxy.token", "--snapshot",
                               dir_ + "/proxy.snapshot.json", "--id", "proxy-a"},
      dir_);
  ASSERT_NE(proxy_->WaitForPort(), 0) << proxy_->Log();
  ASSERT_TRUE(WaitFor(
      [&] {
        httplib::Client c("127.0.0.1", proxy_->port());
        auto r = c.Get("/api/proxy");
        return r && r->status == 200;
      },
      std::chrono::seconds(20), "the proxy serving gpu-a"));

  httplib::Result doc_answer = Call("GET", "/openapi.json", "", "");
  ASSERT_TRUE(doc_answer);
  ASSERT_EQ(doc_answer->status, 200);
  const json doc = json::parse(doc_answer->body);
  ASSERT_EQ(doc["openapi"], "3.1.0");

  // A simple valid request per (path, method); DELETE last so the others find what they name.
  const std::map<std::string, std::string> bodies = {
      {"POST /v1/nodes", NodeBody("gpu-b", SimUrl(1))},
      {"PATCH /v1/nodes/{name}", R"({"weight": 2})"},
      {"PUT /v1/strategy", R"({"strategy": "STRATEGY_ROUND_ROBIN"})"},
      {"POST /v1/models:pull", R"({"model": "llama3.2", "node": "gpu-a"})"},
      {"POST /v1/models:delete", R"({"model": "llama3.2", "node": "gpu-a"})"},
      {"PUT /v1/discovery", R"({"ranges": []})"},
      {"POST /v1/tokens", R"({"name": "ci-token"})"},
      {"PUT /v1/token-policy", R"({"require_tokens": false})"},
  };
  std::vector<std::pair<std::string, std::string>> calls;  // method, path template
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters" || method == "servers") continue;
      calls.emplace_back(absl::AsciiStrToUpper(method), path);
    }
  }
  std::stable_partition(calls.begin(), calls.end(),
                        [](const auto& c) { return c.first != "DELETE"; });
  ASSERT_GE(calls.size(), 25u);
  for (const auto& [method, path] : calls) {
    const json& op = doc["paths"][path][absl::AsciiStrToLower(method)];
    const bool on_proxy = doc["paths"][path].contains("servers");
    std::string concrete = path;
    if (const size_t hole = concrete.find("{name}"); hole != std::string::npos) {
      concrete.replace(hole, 6, absl::StartsWith(path, "/v1/tokens") ? "ci-token" : "gpu-a");
    }
    auto body = bodies.find(method + " " + path);
    httplib::Result r = Call(method, concrete, body == bodies.end() ? "" : body->second,
                             on_proxy ? "" : "<admin>", on_proxy ? proxy_->port() : 0);
    ASSERT_TRUE(r) << method << " " << concrete;
    EXPECT_TRUE(op["responses"].contains(std::to_string(r->status)))
        << method << " " << concrete << " answered " << r->status
        << ", not documented: " << r->body;
    EXPECT_EQ(r->status, 200) << method << " " << concrete << ": " << r->body;
    EXPECT_NE(r->status, 404);
    EXPECT_NE(r->status, 405);
  }
  // The pull above reached the sim and ended well.
  json nodes = CallJson("GET", "/v1/nodes");
  EXPECT_EQ(nodes["nodes"].size(), 1u) << nodes.dump();  // gpu-b added, gpu-a removed
}

TEST_F(HttpAdminTest, V1RefusesAMissingOrWrongTokenAndTheDocsStayOpen) {
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/v1/nodes"},
                                                        {"POST", "/v1/nodes"},
                                                        {"GET", "/v1/nodes/x"},
                                                        {"PATCH", "/v1/nodes/x"},
                                                        {"DELETE", "/v1/nodes/x"},
                                                        {"POST", "/v1/nodes/x:drain"},
                                                        {"GET", "/v1/strategy"},
                                                        {"PUT", "/v1/strategy"},
                                                        {"GET", "/v1/state"},
                                                        {"POST", "/v1/models:pull"},
                                                        {"GET", "/v1/tokens"},
                                                        {"POST", "/v1/tokens"},
                                                        {"DELETE", "/v1/tokens/x"},
                                                        {"PUT", "/v1/token-policy"},
                                                        {"GET", "/v1/usage"}}) {
    for (const std::string& token : {std::string(""), std::string("not-the-admin-token")}) {
      httplib::Result r = Call(method, path, "{}", token);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 401) << method << " " << path << " with token \"" << token << "\"";
      const json error = json::parse(r->body, nullptr, false);
      EXPECT_EQ(error["code"], 16) << r->body;
      EXPECT_EQ(error["status"], "UNAUTHENTICATED") << r->body;
      EXPECT_NE(error["message"].get<std::string>().find("admin.token"), std::string::npos);
    }
  }
  EXPECT_EQ(Call("GET", "/openapi.json", "", "")->status, 200);
  httplib::Result docs = Call("GET", "/docs", "", "");
  ASSERT_TRUE(docs);
  EXPECT_EQ(docs->status, 200);
  EXPECT_NE(docs->body.find("swagger-ui"), std::string::npos);
  httplib::Result bundle = Call("GET", "/docs/swagger-ui-bundle.js", "", "");
  ASSERT_TRUE(bundle);
  EXPECT_EQ(bundle->status, 200);
  EXPECT_GT(bundle->body.size(), 100000u);             // the real bundle, from the binary
  httplib::Result console = Call("GET", "/", "", "");  // the web console, open like /docs
  ASSERT_TRUE(console);
  EXPECT_EQ(console->status, 200);
  EXPECT_NE(console->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/nope")->status, 404);
  httplib::Result wrong = Call("PUT", "/v1/nodes", "{}");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "GET, POST");
}

TEST_F(HttpAdminTest, BadInputIsA400ThatChangesNothing) {
  CallJson("POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(0)));
  // The new node's first probe (started at once) changes the registry: wait for it first.
  ASSERT_TRUE(WaitFor(
      [&] { return CallJson("GET", "/v1/nodes/gpu-a")["node"]["health"] == "HEALTH_HEALTHY"; },
      std::chrono::seconds(10), "the new node's first probe"));
  const json before = CallJson("GET", "/v1/state");
  const std::string huge = "{\"name\": \"" + std::string(2 << 20, 'a') + "\"}";
  struct Bad {
    std::string method, path, body;
    int status;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"POST", "/v1/nodes", "{not json", 400},
           {"POST", "/v1/nodes", R"({"name": "n1", "url": "http://127.0.0.1:1", "bogus": 1})", 400},
           {"POST", "/v1/nodes", R"({"name": "n1", "url": "http://127.0.0.1:1", "weight": "x"})",
            400},
           {"POST", "/v1/nodes", R"([1, 2])", 400},
           {"POST", "/v1/nodes", R"({"name": "bad name", "url": "http://127.0.0.1:1"})", 400},
           {"POST", "/v1/nodes", R"({"name": "n1", "url": "ftp://x"})", 400},
           {"POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(1)), 409},
           {"POST", "/v1/nodes", huge, 413},
           {"PATCH", "/v1/nodes/gpu-a", R"({"name": "other"})", 400},
           {"PATCH", "/v1/nodes/gpu-a", R"({"weight": -5})", 400},
           {"PATCH", "/v1/nodes/bad$name", R"({"weight": 1})", 400},
           {"GET", "/v1/nodes/no-such-node", "", 404},
           {"POST", "/v1/nodes/no-such-node:drain", "", 404},
           {"PUT", "/v1/strategy", R"({"strategy": "STRATEGY_FASTEST"})", 400},
           {"PUT", "/v1/token-policy", "{}", 400},
           {"POST", "/v1/tokens", R"({"name": "t", "token": "short"})", 400},
           {"POST", "/v1/models:pull", R"({"model": "llama3.2"})", 400},
           {"POST", "/v1/models:pull", R"({"model": "::bad::", "all": true})", 400},
           {"GET", "/v1/usage?by=colour", "", 400},
           {"GET", "/v1/usage?since=yesterday", "", 400},
           {"GET", "/v1/nodes?limit=3", "", 400},
       }) {
    httplib::Result r = Call(bad.method, bad.path, bad.body);
    ASSERT_TRUE(r) << bad.method << " " << bad.path;
    EXPECT_EQ(r->status, bad.status)
        << bad.method << " " << bad.path << " " << bad.body.substr(0, 80) << ": " << r->body;
    const json error = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(error.contains("code") && error.contains("status") && error.contains("message"))
        << r->body;
    EXPECT_FALSE(error["message"].get<std::string>().empty());
  }
  const json after = CallJson("GET", "/v1/state");
  EXPECT_EQ(after["snapshot_version"], before["snapshot_version"]);
  EXPECT_EQ(after["nodes"].size(), 1u);
  EXPECT_EQ(CallJson("GET", "/v1/nodes/gpu-a")["node"]["weight"],
            before["nodes"][0]["node"]["weight"]);
}

TEST_F(HttpAdminTest, APullStreamsEveryNodesProgressAsNdjson) {
  CallJson("POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(0)));
  CallJson("POST", "/v1/nodes", NodeBody("gpu-b", SimUrl(1)));
  httplib::Result r = Call("POST", "/v1/models:pull", R"({"model": "mistral", "all": true})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/x-ndjson");
  std::map<std::string, std::vector<json>> by_node;
  for (absl::string_view line : absl::StrSplit(r->body, '\n', absl::SkipEmpty())) {
    json progress = json::parse(line, nullptr, false);
    ASSERT_FALSE(progress.is_discarded()) << line;
    ASSERT_TRUE(progress.contains("node")) << line;
    by_node[progress["node"]].push_back(progress);
  }
  ASSERT_EQ(by_node.size(), 2u) << r->body;
  for (const auto& [node, lines] : by_node) {
    ASSERT_GE(lines.size(), 2u) << node << ": " << r->body;
    EXPECT_EQ(lines.back()["done"], true) << node;
    EXPECT_EQ(lines.back()["status"], "success") << node;
    EXPECT_EQ(lines.back()["error"], "") << node;
  }
  // A node that cannot pull ends its lines with the error, and the stream with the whole status.
  CallJson("PATCH", "/v1/nodes/gpu-b", R"({"url": "http://127.0.0.1:1"})");
  r = Call("POST", "/v1/models:pull", R"({"model": "mistral", "node": "gpu-b"})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::vector<std::string> lines = absl::StrSplit(r->body, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << r->body;
  const json node_end = json::parse(lines[lines.size() - 2]);
  EXPECT_EQ(node_end["done"], true);
  EXPECT_EQ(node_end["status"], "error");
  const json stream_end = json::parse(lines.back());
  EXPECT_EQ(stream_end["status"], "UNAVAILABLE") << r->body;
}

// The nodes of `model` (bare or :latest) in a GET /v1/models answer, sorted.
std::vector<std::string> NodesWith(const json& models, const std::string& model) {
  std::vector<std::string> nodes;
  for (const json& m : models.value("models", json::array())) {
    const std::string name = m.value("name", "");
    if (name != model && name != model + ":latest") continue;
    for (const json& where : m.value("locations", json::array())) nodes.push_back(where["node"]);
  }
  std::sort(nodes.begin(), nodes.end());
  return nodes;
}

TEST_F(HttpAdminTest, ADeleteRemovesTheModelFromTheNodesNamedAndTheModelListFollows) {
  CallJson("POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(0)));
  CallJson("POST", "/v1/nodes", NodeBody("gpu-b", SimUrl(1)));
  ASSERT_TRUE(WaitFor(
      [&] {
        return NodesWith(CallJson("GET", "/v1/models"), "llama3.2") ==
               std::vector<std::string>{"gpu-a", "gpu-b"};
      },
      std::chrono::seconds(10), "llama3.2 listed on both nodes"));

  // Bad input is a 400 naming the problem, and deletes nothing.
  for (const char* bad :
       {R"({"model": "llama3.2"})", R"({"model": "llama3.2", "node": "gpu-a", "all": true})",
        R"({"model": "bad name!", "node": "gpu-a"})", R"({"modle": "x"})"}) {
    httplib::Result r = Call("POST", "/v1/models:delete", bad);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad << ": " << r->body;
    EXPECT_EQ(json::parse(r->body, nullptr, false).value("status", ""), "INVALID_ARGUMENT")
        << r->body;
  }
  httplib::Result r = Call("POST", "/v1/models:delete", R"({"model": "llama3.2", "node": "nope"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(NodesWith(CallJson("GET", "/v1/models"), "llama3.2"),
            (std::vector<std::string>{"gpu-a", "gpu-b"}));

  // One node: gone from it, still on the other.
  json answer = CallJson("POST", "/v1/models:delete", R"({"model": "llama3.2", "node": "gpu-a"})");
  ASSERT_EQ(answer["results"].size(), 1u) << answer.dump();
  EXPECT_EQ(answer["results"][0]["node"], "gpu-a");
  EXPECT_EQ(answer["results"][0]["ok"], true) << answer.dump();
  ASSERT_TRUE(WaitFor(
      [&] {
        return NodesWith(CallJson("GET", "/v1/models"), "llama3.2") ==
               std::vector<std::string>{"gpu-b"};
      },
      std::chrono::seconds(10), "llama3.2 gone from gpu-a only"));

  // The node no longer has it: the node's own 404 and message come back.
  r = Call("POST", "/v1/models:delete", R"({"model": "llama3.2", "node": "gpu-a"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_TRUE(absl::StrContains(r->body, "not found")) << r->body;

  // Every node that lists it, through gRPC: the same operation, the same result.
  corral::v1::DeleteModelRequest all;
  all.set_model("llama3.2");
  all.set_all(true);
  corral::v1::DeleteModelResponse resp;
  grpc::ClientContext context;
  Authorize(&context);
  grpc::Status status = Grpc()->DeleteModel(&context, all, &resp);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(resp.results_size(), 1) << resp.DebugString();
  EXPECT_EQ(resp.results(0).node(), "gpu-b");
  EXPECT_TRUE(resp.results(0).ok());
  ASSERT_TRUE(WaitFor([&] { return NodesWith(CallJson("GET", "/v1/models"), "llama3.2").empty(); },
                      std::chrono::seconds(10), "llama3.2 gone from the fleet"));
  r = Call("POST", "/v1/models:delete", R"({"model": "llama3.2", "all": true})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
}

TEST_F(HttpAdminTest, HttpAndGrpcGiveTheSameAnswers) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;
  auto stub = Grpc();

  // Created over HTTP, read over gRPC.
  const json created = CallJson(
      "POST", "/v1/nodes",
      R"({"name": "gpu-a", "url": ")" + SimUrl(0) + R"(", "weight": 3, "labels": {"rack": "r1"}})");
  {
    grpc::ClientContext context;
    Authorize(&context);
    corral::v1::GetNodeRequest request;
    request.set_name("gpu-a");
    corral::v1::NodeInfo info;
    ASSERT_TRUE(stub->GetNode(&context, request, &info).ok());
    EXPECT_EQ(info.node().url(), created["node"]["url"]);
    EXPECT_EQ(info.node().weight(), 3);
    EXPECT_EQ(info.node().labels().at("rack"), "r1");
    EXPECT_EQ(info.created_at(), created["created_at"]);
  }
  // Created over gRPC, read over HTTP: the same JSON as the gRPC answer printed the same way.
  {
    grpc::ClientContext context;
    Authorize(&context);
    corral::v1::CreateNodeRequest request;
    request.set_name("gpu-b");
    request.set_url(SimUrl(1));
    request.set_priority(2);
    corral::v1::NodeInfo info;
    ASSERT_TRUE(stub->CreateNode(&context, request, &info).ok());
    const json over_http = CallJson("GET", "/v1/nodes/gpu-b");
    EXPECT_EQ(over_http["node"]["priority"], 2);
    EXPECT_EQ(over_http["node"]["url"], SimUrl(1));
    EXPECT_EQ(over_http["created_at"], info.created_at());
  }
  // The same refusal through both, with the same code and message.
  {
    grpc::ClientContext context;
    Authorize(&context);
    corral::v1::CreateNodeRequest request;
    request.set_name("gpu-a");
    request.set_url(SimUrl(1));
    corral::v1::NodeInfo info;
    grpc::Status status = stub->CreateNode(&context, request, &info);
    httplib::Result r = Call("POST", "/v1/nodes", NodeBody("gpu-a", SimUrl(1)));
    ASSERT_TRUE(r);
    const json error = json::parse(r->body);
    EXPECT_EQ(error["code"], static_cast<int>(status.error_code()));
    EXPECT_EQ(error["message"], status.error_message());
  }
  // A drain over HTTP is what gRPC lists; the strategy set over gRPC is what HTTP reads.
  CallJson("POST", "/v1/nodes/gpu-b:drain");
  {
    grpc::ClientContext context;
    Authorize(&context);
    corral::v1::ListNodesResponse list;
    ASSERT_TRUE(stub->ListNodes(&context, corral::v1::ListNodesRequest(), &list).ok());
    std::string text;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(list, &text, print).ok());
    json over_grpc = json::parse(text);
    json over_http = CallJson("GET", "/v1/nodes");
    // Probes may land between the two reads: compare what the operator set.
    ASSERT_EQ(over_grpc["nodes"].size(), over_http["nodes"].size());
    for (size_t i = 0; i < over_http["nodes"].size(); ++i) {
      for (const char* field : {"name", "url", "admin_state", "weight", "priority", "labels"}) {
        EXPECT_EQ(over_grpc["nodes"][i]["node"][field], over_http["nodes"][i]["node"][field])
            << field;
      }
    }
    EXPECT_EQ(over_http["nodes"][1]["node"]["admin_state"], "ADMIN_STATE_DRAINING");
  }
  {
    grpc::ClientContext context;
    Authorize(&context);
    corral::v1::SetStrategyRequest request;
    request.set_strategy(corral::v1::STRATEGY_PRIORITY);
    corral::v1::StrategyConfig config;
    ASSERT_TRUE(stub->SetStrategy(&context, request, &config).ok());
    std::string text;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(config, &text, print).ok());
    EXPECT_EQ(CallJson("GET", "/v1/strategy"), json::parse(text));
  }
}

// The flag: "off" serves no HTTP port; an address given that cannot be used fails the start.
TEST(HttpListenFlagTest, OffServesNothingAndABadAddressFailsTheStart) {
  const std::string dir = MakeTempDir("http-listen-flag");
  ChildProcess off(
      BinaryPath("corral-control"),
      {"--listen", "127.0.0.1:0", "--data-dir", dir + "/off", "--no-probe", "--no-discovery",
       "--http-listen", "off", "--http-port-file", dir + "/off.http.port"},
      dir);
  ASSERT_NE(off.WaitForPort(), 0) << off.Log();
  EXPECT_EQ(ReadFile(dir + "/off.http.port"), "");
  EXPECT_EQ(off.Log().find("HTTP admin API on"), std::string::npos) << off.Log();

  ChildProcess bad(BinaryPath("corral-control"),
                   {"--listen", "127.0.0.1:0", "--data-dir", dir + "/bad", "--no-probe",
                    "--no-discovery", "--http-listen", "no-port-here"},
                   dir);
  ASSERT_TRUE(WaitFor([&] { return !bad.Running(); }, std::chrono::seconds(10),
                      "corral-control to refuse --http-listen no-port-here"));
  EXPECT_NE(bad.Log().find("--http-listen no-port-here"), std::string::npos) << bad.Log();
}

}  // namespace
}  // namespace corral::testing
