#include "dataplane/model_routes.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "common/model_name.h"
#include "dataplane/body_peek.h"
#include "dataplane/replies.h"

namespace corral::dataplane {

namespace {

// The Go struct a node decodes an endpoint's body into, as its decoding errors name it; empty
// for an endpoint without a "model" field.
std::string_view RequestStructName(Endpoint ep) {
  switch (ep) {
    case Endpoint::kGenerate:
      return "GenerateRequest";
    case Endpoint::kChat:
      return "ChatRequest";
    case Endpoint::kEmbed:
    case Endpoint::kOpenAIEmbeddings:
      return "EmbedRequest";
    case Endpoint::kEmbeddings:
      return "EmbeddingRequest";
    case Endpoint::kOpenAIChat:
      return "ChatCompletionRequest";
    case Endpoint::kOpenAICompletions:
      return "CompletionRequest";
    case Endpoint::kOpenAIResponses:
      return "ResponsesRequest";
    case Endpoint::kOpenAIMessages:
      return "MessagesRequest";
    case Endpoint::kShow:
      return "ShowRequest";
    case Endpoint::kPull:
      return "PullRequest";
    case Endpoint::kPush:
      return "PushRequest";
    case Endpoint::kCreate:
      return "CreateRequest";
    case Endpoint::kDelete:
      return "DeleteRequest";
    default:
      return "";
  }
}

// The fields routing reads from the call's body; nullopt when the body is answered here: 400
// for a body that is not a JSON object, and for a "model" of the wrong JSON type, which fails a
// node's decoding before anything else (the proxy answers as the node would, in Go's words,
// since it cannot route by it).
std::optional<BodyFields> ReadFields(ProxyCall& call) {
  auto fields = PeekBody(call.body);
  if (!fields.ok()) {
    SetErrorReply(call.res, 400, std::string(fields.status().message()), call.route.openai);
    return std::nullopt;
  }
  const std::string_view name = RequestStructName(call.route.endpoint);
  if (fields->model_type_error && !name.empty()) {
    SetErrorReply(call.res, 400,
                  "json: cannot unmarshal " + *fields->model_type_error + " into Go struct field " +
                      std::string(name) + ".model of type string",
                  call.route.openai);
    return std::nullopt;
  }
  return *std::move(fields);
}

// Points the body's "model" at `target` for a request that named an alias: the node knows
// only the target (it answers 404 for the alias). Every top-level key that Go's decoder would
// read as "model" (ASCII case-insensitively) is replaced by one "model"; the rest of the body
// is kept, re-serialized. False when the body cannot be rewritten (not a JSON object).
bool RewriteModel(std::string* body, const std::string& target) {
  auto json = nlohmann::ordered_json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return false;
  for (auto it = json.begin(); it != json.end();) {
    const std::string& k = it.key();
    const bool is_model =
        k.size() == 5 && std::equal(k.begin(), k.end(), "model", [](char a, char b) {
          return (a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a) == b;
        });
    it = is_model ? json.erase(it) : std::next(it);
  }
  json["model"] = target;
  *body = json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return true;
}

void AnswerNoNode(ProxyCall& call, const std::string& message) {
  call.outcome = RequestOutcome::kNoNode;
  call.error = message;
  call.res.set_header("Retry-After", "1");
  SetErrorReply(call.res, 503, message, call.route.openai);
}

}  // namespace

ModelRoutes::ModelRoutes(Forwarder& forwarder, NodeExchange& exchange, Router& router,
                         BlobLocations& blobs)
    : forwarder_(forwarder), exchange_(exchange), router_(router), blobs_(blobs) {}

bool ModelRoutes::TokenAllowsModel(ProxyCall& call, const std::string& model_key,
                                   const std::string& model, const std::string& alias_key) {
  const corral::v1::InferenceToken* token = call.admitted.token;
  if (token == nullptr || token->models_size() == 0) return true;
  for (const auto& allowed : token->models()) {
    if (allowed == model_key || (!alias_key.empty() && allowed == alias_key)) return true;
  }
  SetErrorReply(call.res, 403, "token '" + token->name() + "' may not use model '" + model + "'",
                call.route.openai);
  return false;
}

void ModelRoutes::Inference(ProxyCall& call) {
  const std::optional<BodyFields> fields = ReadFields(call);
  if (!fields) return;
  const std::string model = fields->ModelOrName();
  const Endpoint ep = call.route.endpoint;
  call.record().model = model;
  if (model.empty()) {
    // Ollama's own answers for a missing model differ by endpoint (ollama-api.md §5.3).
    if (ep == Endpoint::kGenerate || ep == Endpoint::kEmbed) {
      SetErrorReply(call.res, 404, "model '' not found", call.route.openai);
    } else {
      SetErrorReply(call.res, 400, "model is required", call.route.openai);
    }
    return;
  }
  const auto key = CanonicalModelKey(model);
  if (!key) {
    SetErrorReply(call.res, 400, "invalid model name", call.route.openai);
    return;
  }
  std::string routed_key = *key;
  if (const AliasEntry* alias = call.table->Alias(*key)) {
    // A token may name either the alias or the model it stands for.
    if (!TokenAllowsModel(call, alias->target_key, alias->target, *key)) return;
    if (!RewriteModel(&call.body, alias->target)) {
      SetErrorReply(call.res, 400, "invalid request body", call.route.openai);
      return;
    }
    routed_key = alias->target_key;
  } else if (!TokenAllowsModel(call, *key, model)) {
    return;
  }
  call.record().model_key = routed_key;
  LiveRequests::Update(call.admitted.live);
  if (!call.pinned.empty()) {
    forwarder_.InOrder(call, {call.pinned}, routed_key, /*model_limited=*/true);
    return;
  }
  // Unload shortcut: every node where the model is loaded must drop it.
  const bool unload =
      fields->keep_alive_zero && ((ep == Endpoint::kGenerate && fields->prompt_empty) ||
                                  (ep == Endpoint::kChat && fields->messages_empty));
  if (unload) {
    std::vector<std::string> loaded_on;
    for (const NodeEntry& node : call.table->nodes()) {
      if (node.routable && node.loaded_keys.count(routed_key)) loaded_on.push_back(node.name);
    }
    if (!loaded_on.empty()) {
      forwarder_.FanOut(call, loaded_on, routed_key, /*empty_on_success=*/false);
      return;
    }
  }
  forwarder_.ByModel(call, routed_key, model);
}

void ModelRoutes::NodeLocal(ProxyCall& call) {
  const Endpoint ep = call.route.endpoint;
  const bool openai = call.route.openai;
  BodyFields fields;
  if (ep != Endpoint::kOpenAIModel) {
    std::optional<BodyFields> peeked = ReadFields(call);
    if (!peeked) return;
    fields = *std::move(peeked);
  }
  std::string model = ep == Endpoint::kOpenAIModel ? call.route.param : fields.ModelOrName();
  if (ep == Endpoint::kCopy) model = fields.source.value_or("");
  const auto ref = ParseModelName(model);
  // The model the request concerns: its slot on a node counts against it, as inference's does.
  const std::string key = ref ? CanonicalKey(*ref) : "";
  call.record().model = model;
  call.record().model_key = key;
  LiveRequests::Update(call.admitted.live);
  const RoutingTable& table = *call.table;

  std::vector<std::string> holders;  // nodes of the snapshot that list the model
  if (!key.empty()) {
    for (size_t i : table.NodesWithModel(key)) holders.push_back(table.nodes()[i].name);
  }
  if (!call.pinned.empty() && ep != Endpoint::kCopy && ep != Endpoint::kDelete) {
    forwarder_.InOrder(call, {call.pinned}, key);
    return;
  }
  switch (ep) {
    case Endpoint::kShow:
    case Endpoint::kOpenAIModel:
    case Endpoint::kPush: {
      if (model.empty() && ep != Endpoint::kOpenAIModel) {
        SetErrorReply(call.res, 400, "model is required", openai);
        return;
      }
      if (holders.empty()) {
        const std::string shown =
            ep == Endpoint::kOpenAIModel ? model : (ref ? DisplayName(*ref) : model);
        SetErrorReply(call.res, 404, "model '" + shown + "' not found", openai);
        return;
      }
      auto order = OrderByLoad(table, router_, &holders);
      if (order.empty()) {
        AnswerNoNode(call, "no healthy node has model '" + model + "'");
        return;
      }
      forwarder_.InOrder(call, order, key);
      return;
    }
    case Endpoint::kPull: {
      // Prefer a node that lacks the model (that is what the pull is for), least loaded first.
      auto all = OrderByLoad(table, router_, nullptr);
      std::stable_partition(all.begin(), all.end(), [&](const std::string& n) {
        return std::find(holders.begin(), holders.end(), n) == holders.end();
      });
      if (all.empty()) {
        AnswerNoNode(call, "no healthy node to pull on");
        return;
      }
      forwarder_.InOrder(call, all, key);
      return;
    }
    case Endpoint::kCreate: {
      // Sticky with the blobs it names: the node that received them must create the model.
      std::vector<std::string> order;
      const auto body = nlohmann::json::parse(call.body, nullptr, false);
      if (body.is_object()) {
        for (const char* field : {"files", "adapters"}) {
          auto it = body.find(field);
          if (it == body.end() || !it->is_object()) continue;
          for (const auto& [file, digest] : it->items()) {
            if (!digest.is_string()) continue;
            const std::string node = blobs_.Find(digest.get<std::string>());
            if (!node.empty() && std::find(order.begin(), order.end(), node) == order.end()) {
              order.push_back(node);
            }
          }
        }
      }
      if (order.empty()) {
        order = OrderByLoad(table, router_, nullptr);
      } else {
        order.resize(1);  // another node would not have the blobs
      }
      if (order.empty()) {
        AnswerNoNode(call, "no healthy node to create the model on");
        return;
      }
      forwarder_.InOrder(call, order, key);
      return;
    }
    case Endpoint::kCopy:
    case Endpoint::kDelete: {
      if (model.empty()) {
        SetErrorReply(call.res, 400,
                      ep == Endpoint::kCopy ? "source is required" : "model is required", openai);
        return;
      }
      std::vector<std::string> targets;
      if (!call.pinned.empty()) {
        targets.push_back(call.pinned);
      } else {
        for (const std::string& n : holders) {
          const NodeEntry* node = table.FindNode(n);
          if (node && node->routable) targets.push_back(n);
        }
      }
      if (targets.empty()) {
        SetErrorReply(call.res, 404,
                      ep == Endpoint::kCopy ? "model \"" + model + "\" not found"
                                            : "model '" + model + "' not found",
                      openai);
        return;
      }
      forwarder_.FanOut(call, targets, key, /*empty_on_success=*/true);
      return;
    }
    default: {
      auto order = OrderByLoad(table, router_, nullptr);
      if (order.empty()) {
        AnswerNoNode(call, "no healthy node");
        return;
      }
      forwarder_.InOrder(call, order, key);
      return;
    }
  }
}

void ModelRoutes::BlobHead(ProxyCall& call) {
  const std::string& digest = call.route.param;
  // Ask each node in turn whether it holds the blob; the first that does answers.
  for (const std::string& name : BlobCandidates(call, router_, blobs_, digest)) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name);
    if (!lease) continue;
    NodeAnswer answer = exchange_.Send(call, *node);
    if (answer.kind == NodeAnswer::kClientGone) return;
    if (answer.kind == NodeAnswer::kFailed) {
      router_.RecordFailure(name, call.table->policy());
      continue;
    }
    const bool found = answer.conn->status() == 200;
    exchange_.GiveBack(*node, std::move(answer.conn));
    if (found) {
      blobs_.Remember(digest, name);
      call.res.status = 200;
      call.res.set_header(kNodeHeader, name);
      return;
    }
  }
  call.res.status = 404;
}

}  // namespace corral::dataplane
