#include "sim/generation.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/strings/match.h"
#include "sim/replies.h"

namespace corral::sim {
namespace {

using std::chrono::milliseconds;

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

}  // namespace

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

void Generation::Plan(bool thinking, int content_tokens, const Json* tools_call) {
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

std::string Generation::CreatedAt() {
  const int64_t now = UnixNanos(std::chrono::system_clock::now());
  last_created_ns = std::max(now, last_created_ns + 1);
  return FormatUtc(last_created_ns);
}

bool Generation::AwaitPiece() {
  if (!config.fast) {
    int ms = config.token_interval_ms;
    if (next > 0 && config.jitter_ms > 0) {
      ms += RandomBelow(2 * config.jitter_ms + 1) - config.jitter_ms;
    }
    if (ms > 0 && !node->Sleep(milliseconds(ms), watch)) return false;
  }
  if (!node->gate().Pass([this] { return node->Cancelled(watch); })) return false;
  const SteadyTime now = std::chrono::steady_clock::now();
  if (next == 0) first_at = now;
  last_at = now;
  return true;
}

Generation::Metrics Generation::ComputeMetrics() const {
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

void Generation::AddDone(Json& j, const Metrics& m) const {
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

Json Generation::OpenAiToolCall(const Json& native) const {
  return Json{{"id", native["id"]},
              {"index", 0},
              {"type", "function"},
              {"function",
               {{"name", native["function"]["name"]},
                {"arguments", GoJson(native["function"]["arguments"])}}}};
}

std::string Generation::FinishReason() const {
  for (const Piece& p : pieces) {
    if (p.kind == Piece::kToolCall) return "tool_calls";
  }
  return done_reason;
}

Json Generation::OpenAiEnvelope(bool chunk) const {
  const char* object = api != Api::kOpenAiChat ? "text_completion"
                       : chunk                 ? "chat.completion.chunk"
                                               : "chat.completion";
  return Json{{"id", openai_id},
              {"object", object},
              {"created", openai_created},
              {"model", model_echo},
              {"system_fingerprint", "fp_ollama"}};
}

Json Generation::Usage() const {
  const int completion = static_cast<int>(pieces.size());
  return Json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion},
              {"total_tokens", prompt_tokens + completion}};
}

Json Generation::ZeroUsage() {
  return Json{{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
}

std::string Generation::OpenAiStreamEnd(const Json& finish) const {
  std::string out = Sse(finish);
  if (include_usage) {
    Json usage = OpenAiEnvelope(true);
    usage["choices"] = Json::array();
    usage["usage"] = Usage();
    out += Sse(usage);
  }
  return out + "data: [DONE]\n\n";
}

std::string Generation::ChunkFor(const Piece& p) {
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

std::string Generation::FinalChunk(const Piece* tail) {
  const Metrics m = ComputeMetrics();
  switch (api) {
    case Api::kGenerate: {
      Json j{{"model", model_echo}, {"created_at", CreatedAt()}};
      j["response"] = tail != nullptr ? tail->text : "";
      AddDone(j, m);
      return GoJson(j) + "\n";
    }
    case Api::kChat: {
      Json j{{"model", model_echo},
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

Json Generation::ContextTokens(const Metrics& m) const {
  Json context = Json::array();
  const int n = m.prompt_count + m.eval_count;
  for (int i = 0; i < n; ++i) context.push_back((i * 7919 + 128000) % 128256);
  return context;
}

std::string Generation::ErrorLine() {
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

bool Generation::Produce() {
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

Json Generation::WholeAnswer() {
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

void Generation::SetOutcome(Outcome o) {
  if (outcome != Outcome::kRunning) return;
  outcome = o;
  if (o == Outcome::kCompleted) node->CountCompleted();
  if (o == Outcome::kCancelled) node->CountCancelled();
}

void Generation::InjectMidStreamFailure() {
  node->CountInjected();
  outcome = Outcome::kFailed;
  if (fail == FailMode::kDieMidStream) ::_exit(3);
  if (fail == FailMode::kStallMidStream) {
    while (node->Sleep(std::chrono::milliseconds(1000), watch)) {
    }
    if (!node->shutting_down()) node->CountCancelled();
  }
}

void Generation::Start(std::shared_ptr<Generation> gen, Api api, const std::string& name,
                       const SimModel& model, const CommonFields& common, int prompt_tokens,
                       bool thinking, const Json* tool_call, httplib::Response& res) {
  gen->api = api;
  if (!gen->node->AcquireSlot(model, common.num_ctx, common.keep_alive, gen->openai(), gen->watch,
                              &gen->lease, res)) {
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
  Respond(gen, res);
}

void Generation::AnswerLoadRequest(const SimModel& load, const std::string& name,
                                   const CommonFields& common, const char* key, Json empty,
                                   httplib::Response& res) {
  const bool unload = KeepAliveIsZero(common.keep_alive);
  if (unload) {
    node->scheduler().Unload(load.key);
  } else {
    if (!node->AcquireSlot(load, common.num_ctx, common.keep_alive, false, watch, &lease, res)) {
      return;
    }
    node->scheduler().Release(lease, common.keep_alive);
  }
  SendJson(res, 200,
           Json{{"model", name},
                {"created_at", NowUtc()},
                {key, std::move(empty)},
                {"done", true},
                {"done_reason", unload ? "unload" : "load"}});
}

void Generation::Finish() {
  if (outcome == Outcome::kRunning) SetOutcome(Outcome::kCancelled);
  if (leased) {
    leased = false;
    node->scheduler().Release(lease, keep_alive);
  }
}

void Generation::Respond(std::shared_ptr<Generation> gen, httplib::Response& res) {
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

}  // namespace corral::sim
