#include "sim/sim_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/go_json.h"

namespace corral::sim {
namespace {

using std::chrono::milliseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr char kJsonType[] = "application/json; charset=utf-8";
constexpr char kNdjsonType[] = "application/x-ndjson";
constexpr char kSseType[] = "text/event-stream";
constexpr char kBusyText[] = "server busy, please try again.  maximum pending requests exceeded";
constexpr char kLoadFailureText[] = "llama runner process has terminated: exit status 2";
constexpr char kMidStreamErrorText[] =
    "an error was encountered while running the model: unexpected EOF";
constexpr int kDefaultNumCtx = 4096;
constexpr size_t kMaxRecordedBody = 1 << 20;

const std::vector<std::string_view>& ContentWords() {
  static const std::vector<std::string_view> words = {
      "The",        " sky",     " is",    " blue",        " because", " air",
      " molecules", " scatter", " short", " wavelengths", " of",      " sunlight",
      " more",      " than",    " long",  " ones",        "."};
  return words;
}

const std::vector<std::string_view>& ThinkingWords() {
  static const std::vector<std::string_view> words = {
      "Okay", ",", " the",    " user",     " asks",       " about", " the",
      " sky", ";", " recall", " Rayleigh", " scattering", "."};
  return words;
}

std::mt19937& Rng() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return rng;
}

std::string RandomToolCallId() {
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<int> pick(0, 35);
  std::string id = "call_";
  for (int i = 0; i < 8; ++i) id += kChars[pick(Rng())];
  return id;
}

int RandomBelow(int n) { return std::uniform_int_distribution<int>(0, n - 1)(Rng()); }

std::string NowUtc() { return FormatUtc(std::chrono::system_clock::now()); }

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(GoJson(body), kJsonType);
}

void NativeError(httplib::Response& res, int status, const std::string& message) {
  SendJson(res, status, Json{{"error", message}});
}

Json OpenAiErrorObject(int status, const std::string& message) {
  const char* type = status == 400   ? "invalid_request_error"
                     : status == 404 ? "not_found_error"
                                     : "api_error";
  return Json{
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

void ErrorFor(httplib::Response& res, int status, const std::string& message, bool openai) {
  if (openai) {
    SendJson(res, status, OpenAiErrorObject(status, message));
  } else {
    NativeError(res, status, message);
  }
}

void SendText(httplib::Response& res, int status, const std::string& text, const char* type) {
  res.status = status;
  res.set_content(text, type);
}

void MethodNotAllowed(httplib::Response& res) {
  SendText(res, 405, "405 method not allowed", "text/plain");
}

void AnswerCanceled(httplib::Response& res, bool openai) {
  ErrorFor(res, 499, "request canceled", openai);
}

// Reads the JSON body; when it is not JSON, answers 400 with the parser's text.
std::optional<Json> ReadBody(const httplib::Request& req, bool openai, httplib::Response& res) {
  std::string error;
  std::optional<Json> body = ParseRequestBody(req.body, &error);
  if (!body) ErrorFor(res, 400, error, openai);
  return body;
}

Json GateJson(const TokenGate::Status& gate) {
  return Json{{"gated", gate.gated},
              {"waiting", gate.waiting},
              {"available", gate.available},
              {"passed", gate.passed}};
}

bool IsMidStream(FailMode mode) {
  return mode == FailMode::kDieMidStream || mode == FailMode::kDropMidStream ||
         mode == FailMode::kErrorMidStream || mode == FailMode::kStallMidStream;
}

bool KeepAliveIsZero(const KeepAlive& ka) { return !ka.forever && ka.duration.count() == 0; }

std::string StringField(const Json& body, std::string_view key) {
  const Json* f = FindField(body, key);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}

bool BoolField(const Json& body, std::string_view key) {
  const Json* f = FindField(body, key);
  return f != nullptr && f->is_boolean() && f->get<bool>();
}

int PromptTokens(size_t chars) { return std::max<int>(1, static_cast<int>(chars / 4)); }

// Fields shared by generate and chat (and read from the OpenAI requests after translation).
struct CommonFields {
  KeepAlive keep_alive{false, std::chrono::minutes(5)};
  int num_ctx = kDefaultNumCtx;
  int num_predict = -1;
  bool stream = true;
  const Json* think = nullptr;
};

bool IntegerOption(const Json& options, std::string_view key, int* out, std::string* error) {
  const Json* v = FindField(options, key);
  if (v == nullptr || v->is_null()) return true;
  if (!v->is_number() || std::floor(v->get<double>()) != v->get<double>()) {
    *error = "option \"" + std::string(key) + "\" must be of type integer";
    return false;
  }
  *out = static_cast<int>(v->get<double>());
  return true;
}

// Returns 0 on success, else the HTTP status to answer with `error`.
int ParseCommon(const Json& body, bool stream_default, CommonFields* out, std::string* error) {
  out->stream = stream_default;
  if (const Json* s = FindField(body, "stream"); s != nullptr && !s->is_null()) {
    if (!s->is_boolean()) {
      *error = std::string("json: cannot unmarshal ") + s->type_name() +
               " into Go struct field .stream of type bool";
      return 400;
    }
    out->stream = s->get<bool>();
  }
  if (const Json* ka = FindField(body, "keep_alive"); ka != nullptr && !ka->is_null()) {
    if (!ParseKeepAlive(*ka, &out->keep_alive, error)) return 400;
  }
  if (const Json* options = FindField(body, "options");
      options != nullptr && options->is_object()) {
    if (!IntegerOption(*options, "num_ctx", &out->num_ctx, error) ||
        !IntegerOption(*options, "num_predict", &out->num_predict, error)) {
      return 500;
    }
    if (out->num_ctx <= 0) out->num_ctx = kDefaultNumCtx;
  }
  if (const Json* think = FindField(body, "think"); think != nullptr && !think->is_null()) {
    const bool level =
        think->is_string() &&
        (think->get<std::string>() == "low" || think->get<std::string>() == "medium" ||
         think->get<std::string>() == "high" || think->get<std::string>() == "max");
    if (!think->is_boolean() && !level) {
      *error = "invalid think value: " + GoJson(*think) +
               " (must be \"high\", \"medium\", \"low\", true, or false)";
      return 400;
    }
    out->think = think;
  }
  return 0;
}

// The body and the fields every generation-like route reads. Answers the error itself and
// returns false when the request is refused.
bool ReadCommonRequest(const httplib::Request& req, bool stream_default, bool openai, Json* body,
                       CommonFields* common, httplib::Response& res) {
  std::optional<Json> parsed = ReadBody(req, openai, res);
  if (!parsed) return false;
  *body = std::move(*parsed);  // parsed first: `common->think` points into *body
  std::string error;
  if (int status = ParseCommon(*body, stream_default, common, &error); status != 0) {
    ErrorFor(res, status, error, openai);
    return false;
  }
  return true;
}

// max_tokens and stream_options, which only the OpenAI-compatible routes read.
void ReadOpenAiOptions(const Json& body, CommonFields* common, bool* include_usage) {
  if (const Json* max_tokens = FindField(body, "max_tokens");
      max_tokens != nullptr && max_tokens->is_number_integer()) {
    common->num_predict = max_tokens->get<int>();
  }
  const Json* options = FindField(body, "stream_options");
  *include_usage = options != nullptr && BoolField(*options, "include_usage");
}

// The tools offered to a chat, or null when there are none.
const Json* OfferedTools(const Json& body) {
  const Json* tools = FindField(body, "tools");
  return tools != nullptr && tools->is_array() && !tools->empty() ? tools : nullptr;
}

// Sizes a chat prompt and notes who spoke last (a model answering a tool result calls no tool).
size_t ScanMessages(const Json& messages, std::string* last_role) {
  size_t chars = 0;
  for (const Json& m : messages) {
    if (!m.is_object()) continue;
    chars += StringField(m, "content").size();
    *last_role = absl::AsciiStrToLower(StringField(m, "role"));
  }
  return chars;
}

// The "dimensions" a client asked for, when smaller than the model's own.
int RequestedDimensions(const Json& body, int dims) {
  if (const Json* d = FindField(body, "dimensions"); d != nullptr && d->is_number_integer()) {
    if (d->get<int>() > 0 && d->get<int>() < dims) dims = d->get<int>();
  }
  return dims;
}

// Thinking-capable models think unless told not to; asking a model without the capability to
// think is a 400.
bool DecideThinking(const Json* think, const SimModel& model, const std::string& name_as_sent,
                    bool* thinking, std::string* error) {
  const bool asked_off = think != nullptr && think->is_boolean() && !think->get<bool>();
  const bool asked_on = think != nullptr && !asked_off;
  if (asked_on && !model.Has("thinking")) {
    *error = "\"" + name_as_sent + "\" does not support thinking";
    return false;
  }
  *thinking = model.Has("thinking") && !asked_off;
  return true;
}

Json SampleValue(const std::string& name, const Json& schema) {
  const std::string type = schema.is_object() ? StringField(schema, "type") : "string";
  if (type == "integer") return 1;
  if (type == "number") return 1.5;
  if (type == "boolean") return true;
  if (type == "array") return Json::array();
  if (type == "object") return Json::object();
  if (absl::StrContains(name, "city") || absl::StrContains(name, "location")) return "Tokyo";
  return "sample";
}

// The native tool call a model would make for the first tool offered.
Json ToolCallFor(const Json& tools) {
  Json function = tools.is_array() && !tools.empty() && tools[0].is_object()
                      ? tools[0].value("function", Json::object())
                      : Json::object();
  Json arguments = Json::object();
  if (function.is_object()) {
    const Json params = function.value("parameters", Json::object());
    if (params.is_object() && params.contains("properties") && params["properties"].is_object()) {
      for (auto it = params["properties"].begin(); it != params["properties"].end(); ++it) {
        arguments[it.key()] = SampleValue(it.key(), it.value());
      }
    }
  }
  const std::string name =
      function.is_object() && function.contains("name") && function["name"].is_string()
          ? function["name"].get<std::string>()
          : "tool";
  return Json{{"id", RandomToolCallId()},
              {"function", {{"index", 0}, {"name", name}, {"arguments", arguments}}}};
}

// Deterministic pseudo-embedding: a function of the model and the text only.
std::vector<double> EmbeddingVector(const std::string& model_key, std::string_view text, int dims,
                                    bool normalise) {
  uint64_t state = 1469598103934665603ull;
  for (unsigned char c : model_key) state = (state ^ c) * 1099511628211ull;
  for (unsigned char c : text) state = (state ^ c) * 1099511628211ull;
  std::vector<double> v(std::max(1, dims));
  double norm = 0;
  for (double& x : v) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = static_cast<double>(state % 2000001) / 1000000.0 - 1.0;
    norm += x * x;
  }
  norm = std::sqrt(norm);
  for (double& x : v) {
    if (normalise) x /= norm;
    char buf[32];
    // float32 precision, printed short the way Go prints a float32.
    std::snprintf(buf, sizeof buf, "%.8g", static_cast<float>(x));
    x = std::strtod(buf, nullptr);
  }
  return v;
}

std::string Base64(const std::string& bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  while (i + 2 < bytes.size()) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
    i += 3;
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// The request headers as they came off the wire: httplib adds REMOTE_ADDR, REMOTE_PORT,
// LOCAL_ADDR and LOCAL_PORT itself (after the parsed ones), so the last entry of each of those
// with httplib's value is dropped. A proxy that forwarded such a header is still visible.
std::vector<std::pair<std::string, std::string>> WireHeaders(const httplib::Request& req) {
  std::vector<std::pair<std::string, std::string>> headers(req.headers.begin(), req.headers.end());
  const std::pair<const char*, std::string> injected[] = {
      {"REMOTE_ADDR", req.remote_addr},
      {"REMOTE_PORT", std::to_string(req.remote_port)},
      {"LOCAL_ADDR", req.local_addr},
      {"LOCAL_PORT", std::to_string(req.local_port)}};
  for (const auto& [name, value] : injected) {
    for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
      if (absl::EqualsIgnoreCase(it->first, name)) {
        if (it->second == value) headers.erase(std::next(it).base());
        break;
      }
    }
  }
  return headers;
}

bool IsValidUtf8(const std::string& s) {
  try {
    (void)Json(s).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

// Methods each known Ollama path answers; empty for an unknown path.
std::string AllowedMethods(const std::string& path) {
  static const std::map<std::string, std::string> kRoutes = {
      {"/", "GET,HEAD"},           {"/api/version", "GET,HEAD"}, {"/api/tags", "GET,HEAD"},
      {"/api/ps", "GET"},          {"/api/generate", "POST"},    {"/api/chat", "POST"},
      {"/api/embed", "POST"},      {"/api/embeddings", "POST"},  {"/api/show", "POST"},
      {"/api/pull", "POST"},       {"/api/push", "POST"},        {"/api/create", "POST"},
      {"/api/copy", "POST"},       {"/api/delete", "DELETE"},    {"/v1/chat/completions", "POST"},
      {"/v1/completions", "POST"}, {"/v1/embeddings", "POST"},   {"/v1/models", "GET"},
  };
  auto it = kRoutes.find(path);
  if (it != kRoutes.end()) return it->second;
  if (absl::StartsWith(path, "/api/blobs/") && path.size() > 11 &&
      path.find('/', 11) == std::string::npos) {
    return "HEAD,POST";
  }
  if (absl::StartsWith(path, "/v1/models/") && path.size() > 11 &&
      path.find('/', 11) == std::string::npos) {
    return "GET";
  }
  return "";
}

SchedulerLimits LimitsOf(const SimConfig& c) {
  SchedulerLimits limits;
  limits.load_delay = milliseconds(c.fast ? 0 : std::max(0, c.load_delay_ms));
  limits.num_parallel = std::max(1, c.num_parallel);
  limits.max_queue = std::max(0, c.max_queue);
  limits.vram_bytes = static_cast<int64_t>(c.vram_gb * 1024.0 * 1024.0 * 1024.0);
  return limits;
}

void WriteGarbage(ConnectionWatch& watch) {
  const int fd = watch.Fd();
  if (fd < 0) return;
  static const char kBytes[] =
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
      "zz-not-a-chunk-size\r\n{\"model\":\x01\xfe garbage\r\n";
  [[maybe_unused]] ssize_t n = ::send(fd, kBytes, sizeof kBytes - 1, MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
}

// What a node port answers when something other than Ollama listens there (another service's
// banner, a TLS record, binary noise): not even a status line.
void WriteNotHttp(ConnectionWatch& watch) {
  const int fd = watch.Fd();
  if (fd < 0) return;
  static const char kBytes[] =
      "SSH-2.0-OpenSSH_9.2p1\r\n\x15\x03\x01\x00\x02\x02\x50\x00\xff\xfe not http\r\n\r\n";
  [[maybe_unused]] ssize_t n = ::send(fd, kBytes, sizeof kBytes - 1, MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Configuration

namespace {

// Each failure mode with its name in flags, /_sim/config and docs/sim.md.
constexpr std::pair<std::string_view, FailMode> kFailModes[] = {
    {"none", FailMode::kNone},
    {"error-500", FailMode::kError500},
    {"busy-503", FailMode::kBusy503},
    {"hang", FailMode::kHang},
    {"die-mid-stream", FailMode::kDieMidStream},
    {"drop-mid-stream", FailMode::kDropMidStream},
    {"error-mid-stream", FailMode::kErrorMidStream},
    {"garbage", FailMode::kGarbage},
    {"slow-headers", FailMode::kSlowHeaders},
    {"not-http", FailMode::kNotHttp},
    {"stall-mid-stream", FailMode::kStallMidStream}};

}  // namespace

bool ParseFailMode(std::string_view text, FailMode* mode) {
  for (const auto& [name, value] : kFailModes) {
    if (name == text) {
      *mode = value;
      return true;
    }
  }
  return false;
}

std::string_view FailModeName(FailMode mode) {
  for (const auto& [name, value] : kFailModes) {
    if (value == mode) return name;
  }
  return "none";
}

bool ApplyConfigJson(const Json& patch, SimConfig* config, std::string* error) {
  if (!patch.is_object()) {
    *error = "config must be a JSON object";
    return false;
  }
  SimConfig c = *config;
  const std::map<std::string, int*> ints = {{"tokens", &c.tokens},
                                            {"token_interval_ms", &c.token_interval_ms},
                                            {"jitter_ms", &c.jitter_ms},
                                            {"load_delay_ms", &c.load_delay_ms},
                                            {"num_parallel", &c.num_parallel},
                                            {"max_queue", &c.max_queue},
                                            {"fail_after", &c.fail_after},
                                            {"fail_times", &c.fail_times},
                                            {"slow_headers_ms", &c.slow_headers_ms},
                                            {"pull_interval_ms", &c.pull_interval_ms},
                                            {"keep_requests", &c.keep_requests}};
  const std::map<std::string, bool*> bools = {
      {"fast", &c.fast}, {"fail_all_routes", &c.fail_all_routes}, {"final_text", &c.final_text}};
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (auto i = ints.find(key); i != ints.end()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        *error = key + " must be a non-negative integer";
        return false;
      }
      *i->second = v.get<int>();
    } else if (auto b = bools.find(key); b != bools.end()) {
      if (!v.is_boolean()) {
        *error = key + " must be true or false";
        return false;
      }
      *b->second = v.get<bool>();
    } else if (key == "version") {
      if (!v.is_string()) {
        *error = "version must be a string";
        return false;
      }
      c.version = v.get<std::string>();
    } else if (key == "vram_gb") {
      if (!v.is_number() || v.get<double>() < 0) {
        *error = "vram_gb must be a non-negative number";
        return false;
      }
      c.vram_gb = v.get<double>();
    } else if (key == "fail") {
      if (!v.is_string() || !ParseFailMode(v.get<std::string>(), &c.fail)) {
        *error = "fail must be one of";
        const char* separator = " ";
        for (const auto& mode_name : kFailModes) {
          *error += separator;
          *error += mode_name.first;
          separator = ", ";
        }
        return false;
      }
    } else if (key == "gated" || key == "models" || key == "add_models" || key == "remove_models" ||
               key == "pullable") {
      continue;  // handled by SimServer
    } else {
      *error = "unknown config key \"" + key + "\"";
      return false;
    }
  }
  *config = c;
  return true;
}

Json ConfigJson(const SimConfig& c) {
  return Json{{"version", c.version},
              {"tokens", c.tokens},
              {"token_interval_ms", c.token_interval_ms},
              {"jitter_ms", c.jitter_ms},
              {"load_delay_ms", c.load_delay_ms},
              {"num_parallel", c.num_parallel},
              {"max_queue", c.max_queue},
              {"fast", c.fast},
              {"vram_gb", c.vram_gb},
              {"fail", FailModeName(c.fail)},
              {"fail_after", c.fail_after},
              {"fail_times", c.fail_times},
              {"fail_all_routes", c.fail_all_routes},
              {"slow_headers_ms", c.slow_headers_ms},
              {"pull_interval_ms", c.pull_interval_ms},
              {"final_text", c.final_text},
              {"keep_requests", c.keep_requests}};
}

// ---------------------------------------------------------------------------------------------
// A generation: the plan of what to emit, the timing, and the stream state.

namespace {

enum class Api { kGenerate, kChat, kOpenAiChat, kOpenAiCompletion };

struct Piece {
  enum Kind { kThinking, kContent, kToolCall } kind;
  std::string text;
  Json tool_call;  // native shape
};

}  // namespace

struct SimServer::Generation {
  enum class Outcome { kRunning, kCompleted, kCancelled, kFailed };

  Generation(SimServer* s, const httplib::Request& req)
      : server(s), watch(req), config(s->Config()), start(std::chrono::steady_clock::now()) {}
  ~Generation() {
    if (leased) server->scheduler_.Release(lease, keep_alive);
  }

  SimServer* server;
  ConnectionWatch watch;
  SimConfig config;
  SteadyTime start;

  Api api = Api::kGenerate;
  std::string model_echo;
  SimModel model;
  std::vector<Piece> pieces;
  std::string done_reason = "stop";
  int prompt_tokens = 1;
  bool stream = true;
  bool with_context = false;
  bool include_usage = false;
  KeepAlive keep_alive{false, std::chrono::minutes(5)};
  FailMode fail = FailMode::kNone;
  std::string openai_id;
  int64_t openai_created = 0;

  Scheduler::Lease lease;
  bool leased = false;
  SteadyTime slot_at{}, first_at{}, last_at{};
  size_t next = 0;  // next piece to produce
  int written = 0;  // pieces written to the client
  bool final_produced = false;
  bool role_sent = false;  // OpenAI chat: role goes in the first delta only
  int64_t last_created_ns = 0;
  std::string pending;  // produced, not yet written
  Outcome outcome = Outcome::kRunning;

  bool openai() const { return api == Api::kOpenAiChat || api == Api::kOpenAiCompletion; }

  void Plan(bool thinking, int content_tokens, const Json* tools_call) {
    const auto& think_words = ThinkingWords();
    const auto& words = ContentWords();
    if (thinking) {
      const int n = std::max(1, config.tokens / 2);
      for (int i = 0; i < n; ++i) {
        pieces.push_back({Piece::kThinking, std::string(think_words[i % think_words.size()]), {}});
      }
    }
    if (tools_call != nullptr) {
      pieces.push_back({Piece::kToolCall, "", *tools_call});
      return;
    }
    for (int i = 0; i < content_tokens; ++i) {
      pieces.push_back({Piece::kContent, std::string(words[i % words.size()]), {}});
    }
  }

  std::string CreatedAt() {
    const int64_t now = UnixNanos(std::chrono::system_clock::now());
    last_created_ns = std::max(now, last_created_ns + 1);
    return FormatUtc(last_created_ns);
  }

  // Waits out the pacing and the gate for the next piece. False when the client left.
  bool AwaitPiece() {
    if (!config.fast) {
      int ms = config.token_interval_ms;
      if (next > 0 && config.jitter_ms > 0) {
        ms += RandomBelow(2 * config.jitter_ms + 1) - config.jitter_ms;
      }
      if (ms > 0 && !server->Sleep(milliseconds(ms), watch)) return false;
    }
    if (!server->gate_.Pass([this] { return server->Cancelled(watch); })) return false;
    const SteadyTime now = std::chrono::steady_clock::now();
    if (next == 0) first_at = now;
    last_at = now;
    return true;
  }

  struct Metrics {
    int64_t total, load, prompt_eval, eval;
    int prompt_count, eval_count;
  };
  Metrics ComputeMetrics() const {
    using std::chrono::nanoseconds;
    const SteadyTime now = std::chrono::steady_clock::now();
    const SteadyTime first = pieces.empty() ? now : first_at;
    const SteadyTime last = pieces.empty() ? now : last_at;
    Metrics m;
    m.prompt_count = prompt_tokens;
    m.eval_count = static_cast<int>(pieces.size());
    // Warm requests report a short "load" (a few ms), as Ollama does; metrics are never 0
    // (Ollama omits zeros, and the fields should be present on every final chunk).
    m.load = lease.load_duration.count() > 0 ? lease.load_duration.count() : 1834291;
    m.prompt_eval = std::max<int64_t>(
        std::chrono::duration_cast<nanoseconds>(first - slot_at).count(), 1000 * m.prompt_count);
    m.eval = std::max<int64_t>(std::chrono::duration_cast<nanoseconds>(last - first).count(),
                               1000 * std::max(1, m.eval_count));
    m.total = std::max<int64_t>(std::chrono::duration_cast<nanoseconds>(now - start).count(),
                                m.load + m.prompt_eval + m.eval + 1000);
    return m;
  }

  // The closing fields of a native answer (the final chunk, or the stream:false object).
  void AddDone(Json& j, const Metrics& m) const {
    j["done"] = true;
    j["done_reason"] = done_reason;
    if (with_context) j["context"] = ContextTokens(m);
    j["total_duration"] = m.total;
    j["load_duration"] = m.load;
    j["prompt_eval_count"] = m.prompt_count;
    j["prompt_eval_duration"] = m.prompt_eval;
    j["eval_count"] = m.eval_count;
    j["eval_duration"] = m.eval;
  }

  Json OpenAiToolCall(const Json& native) const {
    return Json{{"id", native["id"]},
                {"index", 0},
                {"type", "function"},
                {"function",
                 {{"name", native["function"]["name"]},
                  {"arguments", GoJson(native["function"]["arguments"])}}}};
  }

  std::string FinishReason() const {
    for (const Piece& p : pieces) {
      if (p.kind == Piece::kToolCall) return "tool_calls";
    }
    return done_reason;
  }

  Json OpenAiEnvelope(bool chunk) const {
    const char* object = api != Api::kOpenAiChat ? "text_completion"
                         : chunk                 ? "chat.completion.chunk"
                                                 : "chat.completion";
    return Json{{"id", openai_id},
                {"object", object},
                {"created", openai_created},
                {"model", model_echo},
                {"system_fingerprint", "fp_ollama"}};
  }

  Json Usage() const {
    const int completion = static_cast<int>(pieces.size());
    return Json{{"prompt_tokens", prompt_tokens},
                {"completion_tokens", completion},
                {"total_tokens", prompt_tokens + completion}};
  }

  static Json ZeroUsage() {
    return Json{{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
  }

  static std::string Sse(const Json& j) { return "data: " + GoJson(j) + "\n\n"; }

  // The OpenAI stream's end: the finish event, the usage event when asked for, then [DONE].
  std::string OpenAiStreamEnd(const Json& finish) const {
    std::string out = Sse(finish);
    if (include_usage) {
      Json usage = OpenAiEnvelope(true);
      usage["choices"] = Json::array();
      usage["usage"] = Usage();
      out += Sse(usage);
    }
    return out + "data: [DONE]\n\n";
  }

  // One streamed line (or SSE event) for a piece.
  std::string ChunkFor(const Piece& p) {
    switch (api) {
      case Api::kGenerate: {
        Json j{{"model", model_echo}, {"created_at", CreatedAt()}};
        j["response"] = p.kind == Piece::kContent ? p.text : "";
        if (p.kind == Piece::kThinking) j["thinking"] = p.text;
        j["done"] = false;
        return GoJson(j) + "\n";
      }
      case Api::kChat: {
        Json message{{"role", "assistant"}, {"content", p.kind == Piece::kContent ? p.text : ""}};
        if (p.kind == Piece::kThinking) message["thinking"] = p.text;
        if (p.kind == Piece::kToolCall) message["tool_calls"] = Json::array({p.tool_call});
        Json j{{"model", model_echo}, {"created_at", CreatedAt()}, {"message", message}};
        j["done"] = false;
        return GoJson(j) + "\n";
      }
      case Api::kOpenAiChat: {
        Json delta = Json::object();
        if (!role_sent) delta["role"] = "assistant";
        role_sent = true;
        if (p.kind == Piece::kContent) delta["content"] = p.text;
        if (p.kind == Piece::kThinking) {
          delta["content"] = "";
          delta["reasoning"] = p.text;
        }
        if (p.kind == Piece::kToolCall) {
          delta["tool_calls"] = Json::array({OpenAiToolCall(p.tool_call)});
        }
        Json j = OpenAiEnvelope(true);
        j["choices"] =
            Json::array({Json{{"index", 0}, {"delta", delta}, {"finish_reason", nullptr}}});
        return Sse(j);
      }
      case Api::kOpenAiCompletion: {
        Json j = OpenAiEnvelope(true);
        j["choices"] =
            Json::array({Json{{"text", p.text}, {"index", 0}, {"finish_reason", nullptr}}});
        if (include_usage) j["usage"] = ZeroUsage();
        return Sse(j);
      }
    }
    return "";
  }

  // The end of a stream: the done chunk (native), or finish + usage + [DONE] (OpenAI).
  // `tail` is the last content piece when config.final_text puts it into the final chunk.
  std::string FinalChunk(const Piece* tail) {
    const Metrics m = ComputeMetrics();
    switch (api) {
      case Api::kGenerate: {
        Json j{{"model", model_echo}, {"created_at", CreatedAt()}};
        j["response"] = tail != nullptr ? tail->text : "";
        AddDone(j, m);
        return GoJson(j) + "\n";
      }
      case Api::kChat: {
        Json j{
            {"model", model_echo},
            {"created_at", CreatedAt()},
            {"message", {{"role", "assistant"}, {"content", tail != nullptr ? tail->text : ""}}}};
        AddDone(j, m);
        return GoJson(j) + "\n";
      }
      case Api::kOpenAiChat: {
        Json finish = OpenAiEnvelope(true);
        finish["choices"] = Json::array(
            {Json{{"index", 0}, {"delta", Json::object()}, {"finish_reason", FinishReason()}}});
        return OpenAiStreamEnd(finish);
      }
      case Api::kOpenAiCompletion: {
        Json finish = OpenAiEnvelope(true);
        finish["choices"] =
            Json::array({Json{{"text", ""}, {"index", 0}, {"finish_reason", FinishReason()}}});
        if (include_usage) finish["usage"] = ZeroUsage();
        return OpenAiStreamEnd(finish);
      }
    }
    return "";
  }

  Json ContextTokens(const Metrics& m) const {
    Json context = Json::array();
    const int n = m.prompt_count + m.eval_count;
    for (int i = 0; i < n; ++i) context.push_back((i * 7919 + 128000) % 128256);
    return context;
  }

  // The mid-stream error as each API shows it: an {"error"} line, or (OpenAI) an empty delta,
  // which is what Ollama's SSE writer turns an error into.
  std::string ErrorLine() {
    if (!openai()) return GoJson(Json{{"error", kMidStreamErrorText}}) + "\n";
    Json j = OpenAiEnvelope(true);
    if (api == Api::kOpenAiChat) {
      j["choices"] = Json::array({Json{{"index", 0},
                                       {"delta", {{"role", "assistant"}, {"content", ""}}},
                                       {"finish_reason", nullptr}}});
    } else {
      j["choices"] = Json::array({Json{{"text", ""}, {"index", 0}, {"finish_reason", nullptr}}});
    }
    return Sse(j);
  }

  // Produces the next line into `pending`. False when the client left.
  bool Produce() {
    if (next < pieces.size()) {
      if (!AwaitPiece()) return false;
      const Piece& p = pieces[next++];
      const bool tail =
          config.final_text && next == pieces.size() && p.kind == Piece::kContent && !openai();
      if (tail) {
        pending = FinalChunk(&p);
        final_produced = true;
      } else {
        pending = ChunkFor(p);
      }
      return true;
    }
    pending = FinalChunk(nullptr);
    final_produced = true;
    return true;
  }

  // The whole answer as one object (stream:false). Call after every piece was awaited.
  Json WholeAnswer() {
    const Metrics m = ComputeMetrics();
    std::string content, thinking;
    Json tool_calls = Json::array();
    for (const Piece& p : pieces) {
      if (p.kind == Piece::kContent) content += p.text;
      if (p.kind == Piece::kThinking) thinking += p.text;
      if (p.kind == Piece::kToolCall) tool_calls.push_back(p.tool_call);
    }
    switch (api) {
      case Api::kGenerate: {
        Json j{{"model", model_echo}, {"created_at", CreatedAt()}, {"response", content}};
        if (!thinking.empty()) j["thinking"] = thinking;
        AddDone(j, m);
        return j;
      }
      case Api::kChat: {
        Json message{{"role", "assistant"}, {"content", content}};
        if (!thinking.empty()) message["thinking"] = thinking;
        if (!tool_calls.empty()) message["tool_calls"] = tool_calls;
        Json j{{"model", model_echo}, {"created_at", CreatedAt()}, {"message", message}};
        AddDone(j, m);
        return j;
      }
      case Api::kOpenAiChat: {
        Json message{{"role", "assistant"}, {"content", content}};
        if (!thinking.empty()) message["reasoning"] = thinking;
        if (!tool_calls.empty()) {
          Json calls = Json::array();
          for (const Json& c : tool_calls) calls.push_back(OpenAiToolCall(c));
          message["tool_calls"] = calls;
        }
        Json j = OpenAiEnvelope(false);
        j["choices"] = Json::array(
            {Json{{"index", 0}, {"message", message}, {"finish_reason", FinishReason()}}});
        j["usage"] = Usage();
        return j;
      }
      case Api::kOpenAiCompletion: {
        Json j = OpenAiEnvelope(false);
        j["choices"] =
            Json::array({Json{{"text", content}, {"index", 0}, {"finish_reason", FinishReason()}}});
        j["usage"] = Usage();
        return j;
      }
    }
    return Json::object();
  }

  void SetOutcome(Outcome o) {
    if (outcome != Outcome::kRunning) return;
    outcome = o;
    if (o == Outcome::kCompleted) server->CountCompleted();
    if (o == Outcome::kCancelled) server->CountCancelled();
  }

  // Counts an injected mid-stream failure; the die mode ends the process here, the stall mode
  // holds the connection (and the slot) without a byte until the client leaves.
  void InjectMidStreamFailure() {
    server->CountInjected();
    outcome = Outcome::kFailed;
    if (fail == FailMode::kDieMidStream) ::_exit(3);
    if (fail == FailMode::kStallMidStream) {
      while (server->Sleep(std::chrono::milliseconds(1000), watch)) {
      }
      if (!server->shutting_down_) server->CountCancelled();
    }
  }

  // The tail every inference route shares: wait for a slot, plan the pieces, answer.
  static void Start(std::shared_ptr<Generation> gen, Api api, const std::string& name,
                    const SimModel& model, const CommonFields& common, int prompt_tokens,
                    bool thinking, const Json* tool_call, httplib::Response& res) {
    gen->api = api;
    if (!gen->server->AcquireSlot(model, common.num_ctx, common.keep_alive, gen->openai(),
                                  gen->watch, &gen->lease, res)) {
      return;
    }
    gen->leased = true;
    gen->slot_at = std::chrono::steady_clock::now();
    gen->model_echo = name;
    gen->model = model;
    gen->stream = common.stream;
    gen->keep_alive = common.keep_alive;
    gen->prompt_tokens = prompt_tokens;
    if (gen->openai()) {
      gen->openai_id = std::string(api == Api::kOpenAiChat ? "chatcmpl-" : "cmpl-") +
                       std::to_string(RandomBelow(999));
      gen->openai_created = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    }
    int tokens = gen->config.tokens;
    if (common.num_predict > 0 && common.num_predict < tokens) {
      tokens = common.num_predict;
      gen->done_reason = "length";
    }
    gen->Plan(thinking, tokens, tool_call);
    gen->server->Respond(gen, res);
  }

  // A native request with nothing to generate loads (or, with keep_alive 0, unloads) the model
  // and answers one JSON object even when streaming; `key` names the empty answer field.
  void AnswerLoadRequest(const SimModel& load, const std::string& name, const CommonFields& common,
                         const char* key, Json empty, httplib::Response& res) {
    const bool unload = KeepAliveIsZero(common.keep_alive);
    if (unload) {
      server->scheduler_.Unload(load.key);
    } else {
      if (!server->AcquireSlot(load, common.num_ctx, common.keep_alive, false, watch, &lease,
                               res)) {
        return;
      }
      server->scheduler_.Release(lease, common.keep_alive);
    }
    SendJson(res, 200,
             Json{{"model", name},
                  {"created_at", NowUtc()},
                  {key, std::move(empty)},
                  {"done", true},
                  {"done_reason", unload ? "unload" : "load"}});
  }

  // Frees the slot as soon as the answer is over, not when the last reference goes.
  void Finish() {
    if (outcome == Outcome::kRunning) SetOutcome(Outcome::kCancelled);
    if (leased) {
      leased = false;
      server->scheduler_.Release(lease, keep_alive);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// SimServer

SimServer::SimServer(SimConfig config, std::vector<SimModel> models)
    : startup_config_(config), startup_models_(models), config_(config) {
  fail_remaining_ = config.fail_times;
  for (SimModel& m : models) models_[m.key] = std::move(m);
  scheduler_.SetLimits(LimitsOf(config));
}

SimServer::~SimServer() { Shutdown(); }

void SimServer::Shutdown() {
  shutting_down_ = true;
  scheduler_.Shutdown();
  gate_.Shutdown();
}

SimConfig SimServer::Config() const {
  std::lock_guard<std::mutex> lock(config_mu_);
  return config_;
}

std::optional<SimModel> SimServer::FindModel(std::string_view name) const {
  std::optional<std::string> key = CanonicalModelKey(name);
  if (!key) return std::nullopt;
  std::lock_guard<std::mutex> lock(models_mu_);
  auto it = models_.find(*key);
  if (it == models_.end()) return std::nullopt;
  return it->second;
}

void SimServer::InstallModel(SimModel model) {
  std::lock_guard<std::mutex> lock(models_mu_);
  models_[model.key] = std::move(model);
}

FailMode SimServer::TakeFailure(bool inference, bool has_tokens) {
  std::lock_guard<std::mutex> lock(config_mu_);
  const FailMode mode = config_.fail;
  if (mode == FailMode::kNone) return mode;
  if (!inference && !config_.fail_all_routes) return FailMode::kNone;
  if (IsMidStream(mode) && !has_tokens) return FailMode::kNone;
  if (config_.fail_times > 0 && --fail_remaining_ <= 0) config_.fail = FailMode::kNone;
  return mode;
}

bool SimServer::Cancelled(ConnectionWatch& watch) const {
  return shutting_down_.load() || watch.ClientGone();
}

bool SimServer::Sleep(milliseconds duration, ConnectionWatch& watch) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (true) {
    if (Cancelled(watch)) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(deadline - now, milliseconds(20)));
  }
}

void SimServer::CountCancelled() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++cancelled_;
}

void SimServer::CountCompleted() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++completed_;
}

void SimServer::CountInjected() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++injected_;
}

bool SimServer::FailBeforeAnswer(FailMode mode, bool openai, ConnectionWatch& watch,
                                 const SimConfig& config, httplib::Response& res) {
  switch (mode) {
    case FailMode::kError500:
      CountInjected();
      ErrorFor(res, 500, kLoadFailureText, openai);
      return true;
    case FailMode::kBusy503:
      CountInjected();
      ErrorFor(res, 503, kBusyText, openai);
      return true;
    case FailMode::kHang:
      CountInjected();
      while (Sleep(milliseconds(1000), watch)) {
      }
      if (!shutting_down_) CountCancelled();
      AnswerCanceled(res, openai);
      return true;
    case FailMode::kGarbage:
      CountInjected();
      WriteGarbage(watch);
      res.status = 200;
      return true;
    case FailMode::kNotHttp:
      CountInjected();
      WriteNotHttp(watch);
      res.status = 200;
      return true;
    case FailMode::kSlowHeaders:
      CountInjected();
      if (!Sleep(milliseconds(config.slow_headers_ms), watch)) {
        CountCancelled();
        AnswerCanceled(res, openai);
        return true;
      }
      return false;
    default:
      return false;
  }
}

bool SimServer::AcquireSlot(const SimModel& model, int num_ctx, const KeepAlive& keep_alive,
                            bool openai, ConnectionWatch& watch, Scheduler::Lease* lease,
                            httplib::Response& res) {
  switch (scheduler_.Acquire(
      model, num_ctx, keep_alive, [&] { return Cancelled(watch); }, lease)) {
    case Scheduler::Result::kReady:
      return true;
    case Scheduler::Result::kBusy:
      ErrorFor(res, 503, kBusyText, openai);
      return false;
    case Scheduler::Result::kCancelled:
      CountCancelled();
      AnswerCanceled(res, openai);
      return false;
    case Scheduler::Result::kShutdown:
      ErrorFor(res, 503, "server shutting down", openai);
      return false;
  }
  return false;
}

std::optional<SimModel> SimServer::FindRequestedModel(const std::string& name, bool openai,
                                                      httplib::Response& res) const {
  if (!ParseModelName(name)) {
    ErrorFor(res, 400, "invalid model name", openai);
    return std::nullopt;
  }
  std::optional<SimModel> model = FindModel(name);
  if (!model) ErrorFor(res, 404, "model '" + name + "' not found", openai);
  return model;
}

bool SimServer::RunEmbedding(const SimModel& model, int num_ctx, const KeepAlive& keep_alive,
                             bool has_input, bool openai, ConnectionWatch& watch,
                             Scheduler::Lease* lease, httplib::Response& res) {
  const SimConfig config = Config();
  if (FailBeforeAnswer(TakeFailure(true, false), openai, watch, config, res)) return false;
  if (!AcquireSlot(model, num_ctx, keep_alive, openai, watch, lease, res)) return false;
  const bool computed = !has_input || config.fast || config.token_interval_ms <= 0 ||
                        Sleep(milliseconds(config.token_interval_ms), watch);
  scheduler_.Release(*lease, keep_alive);
  if (!computed) {
    CountCancelled();
    AnswerCanceled(res, openai);
    return false;
  }
  return true;
}

void SimServer::Respond(std::shared_ptr<Generation> gen, httplib::Response& res) {
  if (!gen->stream) {
    for (size_t i = 0;; ++i) {
      if (IsMidStream(gen->fail) && static_cast<int>(i) >= gen->config.fail_after) {
        gen->InjectMidStreamFailure();
        if (gen->fail == FailMode::kDropMidStream) {
          const int fd = gen->watch.Fd();
          if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
        }
        gen->Finish();
        if (gen->fail == FailMode::kStallMidStream) {
          AnswerCanceled(res, gen->openai());
        } else {
          ErrorFor(res, 500, kMidStreamErrorText, gen->openai());
        }
        return;
      }
      if (i == gen->pieces.size()) break;
      if (!gen->AwaitPiece()) {
        gen->Finish();
        AnswerCanceled(res, gen->openai());
        return;
      }
      ++gen->next;
    }
    SendJson(res, 200, gen->WholeAnswer());
    gen->SetOutcome(Generation::Outcome::kCompleted);
    gen->Finish();
    return;
  }

  // Headers go out only once the first line exists, as on a real node.
  if (!gen->Produce()) {
    gen->Finish();
    AnswerCanceled(res, gen->openai());
    return;
  }
  res.status = 200;
  res.set_chunked_content_provider(
      gen->openai() ? kSseType : kNdjsonType,
      [gen](size_t, httplib::DataSink& sink) {
        if (IsMidStream(gen->fail) && gen->written >= gen->config.fail_after) {
          gen->InjectMidStreamFailure();
          if (gen->fail == FailMode::kDropMidStream || gen->fail == FailMode::kStallMidStream) {
            return false;
          }
          const std::string line = gen->ErrorLine();
          sink.write(line.data(), line.size());
          sink.done();
          return true;
        }
        if (!sink.write(gen->pending.data(), gen->pending.size())) {
          gen->SetOutcome(Generation::Outcome::kCancelled);
          return false;
        }
        if (gen->final_produced) {
          sink.done();
          gen->SetOutcome(Generation::Outcome::kCompleted);
          gen->Finish();
          return true;
        }
        ++gen->written;
        if (!gen->Produce()) {
          gen->SetOutcome(Generation::Outcome::kCancelled);
          return false;
        }
        return true;
      },
      [gen](bool) { gen->Finish(); });
}

void SimServer::RecordRequest(const httplib::Request& req) {
  Json headers = Json::object();
  Json header_list = Json::array();
  for (const auto& [name, value] : WireHeaders(req)) {
    const std::string lower = absl::AsciiStrToLower(name);
    header_list.push_back(Json::array({name, value}));
    if (headers.contains(lower)) {
      headers[lower] = headers[lower].get<std::string>() + ", " + value;
    } else {
      headers[lower] = value;
    }
  }
  Json entry{{"method", req.method},           {"path", req.path},   {"target", req.target},
             {"remote_addr", req.remote_addr}, {"headers", headers}, {"header_list", header_list},
             {"body_size", req.body.size()}};
  const std::string body = req.body.substr(0, kMaxRecordedBody);
  if (IsValidUtf8(body)) {
    entry["body"] = body;
  } else {
    entry["body_base64"] = Base64(body);
  }
  if (req.body.size() > kMaxRecordedBody) entry["body_truncated"] = true;
  const int keep = Config().keep_requests;
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++requests_total_;
  ++requests_by_path_[req.path];
  last_requests_.push_back(std::move(entry));
  while (static_cast<int>(last_requests_.size()) > keep) last_requests_.pop_front();
}

void SimServer::Register(httplib::Server& server) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1000);
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        NativeError(res, 500, what);
      });

  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  // Ollama routes are recorded for /_sim/stats once the body has been read, before the handler
  // runs (so a request that hangs or waits is visible at once).
  const auto recorded = [this](httplib::Server::Handler handler) {
    return [this, handler](Req req, Res res) {
      RecordRequest(req);
      handler(req, res);
    };
  };
  server.Get("/", recorded([](Req, Res res) {
               SendText(res, 200, "Ollama is running", "text/plain; charset=utf-8");
             }));
  server.Get("/api/version", recorded([this](Req, Res res) {
               SendJson(res, 200, Json{{"version", Config().version}});
             }));
  server.Get("/api/tags", recorded([this](Req req, Res res) { HandleTags(req, res); }));
  server.Get("/api/ps", recorded([this](Req req, Res res) { HandlePs(req, res); }));
  server.Post("/api/generate", recorded([this](Req req, Res res) { HandleGenerate(req, res); }));
  server.Post("/api/chat", recorded([this](Req req, Res res) { HandleChat(req, res); }));
  server.Post("/api/embed", recorded([this](Req req, Res res) { HandleEmbed(req, res); }));
  server.Post("/api/embeddings",
              recorded([this](Req req, Res res) { HandleEmbeddings(req, res); }));
  server.Post("/api/show", recorded([this](Req req, Res res) { HandleShow(req, res); }));
  server.Post("/api/pull", recorded([this](Req req, Res res) { HandlePull(req, res); }));
  server.Post("/api/push", recorded([this](Req req, Res res) { HandlePush(req, res); }));
  server.Post("/api/create", recorded([this](Req req, Res res) { HandleCreate(req, res); }));
  server.Post("/api/copy", recorded([this](Req req, Res res) { HandleCopy(req, res); }));
  server.Delete("/api/delete", recorded([this](Req req, Res res) { HandleDelete(req, res); }));
  server.Get("/api/blobs/([^/]+)", recorded([this](Req req, Res res) { HandleBlob(req, res); }));
  server.Post("/api/blobs/([^/]+)", recorded([this](Req req, Res res) { HandleBlob(req, res); }));
  server.Post("/v1/chat/completions",
              recorded([this](Req req, Res res) { HandleOpenAiChat(req, res); }));
  server.Post("/v1/completions",
              recorded([this](Req req, Res res) { HandleOpenAiCompletion(req, res); }));
  server.Post("/v1/embeddings",
              recorded([this](Req req, Res res) { HandleOpenAiEmbeddings(req, res); }));
  server.Get("/v1/models", recorded([this](Req req, Res res) { HandleOpenAiModels(req, res); }));
  server.Get("/v1/models/([^/]+)",
             recorded([this](Req req, Res res) { HandleOpenAiModel(req, res); }));

  server.Get("/_sim/stats", [this](Req req, Res res) { HandleStats(req, res); });
  server.Get("/_sim/config", [this](Req req, Res res) { HandleConfig(req, res); });
  server.Post("/_sim/config", [this](Req req, Res res) { HandleConfig(req, res); });
  server.Post("/_sim/release", [this](Req req, Res res) { HandleRelease(req, res); });
  server.Post("/_sim/reset", [this](Req req, Res res) { HandleReset(req, res); });

  // Last: whatever no route took is a 404 or a 405, with Go's plain-text bodies.
  const auto unrouted = [this](Req req, Res res) { HandleUnrouted(req, res); };
  server.Get(".*", recorded(unrouted));
  server.Post(".*", recorded(unrouted));
  server.Put(".*", recorded(unrouted));
  server.Patch(".*", recorded(unrouted));
  server.Delete(".*", recorded(unrouted));
  server.Options(".*", recorded(unrouted));
}

void SimServer::HandleUnrouted(const httplib::Request& req, httplib::Response& res) {
  const std::string allowed = AllowedMethods(req.path);
  if (req.method == "OPTIONS" && req.has_header("Origin")) {
    res.status = 204;  // CORS preflight is answered before routing
    return;
  }
  if (!allowed.empty()) {
    MethodNotAllowed(res);
    return;
  }
  if (req.path.size() > 1 && req.path.back() == '/' &&
      !AllowedMethods(req.path.substr(0, req.path.size() - 1)).empty()) {
    std::string location = req.path.substr(0, req.path.size() - 1);
    const size_t query = req.target.find('?');
    if (query != std::string::npos) location += req.target.substr(query);
    res.status = (req.method == "GET" || req.method == "HEAD") ? 301 : 307;
    res.set_header("Location", location);
    return;
  }
  SendText(res, 404, "404 page not found", "text/plain");
}

// ---------------------------------------------------------------------------------------------
// Discovery

void SimServer::HandleTags(const httplib::Request&, httplib::Response& res) {
  std::vector<SimModel> models;
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    for (const auto& [key, m] : models_) models.push_back(m);
  }
  std::sort(models.begin(), models.end(), [](const SimModel& a, const SimModel& b) {
    return a.modified_unix_seconds != b.modified_unix_seconds
               ? a.modified_unix_seconds > b.modified_unix_seconds
               : a.modified_nanos > b.modified_nanos;
  });
  Json list = Json::array();
  for (const SimModel& m : models) list.push_back(TagsEntry(m));
  SendJson(res, 200, Json{{"models", list}});
}

void SimServer::HandlePs(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "HEAD") {
    MethodNotAllowed(res);
    return;
  }
  SendJson(res, 200, scheduler_.PsJson());
}

void SimServer::HandleShow(const httplib::Request& req, httplib::Response& res) {
  std::optional<Json> body = ReadBody(req, false, res);
  if (!body) return;
  const std::string name = FirstNonEmptyString(*body, {"model", "name"});
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<ModelRef> ref = ParseModelName(name);
  if (!ref) return NativeError(res, 400, "invalid model name");
  ConnectionWatch watch(req);
  if (FailBeforeAnswer(TakeFailure(false, false), false, watch, Config(), res)) return;
  std::optional<SimModel> model = FindModel(name);
  if (!model) return NativeError(res, 404, "model '" + DisplayName(*ref) + "' not found");
  const std::string family = model->family;
  Json info{{"general.architecture", family},
            {"general.parameter_count", static_cast<int64_t>(model->size * 8 / 5)},
            {family + ".context_length", model->context_length},
            {family + ".embedding_length", model->embedding_length}};
  const bool embedding = model->Has("embedding");
  Json out{
      {"license", "Simulated model: no license text."},
      {"modelfile",
       "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile "
       "based on this, replace FROM with:\n# FROM " +
           model->name + "\n\nFROM " + model->name + "\n"},
      {"parameters", embedding
                         ? "num_ctx                        " + std::to_string(model->context_length)
                         : "stop                           \"<|eot_id|>\""},
      {"template",
       embedding
           ? "{{ .Prompt }}"
           : "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>"},
      {"details", DetailsJson(*model, false)},
      {"model_info", info},
      {"capabilities", model->capabilities},
      {"modified_at", FormatLocal(model->modified_unix_seconds, model->modified_nanos)}};
  SendJson(res, 200, out);
}

// ---------------------------------------------------------------------------------------------
// Native inference

void SimServer::HandleGenerate(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(this, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, true, false, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return NativeError(res, 404, "model '' not found");
  const bool raw = BoolField(body, "raw");
  if (raw && (!StringField(body, "template").empty() || !StringField(body, "system").empty() ||
              FindField(body, "context") != nullptr)) {
    return NativeError(res, 400, "raw mode does not support template, system, or context");
  }
  std::optional<SimModel> model = FindRequestedModel(name, false, res);
  if (!model) return;
  if (!model->Has("completion")) {
    return NativeError(res, 400, "\"" + name + "\" does not support generate");
  }
  bool thinking = false;
  std::string error;
  if (!DecideThinking(common.think, *model, name, &thinking, &error)) {
    return NativeError(res, 400, error);
  }
  const std::string prompt = StringField(body, "prompt");
  gen->fail = TakeFailure(true, !prompt.empty());
  if (FailBeforeAnswer(gen->fail, false, gen->watch, gen->config, res)) return;
  if (prompt.empty()) {
    return gen->AnswerLoadRequest(*model, name, common, "response", "", res);
  }
  gen->with_context = !raw;
  Generation::Start(gen, Api::kGenerate, name, *model, common,
                    PromptTokens(prompt.size() + StringField(body, "system").size()), thinking,
                    nullptr, res);
}

void SimServer::HandleChat(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(this, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, true, false, &body, &common, res)) return;
  // Ollama decodes the whole body before anything else: "messages" of another type than a list
  // (null is an empty list) fails there.
  if (const Json* m = FindField(body, "messages");
      m != nullptr && !m->is_null() && !m->is_array()) {
    return NativeError(res, 400,
                       std::string("json: cannot unmarshal ") + GoJsonTypeName(m->type()) +
                           " into Go struct field ChatRequest.messages of type []api.Message");
  }
  const std::string name = StringField(body, "model");
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<SimModel> model = FindRequestedModel(name, false, res);
  if (!model) return;
  if (!model->Has("completion")) {
    return NativeError(res, 400, "\"" + name + "\" does not support chat");
  }
  const Json* tools = OfferedTools(body);
  if (tools != nullptr && !model->Has("tools")) {
    return NativeError(res, 400, model->QualifiedName() + " does not support tools");
  }
  bool thinking = false;
  std::string error;
  if (!DecideThinking(common.think, *model, name, &thinking, &error)) {
    return NativeError(res, 400, error);
  }
  const Json* messages = FindField(body, "messages");
  const bool empty = messages == nullptr || !messages->is_array() || messages->empty();
  gen->fail = TakeFailure(true, !empty);
  if (FailBeforeAnswer(gen->fail, false, gen->watch, gen->config, res)) return;
  if (empty) {
    return gen->AnswerLoadRequest(*model, name, common, "message",
                                  Json{{"role", "assistant"}, {"content", ""}}, res);
  }
  std::string last_role;
  const size_t prompt_chars = ScanMessages(*messages, &last_role);
  // A model given tools calls one, unless it is answering a tool result.
  const Json call = tools != nullptr && last_role != "tool" ? ToolCallFor(*tools) : Json();
  Generation::Start(gen, Api::kChat, name, *model, common, PromptTokens(prompt_chars), thinking,
                    call.is_null() ? nullptr : &call, res);
}

void SimServer::HandleEmbed(const httplib::Request& req, httplib::Response& res) {
  ConnectionWatch watch(req);
  const auto started = std::chrono::steady_clock::now();
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, false, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return NativeError(res, 404, "model '' not found");
  if (!ParseModelName(name)) return NativeError(res, 400, "invalid model name");
  std::vector<std::string> inputs;
  if (const Json* input = FindField(body, "input"); input != nullptr && !input->is_null()) {
    if (input->is_string()) {
      if (!input->get<std::string>().empty()) inputs.push_back(input->get<std::string>());
    } else if (input->is_array()) {
      for (const Json& item : *input) {
        if (!item.is_string()) return NativeError(res, 400, "invalid input type");
        inputs.push_back(item.get<std::string>());
      }
    } else {
      return NativeError(res, 400, "invalid input type");
    }
  }
  std::optional<SimModel> model = FindModel(name);
  if (!model) return NativeError(res, 404, "model '" + name + "' not found");
  const Json* truncate = FindField(body, "truncate");
  size_t chars = 0;
  for (const std::string& s : inputs) {
    chars += s.size();
    if (truncate != nullptr && truncate->is_boolean() && !truncate->get<bool>() &&
        PromptTokens(s.size()) > model->context_length) {
      return NativeError(res, 400, "the input length exceeds the context length");
    }
  }
  Scheduler::Lease lease;
  if (!RunEmbedding(*model, common.num_ctx, common.keep_alive, !inputs.empty(), false, watch,
                    &lease, res)) {
    return;
  }
  const int dims = RequestedDimensions(body, model->embedding_length);
  Json embeddings = Json::array();
  for (const std::string& s : inputs)
    embeddings.push_back(EmbeddingVector(model->key, s, dims, true));
  Json out{{"model", name}, {"embeddings", embeddings}};
  if (!inputs.empty()) {
    const int64_t load = lease.load_duration.count() > 0 ? lease.load_duration.count() : 1019500;
    out["total_duration"] = std::max<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::steady_clock::now() - started)
                                                  .count(),
                                              load + 1000);
    out["load_duration"] = load;
    out["prompt_eval_count"] = PromptTokens(chars);
  }
  SendJson(res, 200, out);
}

void SimServer::HandleEmbeddings(const httplib::Request& req, httplib::Response& res) {
  ConnectionWatch watch(req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, false, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<SimModel> model = FindModel(name);
  if (!model)
    return NativeError(res, 404, "model \"" + name + "\" not found, try pulling it first");
  const std::string prompt = StringField(body, "prompt");
  Scheduler::Lease lease;
  if (!RunEmbedding(*model, common.num_ctx, common.keep_alive, !prompt.empty(), false, watch,
                    &lease, res)) {
    return;
  }
  Json vector = Json::array();
  if (!prompt.empty()) {
    // The legacy endpoint returns float64 values that are not normalised.
    for (double x : EmbeddingVector(model->key, prompt, model->embedding_length, false)) {
      vector.push_back(x);
    }
  }
  SendJson(res, 200, Json{{"embedding", vector}});
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible layer

void SimServer::HandleOpenAiChat(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(this, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, true, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  const Json* messages = FindField(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return ErrorFor(res, 400, "[] is too short - 'messages'", true);
  }
  if (name.empty()) return ErrorFor(res, 400, "model is required", true);
  std::optional<SimModel> model = FindRequestedModel(name, true, res);
  if (!model) return;
  const Json* tools = OfferedTools(body);
  if (tools != nullptr && !model->Has("tools")) {
    return ErrorFor(res, 400, model->QualifiedName() + " does not support tools", true);
  }
  std::string effort = StringField(body, "reasoning_effort");
  if (const Json* reasoning = FindField(body, "reasoning");
      effort.empty() && reasoning != nullptr && reasoning->is_object()) {
    effort = StringField(*reasoning, "effort");
  }
  const bool thinking = model->Has("thinking") && effort != "none";
  ReadOpenAiOptions(body, &common, &gen->include_usage);
  gen->fail = TakeFailure(true, true);
  if (FailBeforeAnswer(gen->fail, true, gen->watch, gen->config, res)) return;
  std::string last_role;
  const size_t prompt_chars = ScanMessages(*messages, &last_role);
  const Json call = tools != nullptr && last_role != "tool" ? ToolCallFor(*tools) : Json();
  Generation::Start(gen, Api::kOpenAiChat, name, *model, common, PromptTokens(prompt_chars),
                    thinking, call.is_null() ? nullptr : &call, res);
}

void SimServer::HandleOpenAiCompletion(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(this, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, true, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return ErrorFor(res, 404, "model '' not found", true);
  std::optional<SimModel> model = FindRequestedModel(name, true, res);
  if (!model) return;
  if (!model->Has("completion")) {
    return ErrorFor(res, 400, "\"" + name + "\" does not support generate", true);
  }
  ReadOpenAiOptions(body, &common, &gen->include_usage);
  gen->fail = TakeFailure(true, true);
  if (FailBeforeAnswer(gen->fail, true, gen->watch, gen->config, res)) return;
  Generation::Start(gen, Api::kOpenAiCompletion, name, *model, common,
                    PromptTokens(StringField(body, "prompt").size()), false, nullptr, res);
}

void SimServer::HandleOpenAiEmbeddings(const httplib::Request& req, httplib::Response& res) {
  ConnectionWatch watch(req);
  std::optional<Json> body = ReadBody(req, true, res);
  if (!body) return;
  const std::string name = StringField(*body, "model");
  std::vector<std::string> inputs;
  const Json* input = FindField(*body, "input");
  if (input != nullptr && input->is_string()) {
    inputs.push_back(input->get<std::string>());
  } else if (input != nullptr && input->is_array()) {
    for (const Json& item : *input) {
      if (!item.is_string()) return ErrorFor(res, 400, "invalid input", true);
      inputs.push_back(item.get<std::string>());
    }
  }
  if (inputs.empty()) return ErrorFor(res, 400, "invalid input", true);
  if (name.empty()) return ErrorFor(res, 404, "model '' not found", true);
  std::optional<SimModel> model = FindModel(name);
  if (!model) return ErrorFor(res, 404, "model '" + name + "' not found", true);
  Scheduler::Lease lease;
  if (!RunEmbedding(*model, kDefaultNumCtx, KeepAlive{false, std::chrono::minutes(5)}, true, true,
                    watch, &lease, res)) {
    return;
  }
  const int dims = RequestedDimensions(*body, model->embedding_length);
  const bool base64 = StringField(*body, "encoding_format") == "base64";
  Json data = Json::array();
  size_t chars = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    chars += inputs[i].size();
    std::vector<double> v = EmbeddingVector(model->key, inputs[i], dims, true);
    Json embedding;
    if (base64) {
      std::string bytes;
      for (double x : v) {
        const float f = static_cast<float>(x);
        char raw[sizeof f];
        std::memcpy(raw, &f, sizeof f);  // little-endian on every platform we build for
        bytes.append(raw, sizeof raw);
      }
      embedding = Base64(bytes);
    } else {
      embedding = v;
    }
    data.push_back(Json{{"object", "embedding"}, {"embedding", embedding}, {"index", i}});
  }
  const int tokens = PromptTokens(chars);
  SendJson(res, 200,
           Json{{"object", "list"},
                {"data", data},
                {"model", name},
                {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void SimServer::HandleOpenAiModels(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "HEAD") return MethodNotAllowed(res);
  Json data = Json::array();
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    for (const auto& [key, m] : models_) {
      data.push_back(Json{{"id", m.name},
                          {"object", "model"},
                          {"created", m.modified_unix_seconds},
                          {"owned_by", m.ref.namespace_}});
    }
  }
  // Ollama itself sends null for an empty list.
  SendJson(res, 200, Json{{"object", "list"}, {"data", data.empty() ? Json(nullptr) : data}});
}

void SimServer::HandleOpenAiModel(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "HEAD") return MethodNotAllowed(res);
  const std::string id = httplib::detail::decode_url(req.matches[1].str(), false);
  std::optional<ModelRef> ref = ParseModelName(id);
  std::optional<SimModel> model = FindModel(id);
  if (!model) {
    return ErrorFor(res, 404, "model '" + (ref ? DisplayName(*ref) : id) + "' not found", true);
  }
  SendJson(res, 200,
           Json{{"id", id},
                {"object", "model"},
                {"created", model->modified_unix_seconds},
                {"owned_by", model->ref.namespace_}});
}

// ---------------------------------------------------------------------------------------------
// Model management

namespace {

bool IsErrorLine(const Json& line) { return line.contains("error"); }

std::string ShortDigest(const std::string& digest) { return digest.substr(7, 12); }

void SetModifiedNow(SimModel* model) {
  const int64_t ns = UnixNanos(std::chrono::system_clock::now());
  model->modified_unix_seconds = ns / 1000000000;
  model->modified_nanos = static_cast<int>(ns % 1000000000);
}

// Progress lines of a download (or of a check that every layer is already there).
void AppendLayerLines(const SimModel& model, bool present, const char* verb,
                      std::vector<Json>* lines) {
  for (const Layer& layer : LayersOf(model)) {
    const std::string status = std::string(verb) + " " + ShortDigest(layer.digest);
    if (present) {
      lines->push_back(Json{{"status", status},
                            {"digest", layer.digest},
                            {"total", layer.size},
                            {"completed", layer.size}});
      continue;
    }
    lines->push_back(Json{{"status", status}, {"digest", layer.digest}, {"total", layer.size}});
    const int steps = layer.size > (1 << 20) ? 5 : 1;
    for (int k = 1; k <= steps; ++k) {
      lines->push_back(Json{{"status", status},
                            {"digest", layer.digest},
                            {"total", layer.size},
                            {"completed", layer.size * k / steps}});
    }
  }
}

// What a pull shows of a model it downloads (or finds already `present`).
void AppendPullLines(const SimModel& model, bool present, std::vector<Json>* lines) {
  lines->push_back(Json{{"status", "pulling manifest"}});
  AppendLayerLines(model, present, "pulling", lines);
  lines->push_back(Json{{"status", "verifying sha256 digest"}});
}

// The last lines of a pull or create that worked.
void AppendManifestLines(std::vector<Json>* lines) {
  lines->push_back(Json{{"status", "writing manifest"}});
  lines->push_back(Json{{"status", "success"}});
}

// Gives a model (a copy, or a new one based on another) its own name.
void Rename(SimModel* model, const ModelRef& ref) {
  model->ref = ref;
  model->name = DisplayName(ref);
  model->key = CanonicalKey(ref);
}

std::string ManifestPath(const ModelRef& ref) {
  return "/root/.ollama/models/manifests/" + ref.host + "/" + ref.namespace_ + "/" + ref.model +
         "/" + ref.tag;
}

}  // namespace

void SimServer::RespondWithStatusLines(std::shared_ptr<ConnectionWatch> watch,
                                       std::vector<Json> lines, std::function<void()> install,
                                       bool stream, const SimConfig& config,
                                       httplib::Response& res) {
  const int interval_ms = config.fast ? 0 : config.pull_interval_ms;
  if (!stream) {
    for (const Json& line : lines) {
      if (IsErrorLine(line)) return SendJson(res, 500, line);
    }
    if (interval_ms > 0 &&
        !Sleep(milliseconds(interval_ms * static_cast<int>(lines.size())), *watch)) {
      return AnswerCanceled(res, false);
    }
    install();
    return SendJson(res, 200, Json{{"status", "success"}});
  }
  struct State {
    std::vector<Json> lines;
    size_t next = 0;
  };
  auto state = std::make_shared<State>();
  state->lines = std::move(lines);
  res.status = 200;
  res.set_chunked_content_provider(
      kNdjsonType, [this, state, watch, install, interval_ms](size_t, httplib::DataSink& sink) {
        if (state->next >= state->lines.size()) {
          sink.done();
          return true;
        }
        if (state->next > 0 && interval_ms > 0 && !Sleep(milliseconds(interval_ms), *watch)) {
          return false;
        }
        const Json& line = state->lines[state->next++];
        if (line.value("status", "") == "success") install();
        const std::string text = GoJson(line) + "\n";
        if (!sink.write(text.data(), text.size())) return false;
        if (IsErrorLine(line)) {
          sink.done();  // Ollama ends the stream after an error line
          state->next = state->lines.size();
        }
        return true;
      });
}

bool SimServer::InRegistry(const ModelRef& ref) const {
  if (InBuiltInRegistry(ref)) return true;
  std::lock_guard<std::mutex> lock(models_mu_);
  return pullable_.count(CanonicalKey(ref)) > 0;
}

void SimServer::HandlePull(const httplib::Request& req, httplib::Response& res) {
  auto watch = std::make_shared<ConnectionWatch>(req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, true, false, &body, &common, res)) return;
  const std::string name = FirstNonEmptyString(body, {"model", "name"});
  std::optional<ModelRef> ref = ParseModelName(name);
  if (!ref) return NativeError(res, 400, "invalid model name");
  const SimConfig config = Config();
  if (FailBeforeAnswer(TakeFailure(false, false), false, *watch, config, res)) return;

  std::optional<SimModel> installed = FindModel(name);
  std::vector<Json> lines;
  std::function<void()> install = [] {};
  if (!installed && !InRegistry(*ref)) {
    lines.push_back(Json{{"status", "pulling manifest"}});
    lines.push_back(Json{{"error", "pull model manifest: file does not exist"}});
  } else {
    SimModel model = installed ? *installed : *MakeModel(name);
    AppendPullLines(model, installed.has_value(), &lines);
    AppendManifestLines(&lines);
    if (!installed) {
      SetModifiedNow(&model);
      install = [this, model] { InstallModel(model); };
    }
  }
  RespondWithStatusLines(watch, std::move(lines), install, common.stream, config, res);
}

void SimServer::HandlePush(const httplib::Request& req, httplib::Response& res) {
  auto watch = std::make_shared<ConnectionWatch>(req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, true, false, &body, &common, res)) return;
  const std::string name = FirstNonEmptyString(body, {"model", "name"});
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<ModelRef> ref = ParseModelName(name);
  if (!ref) return NativeError(res, 400, "invalid model name");
  const SimConfig config = Config();
  if (FailBeforeAnswer(TakeFailure(false, false), false, *watch, config, res)) return;
  std::vector<Json> lines{Json{{"status", "retrieving manifest"}}};
  if (std::optional<SimModel> model = FindModel(name)) {
    AppendLayerLines(*model, true, "pushing", &lines);
    lines.push_back(Json{{"status", "pushing manifest"}});
    lines.push_back(Json{{"status", "success"}});
  } else {
    lines.push_back(Json{{"error", "open " + ManifestPath(*ref) + ": no such file or directory"}});
  }
  RespondWithStatusLines(
      watch, std::move(lines), [] {}, common.stream, config, res);
}

void SimServer::HandleCreate(const httplib::Request& req, httplib::Response& res) {
  auto watch = std::make_shared<ConnectionWatch>(req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, true, false, &body, &common, res)) return;
  const std::string name = FirstNonEmptyString(body, {"model", "name"});
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<ModelRef> ref = ParseModelName(name);
  if (!ref) return NativeError(res, 400, "invalid model name");
  const std::string from = StringField(body, "from");
  const Json* files = FindField(body, "files");
  const bool has_files = files != nullptr && files->is_object() && !files->empty();
  if (from.empty() && !has_files) {
    return NativeError(res, 400, "neither 'from' or 'files' was specified");
  }
  const SimConfig config = Config();
  if (FailBeforeAnswer(TakeFailure(false, false), false, *watch, config, res)) return;

  std::vector<Json> lines;
  std::optional<SimModel> created;
  if (!from.empty()) {
    std::optional<SimModel> base = FindModel(from);
    std::optional<ModelRef> from_ref = ParseModelName(from);
    if (!base && from_ref && InRegistry(*from_ref)) {
      base = *MakeModel(from);
      AppendPullLines(*base, false, &lines);
    }
    if (!base) {
      lines.push_back(Json{{"error", "pull model manifest: file does not exist"}});
    } else {
      for (const Layer& layer : LayersOf(*base)) {
        lines.push_back(Json{{"status", "using existing layer " + layer.digest}});
      }
      created = *base;
    }
  } else {
    int64_t total = 0;
    std::lock_guard<std::mutex> lock(models_mu_);
    for (auto it = files->begin(); it != files->end(); ++it) {
      const std::string digest = it.value().is_string() ? it.value().get<std::string>() : "";
      auto blob = blobs_.find(digest);
      if (blob == blobs_.end()) {
        lines.push_back(Json{{"error", "file " + it.key() + " (" + digest + ") does not exist"}});
        break;
      }
      total += blob->second;
      lines.push_back(Json{{"status", "using existing layer " + digest}});
    }
    if (lines.empty() || !IsErrorLine(lines.back())) {
      absl::StatusOr<SimModel> m = MakeModel(name, std::max<int64_t>(total, 1));
      if (m.ok()) created = *m;
    }
  }
  if (created) {
    for (const char* key : {"system", "template"}) {
      const std::string text = StringField(body, key);
      if (!text.empty()) {
        lines.push_back(Json{{"status", "creating new layer sha256:" + Sha256Hex(text)}});
      }
    }
    SimModel model = *created;
    Rename(&model, *ref);
    model.digest =
        Sha256Hex("corral-sim manifest " + model.key + " from " + created->digest + GoJson(body));
    SetModifiedNow(&model);
    AppendManifestLines(&lines);
    created = model;
  }
  std::function<void()> install = [] {};
  if (created) install = [this, model = *created] { InstallModel(model); };
  RespondWithStatusLines(watch, std::move(lines), install, common.stream, config, res);
}

void SimServer::HandleCopy(const httplib::Request& req, httplib::Response& res) {
  std::optional<Json> body = ReadBody(req, false, res);
  if (!body) return;
  const std::string source = StringField(*body, "source");
  const std::string destination = StringField(*body, "destination");
  std::optional<ModelRef> dst = ParseModelName(destination);
  if (!ParseModelName(source)) return NativeError(res, 400, "source \"" + source + "\" is invalid");
  if (!dst) return NativeError(res, 400, "destination \"" + destination + "\" is invalid");
  ConnectionWatch watch(req);
  if (FailBeforeAnswer(TakeFailure(false, false), false, watch, Config(), res)) return;
  std::optional<SimModel> model = FindModel(source);
  if (!model) return NativeError(res, 404, "model \"" + source + "\" not found");
  Rename(&*model, *dst);
  SetModifiedNow(&*model);  // same digest: a copy shares the manifest
  InstallModel(*model);
  res.status = 200;
}

void SimServer::HandleDelete(const httplib::Request& req, httplib::Response& res) {
  std::optional<Json> body = ReadBody(req, false, res);
  if (!body) return;
  const std::string name = FirstNonEmptyString(*body, {"model", "name"});
  if (!ParseModelName(name)) return NativeError(res, 400, "name \"" + name + "\" is invalid");
  ConnectionWatch watch(req);
  if (FailBeforeAnswer(TakeFailure(false, false), false, watch, Config(), res)) return;
  std::optional<SimModel> model = FindModel(name);
  if (!model) return NativeError(res, 404, "model '" + name + "' not found");
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    models_.erase(model->key);
  }
  scheduler_.Unload(model->key);
  res.status = 200;
}

void SimServer::HandleBlob(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "GET") return MethodNotAllowed(res);
  std::string digest = req.matches[1].str();
  const bool well_formed =
      digest.size() == 71 &&
      (absl::StartsWith(digest, "sha256:") || absl::StartsWith(digest, "sha256-")) &&
      std::all_of(digest.begin() + 7, digest.end(),
                  [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  if (!well_formed) return NativeError(res, 400, "invalid digest format");
  digest[6] = ':';
  digest = absl::AsciiStrToLower(digest);
  bool exists;
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    exists = blobs_.count(digest) > 0;
  }
  if (req.method == "HEAD") {
    res.status = exists ? 200 : 404;
    return;
  }
  if (exists) {
    res.status = 200;
    return;
  }
  const std::string actual = "sha256:" + Sha256Hex(req.body);
  if (actual != digest) {
    return NativeError(res, 400,
                       "digest mismatch, expected \"" + digest + "\", got \"" + actual + "\"");
  }
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    blobs_[digest] = static_cast<int64_t>(req.body.size());
  }
  res.status = 201;
}

// ---------------------------------------------------------------------------------------------
// Control routes (/_sim/*)

void SimServer::HandleStats(const httplib::Request&, httplib::Response& res) {
  const TokenGate::Status gate = gate_.status();
  Json out;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    Json by_path = Json::object();
    for (const auto& [path, n] : requests_by_path_) by_path[path] = n;
    Json last = Json::array();
    for (const Json& r : last_requests_) last.push_back(r);
    out = Json{
        {"requests", by_path},     {"requests_total", requests_total_}, {"cancelled", cancelled_},
        {"completed", completed_}, {"injected_failures", injected_},    {"last_requests", last}};
  }
  out["active"] = scheduler_.Active();
  out["pending"] = scheduler_.Pending();
  out["loaded"] = scheduler_.LoadedNames();
  out["gate"] = GateJson(gate);
  SendJson(res, 200, out);
}

void SimServer::HandleConfig(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "POST") {
    std::optional<Json> patch = ReadBody(req, false, res);
    if (!patch) return;
    SimConfig next = Config();
    std::string error;
    if (!ApplyConfigJson(*patch, &next, &error)) return NativeError(res, 400, error);

    // Validate the model changes completely before applying any of them.
    std::optional<std::vector<SimModel>> replace;
    std::vector<SimModel> add;
    std::vector<std::string> remove;
    std::vector<std::string> pullable;
    if (const Json* v = FindField(*patch, "models")) {
      absl::StatusOr<std::vector<SimModel>> parsed =
          v->is_string() ? ParseModelList(v->get<std::string>())
                         : absl::InvalidArgumentError("models must be a string");
      if (!parsed.ok()) return NativeError(res, 400, std::string(parsed.status().message()));
      replace = *parsed;
    }
    if (const Json* v = FindField(*patch, "add_models")) {
      if (!v->is_array()) return NativeError(res, 400, "add_models must be an array");
      for (const Json& item : *v) {
        if (item.is_string()) {
          absl::StatusOr<std::vector<SimModel>> parsed = ParseModelList(item.get<std::string>());
          if (!parsed.ok()) return NativeError(res, 400, std::string(parsed.status().message()));
          add.insert(add.end(), parsed->begin(), parsed->end());
          continue;
        }
        if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
          return NativeError(res, 400, "add_models items are \"name[=size]\" or {\"name\":...}");
        }
        std::optional<int64_t> size;
        if (item.contains("size") && item["size"].is_number_integer()) {
          size = item["size"].get<int64_t>();
        }
        absl::StatusOr<SimModel> m = MakeModel(item["name"].get<std::string>(), size);
        if (!m.ok()) return NativeError(res, 400, std::string(m.status().message()));
        if (item.contains("digest") && item["digest"].is_string()) {
          m->digest = item["digest"].get<std::string>();
        }
        if (item.contains("capabilities") && item["capabilities"].is_array()) {
          m->capabilities.clear();
          for (const Json& c : item["capabilities"]) {
            if (c.is_string()) m->capabilities.push_back(c.get<std::string>());
          }
        }
        add.push_back(*m);
      }
    }
    for (const char* key : {"remove_models", "pullable"}) {
      const Json* v = FindField(*patch, key);
      if (v == nullptr) continue;
      if (!v->is_array()) return NativeError(res, 400, std::string(key) + " must be an array");
      for (const Json& item : *v) {
        std::optional<std::string> canonical =
            item.is_string() ? CanonicalModelKey(item.get<std::string>()) : std::nullopt;
        if (!canonical) return NativeError(res, 400, std::string(key) + ": invalid model name");
        (std::string(key) == "remove_models" ? remove : pullable).push_back(*canonical);
      }
    }
    const Json* gated = FindField(*patch, "gated");
    if (gated != nullptr && !gated->is_boolean()) {
      return NativeError(res, 400, "gated must be true or false");
    }

    {
      std::lock_guard<std::mutex> lock(config_mu_);
      config_ = next;
      if (patch->contains("fail") || patch->contains("fail_times")) {
        fail_remaining_ = next.fail_times;
      }
    }
    scheduler_.SetLimits(LimitsOf(next));
    {
      std::lock_guard<std::mutex> lock(models_mu_);
      if (replace) {
        models_.clear();
        for (SimModel& m : *replace) models_[m.key] = m;
      }
      for (SimModel& m : add) models_[m.key] = m;
      for (const std::string& key : remove) models_.erase(key);
      pullable_.insert(pullable.begin(), pullable.end());
    }
    for (const std::string& key : remove) scheduler_.Unload(key);
    if (gated != nullptr) gate_.SetGated(gated->get<bool>());
  }
  Json out = ConfigJson(Config());
  out["gated"] = gate_.gated();
  Json names = Json::array();
  Json registry = Json::array();
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    for (const auto& [key, m] : models_) names.push_back(m.name);
    for (const std::string& key : pullable_) registry.push_back(key);
  }
  out["models"] = names;
  out["pullable"] = registry;
  SendJson(res, 200, out);
}

void SimServer::HandleRelease(const httplib::Request& req, httplib::Response& res) {
  int tokens = 1;
  if (!req.body.empty()) {
    std::optional<Json> body = ReadBody(req, false, res);
    if (!body) return;
    if (const Json* t = FindField(*body, "tokens")) {
      if (!t->is_number_integer() || t->get<int>() < 0) {
        return NativeError(res, 400, "tokens must be a non-negative integer");
      }
      tokens = t->get<int>();
    }
  }
  gate_.Release(tokens);
  SendJson(res, 200, GateJson(gate_.status()));
}

void SimServer::HandleReset(const httplib::Request&, httplib::Response& res) {
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    config_ = startup_config_;
    fail_remaining_ = startup_config_.fail_times;
  }
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    models_.clear();
    for (const SimModel& m : startup_models_) models_[m.key] = m;
    pullable_.clear();
    blobs_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    requests_by_path_.clear();
    requests_total_ = cancelled_ = completed_ = injected_ = 0;
    last_requests_.clear();
  }
  gate_.SetGated(false);
  scheduler_.SetLimits(LimitsOf(startup_config_));
  scheduler_.UnloadIdle();
  SendJson(res, 200, Json{{"reset", true}});
}

}  // namespace corral::sim
