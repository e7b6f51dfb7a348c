#include "tests/faults/harness.h"

#include <httplib.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <sstream>

namespace corral::faults {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr size_t kFailuresKept = 10;

std::vector<std::string> NonEmptyLines(const std::string& body) {
  std::vector<std::string> lines;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// The payloads of an SSE body's `data:` events, in order. False when a non-empty event is not a
// data event.
bool SseData(const std::string& body, std::vector<std::string>* data) {
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    const std::string event = body.substr(pos, end == std::string::npos ? end : end - pos);
    pos = end == std::string::npos ? body.size() : end + 2;
    if (event.empty()) continue;
    if (event.rfind("data: ", 0) != 0) return false;
    data->push_back(event.substr(6));
  }
  return true;
}

std::string Clip(const std::string& text) {
  return text.size() <= 300 ? text : text.substr(0, 300) + "...";
}

// An error line's text, for counting cuts by reason: node names and numbers vary between runs.
std::string ReasonOf(const json& error) {
  std::string text = error.is_string()                                ? error.get<std::string>()
                     : error.is_object() && error.contains("message") ? error["message"].dump()
                                                                      : error.dump();
  static const std::regex kQuoted("'[^']*'");
  static const std::regex kNumber("[0-9]+");
  text = std::regex_replace(text, kQuoted, "'*'");
  return std::regex_replace(text, kNumber, "N");
}

Outcome ClassifyNdjson(const std::string& body, std::string* why) {
  const std::vector<std::string> lines = NonEmptyLines(body);
  if (lines.empty()) {
    *why = "a 200 with an empty body";
    return Outcome::kFailed;
  }
  bool done = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const json line = json::parse(lines[i], nullptr, false);
    if (!line.is_object()) {
      *why = "line " + std::to_string(i + 1) + " is not a JSON object: " + Clip(lines[i]);
      return Outcome::kFailed;
    }
    if (line.contains("error")) {
      if (i + 1 != lines.size() || done) {
        *why = "an error line that is not the last line after the answer: " + Clip(body);
        return Outcome::kFailed;
      }
      *why = ReasonOf(line["error"]);
      return Outcome::kCut;
    }
    if (line.value("done", false)) done = true;
  }
  if (!done || json::parse(lines.back()).value("done", false) != true) {
    *why = "the stream ended with neither done:true nor an error line: " + Clip(lines.back());
    return Outcome::kFailed;
  }
  return Outcome::kComplete;
}

Outcome ClassifySse(const std::string& body, std::string* why) {
  std::vector<std::string> data;
  if (!SseData(body, &data)) {
    *why = "not SSE: " + Clip(body);
    return Outcome::kFailed;
  }
  if (data.empty()) {
    *why = "a 200 with no events";
    return Outcome::kFailed;
  }
  for (size_t i = 0; i + 1 < data.size(); ++i) {
    const json event = json::parse(data[i], nullptr, false);
    if (!event.is_object()) {
      *why = "event " + std::to_string(i + 1) + " is not JSON: " + Clip(data[i]);
      return Outcome::kFailed;
    }
    if (event.contains("error")) {
      *why = "an error event before the last: " + Clip(body);
      return Outcome::kFailed;
    }
  }
  if (data.back() == "[DONE]") return Outcome::kComplete;
  const json last = json::parse(data.back(), nullptr, false);
  if (last.is_object() && last.contains("error")) {
    *why = ReasonOf(last["error"]);
    return Outcome::kCut;
  }
  *why = "the stream ended with neither [DONE] nor an error event: " + Clip(data.back());
  return Outcome::kFailed;
}

}  // namespace

json GetJson(int port, const std::string& path) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(seconds(2));
  cli.set_read_timeout(seconds(10));
  auto res = cli.Get(path);
  if (!res || res->status != 200) return nullptr;
  return json::parse(res->body, nullptr, false);
}

std::chrono::seconds SoakDuration() {
  const char* text = std::getenv("CORRAL_SOAK_SECONDS");
  if (text != nullptr) {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && value > 0) return seconds(value);
  }
  return seconds(kDefaultSoakSeconds);
}

std::vector<RequestKind> StandardMix(const std::string& model) {
  const json messages = json::array({{{"role", "user"}, {"content", "why is the sky blue?"}}});
  std::vector<RequestKind> kinds;
  kinds.push_back({"generate/stream", "/api/generate",
                   json{{"model", model}, {"prompt", "why is the sky blue?"}}.dump(), true, false,
                   false});
  kinds.push_back({"chat/stream", "/api/chat",
                   json{{"model", model}, {"messages", messages}}.dump(), true, false, false});
  kinds.push_back({"generate/whole", "/api/generate",
                   json{{"model", model}, {"prompt", "hi"}, {"stream", false}}.dump(), false, false,
                   false});
  kinds.push_back({"openai-chat/stream", "/v1/chat/completions",
                   json{{"model", model}, {"messages", messages}, {"stream", true}}.dump(), true,
                   true, false});
  kinds.push_back({"chat/whole", "/api/chat",
                   json{{"model", model}, {"messages", messages}, {"stream", false}}.dump(), false,
                   false, false});
  kinds.push_back({"openai-chat/whole", "/v1/chat/completions",
                   json{{"model", model}, {"messages", messages}}.dump(), false, true, false});
  kinds.push_back({"embed", "/api/embed", json{{"model", model}, {"input", "hello"}}.dump(), false,
                   false, true});
  return kinds;
}

void PrintTo(Outcome outcome, std::ostream* os) {
  switch (outcome) {
    case Outcome::kComplete:
      *os << "complete";
      return;
    case Outcome::kCut:
      *os << "cut with an error line";
      return;
    case Outcome::kFailed:
      *os << "failed";
      return;
  }
}

Outcome Classify(const RequestKind& kind, int status, const std::string& body, std::string* why) {
  if (status != 200) {
    *why = "status " + std::to_string(status) + ": " + Clip(body);
    return Outcome::kFailed;
  }
  if (kind.stream) return kind.sse ? ClassifySse(body, why) : ClassifyNdjson(body, why);
  // A whole answer. A node that sent a 200 head and then broke leaves the proxy only the body
  // to report it in, in the route's stream framing.
  if (kind.sse && body.rfind("data: ", 0) == 0) return ClassifySse(body, why);
  const json answer = json::parse(body, nullptr, false);
  if (!answer.is_object()) {
    *why = "the body is not one JSON object: " + Clip(body);
    return Outcome::kFailed;
  }
  if (answer.contains("error")) {
    *why = ReasonOf(answer["error"]);
    return Outcome::kCut;
  }
  const bool whole = kind.embed ? answer.contains("embeddings") && !answer["embeddings"].empty()
                     : kind.sse ? answer.contains("choices") && !answer["choices"].empty()
                                : answer.value("done", false);
  if (!whole) {
    *why = "an incomplete answer: " + Clip(body);
    return Outcome::kFailed;
  }
  return Outcome::kComplete;
}

// ---- Traffic ----

Traffic::Traffic(TrafficOptions options) : options_(std::move(options)) {
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this, i] { Run(i); });
}

Traffic::~Traffic() { Stop(); }

void Traffic::Stop() {
  stop_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

int64_t Traffic::finished() const { return finished_.load(); }

TrafficCounts Traffic::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void Traffic::Run(int thread_index) {
  std::map<int, std::unique_ptr<httplib::Client>> clients;
  for (int port : options_.ports) {
    auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
    cli->set_keep_alive(true);
    cli->set_connection_timeout(seconds(5));
    cli->set_read_timeout(options_.client_timeout);
    cli->set_write_timeout(seconds(10));
    clients[port] = std::move(cli);
  }
  size_t next = static_cast<size_t>(thread_index);
  while (!stop_.load()) {
    const RequestKind& kind = options_.kinds[next % options_.kinds.size()];
    const int port = options_.ports[next % options_.ports.size()];
    ++next;
    const auto start = std::chrono::steady_clock::now();
    auto res = clients[port]->Post(kind.path, kind.body, "application/json");
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string why;
    Outcome outcome;
    if (!res) {
      why = "no answer: " + httplib::to_string(res.error());
      outcome = Outcome::kFailed;
    } else {
      outcome = Classify(kind, res->status, res->body, &why);
    }
    Record(kind, outcome, why, took);
  }
}

void Traffic::Record(const RequestKind& kind, Outcome outcome, const std::string& why,
                     double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_.sent;
  if (kind.stream) ++counts_.streamed;
  counts_.slowest_s = std::max(counts_.slowest_s, seconds);
  if (outcome == Outcome::kCut && !kind.stream && !options_.cut_allowed_without_stream) {
    outcome = Outcome::kFailed;
  }
  switch (outcome) {
    case Outcome::kComplete:
      ++counts_.complete;
      break;
    case Outcome::kCut:
      ++counts_.cut;
      ++counts_.cut_reasons[why];
      break;
    case Outcome::kFailed:
      ++counts_.failed;
      if (counts_.failures.size() < kFailuresKept) {
        counts_.failures.push_back(kind.name + ": " + why);
      }
      break;
  }
  finished_.fetch_add(1);
}

// ---- SimNode ----

SimNode::SimNode(std::string dir, std::vector<std::string> args)
    : dir_(std::move(dir)), args_(std::move(args)) {
  std::vector<std::string> full = {"--listen", "127.0.0.1:0"};
  full.insert(full.end(), args_.begin(), args_.end());
  process_ = std::make_unique<ChildProcess>(BinaryPath("corral-sim"), full, dir_);
  port_ = process_->WaitForPort(seconds(15));
  EXPECT_GT(port_, 0) << "corral-sim did not start";
}

::testing::AssertionResult SimNode::Kill() {
  if (!process_ || process_->Kill() == -1) {
    return ::testing::AssertionFailure() << "corral-sim on port " << port_ << " did not die";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimNode::Restart(milliseconds timeout) {
  if (process_ && process_->Running()) process_->Kill();
  std::vector<std::string> full = {"--listen", "127.0.0.1:" + std::to_string(port_)};
  full.insert(full.end(), args_.begin(), args_.end());
  return WaitFor(
      [&] {
        if (process_) retired_.push_back(std::move(process_));
        process_ = std::make_unique<ChildProcess>(BinaryPath("corral-sim"), full, dir_);
        return process_->WaitForPort(seconds(15)) == port_;
      },
      timeout, "corral-sim to start again on port " + std::to_string(port_));
}

::testing::AssertionResult SimNode::Freeze() {
  if (!process_ || !process_->Running() || ::kill(process_->pid(), SIGSTOP) != 0) {
    return ::testing::AssertionFailure() << "cannot stop corral-sim on port " << port_;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimNode::Thaw() {
  if (!process_ || !process_->Running() || ::kill(process_->pid(), SIGCONT) != 0) {
    return ::testing::AssertionFailure() << "cannot continue corral-sim on port " << port_;
  }
  return ::testing::AssertionSuccess();
}

json SimNode::Stats() const { return GetJson(port_, "/_sim/stats"); }

void SimNode::DumpLogs() const {
  // The last few lives are enough to see what went wrong; a long soak has hundreds.
  const size_t from = retired_.size() > 3 ? retired_.size() - 3 : 0;
  for (size_t i = from; i < retired_.size(); ++i) retired_[i]->DumpLog();
  if (process_) process_->DumpLog();
}

// ---- FileProxy ----

json SnapshotNode(const std::string& name, const std::string& url,
                  const std::vector<std::string>& models) {
  json node = {{"name", name},
               {"url", url},
               {"admin_state", "ADMIN_STATE_ENABLED"},
               {"health", "HEALTH_HEALTHY"},
               {"models", json::array()}};
  for (const auto& m : models) node["models"].push_back({{"name", m}});
  return node;
}

FileProxy::FileProxy(const std::string& dir, const json& snapshot) {
  const std::string path = dir + "/snapshot.json";
  std::ofstream(path + ".tmp") << snapshot.dump();
  std::filesystem::rename(path + ".tmp", path);
  process_ = std::make_unique<ChildProcess>(
      BinaryPath("corral-proxy"),
      std::vector<std::string>{"--listen", "127.0.0.1:0", "--snapshot", path}, dir);
  port_ = process_->WaitForPort(seconds(15));
  EXPECT_GT(port_, 0) << "corral-proxy did not start";
}

json FileProxy::State() const { return GetJson(port_, "/api/proxy/state"); }

InFlight ReadInFlight(const json& state) {
  InFlight in_flight;
  if (!state.is_object() || !state.contains("proxy")) return in_flight;
  in_flight.active = state["proxy"].value("active_requests", int64_t{-1});
  for (const auto& node : state.value("nodes", json::array())) {
    in_flight.nodes += node.value("in_flight", int64_t{0});
    in_flight.failures += node.value("failures_total", int64_t{0});
    if (node.value("ejected", false)) ++in_flight.ejected;
  }
  return in_flight;
}

::testing::AssertionResult WaitProxyIdle(int port, milliseconds timeout) {
  json last;
  auto idle = WaitFor(
      [&] {
        last = GetJson(port, "/api/proxy/state");
        return ReadInFlight(last).Idle();
      },
      timeout, "the proxy's in-flight counts to return to zero");
  if (!idle) idle << "; last state: " << last.dump();
  return idle;
}

Outcome SendOne(int port, const RequestKind& kind, std::string* why, seconds timeout) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(seconds(5));
  cli.set_read_timeout(timeout);
  auto res = cli.Post(kind.path, kind.body, "application/json");
  if (!res) {
    *why = "no answer: " + httplib::to_string(res.error());
    return Outcome::kFailed;
  }
  return Classify(kind, res->status, res->body, why);
}

::testing::AssertionResult WaitForMore(const std::function<int64_t()>& count, int64_t more,
                                       const std::string& what, milliseconds timeout) {
  const int64_t target = count() + more;
  return WaitFor([&] { return count() >= target; }, timeout, what);
}

int RandomIn(int lo, int hi) {
  static std::mutex mu;
  static std::mt19937 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

void ReportMeasured(const std::string& what, const std::string& line) {
  std::cout << "[ measured ] " << what << ": " << line << std::endl;
  ::testing::Test::RecordProperty("measured", line);
}

}  // namespace corral::faults
