#include "controlplane/http_admin.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/duration.h"
#include "common/log.h"
#include "common/node_name.h"
#include "corral_console.h"
#include "corral_docs_assets.h"
#include "corral_docs_page.h"
#include "corral_openapi.h"

namespace corral::control {
namespace {

using google::protobuf::Message;

constexpr char kJson[] = "application/json";

void SendError(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusFor(status.code());
  res.set_content(HttpErrorBody(status), kJson);
}

std::string ToJson(const Message& message, bool multiline = true) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = multiline;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}";  // cannot happen for a message we built
  }
  return out;
}

template <typename T>
void Reply(httplib::Response& res, const absl::StatusOr<T>& result) {
  if (!result.ok()) return SendError(res, result.status());
  res.status = 200;
  res.set_content(ToJson(*result) + "\n", kJson);
}

// The request body into `message`: bad JSON, an unknown field or a wrong type is
// InvalidArgument. An empty body is `{}`.
absl::Status ParseBody(const httplib::Request& req, Message* message) {
  absl::string_view body = absl::StripAsciiWhitespace(req.body);
  if (body.empty()) body = "{}";
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(std::string(body), message, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the body is not a valid ",
                                                   message->GetDescriptor()->name(),
                                                   " in JSON: ", std::string(parsed.message())));
  }
  return absl::OkStatus();
}

absl::Status CheckName(absl::string_view what, const std::string& name) {
  if (IsValidNodeName(name)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " name \"", name, "\" is not valid: 1 to 64 characters of A-Z a-z 0-9 _ . -"));
}

// The query string's parameters. httplib's req.params also holds a form-encoded body's fields
// (what `curl -d` sends by default), which are not parameters here: the body is JSON.
httplib::Params QueryParams(const httplib::Request& req) {
  httplib::Params params;
  const size_t mark = req.target.find('?');
  if (mark != std::string::npos) {
    httplib::detail::parse_query_text(req.target.substr(mark + 1), params);
  }
  return params;
}

// Only the parameters a route reads may be present: a misspelt one must not be ignored.
absl::Status CheckQuery(const httplib::Request& req, const std::vector<std::string>& allowed) {
  for (const auto& [key, value] : QueryParams(req)) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown query parameter \"", key, "\"",
          allowed.empty() ? std::string(" (this path takes none)")
                          : absl::StrCat(" (this path takes ", absl::StrJoin(allowed, ", "), ")")));
    }
  }
  return absl::OkStatus();
}

// One path of the API. `pattern` may hold "{name}", which matches one path segment without
// '/' or ':' (so /v1/nodes/{name} and /v1/nodes/{name}:drain never both match).
struct Route {
  const char* method;
  const char* pattern;
  std::function<void(const httplib::Request&, const std::string& name, httplib::Response&)> handle;
};

bool Match(absl::string_view pattern, absl::string_view path, std::string* name) {
  const size_t hole = pattern.find("{name}");
  if (hole == absl::string_view::npos) return pattern == path;
  const absl::string_view prefix = pattern.substr(0, hole);
  const absl::string_view suffix = pattern.substr(hole + 6);
  if (path.size() <= prefix.size() + suffix.size()) return false;
  if (!absl::StartsWith(path, prefix) || !absl::EndsWith(path, suffix)) return false;
  const absl::string_view middle =
      path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (middle.find_first_of("/:") != absl::string_view::npos) return false;
  *name = std::string(middle);
  return true;
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

std::string HttpErrorBody(const absl::Status& status) {
  nlohmann::json body = {{"code", static_cast<int>(status.code())},
                         {"status", absl::StatusCodeToString(status.code())},
                         {"message", std::string(status.message())}};
  // StatusCodeToString spells names as gRPC does (INVALID_ARGUMENT, ...).
  return body.dump() + "\n";
}

absl::StatusOr<int64_t> ParseSinceSeconds(const std::string& text) {
  std::optional<int64_t> seconds = ParseDurationSeconds(text);
  if (!seconds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "since \"", text, "\" is not a duration: give seconds (3600) or 30m, 24h, 7d, 2w"));
  }
  return *seconds;
}

HttpAdmin::HttpAdmin(FleetAdmin* fleet, const std::string& admin_token, std::string admin_hint)
    : fleet_(fleet), admin_(HashToken(admin_token)), admin_hint_(std::move(admin_hint)) {}

absl::StatusOr<std::unique_ptr<HttpAdmin>> HttpAdmin::Start(const std::string& listen,
                                                            FleetAdmin* fleet,
                                                            const std::string& admin_token,
                                                            std::string admin_hint) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(listen);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen ", listen, ": ", address.status().message()));
  }
  std::unique_ptr<HttpAdmin> admin(new HttpAdmin(fleet, admin_token, std::move(admin_hint)));
  HttpListener& server = admin->listener_;
  server.set_keep_alive_timeout(30);
  server.set_read_timeout(10, 0);
  // A pull stream may wait minutes between two lines of a slow node, but a write never waits
  // that long for a reader that keeps reading.
  server.set_write_timeout(60, 0);
  server.set_payload_max_length(kMaxBody);
  server.set_refusal_writer([](int status, std::string_view, std::string_view message) {
    absl::StatusCode code = status == 413   ? absl::StatusCode::kResourceExhausted
                            : status == 503 ? absl::StatusCode::kUnavailable
                            : status == 408 ? absl::StatusCode::kDeadlineExceeded
                                            : absl::StatusCode::kInvalidArgument;
    return HttpListener::Refusal{kJson, HttpErrorBody(absl::Status(code, std::string(message)))};
  });
  HttpAdmin* self = admin.get();
  auto handler = [self](const httplib::Request& req, httplib::Response& res) {
    self->Handle(req, res);
  };
  server.Get(R"(/.*)", handler);
  server.Post(R"(/.*)", handler);
  server.Put(R"(/.*)", handler);
  server.Patch(R"(/.*)", handler);
  server.Delete(R"(/.*)", handler);
  // What httplib answers by itself (a body over kMaxBody, a method it does not route) still
  // reads as this API's errors.
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      SendError(res, absl::ResourceExhaustedError(absl::StrCat("the body is over ", kMaxBody,
                                                               " bytes, the most this API reads")));
      res.status = 413;
    } else if (res.status == 404) {
      SendError(res, absl::NotFoundError("no such path (see /openapi.json or /docs)"));
    } else if (res.status >= 400) {
      const int status = res.status;
      SendError(res, absl::InvalidArgumentError(absl::StrCat(
                         "HTTP ", status,
                         ": the request could not be read (a POST, PUT or PATCH body needs a "
                         "Content-Length or chunked encoding)")));
      res.status = status;
    }
  });

  absl::StatusOr<int> port = server.Bind(*address);
  if (!port.ok()) {
    return absl::UnavailableError(
        absl::StrCat("--http-listen ", listen, ": ", port.status().message()));
  }
  admin->port_ = *port;
  // httplib's stop() does nothing until the accept loop has begun, so Start returns only once it
  // has: a Stop right after Start must not leave the thread serving forever.
  auto ended = std::make_shared<std::atomic<bool>>(false);
  admin->thread_ = std::thread([&server, ended] {
    server.Run();
    ended->store(true);
  });
  while (!server.is_running() && !ended->load()) std::this_thread::yield();
  if (!server.is_running()) {
    admin->thread_.join();
    return absl::InternalError(absl::StrCat("--http-listen ", listen, ": cannot serve"));
  }
  CORRAL_LOG(kInfo, "control") << "HTTP admin API on http://" << address->host << ":" << *port
                               << " (/v1, /openapi.json, /docs)";
  return admin;
}

HttpAdmin::~HttpAdmin() { Stop(); }

void HttpAdmin::Stop() {
  if (thread_.joinable()) {
    listener_.stop();
    thread_.join();
  }
}

absl::Status HttpAdmin::CheckToken(const httplib::Request& req) const {
  const std::string value = req.get_header_value("Authorization");
  if (value.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "missing `Authorization: Bearer <token>` header; the admin token is in ", admin_hint_));
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(value).substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("the Authorization header must be `Bearer <token>`");
  }
  const TokenHash presented = HashToken(
      std::string(absl::StripAsciiWhitespace(absl::string_view(value).substr(kScheme.size()))));
  if (CRYPTO_memcmp(presented.data(), admin_.data(), presented.size()) == 0) {
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      absl::StrCat("invalid admin token; the admin token is in ", admin_hint_));
}

void HttpAdmin::Handle(const httplib::Request& req, httplib::Response& res) {
  const std::string& path = req.path;
  const bool read = req.method == "GET" || req.method == "HEAD";

  // ---- documentation: open, like gRPC reflection ----
  if (path == "/openapi.json" && read) {
    const openapi::EmbeddedFile* doc = openapi::FindEmbeddedFile("openapi.json");
    res.set_content(std::string(doc->data), std::string(doc->content_type));
    return;
  }
  if ((path == "/docs" || path == "/docs/") && read) {
    const docs_page::EmbeddedFile* page = docs_page::FindEmbeddedFile("index.html");
    res.set_content(std::string(page->data), std::string(page->content_type));
    return;
  }
  if (absl::StartsWith(path, "/docs/") && read) {
    const std::string file = path.substr(6);
    const docs_page::EmbeddedFile* own = docs_page::FindEmbeddedFile(file);
    const docs_assets::EmbeddedFile* asset = docs_assets::FindEmbeddedFile(file);
    if (own != nullptr) {
      res.set_content(std::string(own->data), std::string(own->content_type));
    } else if (asset != nullptr) {
      res.set_content(std::string(asset->data), std::string(asset->content_type));
      res.set_header("Cache-Control", "public, max-age=86400");
    } else {
      SendError(res, absl::NotFoundError(absl::StrCat("no file ", path)));
    }
    return;
  }
  if (!absl::StartsWith(path, "/v1/")) {
    // The web console: its page at `/`, its scripts and style sheet beside it. The page talks to
    // this origin only and runs no inline script or style, which the policy holds it to.
    const console::EmbeddedFile* file =
        read ? console::FindEmbeddedFile(path == "/" ? "index.html" : path.substr(1)) : nullptr;
    if (file != nullptr) {
      res.set_content(std::string(file->data), std::string(file->content_type));
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                     "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                     "frame-ancestors 'none'");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_header("Cache-Control", "no-cache");
      return;
    }
    SendError(res, absl::NotFoundError(
                       absl::StrCat("no such path ", path, " (the API is under /v1; see /docs)")));
    return;
  }

  FleetAdmin* fleet = fleet_;
  auto body_then = [&req, &res](auto message, auto&& call) {
    if (absl::Status s = ParseBody(req, &message); !s.ok()) return SendError(res, s);
    call(message);
  };
  auto no_query = [&req, &res]() {
    absl::Status s = CheckQuery(req, {});
    if (!s.ok()) SendError(res, s);
    return s.ok();
  };
  auto node_name = [&res](const std::string& name) {
    absl::Status s = CheckName("node", name);
    if (!s.ok()) SendError(res, s);
    return s.ok();
  };

  const std::vector<Route> routes = {
      {"GET", "/v1/nodes",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->ListNodes());
       }},
      {"POST", "/v1/nodes",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::CreateNodeRequest(),
                   [&](const auto& m) { Reply(res, fleet->CreateNode(m)); });
       }},
      {"GET", "/v1/nodes/{name}",
       [&](auto&, const std::string& name, auto& res) {
         if (no_query() && node_name(name)) Reply(res, fleet->GetNode(name));
       }},
      {"PATCH", "/v1/nodes/{name}",
       [&](auto&, const std::string& name, auto& res) {
         if (!no_query() || !node_name(name)) return;
         body_then(corral::v1::UpdateNodeRequest(), [&](corral::v1::UpdateNodeRequest m) {
           if (!m.name().empty() && m.name() != name) {
             return SendError(res, absl::InvalidArgumentError(absl::StrCat(
                                       "the body names node \"", m.name(), "\" but the path \"",
                                       name, "\"; a node cannot be renamed")));
           }
           m.set_name(name);
           Reply(res, fleet->UpdateNode(m));
         });
       }},
      {"DELETE", "/v1/nodes/{name}",
       [&](auto&, const std::string& name, auto& res) {
         if (no_query() && node_name(name)) Reply(res, fleet->RemoveNode(name));
       }},
      {"POST", "/v1/nodes/{name}:drain",
       [&](auto&, const std::string& name, auto& res) {
         if (no_query() && node_name(name)) Reply(res, fleet->DrainNode(name));
       }},
      {"POST", "/v1/nodes/{name}:enable",
       [&](auto&, const std::string& name, auto& res) {
         if (no_query() && node_name(name)) Reply(res, fleet->EnableNode(name));
       }},
      {"POST", "/v1/nodes/{name}:disable",
       [&](auto&, const std::string& name, auto& res) {
         if (no_query() && node_name(name)) Reply(res, fleet->DisableNode(name));
       }},
      {"GET", "/v1/strategy",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->GetStrategy());
       }},
      {"PUT", "/v1/strategy",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::SetStrategyRequest(),
                   [&](const auto& m) { Reply(res, fleet->SetStrategy(m)); });
       }},
      {"GET", "/v1/state",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->GetFleetState());
       }},
      {"GET", "/v1/models",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->ListModels());
       }},
      {"POST", "/v1/models:pull",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         corral::v1::PullModelRequest pull;
         if (absl::Status s = ParseBody(req, &pull); !s.ok()) return SendError(res, s);
         absl::StatusOr<std::vector<corral::v1::NodeInfo>> targets = fleet->PullTargets(pull);
         if (!targets.ok()) return SendError(res, targets.status());
         // The pull runs in the content provider, on this connection's thread, once the 200 and
         // its headers are out: each line reaches the client as the node reports it.
         res.status = 200;
         res.set_header("Cache-Control", "no-store");
         res.set_chunked_content_provider(
             "application/x-ndjson",
             [fleet, pull, targets = *std::move(targets)](size_t, httplib::DataSink& sink) {
               std::atomic<bool> gone{false};
               absl::Status result = fleet->Pull(
                   pull, targets,
                   [&](const corral::v1::PullProgress& line) {
                     const std::string text = ToJson(line, false) + "\n";
                     if (!sink.write(text.data(), text.size())) gone = true;
                     return !gone.load();
                   },
                   [&gone] { return gone.load(); });
               if (!result.ok() && !gone.load()) {
                 const std::string text = HttpErrorBody(result);
                 sink.write(text.data(), text.size());
               }
               if (!gone.load()) sink.done();
               return !gone.load();
             });
       }},
      {"POST", "/v1/models:delete",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::DeleteModelRequest(),
                   [&](const auto& m) { Reply(res, fleet->DeleteModel(m)); });
       }},
      {"GET", "/v1/proxies",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->ListProxies());
       }},
      {"GET", "/v1/discovery",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->GetDiscovery());
       }},
      {"PUT", "/v1/discovery",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::SetDiscoveryRequest(),
                   [&](const auto& m) { Reply(res, fleet->SetDiscovery(m)); });
       }},
      {"GET", "/v1/tokens",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->ListTokens());
       }},
      {"POST", "/v1/tokens",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::CreateTokenRequest(),
                   [&](const auto& m) { Reply(res, fleet->CreateToken(m)); });
       }},
      {"DELETE", "/v1/tokens/{name}",
       [&](auto&, const std::string& name, auto& res) {
         if (!no_query()) return;
         if (absl::Status s = CheckName("token", name); !s.ok()) return SendError(res, s);
         Reply(res, fleet->RevokeToken(name));
       }},
      {"GET", "/v1/token-policy",
       [&](auto&, auto&, auto& res) {
         if (no_query()) Reply(res, fleet->GetTokenPolicy());
       }},
      {"PUT", "/v1/token-policy",
       [&](auto&, auto&, auto& res) {
         if (!no_query()) return;
         body_then(corral::v1::SetTokenPolicyRequest(),
                   [&](const auto& m) { Reply(res, fleet->SetTokenPolicy(m)); });
       }},
      {"GET", "/v1/usage",
       [&](auto&, auto&, auto& res) {
         if (absl::Status s = CheckQuery(req, {"by", "since"}); !s.ok()) {
           return SendError(res, s);
         }
         const httplib::Params query = QueryParams(req);
         corral::v1::GetUsageRequest usage;
         if (auto by = query.find("by"); by != query.end()) usage.set_by(by->second);
         if (auto text = query.find("since"); text != query.end()) {
           absl::StatusOr<int64_t> since = ParseSinceSeconds(text->second);
           if (!since.ok()) return SendError(res, since.status());
           usage.set_since_seconds(*since);
         }
         Reply(res, fleet->GetUsage(usage));
       }},
  };

  const std::string method = req.method == "HEAD" ? "GET" : req.method;
  std::vector<std::string> allowed;
  for (const Route& route : routes) {
    std::string name;
    if (!Match(route.pattern, path, &name)) continue;
    if (method != route.method) {
      allowed.push_back(route.method);
      continue;
    }
    // The token is checked before anything of the request is read or acted on.
    if (absl::Status s = CheckToken(req); !s.ok()) {
      SendError(res, s);
      res.set_header("WWW-Authenticate", "Bearer");
      return;
    }
    route.handle(req, name, res);
    return;
  }
  if (!allowed.empty()) {
    SendError(res, absl::UnimplementedError(absl::StrCat(req.method, " is not allowed on ", path,
                                                         "; use ", absl::StrJoin(allowed, ", "))));
    res.status = 405;
    res.set_header("Allow", absl::StrJoin(allowed, ", "));
    return;
  }
  SendError(res, absl::NotFoundError(absl::StrCat("no such path ", path, " (see /docs)")));
}

}  // namespace corral::control
