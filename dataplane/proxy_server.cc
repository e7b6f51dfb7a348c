#include "dataplane/proxy_server.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/ascii.h"
#include "common/http_listener.h"
#include "common/log.h"
#include "common/model_name.h"
#include "dataplane/body_peek.h"
#include "dataplane/client_socket.h"
#include "dataplane/fleet.h"
#include "dataplane/headers.h"
#include "dataplane/replies.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr int kClientNotSearched = -2;
// How long a write to a client may stall before the client counts as gone.
constexpr milliseconds kClientWriteTimeout(30000);
// The largest error body kept from a failing node to pass on if no other node answers.
constexpr size_t kMaxSavedErrorBody = 1 << 20;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool IsStreamType(const std::string& content_type) {
  return absl::StartsWithIgnoreCase(content_type, "text/event-stream");
}

std::string StrategyName(corral::v1::Strategy s) {
  std::string name = corral::v1::Strategy_Name(s);
  if (absl::StartsWith(name, "STRATEGY_")) name = name.substr(9);
  if (name == "UNSPECIFIED") name = "LEAST_ACTIVE";
  return absl::AsciiStrToLower(name);
}

double Finite(double v) { return std::isfinite(v) ? v : 0.0; }

// The largest node answer framed by Content-Length that is read whole before the client gets
// it (so that a node failing inside it can still be replaced by another); a longer one is
// relayed as it arrives.
constexpr size_t kMaxBufferedAnswer = size_t{1} << 20;

// A node's response header never copied to the client (headers.h), or the node header the
// proxy sets itself.
bool DropResponseHeader(std::string_view name, const std::vector<std::string>& connection) {
  return IsDroppedResponseHeader(name, connection) || EqualsIgnoreCase(name, kNodeHeader);
}

}  // namespace

// One client request as the handlers see it.
struct ProxyServer::Call {
  Call(const httplib::Request& r, httplib::Response& s, const RequestHead& h, Admitted& a)
      : req(r), res(s), head(h), admitted(a), route(a.route), table(a.table) {}

  const httplib::Request& req;
  httplib::Response& res;
  // The head as the listener parsed it from the client's bytes: what is forwarded.
  const RequestHead& head;
  Admitted& admitted;  // the front door's decision: token, admission slot, body reservation
  const Route& route;
  const std::shared_ptr<const RoutingTable>& table;
  std::string body;       // the buffered request body
  bool has_body = false;  // a body is sent upstream (POST/DELETE...)
  int client_fd = kClientNotSearched;
  std::string pinned;  // X-Corral-Node
};

struct ProxyServer::NodeAnswer {
  enum Kind { kFailed, kClientGone, kHead } kind = kFailed;
  std::string error;
  std::unique_ptr<UpstreamConnection> conn;
  double latency_ms = 0;
};

struct ProxyServer::SavedResponse {
  bool valid = false;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type;
  std::string body;
  std::string node;
};

ProxyServer::ProxyServer(ProxyOptions options, FrontDoor& front_door, SnapshotStore& store,
                         Router& router, UpstreamPool& pool)
    : options_(std::move(options)),
      front_door_(front_door),
      store_(store),
      router_(router),
      pool_(pool),
      relay_loop_(options_.stream_poll) {}

ProxyServer::~ProxyServer() = default;

void ProxyServer::Install(HttpListener& server) {
  server.set_head_check([this](const RequestHead& head, const std::string& client) {
    return front_door_.Check(head, client);
  });
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1000);
  server.set_keep_alive_timeout(5);
  server.set_read_timeout(30, 0);
  server.set_write_timeout(kClientWriteTimeout.count() / 1000, 0);
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        CORRAL_LOG(kError, "proxy") << req.method << " " << req.path << ": " << what;
        SetErrorReply(res, 500, "internal proxy error: " + what, IsOpenAIPath(req.path));
      });
  auto no_body = [this](const httplib::Request& req, httplib::Response& res) {
    HandleNoBody(req, res);
  };
  auto with_body = [this](const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader) {
    HandleWithBody(req, res, reader);
  };
  server.Get(".*", no_body);
  server.Post(".*", with_body);
  server.Put(".*", with_body);
  server.Patch(".*", with_body);
  server.Delete(".*", with_body);
  server.Options(".*", [this](const httplib::Request& req, httplib::Response& res) {
    HandleOptions(req, res);
  });
}

Admitted* ProxyServer::Prepare(const httplib::Request& req, httplib::Response& res) {
  Admitted* admitted = static_cast<Admitted*>(ServedRequestTicket().get());
  if (admitted == nullptr || ServedRequestHead() == nullptr) {
    SetErrorReply(res, 500, "request reached the proxy without passing its front door",
                  IsOpenAIPath(req.path));
    return nullptr;
  }
  // httplib compresses a response when the client accepts gzip and the content type looks
  // compressible, and then holds a stream back until it ends. The request object is httplib's
  // own non-const local; dropping the header here keeps every answer byte-for-byte as relayed.
  if (req.has_header("Accept-Encoding")) {
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
  }
  // The front door refused origins it does not allow.
  const std::string* origin = ServedRequestHead()->Find("Origin");
  if (origin != nullptr && !origin->empty()) {
    res.set_header("Access-Control-Allow-Origin", front_door_.AnyOrigin() ? "*" : *origin);
    if (!front_door_.AnyOrigin()) res.set_header("Vary", "Origin");
  }
  return admitted;
}

void ProxyServer::HandleOptions(const httplib::Request& req, httplib::Response& res) {
  if (Prepare(req, res) == nullptr) return;
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
  const std::string* asked_header = ServedRequestHead()->Find("Access-Control-Request-Headers");
  const std::string asked = asked_header != nullptr ? *asked_header : "";
  // What a node allows (ollama-api.md §1.1), plus whatever the browser asks for: the proxy does
  // not restrict request headers, the origin check is the gate.
  res.set_header("Access-Control-Allow-Headers",
                 asked.empty() ? "Authorization, Content-Type, User-Agent, Accept, "
                                 "X-Requested-With, OpenAI-Beta, X-Corral-Node"
                               : asked);
  res.set_header("Access-Control-Max-Age", "43200");
}

void ProxyServer::HandleNoBody(const httplib::Request& req, httplib::Response& res) {
  Admitted* admitted = Prepare(req, res);
  if (admitted == nullptr) return;
  Call call(req, res, *ServedRequestHead(), *admitted);
  Dispatch(call);
}

void ProxyServer::HandleWithBody(const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& reader) {
  Admitted* admitted = Prepare(req, res);
  if (admitted == nullptr) return;
  Call call(req, res, *ServedRequestHead(), *admitted);
  if (call.route.endpoint == Endpoint::kBlobUpload) {
    RouteBlobUpload(call, reader);
    return;
  }
  // Only requests that go to a node have a body worth reading (and the front door budgeted
  // only theirs): any other is answered unread, and the listener then ends the connection
  // rather than read the body's rest as a request.
  if (call.route.route_class != RouteClass::kInference &&
      call.route.route_class != RouteClass::kNodeLocal) {
    if (call.head.has_body()) res.set_header("Connection", "close");
    Dispatch(call);
    return;
  }
  // Buffer the body: routing reads `model` from it, and a retry on another node resends it.
  // The front door held a body announced by its length to the limit and reserved its room in
  // the budget; a chunked one takes its room as it arrives.
  const RequestHead& head = call.head;
  if (admitted->drain_body) {
    reader([](const char*, size_t) { return true; });
    SetErrorReply(res, 413,
                  "request body is larger than the proxy's limit of " +
                      std::to_string(front_door_.options().max_body_bytes >> 20) + " MiB",
                  call.route.openai);
    return;
  }
  bool too_large = false;
  bool over_budget = false;
  if (head.framing == BodyFraming::kLength) call.body.reserve(head.content_length);
  if (head.has_body()) {
    const bool ok = reader([&](const char* data, size_t n) {
      if (call.body.size() + n > front_door_.options().max_body_bytes) {
        too_large = true;
        return false;
      }
      if (head.framing == BodyFraming::kChunked && !admitted->body.Grow(n)) {
        over_budget = true;
        return false;
      }
      call.body.append(data, n);
      return true;
    });
    if (!ok) {
      // The rest of the body may still come: the connection ends after this answer.
      res.set_header("Connection", "close");
      if (too_large) {
        SetErrorReply(res, 413,
                      "request body is larger than the proxy's limit of " +
                          std::to_string(front_door_.options().max_body_bytes >> 20) + " MiB",
                      call.route.openai);
      } else if (over_budget) {
        res.set_header("Retry-After", "1");
        SetErrorReply(res, 503,
                      "corral-proxy is holding as many request bodies as its memory budget "
                      "allows, please try again",
                      call.route.openai);
      } else if (!ClientBodyError().empty()) {
        SetErrorReply(res, 400, "invalid chunked request body: " + ClientBodyError(),
                      call.route.openai);
      } else if (ClientReadTimedOut()) {
        SetErrorReply(res, 408,
                      "the request body stopped arriving or came too slowly (the proxy allows " +
                          std::to_string(HttpListener::kBodyGrace.count() / 1000) + " s, then " +
                          std::to_string(HttpListener::kMinBodyRate) +
                          " bytes a second, and a deadline for the whole body)",
                      call.route.openai);
      } else {
        SetErrorReply(res, 400, "the request body could not be read", call.route.openai);
      }
      return;
    }
  }
  call.has_body = true;
  if ((call.route.route_class == RouteClass::kInference ||
       call.route.route_class == RouteClass::kNodeLocal) &&
      !front_door_.TakeSlot(*admitted)) {
    res.set_header("Retry-After", "1");
    SetErrorReply(res, 503, AtLimitMessage(front_door_.options().max_streams), call.route.openai);
  } else {
    Dispatch(call);
  }
  // The body is sent (or the request failed): its room in the budget goes back now, even when
  // a stream goes on.
  call.body.clear();
  call.body.shrink_to_fit();
  admitted->body.Release();
}

void ProxyServer::Dispatch(Call& call) {
  const Route& route = call.route;
  switch (route.route_class) {
    case RouteClass::kError:
      if (route.endpoint == Endpoint::kRedirect) {
        std::string target = route.param;
        const size_t q = call.req.target.find('?');
        if (q != std::string::npos) target += call.req.target.substr(q);
        call.res.set_redirect(target, RedirectStatus(call.req.method));
      } else if (route.endpoint == Endpoint::kMethodNotAllowed) {
        call.res.status = 405;
        call.res.set_content("405 method not allowed", "text/plain");
      } else {
        call.res.status = 404;
        call.res.set_content("404 page not found", "text/plain");
      }
      return;
    case RouteClass::kFleet:
      AnswerFleet(call);
      return;
    case RouteClass::kProxy:
      AnswerProxy(call);
      return;
    case RouteClass::kInference:
    case RouteClass::kNodeLocal:
      break;
  }
  // The front door admitted the request with a snapshot and an admission slot.
  if (!PinnedNode(call, &call.pinned)) return;
  if (route.route_class == RouteClass::kInference) {
    RouteInference(call);
  } else if (route.endpoint == Endpoint::kBlobHead) {
    RouteBlobHead(call);
  } else {
    RouteNodeLocal(call);
  }
}

bool ProxyServer::TokenAllowsModel(Call& call, const std::string& model_key,
                                   const std::string& model) {
  const corral::v1::InferenceToken* token = call.admitted.token;
  if (token == nullptr || token->models_size() == 0) return true;
  for (const auto& allowed : token->models()) {
    if (allowed == model_key) return true;
  }
  SetErrorReply(call.res, 403, "token '" + token->name() + "' may not use model '" + model + "'",
                call.route.openai);
  return false;
}

bool ProxyServer::PinnedNode(Call& call, std::string* node) {
  const std::string* pinned = call.head.Find(kNodeHeader);
  *node = pinned != nullptr ? *pinned : "";
  if (node->empty()) return true;
  if (call.table->FindNode(*node) == nullptr) {
    SetErrorReply(call.res, 400, "unknown node '" + *node + "' in " + kNodeHeader,
                  call.route.openai);
    return false;
  }
  return true;
}

void ProxyServer::AnswerFleet(Call& call) {
  auto& res = call.res;
  static const RoutingTable* const kNoTable = nullptr;
  const RoutingTable* table = call.table ? call.table.get() : kNoTable;
  switch (call.route.endpoint) {
    case Endpoint::kRoot:
      res.set_content("Ollama is running", "text/plain; charset=utf-8");
      return;
    case Endpoint::kVersion:
      res.set_content(
          table ? FleetVersionBody(*table) : DumpJson({{"version", kFallbackOllamaVersion}}),
          kJsonContentType);
      return;
    case Endpoint::kTags:
      res.set_content(table ? FleetTagsBody(*table) : R"({"models":[]})", kJsonContentType);
      return;
    case Endpoint::kPs:
      res.set_content(table ? FleetPsBody(*table) : R"({"models":[]})", kJsonContentType);
      return;
    case Endpoint::kOpenAIModels:
      res.set_content(table ? FleetOpenAIModelsBody(*table) : R"({"object":"list","data":[]})",
                      kJsonContentType);
      return;
    default:
      res.status = 404;
      res.set_content("404 page not found", "text/plain");
  }
}

void ProxyServer::AnswerProxy(Call& call) {
  if (call.route.endpoint == Endpoint::kProxyState) {
    call.res.set_content(StateJson(), kJsonContentType);
    return;
  }
  int available = 0;
  if (call.table) {
    for (const NodeEntry& node : call.table->nodes()) {
      if (node.routable && !router_.IsEjected(node.name)) ++available;
    }
  }
  nlohmann::json body = {{"status", available > 0 ? "ok" : "unavailable"},
                         {"available_nodes", available}};
  if (available == 0) {
    body["error"] = call.table ? "no node can serve requests" : "no routing snapshot yet";
    call.res.status = 503;
    call.res.set_header("Retry-After", "1");
  }
  call.res.set_content(DumpJson(body), kJsonContentType);
}

std::string ProxyServer::StateJson() {
  auto table = store_.Current();
  nlohmann::json nodes = nlohmann::json::array();
  const auto now = Clock::now();
  if (table) {
    for (const NodeEntry& node : table->nodes()) {
      auto rt = router_.Runtime(node.name);
      nlohmann::json per_model = nlohmann::json::object();
      int64_t ejected_ms = 0;
      {
        std::lock_guard<std::mutex> lock(rt->mu);
        for (const auto& [key, n] : rt->model_in_flight) {
          if (n != 0) per_model[key] = n;
        }
        if (rt->ejected_until > now) {
          ejected_ms = std::chrono::duration_cast<milliseconds>(rt->ejected_until - now).count();
        }
      }
      nlohmann::json models = nlohmann::json::array();
      nlohmann::json loaded = nlohmann::json::array();
      if (node.proto) {
        for (const auto& m : node.proto->models()) models.push_back(m.name());
        for (const auto& m : node.proto->loaded_models()) loaded.push_back(m.name());
      }
      nodes.push_back({
          {"name", node.name},
          {"url", node.proto ? node.proto->url() : ""},
          {"admin_state", node.proto ? corral::v1::AdminState_Name(node.proto->admin_state()) : ""},
          {"health", node.proto ? corral::v1::Health_Name(node.proto->health()) : ""},
          {"routable", node.routable},
          {"ejected", ejected_ms > 0},
          {"ejected_for_ms", ejected_ms},
          {"in_flight", rt->in_flight.load()},
          {"model_in_flight", std::move(per_model)},
          {"requests_total", rt->requests_total.load()},
          {"failures_total", rt->failures_total.load()},
          {"latency_ms", Finite(rt->latency_ms.load())},
          {"probe_latency_ms", node.proto ? Finite(node.proto->latency_ms()) : 0.0},
          {"max_parallel", node.proto ? node.proto->max_parallel() : 0},
          {"version", node.proto ? node.proto->version() : ""},
          {"models", std::move(models)},
          {"loaded_models", std::move(loaded)},
      });
    }
  }
  // Open: no inference token is asked for, like Ollama itself (front_door.h FleetClosed).
  const bool open = table == nullptr || !FleetClosed(table->snapshot());
  nlohmann::json state = {
      {"proxy",
       {{"id", options_.proxy_id},
        {"active_requests", front_door_.active()},
        {"max_streams", front_door_.options().max_streams},
        {"open", open},
        {"mode", open ? "open" : "closed"},
        {"body_budget_bytes", front_door_.budget().limit()},
        {"body_budget_used_bytes", front_door_.budget().used()}}},
      {"snapshot",
       {{"version", table ? table->version() : 0},
        {"source", store_.source()},
        {"created_at", table ? table->snapshot().created_at() : ""}}},
      {"strategy", table ? StrategyName(table->policy().strategy) : "least_active"},
      {"nodes", std::move(nodes)},
  };
  return DumpJson(state);
}

std::vector<corral::v1::NodeLoad> ProxyServer::NodeLoads() {
  std::vector<corral::v1::NodeLoad> out;
  auto table = store_.Current();
  if (!table) return out;
  for (const NodeEntry& node : table->nodes()) {
    auto rt = router_.Runtime(node.name);
    corral::v1::NodeLoad load;
    load.set_node(node.name);
    load.set_in_flight(rt->in_flight.load());
    load.set_passive_failures(rt->passive_failures_unreported.exchange(0));
    load.set_ejected(router_.IsEjected(node.name));
    load.set_latency_ms(Finite(rt->latency_ms.load()));
    out.push_back(std::move(load));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Routing decisions

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

// A "model" of the wrong JSON type fails a node's decoding before anything else: the proxy
// answers as the node would (400, Go's words), since it cannot route by it. True when answered.
bool AnswerModelTypeError(const BodyFields& fields, Endpoint ep, bool openai,
                          httplib::Response& res) {
  const std::string_view name = RequestStructName(ep);
  if (!fields.model_type_error || name.empty()) return false;
  SetErrorReply(res, 400,
                "json: cannot unmarshal " + *fields.model_type_error + " into Go struct field " +
                    std::string(name) + ".model of type string",
                openai);
  return true;
}

}  // namespace

void ProxyServer::RouteInference(Call& call) {
  auto fields = PeekBody(call.body);
  if (!fields.ok()) {
    SetErrorReply(call.res, 400, std::string(fields.status().message()), call.route.openai);
    return;
  }
  if (AnswerModelTypeError(*fields, call.route.endpoint, call.route.openai, call.res)) return;
  const std::string model = fields->ModelOrName();
  const Endpoint ep = call.route.endpoint;
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
  if (!TokenAllowsModel(call, *key, model)) return;
  if (!call.pinned.empty()) {
    ForwardToNodes(call, {call.pinned}, *key);
    return;
  }
  // Unload shortcut: every node where the model is loaded must drop it.
  const bool unload =
      fields->keep_alive_zero && ((ep == Endpoint::kGenerate && fields->prompt_empty) ||
                                  (ep == Endpoint::kChat && fields->messages_empty));
  if (unload) {
    std::vector<std::string> loaded_on;
    for (const NodeEntry& node : call.table->nodes()) {
      if (node.routable && node.loaded_keys.count(*key)) loaded_on.push_back(node.name);
    }
    if (!loaded_on.empty()) {
      RouteFanOut(call, loaded_on, /*empty_on_success=*/false);
      return;
    }
  }
  ForwardByModel(call, *key, model);
}

void ProxyServer::RouteNodeLocal(Call& call) {
  const Endpoint ep = call.route.endpoint;
  const bool openai = call.route.openai;
  BodyFields fields;
  if (ep != Endpoint::kOpenAIModel) {
    auto peeked = PeekBody(call.body);
    if (!peeked.ok()) {
      SetErrorReply(call.res, 400, std::string(peeked.status().message()), openai);
      return;
    }
    fields = *std::move(peeked);
    if (AnswerModelTypeError(fields, ep, openai, call.res)) return;
  }
  std::string model = ep == Endpoint::kOpenAIModel ? call.route.param : fields.ModelOrName();
  if (ep == Endpoint::kCopy) model = fields.source.value_or("");
  const auto ref = ParseModelName(model);
  const std::string key = ref ? CanonicalKey(*ref) : "";
  const RoutingTable& table = *call.table;

  std::vector<std::string> holders;  // nodes of the snapshot that list the model
  if (!key.empty()) {
    for (size_t i : table.NodesWithModel(key)) holders.push_back(table.nodes()[i].name);
  }
  if (!call.pinned.empty() && ep != Endpoint::kCopy && ep != Endpoint::kDelete) {
    ForwardToNodes(call, {call.pinned}, "");
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
      auto order = OrderByLoad(table, &holders);
      if (order.empty()) {
        call.res.set_header("Retry-After", "1");
        SetErrorReply(call.res, 503, "no healthy node has model '" + model + "'", openai);
        return;
      }
      ForwardToNodes(call, order, "");
      return;
    }
    case Endpoint::kPull: {
      // Prefer a node that lacks the model (that is what the pull is for), least loaded first.
      auto all = OrderByLoad(table, nullptr);
      std::stable_partition(all.begin(), all.end(), [&](const std::string& n) {
        return std::find(holders.begin(), holders.end(), n) == holders.end();
      });
      if (all.empty()) {
        call.res.set_header("Retry-After", "1");
        SetErrorReply(call.res, 503, "no healthy node to pull on", openai);
        return;
      }
      ForwardToNodes(call, all, "");
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
            const std::string node = BlobNode(digest.get<std::string>());
            if (!node.empty() && std::find(order.begin(), order.end(), node) == order.end()) {
              order.push_back(node);
            }
          }
        }
      }
      if (order.empty()) {
        order = OrderByLoad(table, nullptr);
      } else {
        order.resize(1);  // another node would not have the blobs
      }
      if (order.empty()) {
        call.res.set_header("Retry-After", "1");
        SetErrorReply(call.res, 503, "no healthy node to create the model on", openai);
        return;
      }
      ForwardToNodes(call, order, "");
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
      RouteFanOut(call, targets, /*empty_on_success=*/true);
      return;
    }
    default: {
      auto order = OrderByLoad(table, nullptr);
      if (order.empty()) {
        call.res.set_header("Retry-After", "1");
        SetErrorReply(call.res, 503, "no healthy node", openai);
        return;
      }
      ForwardToNodes(call, order, "");
      return;
    }
  }
}

std::vector<std::string> ProxyServer::OrderByLoad(const RoutingTable& table,
                                                  const std::vector<std::string>* names) const {
  struct Candidate {
    std::string name;
    int64_t in_flight;
    size_t index;
  };
  std::vector<Candidate> candidates;
  for (size_t i = 0; i < table.nodes().size(); ++i) {
    const NodeEntry& node = table.nodes()[i];
    if (!node.routable || router_.IsEjected(node.name)) continue;
    if (names && std::find(names->begin(), names->end(), node.name) == names->end()) continue;
    candidates.push_back({node.name, router_.Runtime(node.name)->in_flight.load(), i});
  }
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [](const Candidate& a, const Candidate& b) { return a.in_flight < b.in_flight; });
  std::vector<std::string> out;
  for (auto& c : candidates) out.push_back(std::move(c.name));
  return out;
}

void ProxyServer::RememberBlob(const std::string& digest, const std::string& node) {
  std::lock_guard<std::mutex> lock(blob_mu_);
  if (blob_nodes_.size() > 100000) blob_nodes_.clear();  // bound memory; a miss only re-probes
  blob_nodes_[digest] = {node, Clock::now() + options_.blob_cache_ttl};
}

std::string ProxyServer::BlobNode(const std::string& digest) {
  std::lock_guard<std::mutex> lock(blob_mu_);
  auto it = blob_nodes_.find(digest);
  if (it == blob_nodes_.end()) return "";
  if (it->second.second < Clock::now()) {
    blob_nodes_.erase(it);
    return "";
  }
  return it->second.first;
}

void ProxyServer::RouteBlobHead(Call& call) {
  const std::string& digest = call.route.param;
  std::vector<std::string> order;
  if (!call.pinned.empty()) {
    order.push_back(call.pinned);
  } else {
    const std::string cached = BlobNode(digest);
    if (!cached.empty()) order.push_back(cached);
    for (auto& n : OrderByLoad(*call.table, nullptr)) {
      if (n != cached) order.push_back(std::move(n));
    }
  }
  // Ask each node in turn whether it holds the blob; the first that does answers.
  for (const std::string& name : order) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name);
    if (!lease) continue;
    NodeAnswer answer = SendToNode(call, *node);
    if (answer.kind == NodeAnswer::kClientGone) return;
    if (answer.kind == NodeAnswer::kFailed) {
      router_.RecordFailure(name, call.table->policy());
      continue;
    }
    if (answer.conn->status() == 200) {
      RememberBlob(digest, name);
      call.res.status = 200;
      call.res.set_header(kNodeHeader, name);
      if (answer.conn->keep_alive() && answer.conn->message_complete()) {
        pool_.Give(node->endpoint, std::move(answer.conn));
      }
      return;
    }
    if (answer.conn->keep_alive() && answer.conn->message_complete()) {
      pool_.Give(node->endpoint, std::move(answer.conn));
    }
  }
  call.res.status = 404;
}

void ProxyServer::RouteFanOut(Call& call, const std::vector<std::string>& nodes,
                              bool empty_on_success) {
  SavedResponse first_ok;
  SavedResponse first_error;
  std::string failure;
  for (const std::string& name : nodes) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name);
    if (!lease) {
      failure = "node '" + name + "' is not available";
      continue;
    }
    NodeAnswer answer = SendToNode(call, *node);
    if (answer.kind == NodeAnswer::kClientGone) return;
    std::string body;
    std::string error;
    if (answer.kind == NodeAnswer::kFailed ||
        !ReadWholeBody(call, *answer.conn, kMaxBufferedAnswer, &body, &error)) {
      router_.RecordFailure(name, call.table->policy());
      failure = answer.kind == NodeAnswer::kFailed ? answer.error : error;
      continue;
    }
    router_.RecordSuccess(name, answer.latency_ms);
    SavedResponse saved;
    saved.valid = true;
    saved.status = answer.conn->status();
    saved.headers = answer.conn->headers();
    saved.content_type = std::string(answer.conn->Header("Content-Type"));
    saved.body = std::move(body);
    saved.node = name;
    if (answer.conn->keep_alive()) {
      pool_.Give(node->endpoint, std::move(answer.conn));
    }
    if (saved.status >= 200 && saved.status < 300) {
      if (!first_ok.valid) first_ok = std::move(saved);
    } else if (!first_error.valid) {
      first_error = std::move(saved);
    }
  }
  if (first_error.valid) {
    SetSaved(call, first_error);
  } else if (first_ok.valid) {
    if (empty_on_success) {
      call.res.status = first_ok.status;
    } else {
      SetSaved(call, first_ok);
    }
  } else {
    SetErrorReply(call.res, 502, failure.empty() ? "no node answered" : failure, call.route.openai);
  }
}

// ---------------------------------------------------------------------------------------------
// Forwarding with retries

void ProxyServer::ForwardByModel(Call& call, const std::string& model_key,
                                 const std::string& model_as_sent) {
  const EffectivePolicy& policy = call.table->policy();
  std::unordered_set<std::string> tried;
  SavedResponse last;
  std::string last_error;
  for (int attempt = 0; attempt < std::max(1, policy.max_attempts); ++attempt) {
    if (aborting_.load()) break;
    PickResult pick = router_.Pick(call.table, model_key, tried);
    if (!pick.lease) {
      if (!tried.empty() || pick.error == PickError::kExhausted) break;
      switch (pick.error) {
        case PickError::kModelNotFound:
          SetErrorReply(call.res, 404, "model '" + model_as_sent + "' not found",
                        call.route.openai);
          return;
        case PickError::kAllBusy:
          call.res.set_header("Retry-After", "1");
          SetErrorReply(call.res, 503,
                        "server busy, please try again.  every node with model '" + model_as_sent +
                            "' is at its parallel limit",
                        call.route.openai);
          return;
        default:
          call.res.set_header("Retry-After", "1");
          SetErrorReply(call.res, 503, "no healthy node can serve model '" + model_as_sent + "'",
                        call.route.openai);
          return;
      }
    }
    const NodeEntry& node = pick.lease.node();
    const std::string name = node.name;
    tried.insert(name);
    NodeAnswer answer = SendToNode(call, node);
    if (answer.kind == NodeAnswer::kClientGone) {
      call.res.status = 499;
      return;
    }
    if (answer.kind == NodeAnswer::kFailed) {
      CORRAL_LOG(kWarn, "proxy") << call.req.method << " " << call.req.path << " on node " << name
                                 << " failed: " << answer.error;
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + answer.error;
      continue;
    }
    if (answer.conn->status() >= 500) {
      std::string body, error;
      if (ReadWholeBody(call, *answer.conn, kMaxSavedErrorBody, &body, &error)) {
        last.valid = true;
        last.status = answer.conn->status();
        last.headers = answer.conn->headers();
        last.content_type = std::string(answer.conn->Header("Content-Type"));
        last.body = std::move(body);
        last.node = name;
      }
      CORRAL_LOG(kWarn, "proxy") << call.req.path << " on node " << name << " answered "
                                 << answer.conn->status() << ", trying another node";
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "' answered " + std::to_string(answer.conn->status());
      continue;
    }
    std::string error;
    if (Relay(call, std::move(pick.lease), std::move(answer.conn), name, answer.latency_ms,
              &error)) {
      return;
    }
    router_.RecordFailure(name, policy);
    last_error = "node '" + name + "': " + error;
  }
  if (last.valid) {
    SetSaved(call, last);
    return;
  }
  SetErrorReply(call.res, 502, last_error.empty() ? "no node could serve the request" : last_error,
                call.route.openai);
}

void ProxyServer::ForwardToNodes(Call& call, const std::vector<std::string>& order,
                                 const std::string& model_key) {
  const EffectivePolicy& policy = call.table->policy();
  SavedResponse last;
  std::string last_error;
  int attempts = 0;
  for (const std::string& name : order) {
    if (attempts >= std::max(1, policy.max_attempts) || aborting_.load()) break;
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name, model_key);
    if (!lease) {
      last_error = "node '" + name + "' is not available";
      continue;
    }
    ++attempts;
    NodeAnswer answer = SendToNode(call, *node);
    if (answer.kind == NodeAnswer::kClientGone) {
      call.res.status = 499;
      return;
    }
    if (answer.kind == NodeAnswer::kFailed) {
      CORRAL_LOG(kWarn, "proxy") << call.req.method << " " << call.req.path << " on node " << name
                                 << " failed: " << answer.error;
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + answer.error;
      continue;
    }
    if (answer.conn->status() >= 500) {
      std::string body, error;
      if (ReadWholeBody(call, *answer.conn, kMaxSavedErrorBody, &body, &error)) {
        last.valid = true;
        last.status = answer.conn->status();
        last.headers = answer.conn->headers();
        last.content_type = std::string(answer.conn->Header("Content-Type"));
        last.body = std::move(body);
        last.node = name;
      }
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "' answered " + std::to_string(answer.conn->status());
      continue;
    }
    std::string error;
    if (Relay(call, std::move(lease), std::move(answer.conn), name, answer.latency_ms, &error)) {
      return;
    }
    router_.RecordFailure(name, policy);
    last_error = "node '" + name + "': " + error;
  }
  if (last.valid) {
    SetSaved(call, last);
    return;
  }
  call.res.set_header("Retry-After", "1");
  SetErrorReply(call.res, attempts == 0 ? 503 : 502,
                last_error.empty() ? "no node could serve the request" : last_error,
                call.route.openai);
}

void ProxyServer::SetSaved(Call& call, const SavedResponse& saved) {
  call.res.status = saved.status;
  const std::vector<std::string> connection = ResponseConnectionOptions(saved.headers);
  for (const auto& [k, v] : saved.headers) {
    if (!DropResponseHeader(k, connection)) call.res.set_header(k, v);
  }
  call.res.set_header(kNodeHeader, saved.node);
  if (saved.content_type.empty()) {
    call.res.body = saved.body;
  } else {
    call.res.set_content(saved.body, saved.content_type);
  }
}

// ---------------------------------------------------------------------------------------------
// The exchange with one node

std::string ProxyServer::NodeRequestHead(const Call& call, const NodeEntry& node, BodyFraming body,
                                         uint64_t length) const {
  ForwardSpec spec;
  spec.authority = node.authority;
  spec.client_address = call.req.remote_addr;
  // Corral's token is Corral's: a node never sees it (per-node credentials are a later step).
  spec.drop_authorization = call.table != nullptr && FleetClosed(call.table->snapshot());
  // Origin: the proxy answers CORS itself, and a node would 403 an origin it does not know.
  // Accept-Encoding: bodies pass through as the node writes them.
  spec.drop = {kNodeHeader, "Origin", "Accept-Encoding"};
  spec.body = body;
  spec.body_length = length;
  return BuildForwardHead(call.head, spec);
}

ProxyServer::NodeAnswer ProxyServer::SendToNode(Call& call, const NodeEntry& node) {
  const EffectivePolicy& policy = call.table->policy();
  const std::string& endpoint = node.endpoint;
  const std::string head = NodeRequestHead(
      call, node, call.has_body ? BodyFraming::kLength : BodyFraming::kNone, call.body.size());
  const bool head_request = call.req.method == "HEAD";
  NodeAnswer answer;
  // A pooled connection the node closed while it sat idle fails before any response byte; the
  // request is then sent once more on a fresh connection, and the node is not blamed.
  for (int fresh = 0; fresh < 2; ++fresh) {
    std::unique_ptr<UpstreamConnection> conn;
    if (fresh == 0) conn = pool_.Take(endpoint);
    if (!conn) {
      auto connected =
          UpstreamConnection::Connect(node.host, node.port, milliseconds(policy.connect_ms));
      if (!connected.ok()) {
        answer.error = std::string(connected.status().message());
        return answer;
      }
      conn = *std::move(connected);
      fresh = 1;
    }
    conn->BeginResponse(head_request);
    const auto start = Clock::now();
    const auto written = conn->WriteAll({head, call.body}, options_.upstream_write_timeout);
    if (!written.ok()) {
      if (conn->reused()) continue;
      answer.error = std::string(written.message());
      return answer;
    }
    const auto deadline = start + milliseconds(policy.first_byte_ms);
    bool retry_fresh = false;
    while (!conn->head_complete()) {
      const auto now = Clock::now();
      if (now >= deadline) {
        answer.error = "no response within " + std::to_string(policy.first_byte_ms) + " ms";
        return answer;
      }
      if (aborting_.load()) {
        answer.error = "proxy is stopping";
        return answer;
      }
      // Fast answers never pay for finding the client's socket; slow ones (model loads) watch
      // it so a client that leaves cancels the node's work at once.
      milliseconds slice(1000);
      if (call.client_fd == kClientNotSearched) {
        if (now - start >= options_.client_watch_after) {
          call.client_fd = FindClientSocket(call.req.remote_addr, call.req.remote_port,
                                            call.req.local_addr, call.req.local_port);
        } else {
          slice = options_.client_watch_after;
        }
      }
      slice = std::min(slice,
                       std::chrono::duration_cast<milliseconds>(deadline - now) + milliseconds(1));
      const WaitOutcome waited = conn->Wait(slice, &call.client_fd);
      if (waited == WaitOutcome::kClientGone) {
        CORRAL_LOG(kDebug, "proxy") << call.req.path << ": client left while node " << node.name
                                    << " was preparing its answer";
        conn->Close();
        answer.kind = NodeAnswer::kClientGone;
        return answer;
      }
      if (waited == WaitOutcome::kTimeout) continue;
      const ReadOutcome read = conn->ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        if (conn->reused() && !conn->received_any() && fresh == 0) {
          retry_fresh = true;
          break;
        }
        answer.error = conn->error();
        return answer;
      }
    }
    if (retry_fresh) continue;
    answer.kind = NodeAnswer::kHead;
    answer.latency_ms = MillisSince(start);
    answer.conn = std::move(conn);
    return answer;
  }
  answer.error = "connection lost";
  return answer;
}

bool ProxyServer::ReadWholeBody(Call& call, UpstreamConnection& conn, size_t limit,
                                std::string* body, std::string* error) {
  const milliseconds idle(call.table->policy().idle_ms);
  auto last = Clock::now();
  if (conn.has_content_length() && conn.content_length() > limit) {
    conn.Close();
    *error = "answer of " + std::to_string(conn.content_length()) +
             " bytes is larger than the proxy's limit of " + std::to_string(limit) + " bytes";
    return false;
  }
  while (true) {
    if (conn.has_body()) {
      *body += conn.TakeBody();
      if (body->size() > limit) {
        conn.Close();
        *error = "answer is larger than the proxy's limit of " + std::to_string(limit) + " bytes";
        return false;
      }
      last = Clock::now();
    }
    if (conn.message_complete()) return true;
    if (aborting_.load()) {
      *error = "proxy is stopping";
      return false;
    }
    const WaitOutcome waited = conn.Wait(milliseconds(1000), &call.client_fd);
    if (waited == WaitOutcome::kClientGone) {
      conn.Close();
      *error = "client left";
      return false;
    }
    if (waited == WaitOutcome::kTimeout) {
      if (Clock::now() - last > idle) {
        *error = "node sent nothing for " + std::to_string(idle.count()) + " ms";
        return false;
      }
      continue;
    }
    const ReadOutcome read = conn.ReadSome();
    if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
      *error = conn.error();
      return false;
    }
  }
}

void ProxyServer::CopyResponseHead(Call& call, const UpstreamConnection& conn,
                                   const std::string& node) {
  call.res.status = conn.status();
  const std::vector<std::string> connection = ResponseConnectionOptions(conn.headers());
  for (const auto& [k, v] : conn.headers()) {
    if (!DropResponseHeader(k, connection)) call.res.set_header(k, v);
  }
  call.res.set_header(kNodeHeader, node);
}

// What a streamed answer needs after the handler returned: httplib calls the provider on the
// same worker thread, and destroys this (through the releaser's captures) when done.
namespace {
struct StreamRelay {
  std::unique_ptr<UpstreamConnection> conn;
  Lease lease;
  std::shared_ptr<void> admission;
  std::shared_ptr<const RoutingTable> table;
  std::string endpoint;
  std::string node;
  std::string path;
  bool sse = false;
  int client_fd = -1;
  bool finished = false;
  // The response head has gone to the client: the listener holds it back until the first body
  // bytes, so a node that sent its head alone gets it pushed out before the first wait.
  bool head_sent = false;
  std::string tail;  // the last two bytes relayed, to start an error on a line of its own
};

std::string IdleReason(const std::string& node, milliseconds idle) {
  return "node '" + node + "' sent nothing for " + std::to_string(idle.count() / 1000) + " s";
}

std::string MidStreamFailure(const std::string& node, const std::string& error) {
  return "node '" + node + "' failed mid-stream: " + error;
}
}  // namespace

bool ProxyServer::Relay(Call& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                        const std::string& node_name, double latency_ms, std::string* error) {
  const std::string content_type(conn->Header("Content-Type"));
  const std::string& endpoint = call.table->FindNode(node_name)->endpoint;
  const bool streamed = !conn->has_content_length() && !conn->message_complete();
  if (!streamed && conn->content_length() > kMaxBufferedAnswer && !conn->message_complete()) {
    router_.RecordSuccess(node_name, latency_ms);
    RelayLargeBody(call, std::move(lease), std::move(conn), node_name, content_type);
    return true;
  }
  if (!streamed) {
    std::string body;
    if (!ReadWholeBody(call, *conn, kMaxBufferedAnswer, &body, error)) return false;
    router_.RecordSuccess(node_name, latency_ms);
    CopyResponseHead(call, *conn, node_name);
    if (content_type.empty()) {
      call.res.body = std::move(body);
    } else {
      call.res.set_content(std::move(body), content_type);
    }
    if (conn->keep_alive()) pool_.Give(endpoint, std::move(conn));
    return true;
  }
  router_.RecordSuccess(node_name, latency_ms);
  CopyResponseHead(call, *conn, node_name);
  auto relay = std::make_shared<StreamRelay>();
  relay->conn = std::move(conn);
  relay->lease = std::move(lease);
  relay->admission = call.admitted.slot;
  relay->table = call.table;
  relay->endpoint = endpoint;
  relay->node = node_name;
  relay->path = call.req.path;
  relay->sse = call.route.openai || IsStreamType(content_type);
  if (call.client_fd == kClientNotSearched) {
    // On the serving thread this is one comparison (client_socket.h).
    call.client_fd = FindClientSocket(call.req.remote_addr, call.req.remote_port,
                                      call.req.local_addr, call.req.local_port);
  }
  relay->client_fd = call.client_fd >= 0 ? call.client_fd : -1;
  const milliseconds idle(call.table->policy().idle_ms);
  const milliseconds poll_slice = options_.stream_poll;
  auto provider = [this, relay, idle, poll_slice](size_t, httplib::DataSink& sink) -> bool {
    UpstreamConnection& up = *relay->conn;
    auto last = Clock::now();
    auto fail = [&](const std::string& reason) {
      CORRAL_LOG(kWarn, "proxy") << relay->path << ": stream from node " << relay->node
                                 << " broke: " << reason;
      router_.RecordFailure(relay->node, relay->table->policy());
      // The error must stand on a line (or SSE event) of its own, even when the node died in the
      // middle of one.
      std::string chunk;
      if (relay->sse && relay->tail.size() == 2 && relay->tail != "\n\n") {
        chunk = relay->tail.back() == '\n' ? "\n" : "\n\n";
      } else if (!relay->sse && !relay->tail.empty() && relay->tail.back() != '\n') {
        chunk = "\n";
      }
      chunk += StreamErrorChunk(reason, relay->sse);
      up.Close();
      if (!sink.write(chunk.data(), chunk.size())) return false;
      // End the body properly, as an Ollama node does after its own error line: clients read
      // the error line and raise it, while a connection cut before the last chunk makes some
      // HTTP stacks (Node's fetch) drop bytes already received, error line included.
      sink.done();
      return true;
    };
    while (true) {
      if (up.has_body()) {
        const std::string piece = up.TakeBody();
        RememberTail(piece, &relay->tail);
        if (!sink.write(piece.data(), piece.size())) {
          up.Close();  // the client left: closing makes the node stop generating
          return false;
        }
        // Keep looping rather than returning: httplib stops calling a provider once the
        // server is stopping, and a graceful stop must let open streams run to their end.
        last = Clock::now();
        relay->head_sent = true;
      }
      if (up.message_complete()) {
        relay->finished = true;
        sink.done();
        return true;
      }
      if (aborting_.load()) return fail("corral-proxy is shutting down");
      if (!relay->head_sent) {
        relay->head_sent = true;
        // A writability check sends what the listener holds (the head) and sees a client
        // that already left.
        if (!sink.is_writable()) {
          up.Close();
          return false;
        }
      }
      if (relay->client_fd >= 0 && !up.has_body()) {
        // The head is out and nothing is pending: the relay loop carries the rest, many streams
        // per wake-up, while this thread sleeps (relay_loop.h).
        RelayLoop::Stream carried;
        carried.node = &up;
        carried.client_fd = relay->client_fd;
        carried.idle = idle;
        carried.client_timeout = kClientWriteTimeout;
        carried.tail = &relay->tail;
        switch (relay_loop_.Carry(carried)) {
          case RelayLoop::End::kFinished:
            relay->finished = true;
            sink.done();
            return true;
          case RelayLoop::End::kClientGone:
            up.Close();  // closing makes the node stop generating
            return false;
          case RelayLoop::End::kNodeFailed:
            return fail(MidStreamFailure(relay->node, up.error()));
          case RelayLoop::End::kIdle:
            return fail(IdleReason(relay->node, idle));
          case RelayLoop::End::kStopping:
            return fail("corral-proxy is shutting down");
        }
      }
      const WaitOutcome waited = up.Wait(poll_slice, &relay->client_fd);
      if (waited == WaitOutcome::kClientGone) {
        up.Close();
        return false;
      }
      if (waited == WaitOutcome::kTimeout) {
        if (!sink.is_writable()) {
          up.Close();
          return false;
        }
        if (Clock::now() - last > idle) return fail(IdleReason(relay->node, idle));
        continue;
      }
      const ReadOutcome read = up.ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        return fail(MidStreamFailure(relay->node, up.error()));
      }
      if (read == ReadOutcome::kProgress) last = Clock::now();
    }
  };
  auto releaser = [this, relay](bool) {
    if (relay->finished && relay->conn && relay->conn->keep_alive()) {
      pool_.Give(relay->endpoint, std::move(relay->conn));
    } else if (relay->conn) {
      relay->conn->Close();
    }
  };
  call.res.set_chunked_content_provider(content_type, std::move(provider), std::move(releaser));
  return true;
}

void ProxyServer::RelayLargeBody(Call& call, Lease lease, std::unique_ptr<UpstreamConnection> conn,
                                 const std::string& node_name, const std::string& content_type) {
  CopyResponseHead(call, *conn, node_name);
  struct LargeBody {
    std::unique_ptr<UpstreamConnection> conn;
    Lease lease;
    std::shared_ptr<const RoutingTable> table;
    std::string endpoint;
    std::string node;
    int client_fd = -1;
  };
  auto relay = std::make_shared<LargeBody>();
  relay->conn = std::move(conn);
  relay->lease = std::move(lease);
  relay->table = call.table;
  relay->endpoint = call.table->FindNode(node_name)->endpoint;
  relay->node = node_name;
  if (call.client_fd == kClientNotSearched) {
    call.client_fd = FindClientSocket(call.req.remote_addr, call.req.remote_port,
                                      call.req.local_addr, call.req.local_port);
  }
  relay->client_fd = call.client_fd >= 0 ? call.client_fd : -1;
  const milliseconds idle(call.table->policy().idle_ms);
  // httplib calls the provider until the announced length is written; the node's bytes go out
  // as they arrive, so the proxy holds one read of them at a time. A node that fails inside the
  // body leaves the client short of the length it was promised: the connection closes, which
  // every HTTP client reads as a failed answer.
  auto provider = [this, relay, idle](size_t, size_t, httplib::DataSink& sink) -> bool {
    UpstreamConnection& up = *relay->conn;
    auto last = Clock::now();
    while (true) {
      if (up.has_body()) {
        const std::string piece = up.TakeBody();
        if (!sink.write(piece.data(), piece.size())) {
          up.Close();
          return false;
        }
        return true;
      }
      if (up.message_complete() || aborting_.load()) return false;
      const WaitOutcome waited = up.Wait(options_.stream_poll, &relay->client_fd);
      if (waited == WaitOutcome::kClientGone) {
        up.Close();
        return false;
      }
      if (waited == WaitOutcome::kTimeout) {
        if (Clock::now() - last > idle) {
          CORRAL_LOG(kWarn, "proxy") << "node " << relay->node << " sent nothing for "
                                     << idle.count() << " ms inside an answer";
          router_.RecordFailure(relay->node, relay->table->policy());
          return false;
        }
        continue;
      }
      const ReadOutcome read = up.ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) {
        CORRAL_LOG(kWarn, "proxy")
            << "node " << relay->node << " failed inside an answer: " << up.error();
        router_.RecordFailure(relay->node, relay->table->policy());
        return false;
      }
      last = Clock::now();
    }
  };
  auto releaser = [this, relay](bool) {
    if (relay->conn && relay->conn->message_complete() && relay->conn->keep_alive()) {
      pool_.Give(relay->endpoint, std::move(relay->conn));
    } else if (relay->conn) {
      relay->conn->Close();
    }
  };
  call.res.set_content_provider(static_cast<size_t>(relay->conn->content_length()), content_type,
                                std::move(provider), std::move(releaser));
}

// ---------------------------------------------------------------------------------------------
// Blob uploads: streamed straight to the node, never buffered.

void ProxyServer::RouteBlobUpload(Call& call, const httplib::ContentReader& reader) {
  const std::string& digest = call.route.param;
  auto fail_unread = [&](int status, const std::string& message) {
    call.res.set_header("Connection", "close");
    const int fd = FindClientSocket(call.req.remote_addr, call.req.remote_port, call.req.local_addr,
                                    call.req.local_port);
    if (fd >= 0) ::shutdown(fd, SHUT_RD);
    if (status == 503) call.res.set_header("Retry-After", "1");
    SetErrorReply(call.res, status, message, false);
  };
  // The front door admitted the request with a snapshot, a token allowed to upload and a slot.
  std::string pinned;
  if (!PinnedNode(call, &pinned)) {
    call.res.set_header("Connection", "close");
    return;
  }
  std::vector<std::string> order;
  if (!pinned.empty()) {
    order.push_back(pinned);
  } else {
    const std::string cached = BlobNode(digest);
    if (!cached.empty()) order.push_back(cached);
    for (auto& n : OrderByLoad(*call.table, nullptr)) {
      if (n != cached) order.push_back(std::move(n));
    }
  }
  const EffectivePolicy& policy = call.table->policy();
  const bool chunked = call.head.framing == BodyFraming::kChunked;
  std::string last_error = "no healthy node to upload to";
  // Only the connection can be retried: once body bytes went to a node they cannot be replayed.
  for (const std::string& name : order) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name);
    if (!lease) continue;
    auto connected =
        UpstreamConnection::Connect(node->host, node->port, milliseconds(policy.connect_ms));
    if (!connected.ok()) {
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + std::string(connected.status().message());
      continue;
    }
    std::unique_ptr<UpstreamConnection> conn = *std::move(connected);
    conn->BeginResponse(false);
    const std::string head =
        NodeRequestHead(call, *node, chunked ? BodyFraming::kChunked : BodyFraming::kLength,
                        call.head.content_length);
    if (!conn->WriteAll({head}, options_.upstream_write_timeout).ok()) {
      router_.RecordFailure(name, policy);
      last_error = "node '" + name + "': " + conn->error();
      continue;
    }
    std::string write_error;
    const bool read_ok = reader([&](const char* data, size_t n) {
      absl::Status st;
      if (chunked) {
        char size_line[32];
        const int len = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", n);
        st = conn->WriteAll({std::string_view(size_line, static_cast<size_t>(len)),
                             std::string_view(data, n), "\r\n"},
                            options_.upstream_write_timeout);
      } else {
        st = conn->WriteAll({std::string_view(data, n)}, options_.upstream_write_timeout);
      }
      if (!st.ok()) write_error = std::string(st.message());
      return st.ok();
    });
    if (read_ok && chunked) {
      const auto st = conn->WriteAll({"0\r\n\r\n"}, options_.upstream_write_timeout);
      if (!st.ok()) write_error = std::string(st.message());
    }
    if (!read_ok || !write_error.empty()) {
      // Either the client's body broke off or the node stopped taking it; a node may still
      // have answered early (e.g. 400), which is worth passing on.
      if (write_error.empty()) {
        call.res.status = 400;
        call.res.set_header("Connection", "close");
        return;
      }
    }
    call.has_body = false;
    std::string body, error;
    while (!conn->head_complete()) {
      const WaitOutcome waited = conn->Wait(milliseconds(1000), &call.client_fd);
      if (waited == WaitOutcome::kTimeout) {
        if (aborting_.load()) break;
        continue;
      }
      if (waited == WaitOutcome::kClientGone) break;
      const ReadOutcome read = conn->ReadSome();
      if (read == ReadOutcome::kClosed || read == ReadOutcome::kError) break;
    }
    if (!conn->head_complete() || !ReadWholeBody(call, *conn, kMaxBufferedAnswer, &body, &error)) {
      router_.RecordFailure(name, policy);
      call.res.set_header("Connection", "close");
      SetErrorReply(call.res, 502,
                    "node '" + name + "' failed during the blob upload: " +
                        (write_error.empty() ? conn->error() : write_error),
                    false);
      return;
    }
    router_.RecordSuccess(name, 0);
    if (conn->status() == 200 || conn->status() == 201) RememberBlob(digest, name);
    if (!write_error.empty()) call.res.set_header("Connection", "close");
    CopyResponseHead(call, *conn, name);
    const std::string content_type(conn->Header("Content-Type"));
    if (content_type.empty()) {
      call.res.body = std::move(body);
    } else {
      call.res.set_content(std::move(body), content_type);
    }
    return;
  }
  fail_unread(503, last_error);
}

}  // namespace corral::dataplane
