#include "dataplane/proxy_server.h"

#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/http_listener.h"
#include "common/log.h"
#include "dataplane/fleet.h"
#include "dataplane/replies.h"
#include "dataplane/request_id.h"

namespace corral::dataplane {

namespace {

// The message of an error answer the proxy made ({"error": "..."} or OpenAI's error object), for
// the record of a request that ended without a node's answer.
std::string ErrorMessageOf(const httplib::Response& res) {
  if (res.body.empty() || res.body.front() != '{') return res.body.substr(0, 200);
  const auto body = nlohmann::json::parse(res.body, nullptr, false);
  if (!body.is_object() || !body.contains("error")) return "";
  const auto& error = body["error"];
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object() && error.value("message", nlohmann::json()).is_string()) {
    return error["message"].get<std::string>();
  }
  return "";
}

// Finishes the record of a request whose answer is set on `call.res` and goes out when the
// handler returns; a relay that carried the record on finishes it itself.
void FinishRecord(ProxyCall& call) {
  if (call.record_carried) return;
  RecordHandle& handle = call.record_handle();
  if (handle.finished()) return;
  RequestRecord& record = handle.record();
  const int status = call.res.status > 0 ? call.res.status : 200;  // httplib's default
  record.bytes_out = call.res.body.size();
  const bool served = record.served_by() != nullptr;
  // A whole answer reaches the client as the handler returns: that is its first token.
  if (served) record.first_token = RequestRecord::Clock::now();
  RequestOutcome outcome =
      served || status < 400 ? RequestOutcome::kAnswered : RequestOutcome::kRefused;
  if (status == 499) outcome = RequestOutcome::kClientGone;
  if (call.outcome) outcome = *call.outcome;
  std::string error = std::move(call.error);
  if (error.empty() && outcome != RequestOutcome::kAnswered) error = ErrorMessageOf(call.res);
  handle.Finish(status, outcome, std::move(error));
}

}  // namespace

ProxyServer::ProxyServer(ProxyOptions options, FrontDoor& front_door, SnapshotStore& store,
                         Router& router, UpstreamPool& pool)
    : front_door_(front_door),
      exchange_({options.client_watch_after, options.upstream_write_timeout}, pool, aborting_),
      relay_(exchange_, router, options.stream_poll),
      forwarder_(exchange_, relay_, router, aborting_),
      blobs_(options.blob_cache_ttl),
      model_routes_(forwarder_, exchange_, router, blobs_),
      blob_upload_(exchange_, router, blobs_),
      state_(std::move(options.proxy_id), front_door, store, router),
      seed_routes_(router, front_door.live()) {}

ProxyServer::~ProxyServer() = default;

void ProxyServer::Install(HttpListener& server) {
  server.set_head_check([this](const RequestHead& head, const std::string& client) {
    return front_door_.Check(head, client);
  });
  // Every handler reads the client's headers from the front door's parse.
  server.set_framing_headers_only(true);
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
        if (auto* admitted = static_cast<Admitted*>(ServedRequestTicket().get());
            admitted != nullptr && admitted->record) {
          admitted->record->Finish(500, RequestOutcome::kRefused, "internal proxy error: " + what);
        }
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
  // The id passed the front door's head rules (no control character) or was made here.
  if (admitted->record)
    res.headers.emplace(kRequestIdHeader, admitted->record->record().request_id);
  // The front door refused origins it does not allow.
  const std::string* origin = ServedRequestHead()->Find("Origin");
  if (origin != nullptr && !origin->empty()) {
    res.set_header("Access-Control-Allow-Origin", front_door_.AnyOrigin() ? "*" : *origin);
    if (!front_door_.AnyOrigin()) res.set_header("Vary", "Origin");
  }
  return admitted;
}

void ProxyServer::HandleOptions(const httplib::Request& req, httplib::Response& res) {
  Admitted* admitted = Prepare(req, res);
  if (admitted == nullptr) return;
  ProxyCall call(req, res, *ServedRequestHead(), *admitted);
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
  FinishRecord(call);
}

void ProxyServer::HandleNoBody(const httplib::Request& req, httplib::Response& res) {
  Admitted* admitted = Prepare(req, res);
  if (admitted == nullptr) return;
  Serve(req, res, *admitted, nullptr);
}

void ProxyServer::HandleWithBody(const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& reader) {
  Admitted* admitted = Prepare(req, res);
  if (admitted == nullptr) return;
  Serve(req, res, *admitted, &reader);
}

void ProxyServer::Serve(const httplib::Request& req, httplib::Response& res, Admitted& admitted,
                        const httplib::ContentReader* reader) {
  const RequestHead& head = *ServedRequestHead();
  // Under the base URL /api/proxy, a node is sent the Ollama path: the head forwarded is a copy
  // with that target (the query kept). Only such requests pay for the copy.
  std::optional<RequestHead> rewritten;
  if (!admitted.route.node_path.empty() && (admitted.route.route_class == RouteClass::kInference ||
                                            admitted.route.route_class == RouteClass::kNodeLocal)) {
    rewritten.emplace(head);
    const size_t query = head.target.find('?');
    rewritten->target = admitted.route.node_path;
    if (query != std::string::npos) rewritten->target.append(head.target, query);
  }
  ProxyCall call(req, res, rewritten ? *rewritten : head, admitted);
  call.ticket = &ServedRequestTicket();
  if (reader != nullptr) {
    HandleBody(call, *reader);
  } else {
    Dispatch(call);
  }
  // A stream or long answer goes on after this handler: the live view shows its model and node
  // (a whole answer is finished just below and leaves the view).
  if (call.record_carried) LiveRequests::Update(admitted.live);
  FinishRecord(call);
}

void ProxyServer::HandleBody(ProxyCall& call, const httplib::ContentReader& reader) {
  httplib::Response& res = call.res;
  Admitted* admitted = &call.admitted;
  if (call.route.endpoint == Endpoint::kBlobUpload) {
    // The front door admitted the request with a snapshot, a token allowed to upload and a
    // slot; the body is streamed to the node, never buffered.
    call.record().bytes_in = call.head.content_length;
    if (PinnedNode(call)) {
      blob_upload_.Route(call, reader);
    } else {
      res.set_header("Connection", "close");
    }
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
  const bool read = ReadBody(call, reader);
  call.record().bytes_in = call.body.size();
  if (!read) return;
  call.has_body = true;
  if (!front_door_.TakeSlot(*admitted)) {
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

bool ProxyServer::ReadBody(ProxyCall& call, const httplib::ContentReader& reader) {
  // Buffer the body: routing reads `model` from it, and a retry on another node resends it.
  // The front door held a body announced by its length to the limit and reserved its room in
  // the budget; a chunked one takes its room as it arrives.
  const RequestHead& head = call.head;
  httplib::Response& res = call.res;
  const uint64_t limit = front_door_.options().max_body_bytes;
  auto too_large_message = [limit] {
    return "request body is larger than the proxy's limit of " + std::to_string(limit >> 20) +
           " MiB";
  };
  if (call.admitted.drain_body) {
    reader([](const char*, size_t) { return true; });
    SetErrorReply(res, 413, too_large_message(), call.route.openai);
    return false;
  }
  if (!head.has_body()) return true;
  bool too_large = false;
  bool over_budget = false;
  if (head.framing == BodyFraming::kLength) call.body.reserve(head.content_length);
  const bool ok = reader([&](const char* data, size_t n) {
    if (call.body.size() + n > limit) {
      too_large = true;
      return false;
    }
    if (head.framing == BodyFraming::kChunked && !call.admitted.body.Grow(n)) {
      over_budget = true;
      return false;
    }
    call.body.append(data, n);
    return true;
  });
  if (ok) return true;
  // The rest of the body may still come: the connection ends after this answer.
  res.set_header("Connection", "close");
  if (too_large) {
    SetErrorReply(res, 413, too_large_message(), call.route.openai);
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
  return false;
}

void ProxyServer::Dispatch(ProxyCall& call) {
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
      if (route.endpoint == Endpoint::kMetrics) {
        AnswerMetrics(call);
      } else if (route.endpoint == Endpoint::kProxyHealth ||
                 route.endpoint == Endpoint::kProxyState) {
        state_.Answer(call);
      } else {
        seed_routes_.Answer(call);
      }
      return;
    case RouteClass::kInference:
    case RouteClass::kNodeLocal:
      break;
  }
  // The front door admitted the request with a snapshot and an admission slot.
  if (!PinnedNode(call)) return;
  if (route.route_class == RouteClass::kInference) {
    model_routes_.Inference(call);
  } else if (route.endpoint == Endpoint::kBlobHead) {
    model_routes_.BlobHead(call);
  } else {
    model_routes_.NodeLocal(call);
  }
}

bool ProxyServer::PinnedNode(ProxyCall& call) {
  const std::string* pinned = call.head.Find(kNodeHeader);
  call.pinned = pinned != nullptr ? *pinned : "";
  if (call.pinned.empty()) return true;
  if (call.table->FindNode(call.pinned) == nullptr) {
    SetErrorReply(call.res, 400, "unknown node '" + call.pinned + "' in " + kNodeHeader,
                  call.route.openai);
    return false;
  }
  return true;
}

void ProxyServer::AnswerMetrics(ProxyCall& call) {
  if (metrics_ == nullptr) {
    call.res.status = 404;
    call.res.set_content("404 page not found", "text/plain");
    return;
  }
  if (call.req.method == "HEAD") {
    call.res.set_header("Content-Type", std::string(metrics::kPrometheusContentType));
    return;
  }
  call.res.set_content(metrics_->RenderPrometheus(), std::string(metrics::kPrometheusContentType));
}

void ProxyServer::AnswerFleet(ProxyCall& call) {
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

}  // namespace corral::dataplane
