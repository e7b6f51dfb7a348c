#include "sim/inference_routes.h"

#include <algorithm>
#include <cstring>

#include "common/go_json.h"
#include "sim/generation.h"
#include "sim/replies.h"
#include "sim/request_fields.h"

namespace corral::sim {

using std::chrono::milliseconds;

bool InferenceRoutes::RunEmbedding(const SimModel& model, int num_ctx, const KeepAlive& keep_alive,
                                   bool has_input, bool openai, ConnectionWatch& watch,
                                   Scheduler::Lease* lease, httplib::Response& res) {
  const SimConfig config = node_.Config();
  if (node_.FailBeforeAnswer(node_.TakeFailure(true, false), openai, watch, config, res)) {
    return false;
  }
  if (!node_.AcquireSlot(model, num_ctx, keep_alive, openai, watch, lease, res)) return false;
  const bool computed = !has_input || config.fast || config.token_interval_ms <= 0 ||
                        node_.Sleep(milliseconds(config.token_interval_ms), watch);
  node_.scheduler().Release(*lease, keep_alive);
  if (!computed) {
    node_.CountCancelled();
    AnswerCanceled(res, openai);
    return false;
  }
  return true;
}

void InferenceRoutes::HandleGenerate(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(&node_, req);
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
  std::optional<SimModel> model = node_.FindRequestedModel(name, false, res);
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
  gen->fail = node_.TakeFailure(true, !prompt.empty());
  if (node_.FailBeforeAnswer(gen->fail, false, gen->watch, gen->config, res)) return;
  if (prompt.empty()) {
    return gen->AnswerLoadRequest(*model, name, common, "response", "", res);
  }
  gen->with_context = !raw;
  Generation::Start(gen, Api::kGenerate, name, *model, common,
                    PromptTokens(prompt.size() + StringField(body, "system").size()), thinking,
                    nullptr, res);
}

void InferenceRoutes::HandleChat(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(&node_, req);
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
  std::optional<SimModel> model = node_.FindRequestedModel(name, false, res);
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
  gen->fail = node_.TakeFailure(true, !empty);
  if (node_.FailBeforeAnswer(gen->fail, false, gen->watch, gen->config, res)) return;
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

void InferenceRoutes::HandleEmbed(const httplib::Request& req, httplib::Response& res) {
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
  std::optional<SimModel> model = node_.FindModel(name);
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

void InferenceRoutes::HandleEmbeddings(const httplib::Request& req, httplib::Response& res) {
  ConnectionWatch watch(req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, false, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return NativeError(res, 400, "model is required");
  std::optional<SimModel> model = node_.FindModel(name);
  if (!model) {
    return NativeError(res, 404, "model \"" + name + "\" not found, try pulling it first");
  }
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

void InferenceRoutes::HandleOpenAiChat(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(&node_, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, true, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  const Json* messages = FindField(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return ErrorFor(res, 400, "[] is too short - 'messages'", true);
  }
  if (name.empty()) return ErrorFor(res, 400, "model is required", true);
  std::optional<SimModel> model = node_.FindRequestedModel(name, true, res);
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
  gen->fail = node_.TakeFailure(true, true);
  if (node_.FailBeforeAnswer(gen->fail, true, gen->watch, gen->config, res)) return;
  std::string last_role;
  const size_t prompt_chars = ScanMessages(*messages, &last_role);
  const Json call = tools != nullptr && last_role != "tool" ? ToolCallFor(*tools) : Json();
  Generation::Start(gen, Api::kOpenAiChat, name, *model, common, PromptTokens(prompt_chars),
                    thinking, call.is_null() ? nullptr : &call, res);
}

void InferenceRoutes::HandleOpenAiCompletion(const httplib::Request& req, httplib::Response& res) {
  auto gen = std::make_shared<Generation>(&node_, req);
  Json body;
  CommonFields common;
  if (!ReadCommonRequest(req, false, true, &body, &common, res)) return;
  const std::string name = StringField(body, "model");
  if (name.empty()) return ErrorFor(res, 404, "model '' not found", true);
  std::optional<SimModel> model = node_.FindRequestedModel(name, true, res);
  if (!model) return;
  if (!model->Has("completion")) {
    return ErrorFor(res, 400, "\"" + name + "\" does not support generate", true);
  }
  ReadOpenAiOptions(body, &common, &gen->include_usage);
  gen->fail = node_.TakeFailure(true, true);
  if (node_.FailBeforeAnswer(gen->fail, true, gen->watch, gen->config, res)) return;
  Generation::Start(gen, Api::kOpenAiCompletion, name, *model, common,
                    PromptTokens(StringField(body, "prompt").size()), false, nullptr, res);
}

void InferenceRoutes::HandleOpenAiEmbeddings(const httplib::Request& req, httplib::Response& res) {
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
  std::optional<SimModel> model = node_.FindModel(name);
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

}  // namespace corral::sim
