// corral-sim driven as a real process over real HTTP: framing, defaults, error texts, the slot
// limit, gated release, every failure mode, disconnects and pull. Each test starts its own sim
// on port 0 and waits for conditions with deadlines, never for fixed times.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace {

using corral::testing::ChildProcess;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kBusy[] = "server busy, please try again.  maximum pending requests exceeded";

std::vector<std::string> SplitLines(const std::string& body) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < body.size()) {
    size_t nl = body.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(body.substr(start));
      break;
    }
    lines.push_back(body.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// A streaming request running on its own thread; the test watches what has arrived so far.
class Stream {
 public:
  Stream(int port, std::string path, std::string body, int stop_after_bytes = -1)
      : thread_([this, port, path, body, stop_after_bytes] {
          httplib::Client cli("127.0.0.1", port);
          cli.set_read_timeout(seconds(60));
          httplib::Request req;
          req.method = "POST";
          req.path = path;
          req.body = body;
          req.set_header("Content-Type", "application/json");
          req.response_handler = [this](const httplib::Response& res) {
            std::lock_guard<std::mutex> lock(mu_);
            status_ = res.status;
            content_type_ = res.get_header_value("Content-Type");
            headers_ = true;
            return true;
          };
          req.content_receiver = [this, stop_after_bytes](const char* data, size_t n, uint64_t,
                                                          uint64_t) {
            std::lock_guard<std::mutex> lock(mu_);
            body_.append(data, n);
            return stop_after_bytes < 0 || static_cast<int>(body_.size()) < stop_after_bytes;
          };
          auto result = cli.send(req);
          std::lock_guard<std::mutex> lock(mu_);
          error_ = result.error();
          finished_ = true;
        }) {}
  ~Stream() { thread_.join(); }

  bool headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return headers_;
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  std::string body() {
    std::lock_guard<std::mutex> lock(mu_);
    return body_;
  }
  std::vector<std::string> lines() { return SplitLines(body()); }
  size_t complete_lines() {
    const std::string b = body();
    return static_cast<size_t>(std::count(b.begin(), b.end(), '\n'));
  }
  int status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string content_type() {
    std::lock_guard<std::mutex> lock(mu_);
    return content_type_;
  }
  httplib::Error error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  bool headers_ = false;
  bool finished_ = false;
  int status_ = 0;
  std::string content_type_;
  std::string body_;
  httplib::Error error_ = httplib::Error::Success;
  std::thread thread_;
};

class SimTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> args = {"--fast"}) {
    dir_ = corral::testing::MakeTempDir("sim");
    args.insert(args.begin(), {"--listen", "127.0.0.1:0", "--threads", "32"});
    sim_ = std::make_unique<ChildProcess>(corral::testing::BinaryPath("corral-sim"), args, dir_);
    port_ = sim_->WaitForPort();
    ASSERT_GT(port_, 0) << sim_->Log();
    cli_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    cli_->set_read_timeout(seconds(30));
  }
  void TearDown() override {
    if (HasFailure() && sim_) sim_->DumpLog();
  }

  httplib::Result Post(const std::string& path, const std::string& body) {
    return cli_->Post(path.c_str(), body, "application/json");
  }
  json Stats() {
    auto res = cli_->Get("/_sim/stats");
    return res && res->status == 200 ? json::parse(res->body) : json::object();
  }
  void Configure(const json& patch) {
    auto res = Post("/_sim/config", patch.dump());
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
  }
  void Release(int tokens) {
    auto res = Post("/_sim/release", json{{"tokens", tokens}}.dump());
    ASSERT_TRUE(res && res->status == 200);
  }
  int GateWaiting() { return Stats()["gate"].value("waiting", -1); }
  // Sends POST /api/generate with `body` over a plain socket, for a test that reads the raw bytes
  // or closes the connection itself. Returns the socket, or -1.
  int SendRawGenerate(const std::string& body) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string request =
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  std::string dir_;
  std::unique_ptr<ChildProcess> sim_;
  int port_ = 0;
  std::unique_ptr<httplib::Client> cli_;
};

// --- discovery and routing ---------------------------------------------------------------

TEST_F(SimTest, LivenessVersionAndTags) {
  Start({"--fast", "--version", "0.9.1", "--models", "llama3.2:latest=123,all-minilm"});
  auto root = cli_->Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->body, "Ollama is running");
  EXPECT_EQ(root->get_header_value("Content-Type"), "text/plain; charset=utf-8");
  auto head = cli_->Head("/api/tags");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);

  auto version = cli_->Get("/api/version");
  ASSERT_TRUE(version);
  EXPECT_EQ(version->body, R"({"version":"0.9.1"})");
  EXPECT_EQ(version->get_header_value("Content-Type"), "application/json; charset=utf-8");

  auto tags = cli_->Get("/api/tags");
  ASSERT_TRUE(tags);
  json models = json::parse(tags->body)["models"];
  ASSERT_EQ(models.size(), 2u);
  for (const json& m : models) {
    EXPECT_EQ(m["name"], m["model"]);
    EXPECT_EQ(m["digest"].get<std::string>().size(), 64u);
    const std::string modified = m["modified_at"];
    EXPECT_EQ(modified.substr(modified.size() - 6), "-07:00");
    if (m["name"] == "llama3.2:latest") {
      EXPECT_EQ(m["size"], 123);
      EXPECT_EQ(m["capabilities"], json({"completion", "tools"}));
    } else {
      EXPECT_EQ(m["name"], "all-minilm:latest");
      EXPECT_TRUE(m["details"]["families"].is_null());
    }
  }
}

TEST_F(SimTest, UnknownPathAndWrongMethodUsePlainTextBodies) {
  Start();
  auto missing = cli_->Get("/api/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "404 page not found");
  auto wrong = cli_->Get("/api/generate");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->body, "405 method not allowed");
  EXPECT_EQ(wrong->get_header_value("Content-Type"), "text/plain");
  auto head_ps = cli_->Head("/api/ps");
  ASSERT_TRUE(head_ps);
  EXPECT_EQ(head_ps->status, 405);
  auto bad_json = Post("/api/chat", "{not json");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_TRUE(json::parse(bad_json->body).contains("error"));
  auto empty = Post("/api/generate", "");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->status, 400);
  EXPECT_EQ(empty->body, R"({"error":"missing request body"})");
}

TEST_F(SimTest, UnknownModelTextsPerEndpoint) {
  Start();
  struct Case {
    const char* path;
    const char* body;
    int status;
    const char* text;
  };
  const Case cases[] = {
      {"/api/generate", R"({"model":"nope","prompt":"x"})", 404, "model 'nope' not found"},
      {"/api/chat", R"({"model":"nope","messages":[]})", 404, "model 'nope' not found"},
      {"/api/embed", R"({"model":"nope","input":"x"})", 404, "model 'nope' not found"},
      {"/api/show", R"({"model":"nope"})", 404, "model 'nope:latest' not found"},
      {"/api/embeddings", R"({"model":"nope","prompt":"x"})", 404,
       "model \"nope\" not found, try pulling it first"},
      {"/api/copy", R"({"source":"nope","destination":"b"})", 404, "model \"nope\" not found"},
      {"/api/generate", R"({"model":""})", 404, "model '' not found"},
      {"/api/chat", R"({"model":""})", 400, "model is required"},
      {"/api/chat", R"({"model":"llama3.2","messages":"x"})", 400,
       "json: cannot unmarshal string into Go struct field ChatRequest.messages of type "
       "[]api.Message"},
  };
  for (const Case& c : cases) {
    auto res = Post(c.path, c.body);
    ASSERT_TRUE(res) << c.path;
    EXPECT_EQ(res->status, c.status) << c.path;
    EXPECT_EQ(json::parse(res->body), json({{"error", c.text}})) << c.path;
  }
  auto del = cli_->Delete("/api/delete", R"({"model":"","name":"nope"})", "application/json");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 404);
  EXPECT_EQ(json::parse(del->body)["error"], "model 'nope' not found");

  auto openai = Post("/v1/chat/completions",
                     R"({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(openai);
  EXPECT_EQ(openai->status, 404);
  EXPECT_EQ(json::parse(openai->body), json({{"error",
                                              {{"message", "model 'gpt-4o' not found"},
                                               {"type", "not_found_error"},
                                               {"param", nullptr},
                                               {"code", nullptr}}}}));
}

// --- framing -------------------------------------------------------------------------------

TEST_F(SimTest, GenerateStreamsNdjsonByDefaultWithConsistentFinalChunk) {
  Start({"--fast", "--tokens", "5"});
  auto res = Post("/api/generate", R"({"model":"LLaMA3.2","prompt":"why is the sky blue?"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/x-ndjson");
  EXPECT_FALSE(res->has_header("Content-Length"));
  ASSERT_EQ(res->body.back(), '\n');
  std::vector<std::string> lines = SplitLines(res->body);
  ASSERT_EQ(lines.size(), 6u);
  std::string text;
  for (size_t i = 0; i < 5; ++i) {
    json chunk = json::parse(lines[i]);
    EXPECT_EQ(chunk["model"], "LLaMA3.2");  // echoed verbatim
    EXPECT_EQ(chunk["done"], false);
    EXPECT_FALSE(chunk.contains("total_duration"));
    text += chunk["response"].get<std::string>();
  }
  EXPECT_FALSE(text.empty());
  json last = json::parse(lines[5]);
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["done_reason"], "stop");
  EXPECT_EQ(last["eval_count"], 5);
  EXPECT_TRUE(last["context"].is_array());
  for (const char* metric : {"total_duration", "load_duration", "prompt_eval_count",
                             "prompt_eval_duration", "eval_count", "eval_duration"}) {
    EXPECT_TRUE(last.contains(metric)) << metric;
  }
  EXPECT_GE(last["total_duration"].get<int64_t>(), last["load_duration"].get<int64_t>() +
                                                       last["prompt_eval_duration"].get<int64_t>() +
                                                       last["eval_duration"].get<int64_t>());
}

TEST_F(SimTest, StreamFalseGivesOneObjectAndChatHasNoContext) {
  Start({"--fast", "--tokens", "3"});
  auto res =
      Post("/api/chat",
           R"({"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json; charset=utf-8");
  json j = json::parse(res->body);
  EXPECT_EQ(j["done"], true);
  EXPECT_EQ(j["message"]["role"], "assistant");
  EXPECT_FALSE(j["message"]["content"].get<std::string>().empty());
  EXPECT_FALSE(j.contains("context"));
  EXPECT_EQ(j["eval_count"], 3);
}

TEST_F(SimTest, ThinkingModelSendsThinkingBeforeContentAndToolsGiveToolCall) {
  Start({"--fast", "--tokens", "4"});
  auto res =
      Post("/api/chat", R"({"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(res);
  std::vector<std::string> lines = SplitLines(res->body);
  ASSERT_EQ(lines.size(), 2u + 4u + 1u);
  EXPECT_TRUE(json::parse(lines[0])["message"].contains("thinking"));
  EXPECT_FALSE(json::parse(lines[2])["message"].contains("thinking"));

  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])";
  auto call = Post(
      "/api/chat",
      R"({"model":"llama3.2","stream":false,"messages":[{"role":"user","content":"weather?"}],)" +
          tools + "}");
  ASSERT_TRUE(call);
  json message = json::parse(call->body)["message"];
  ASSERT_EQ(message["tool_calls"].size(), 1u);
  EXPECT_EQ(message["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_TRUE(message["tool_calls"][0]["function"]["arguments"].is_object());
  EXPECT_EQ(message["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0), 0u);

  auto refused =
      Post("/api/chat", R"({"model":"all-minilm","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(json::parse(refused->body)["error"], "\"all-minilm\" does not support chat");
}

TEST_F(SimTest, OpenAiStreamsSseWithDoneAndUsageAndDefaultsToNonStreaming) {
  Start({"--fast", "--tokens", "2"});
  auto plain = Post("/v1/chat/completions",
                    R"({"model":"llama3.2","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->get_header_value("Content-Type"), "application/json; charset=utf-8");
  json whole = json::parse(plain->body);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(whole["usage"]["completion_tokens"], 2);

  auto sse = Post("/v1/chat/completions",
                  R"({"model":"llama3.2","stream":true,"stream_options":{"include_usage":true},)"
                  R"("messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(sse);
  EXPECT_EQ(sse->get_header_value("Content-Type"), "text/event-stream");
  const std::string& body = sse->body;
  ASSERT_GE(body.size(), 14u);
  EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
  std::vector<json> events;
  size_t start = 0;
  while (start < body.size()) {
    const size_t end = body.find("\n\n", start);
    ASSERT_NE(end, std::string::npos);
    const std::string event = body.substr(start, end - start);
    ASSERT_EQ(event.rfind("data: ", 0), 0u) << event;
    if (event != "data: [DONE]") events.push_back(json::parse(event.substr(6)));
    start = end + 2;
  }
  ASSERT_EQ(events.size(), 2u + 1u + 1u);  // tokens, finish, usage
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(events[1]["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(events[2]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(events[3]["choices"].empty());
  EXPECT_EQ(events[3]["usage"]["completion_tokens"], 2);
}

TEST_F(SimTest, EmbeddingsAndLoadUnloadShortcuts) {
  Start({"--fast"});
  auto embed = Post("/api/embed", R"({"model":"all-minilm","input":["a","b"]})");
  ASSERT_TRUE(embed);
  json e = json::parse(embed->body);
  ASSERT_EQ(e["embeddings"].size(), 2u);
  EXPECT_EQ(e["embeddings"][0].size(), 384u);
  double norm = 0;
  for (double x : e["embeddings"][0]) norm += x * x;
  EXPECT_NEAR(norm, 1.0, 1e-4);

  auto load = Post("/api/generate", R"({"model":"llama3.2"})");  // streaming asked, one object
  ASSERT_TRUE(load);
  EXPECT_EQ(load->get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(json::parse(load->body)["done_reason"], "load");
  auto ps = json::parse(cli_->Get("/api/ps")->body)["models"];
  bool loaded = false;
  for (const json& m : ps) loaded |= m["name"] == "llama3.2:latest";
  EXPECT_TRUE(loaded);

  auto unload = Post("/api/chat", R"({"model":"llama3.2","keep_alive":0})");
  ASSERT_TRUE(unload);
  EXPECT_EQ(json::parse(unload->body)["done_reason"], "unload");
  ps = json::parse(cli_->Get("/api/ps")->body)["models"];
  for (const json& m : ps) EXPECT_NE(m["name"], "llama3.2:latest");
}

// --- scheduling, gating, disconnects -----------------------------------------------------

TEST_F(SimTest, GatedReleaseLetsTokensThroughOneAtATime) {
  Start({"--fast", "--tokens", "3"});
  Configure({{"gated", true}});
  Stream s(port_, "/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 1; }, seconds(10), "first token waiting"));
  EXPECT_FALSE(s.headers());  // no headers before the first token exists
  Release(1);
  ASSERT_TRUE(WaitFor([&] { return s.complete_lines() == 1; }, seconds(10), "token 1"));
  EXPECT_TRUE(s.headers());
  ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 1; }, seconds(10), "token 2 waiting"));
  EXPECT_EQ(s.complete_lines(), 1u);  // token 2 not released, not sent
  Release(1);
  ASSERT_TRUE(WaitFor([&] { return s.complete_lines() == 2; }, seconds(10), "token 2"));
  Release(1);
  ASSERT_TRUE(WaitFor([&] { return s.finished(); }, seconds(10), "end of stream"));
  std::vector<std::string> lines = s.lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(json::parse(lines[3])["done"], true);
}

TEST_F(SimTest, SecondRequestWaitsWithoutHeadersAndFullQueueIsBusy) {
  Start({"--fast", "--tokens", "1", "--num-parallel", "1"});
  Configure({{"gated", true}, {"max_queue", 1}});
  Stream first(port_, "/api/generate", R"({"model":"llama3.2","prompt":"a"})");
  ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 1; }, seconds(10), "first holds the slot"));
  Stream second(port_, "/api/generate", R"({"model":"llama3.2","prompt":"b"})");
  ASSERT_TRUE(WaitFor([&] { return Stats()["pending"] == 1; }, seconds(10), "second queued"));
  EXPECT_FALSE(second.headers());
  EXPECT_EQ(Stats()["active"], 1);

  auto third = Post("/api/generate", R"({"model":"llama3.2","prompt":"c","stream":false})");
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 503);
  EXPECT_EQ(json::parse(third->body)["error"], kBusy);

  Release(2);
  ASSERT_TRUE(WaitFor([&] { return first.finished() && second.finished(); }, seconds(10)));
  EXPECT_EQ(second.status(), 200);
  EXPECT_EQ(Stats()["completed"], 2);
}

TEST_F(SimTest, ClientDisconnectCancelsAndFreesTheSlot) {
  Start({"--fast", "--tokens", "50"});
  Configure({{"gated", true}});
  {
    // Gives up after the first line: the client closes the connection mid-stream.
    Stream s(port_, "/api/generate", R"({"model":"llama3.2","prompt":"x"})", 1);
    ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 1; }, seconds(10)));
    Release(1);
    ASSERT_TRUE(WaitFor([&] { return s.finished(); }, seconds(10)));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        json st = Stats();
        return st["cancelled"] == 1 && st["active"] == 0;
      },
      seconds(10), "cancelled and slot freed"));
  EXPECT_EQ(Stats()["completed"], 0);

  // A client that leaves while queued is counted too.
  {
    Stream holder(port_, "/api/generate", R"({"model":"llama3.2","prompt":"x"})");
    ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 1; }, seconds(10)));
    httplib::Client impatient("127.0.0.1", port_);
    impatient.set_read_timeout(milliseconds(200));
    auto res =
        impatient.Post("/api/generate", R"({"model":"llama3.2","prompt":"y"})", "application/json");
    EXPECT_FALSE(res);
    ASSERT_TRUE(WaitFor([&] { return Stats()["cancelled"] == 2; }, seconds(10)));
    Configure({{"gated", false}});
  }
}

// --- failure modes -------------------------------------------------------------------------

TEST_F(SimTest, ErrorAndBusyBeforeTheFirstToken) {
  Start({"--fast", "--fail", "error-500"});
  auto res =
      Post("/api/chat", R"({"model":"llama3.2","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json; charset=utf-8");
  EXPECT_TRUE(json::parse(res->body)["error"].is_string());
  // Discovery keeps working unless asked otherwise.
  EXPECT_EQ(cli_->Get("/api/tags")->status, 200);

  Configure({{"fail", "busy-503"}, {"fail_times", 1}});
  auto busy = Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})");
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 503);
  EXPECT_EQ(busy->body, std::string(R"({"error":")") + kBusy + "\"}");
  auto after = Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);  // fail_times used up
}

TEST_F(SimTest, ErrorMidStreamSendsErrorLineAfterKTokens) {
  Start({"--fast", "--tokens", "5", "--fail", "error-mid-stream", "--fail-after", "2"});
  auto res = Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  std::vector<std::string> lines = SplitLines(res->body);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[1])["done"], false);
  json error = json::parse(lines[2]);
  EXPECT_EQ(error.size(), 1u);
  EXPECT_TRUE(error["error"].is_string());
}

TEST_F(SimTest, DropMidStreamClosesWithoutTheLastChunk) {
  Start({"--fast", "--tokens", "5", "--fail", "drop-mid-stream", "--fail-after", "2"});
  Stream s(port_, "/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  ASSERT_TRUE(WaitFor([&] { return s.finished(); }, seconds(10)));
  EXPECT_EQ(s.complete_lines(), 2u);
  EXPECT_NE(s.error(), httplib::Error::Success);  // no terminating chunk
  EXPECT_TRUE(sim_->Running());
}

TEST_F(SimTest, DieMidStreamKillsTheProcessAfterKTokens) {
  Start({"--fast", "--tokens", "5", "--fail", "die-mid-stream", "--fail-after", "2"});
  Stream s(port_, "/api/chat",
           R"({"model":"llama3.2","messages":[{"role":"user","content":"x"}]})");
  ASSERT_TRUE(WaitFor([&] { return s.finished(); }, seconds(10)));
  EXPECT_EQ(s.complete_lines(), 2u);
  EXPECT_NE(s.error(), httplib::Error::Success);
  EXPECT_TRUE(WaitFor([&] { return !sim_->Running(); }, seconds(10), "process exit"));
}

TEST_F(SimTest, HangAndSlowHeadersSendNothingUntilTheClientLeaves) {
  Start({"--fast", "--fail", "hang"});
  httplib::Client impatient("127.0.0.1", port_);
  impatient.set_read_timeout(milliseconds(300));
  EXPECT_FALSE(
      impatient.Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})", "application/json"));
  ASSERT_TRUE(WaitFor([&] { return Stats()["cancelled"] == 1; }, seconds(10), "hang released"));

  Configure({{"fail", "slow-headers"}, {"slow_headers_ms", 60000}});
  EXPECT_FALSE(
      impatient.Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})", "application/json"));
  ASSERT_TRUE(WaitFor([&] { return Stats()["cancelled"] == 2; }, seconds(10)));
  Configure({{"slow_headers_ms", 1}});
  auto slow = Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})");
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200);
  EXPECT_EQ(Stats()["injected_failures"], 3);
}

TEST_F(SimTest, GarbageAnswersTwoHundredWithBrokenFraming) {
  Start({"--fast", "--fail", "garbage"});
  const int fd = SendRawGenerate(R"({"model":"llama3.2","prompt":"x"})");
  ASSERT_GE(fd, 0);
  std::string received;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) received.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(received.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << received;
  EXPECT_NE(received.find("zz-not-a-chunk-size"), std::string::npos);
}

TEST_F(SimTest, NotHttpAnswersBytesThatAreNoHttpResponse) {
  Start({"--fast", "--fail", "not-http"});
  auto res = Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  EXPECT_FALSE(res);  // no status line to parse
  EXPECT_TRUE(sim_->Running());
  EXPECT_EQ(Stats()["injected_failures"], 1);
}

TEST_F(SimTest, StallMidStreamHoldsTheConnectionSilentUntilTheClientLeaves) {
  Start({"--fast", "--tokens", "5", "--num-parallel", "2", "--fail", "stall-mid-stream",
         "--fail-after", "2"});
  Stream s(port_, "/api/generate", R"({"model":"llama3.2","prompt":"x"})");
  ASSERT_TRUE(WaitFor([&] { return s.complete_lines() == 2u; }, seconds(10), "two tokens"));
  ASSERT_TRUE(WaitFor([&] { return Stats()["injected_failures"] == 1; }, seconds(10)));
  EXPECT_EQ(Stats()["active"], 1);  // the slot stays taken while the stream is stuck

  // With stream:false nothing at all is sent; a client that gives up releases it.
  httplib::Client impatient("127.0.0.1", port_);
  impatient.set_read_timeout(milliseconds(300));
  EXPECT_FALSE(impatient.Post(
      "/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})", "application/json"));
  ASSERT_TRUE(WaitFor([&] { return Stats()["cancelled"] == 1; }, seconds(10),
                      "the stream:false request released when its client left"));
  EXPECT_EQ(Stats()["injected_failures"], 2);
  // The first stream is still stuck after all that: two tokens, no end.
  EXPECT_FALSE(s.finished());
  EXPECT_EQ(s.complete_lines(), 2u);
  EXPECT_EQ(Stats()["active"], 1);

  // SIGTERM ends the stuck stream too.
  EXPECT_EQ(sim_->Signal(SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return s.finished(); }, seconds(10), "the stuck stream to end"));
  EXPECT_NE(s.error(), httplib::Error::Success);  // no terminating chunk
}

// --- management and observability ----------------------------------------------------------

TEST_F(SimTest, PullThenTagsAndUnknownPullErrorsMidStream) {
  Start({"--fast", "--models", "llama3.2"});
  auto pull = Post("/api/pull", R"({"name":"mistral"})");
  ASSERT_TRUE(pull);
  EXPECT_EQ(pull->get_header_value("Content-Type"), "application/x-ndjson");
  std::vector<std::string> lines = SplitLines(pull->body);
  EXPECT_EQ(json::parse(lines.front())["status"], "pulling manifest");
  EXPECT_EQ(json::parse(lines.back())["status"], "success");
  auto tags = json::parse(cli_->Get("/api/tags")->body)["models"];
  bool found = false;
  for (const json& m : tags) found |= m["name"] == "mistral:latest";
  EXPECT_TRUE(found);
  EXPECT_EQ(Post("/api/show", R"({"model":"mistral"})")->status, 200);

  auto unknown = Post("/api/pull", R"({"model":"no-such-model"})");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 200);
  lines = SplitLines(unknown->body);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], R"({"error":"pull model manifest: file does not exist"})");
  auto unknown_whole = Post("/api/pull", R"({"model":"no-such-model","stream":false})");
  ASSERT_TRUE(unknown_whole);
  EXPECT_EQ(unknown_whole->status, 500);
}

TEST_F(SimTest, CopyDeleteAndBlobs) {
  Start({"--fast"});
  auto copy = Post("/api/copy", R"({"source":"llama3.2","destination":"backup"})");
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->status, 200);
  EXPECT_TRUE(copy->body.empty());
  auto del = cli_->Delete("/api/delete", R"({"name":"backup"})", "application/json");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  EXPECT_TRUE(del->body.empty());

  const std::string blob = "hello blob";
  // Deliberately not the digest of `blob`.
  const std::string digest =
      "sha256:9f0e6b4b4b3fbb24c54de5e4bd7a3c8cdbd4c4b1d2e0a5a4c8c0b8cb2f8d0a43";
  EXPECT_EQ(cli_->Head(("/api/blobs/" + digest).c_str())->status, 404);
  auto mismatch = cli_->Post(("/api/blobs/" + digest).c_str(), blob, "application/octet-stream");
  ASSERT_TRUE(mismatch);
  EXPECT_EQ(mismatch->status, 400);
  const std::string error = json::parse(mismatch->body)["error"];
  ASSERT_EQ(error.rfind("digest mismatch, expected \"" + digest + "\", got \"sha256:", 0), 0u);
  const std::string actual = error.substr(error.rfind("sha256:"), 71);
  EXPECT_EQ(cli_->Post(("/api/blobs/" + actual).c_str(), blob, "application/octet-stream")->status,
            201);
  EXPECT_EQ(cli_->Post(("/api/blobs/" + actual).c_str(), blob, "application/octet-stream")->status,
            200);
  EXPECT_EQ(cli_->Head(("/api/blobs/" + actual).c_str())->status, 200);
}

TEST_F(SimTest, StatsShowRequestsAsReceivedAndResetRestoresStartup) {
  Start({"--fast"});
  const std::string body = R"({"model":"llama3.2","prompt":"\u00e9 <tag>","stream":false})";
  httplib::Headers headers = {{"X-Test", "one"}, {"Origin", "http://example.com"}};
  auto res = cli_->Post("/api/generate", headers, body, "application/json");
  ASSERT_TRUE(res);
  json stats = Stats();
  EXPECT_EQ(stats["requests"]["/api/generate"], 1);
  const json& last = stats["last_requests"].back();
  EXPECT_EQ(last["method"], "POST");
  EXPECT_EQ(last["body"], body);
  EXPECT_EQ(last["headers"]["x-test"], "one");
  EXPECT_EQ(last["headers"]["origin"], "http://example.com");
  EXPECT_FALSE(last["headers"].contains("remote_addr"));
  EXPECT_FALSE(last["headers"].contains("local_port"));
  EXPECT_EQ(last["headers"]["host"], "127.0.0.1:" + std::to_string(port_));

  Configure({{"version", "9.9.9"}, {"remove_models", {"llama3.2"}}});
  EXPECT_EQ(json::parse(cli_->Get("/api/version")->body)["version"], "9.9.9");
  EXPECT_EQ(Post("/api/generate", R"({"model":"llama3.2","prompt":"x"})")->status, 404);
  ASSERT_EQ(Post("/_sim/reset", "")->status, 200);
  EXPECT_EQ(json::parse(cli_->Get("/api/version")->body)["version"], "0.12.3");
  EXPECT_EQ(Stats()["requests_total"], 1);  // the version request after the reset
  EXPECT_EQ(Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})")->status,
            200);
  auto bad = Post("/_sim/config", R"({"no_such_key":1})");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

TEST_F(SimTest, ColdLoadIsReportedOnceAndSigtermStopsCleanly) {
  Start({"--load-delay-ms", "50", "--token-interval-ms", "1", "--tokens", "2"});
  auto cold = Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})");
  auto warm = Post("/api/generate", R"({"model":"llama3.2","prompt":"x","stream":false})");
  ASSERT_TRUE(cold && warm);
  const int64_t cold_load = json::parse(cold->body)["load_duration"];
  const int64_t warm_load = json::parse(warm->body)["load_duration"];
  EXPECT_GE(cold_load, 50000000);
  EXPECT_LT(warm_load, cold_load);
  const int status = sim_->Signal(SIGTERM);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// --- the GPU node: load time by size, memory and eviction, /api/ps, statistics --------------

TEST_F(SimTest, GpuNodeLoadsBySizeEvictsLeastRecentlyUsedAndCountsItAll) {
  constexpr int64_t kGib = int64_t{1} << 30;
  Start({"--vram-gb", "2", "--load-delay-ms", "0", "--load-ms-per-gb", "40", "--num-parallel", "2",
         "--max-queue", "0", "--models", "a=1073741824,b=1073741824,c=1073741824", "--tokens", "1",
         "--token-interval-ms", "1"});
  for (const char* model : {"a", "b", "c"}) {
    auto res =
        Post("/api/generate", json{{"model", model}, {"prompt", "x"}, {"stream", false}}.dump());
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_GE(json::parse(res->body)["load_duration"].get<int64_t>(), 40000000) << model;
  }
  // Room for two: loading c evicted a, the least recently used.
  const json ps = json::parse(cli_->Get("/api/ps")->body)["models"];
  ASSERT_EQ(ps.size(), 2u) << ps.dump();
  std::vector<std::string> names;
  for (const json& m : ps) {
    names.push_back(m["name"]);
    EXPECT_EQ(m["size"], kGib);
    EXPECT_EQ(m["size_vram"], kGib);
    EXPECT_FALSE(m["expires_at"].get<std::string>().empty());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"b:latest", "c:latest"}));

  // Two generations at once on one model (num_parallel 2), held by the gate.
  Configure({{"gated", true}});
  {
    Stream s1(port_, "/api/generate", R"({"model":"c","prompt":"x"})");
    Stream s2(port_, "/api/generate", R"({"model":"c","prompt":"x"})");
    ASSERT_TRUE(WaitFor([&] { return GateWaiting() == 2; }, seconds(10), "two running"));
    Configure({{"gated", false}});
    ASSERT_TRUE(WaitFor([&] { return s1.finished() && s2.finished(); }, seconds(10)));
  }
  json stats = Stats();
  EXPECT_EQ(stats["loads"], 3);
  EXPECT_GE(stats["load_seconds"].get<double>(), 0.12);
  EXPECT_EQ(stats["evictions"], 1);
  EXPECT_EQ(stats["inference_requests"], 5);
  EXPECT_EQ(stats["requests_by_path"]["/api/generate"], 5);
  EXPECT_EQ(stats["max_running"], 2);
  EXPECT_EQ(stats["models"]["a:latest"], (json{{"loads", 1}, {"requests", 1}}));
  EXPECT_EQ(stats["models"]["c:latest"], (json{{"loads", 1}, {"requests", 3}}));

  ASSERT_EQ(Post("/_sim/reset", "")->status, 200);
  stats = Stats();
  EXPECT_EQ(stats["loads"], 0);
  EXPECT_EQ(stats["load_seconds"], 0.0);
  EXPECT_EQ(stats["evictions"], 0);
  EXPECT_EQ(stats["inference_requests"], 0);
  EXPECT_EQ(stats["max_running"], 0);
  EXPECT_EQ(stats["models"], json::object());
}

TEST_F(SimTest, PsListsAModelWhileItLoadsAndForgetsACancelledLoad) {
  // A 60 s load: the test watches it in progress, then its client leaves.
  Start({"--load-delay-ms", "0", "--load-ms-per-gb", "60000", "--models", "big=1073741824"});
  const int fd = SendRawGenerate(R"({"model":"big","prompt":"x"})");
  ASSERT_GE(fd, 0);

  json loading;
  ASSERT_TRUE(WaitFor(
      [&] {
        const json ps = json::parse(cli_->Get("/api/ps")->body)["models"];
        if (ps.size() != 1) return false;
        loading = ps[0];
        return true;
      },
      seconds(10), "the loading model in /api/ps"));
  EXPECT_EQ(loading["name"], "big:latest");
  EXPECT_EQ(loading["size"], int64_t{1} << 30);
  EXPECT_EQ(loading["size_vram"], int64_t{1} << 30);
  EXPECT_TRUE(loading.contains("expires_at"));
  EXPECT_EQ(Stats()["loads"], 1);

  ::close(fd);
  ASSERT_TRUE(WaitFor(
      [&] {
        const json stats = Stats();
        return stats["pending"] == 0 && stats["active"] == 0 && stats["cancelled"] == 1;
      },
      seconds(10), "the load cancelled"));
  EXPECT_EQ(cli_->Get("/api/ps")->body, R"({"models":[]})");
  const json stats = Stats();
  EXPECT_EQ(stats["loads"], 1);
  EXPECT_GT(stats["load_seconds"].get<double>(), 0.0);
  EXPECT_LT(stats["load_seconds"].get<double>(), 60.0);
}

}  // namespace
