#include "dataplane/route.h"

#include <array>

namespace corral::dataplane {
namespace {

// What one known path accepts. The table mirrors the node's router: HEAD is accepted only where
// Ollama registers a HEAD route (/, /api/version, /api/tags, /api/blobs/:digest), so HEAD
// /api/ps gets the node's 405, not a silent GET.
struct RouteSpec {
  std::string_view path;  // exact path; for a parameter route, the prefix up to the parameter
  bool has_param;         // a final non-empty segment without '/' follows `path`
  Endpoint get = Endpoint::kNotFound;
  Endpoint head = Endpoint::kNotFound;
  Endpoint post = Endpoint::kNotFound;
  Endpoint del = Endpoint::kNotFound;
};

using E = Endpoint;
constexpr E kNone = Endpoint::kNotFound;

// clang-format off
constexpr std::array kRoutes = {
    //        path                     param  GET                  HEAD               POST                     DELETE
    RouteSpec{"/",                     false, E::kRoot,            E::kRoot,          kNone,                   kNone},
    RouteSpec{"/api/version",          false, E::kVersion,         E::kVersion,       kNone,                   kNone},
    RouteSpec{"/api/tags",             false, E::kTags,            E::kTags,          kNone,                   kNone},
    RouteSpec{"/api/ps",               false, E::kPs,              kNone,             kNone,                   kNone},
    RouteSpec{"/api/generate",         false, kNone,               kNone,             E::kGenerate,            kNone},
    RouteSpec{"/api/chat",             false, kNone,               kNone,             E::kChat,                kNone},
    RouteSpec{"/api/embed",            false, kNone,               kNone,             E::kEmbed,               kNone},
    RouteSpec{"/api/embeddings",       false, kNone,               kNone,             E::kEmbeddings,          kNone},
    RouteSpec{"/api/show",             false, kNone,               kNone,             E::kShow,                kNone},
    RouteSpec{"/api/pull",             false, kNone,               kNone,             E::kPull,                kNone},
    RouteSpec{"/api/push",             false, kNone,               kNone,             E::kPush,                kNone},
    RouteSpec{"/api/create",           false, kNone,               kNone,             E::kCreate,              kNone},
    RouteSpec{"/api/copy",             false, kNone,               kNone,             E::kCopy,                kNone},
    RouteSpec{"/api/delete",           false, kNone,               kNone,             kNone,                   E::kDelete},
    RouteSpec{"/api/blobs/",           true,  kNone,               E::kBlobHead,      E::kBlobUpload,          kNone},
    RouteSpec{"/v1/chat/completions",  false, kNone,               kNone,             E::kOpenAIChat,          kNone},
    RouteSpec{"/v1/completions",       false, kNone,               kNone,             E::kOpenAICompletions,   kNone},
    RouteSpec{"/v1/embeddings",        false, kNone,               kNone,             E::kOpenAIEmbeddings,    kNone},
    RouteSpec{"/v1/responses",         false, kNone,               kNone,             E::kOpenAIResponses,     kNone},
    RouteSpec{"/v1/messages",          false, kNone,               kNone,             E::kOpenAIMessages,      kNone},
    RouteSpec{"/v1/models",            false, E::kOpenAIModels,    kNone,             kNone,                   kNone},
    RouteSpec{"/v1/models/",           true,  E::kOpenAIModel,     kNone,             kNone,                   kNone},
    // The proxy's own endpoints also answer HEAD, for load balancers' health checks.
    RouteSpec{"/api/proxy",            false, E::kProxyHealth,     E::kProxyHealth,   kNone,                   kNone},
    RouteSpec{"/api/proxy/state",      false, E::kProxyState,      E::kProxyState,    kNone,                   kNone},
    RouteSpec{"/metrics",              false, E::kMetrics,         E::kMetrics,       kNone,                   kNone},
    // The seeds' endpoints (docs/migrating.md), after every Ollama path so those match as fast
    // as before.
    RouteSpec{"/api/proxy/active-requests", false, E::kProxyActiveRequests, E::kProxyActiveRequests, kNone, kNone},
    RouteSpec{"/api/health",           false, E::kApiHealth,       E::kApiHealth,     kNone,                   kNone},
    RouteSpec{"/__proxy/health",       false, E::kBackendsHealth,  E::kBackendsHealth, kNone,                  kNone},
    RouteSpec{"/__proxy/backends",     false, E::kBackends,        E::kBackends,      kNone,                   kNone},
    RouteSpec{"/health",               false, E::kHealth,          E::kHealth,        kNone,                   kNone},
};

// The short forms under /api/proxy/, matched against the path after the prefix: each is the
// Ollama route /api/<same>, methods included.
constexpr std::array kShortForms = {
    //        path                     param  GET                  HEAD               POST                     DELETE
    RouteSpec{"/generate",             false, kNone,               kNone,             E::kGenerate,            kNone},
    RouteSpec{"/chat",                 false, kNone,               kNone,             E::kChat,                kNone},
    RouteSpec{"/embed",                false, kNone,               kNone,             E::kEmbed,               kNone},
    RouteSpec{"/embeddings",           false, kNone,               kNone,             E::kEmbeddings,          kNone},
    RouteSpec{"/tags",                 false, E::kTags,            E::kTags,          kNone,                   kNone},
};
// clang-format on

}  // namespace

RouteClass RouteClassOf(Endpoint endpoint) {
  switch (endpoint) {
    case E::kRoot:
    case E::kVersion:
    case E::kTags:
    case E::kPs:
    case E::kOpenAIModels:
      return RouteClass::kFleet;
    case E::kGenerate:
    case E::kChat:
    case E::kEmbed:
    case E::kEmbeddings:
    case E::kOpenAIChat:
    case E::kOpenAICompletions:
    case E::kOpenAIEmbeddings:
    case E::kOpenAIResponses:
    case E::kOpenAIMessages:
      return RouteClass::kInference;
    case E::kShow:
    case E::kOpenAIModel:
    case E::kPull:
    case E::kPush:
    case E::kCreate:
    case E::kCopy:
    case E::kDelete:
    case E::kBlobHead:
    case E::kBlobUpload:
      return RouteClass::kNodeLocal;
    case E::kProxyHealth:
    case E::kProxyState:
    case E::kMetrics:
    case E::kProxyActiveRequests:
    case E::kApiHealth:
    case E::kBackendsHealth:
    case E::kBackends:
    case E::kHealth:
      return RouteClass::kProxy;
    case E::kRedirect:
    case E::kMethodNotAllowed:
    case E::kNotFound:
      return RouteClass::kError;
  }
  return RouteClass::kError;
}

namespace {

Endpoint ForMethod(const RouteSpec& spec, std::string_view method) {
  if (method == "GET") return spec.get;
  if (method == "HEAD") return spec.head;
  if (method == "POST") return spec.post;
  if (method == "DELETE") return spec.del;
  return kNone;
}

// The spec of `table` whose path matches, and the captured parameter.
template <size_t N>
const RouteSpec* Match(const std::array<RouteSpec, N>& table, std::string_view path,
                       std::string_view* param) {
  for (const RouteSpec& spec : table) {
    if (!spec.has_param) {
      if (path == spec.path) return &spec;
      continue;
    }
    if (path.size() <= spec.path.size() || path.substr(0, spec.path.size()) != spec.path) continue;
    const std::string_view rest = path.substr(spec.path.size());
    if (rest.find('/') != std::string_view::npos) continue;
    *param = rest;
    return &spec;
  }
  return nullptr;
}

// The Ollama path of each short form, in kShortForms' order.
constexpr std::array<std::string_view, kShortForms.size()> kShortFormNodePaths = {
    "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/tags"};

// A known path: its spec, the captured parameter and, under /api/proxy/, the Ollama path the
// node is sent (a view into the path or into kShortFormNodePaths: nothing is allocated).
struct Resolved {
  const RouteSpec* spec = nullptr;
  std::string_view param;
  std::string_view node_path;  // set under the prefix only
};

// True for a path below /api/proxy/ (not /api/proxy itself).
bool UnderBasePath(std::string_view path) {
  return path.size() > kProxyBasePath.size() && path[kProxyBasePath.size()] == '/' &&
         path.substr(0, kProxyBasePath.size()) == kProxyBasePath;
}

// The proxy's own and the seeds' endpoints are not repeated under the base URL.
bool IsOllamaRoute(const RouteSpec& spec) {
  for (Endpoint e : {spec.get, spec.head, spec.post, spec.del}) {
    if (e != kNone) return RouteClassOf(e) != RouteClass::kProxy;
  }
  return false;
}

Resolved Resolve(std::string_view path) {
  Resolved resolved;
  resolved.spec = Match(kRoutes, path, &resolved.param);
  if (resolved.spec != nullptr) return resolved;
  // Only now, and only for paths under it, is the base URL looked at.
  if (!UnderBasePath(path)) return resolved;
  const std::string_view rest = path.substr(kProxyBasePath.size());
  if ((resolved.spec = Match(kShortForms, rest, &resolved.param)) != nullptr) {
    resolved.node_path =
        kShortFormNodePaths[static_cast<size_t>(resolved.spec - kShortForms.data())];
    return resolved;
  }
  resolved.spec = Match(kRoutes, rest, &resolved.param);
  if (resolved.spec == nullptr || !IsOllamaRoute(*resolved.spec)) {
    resolved.spec = nullptr;
    return resolved;
  }
  resolved.node_path = rest;
  return resolved;
}

Route Make(Endpoint endpoint, std::string_view path, std::string_view param = {},
           std::string_view node_path = {}) {
  Route route;
  route.endpoint = endpoint;
  route.route_class = RouteClassOf(endpoint);
  route.openai = IsOpenAIPath(path);
  if (!param.empty()) route.param.assign(param);
  if (!node_path.empty()) route.node_path.assign(node_path);
  return route;
}

}  // namespace

Route ClassifyRoute(std::string_view method, std::string_view path) {
  const Resolved resolved = Resolve(path);
  if (resolved.spec != nullptr) {
    const Endpoint endpoint = ForMethod(*resolved.spec, method);
    if (endpoint == kNone) return Make(E::kMethodNotAllowed, path);
    return Make(endpoint, path, resolved.param, resolved.node_path);
  }
  // One trailing slash on a path that exists for this method redirects to the path without it;
  // like the node's router, a trailing slash on a path the method does not serve is a 404.
  if (path.size() > 1 && path.back() == '/') {
    const std::string_view target = path.substr(0, path.size() - 1);
    if (const Resolved to = Resolve(target);
        to.spec != nullptr && ForMethod(*to.spec, method) != kNone) {
      return Make(E::kRedirect, path, target);
    }
  }
  return Make(E::kNotFound, path);
}

bool IsOpenAIPath(std::string_view path) {
  if (path.size() > kProxyBasePath.size() && path[1] == 'a' && UnderBasePath(path)) {
    path.remove_prefix(kProxyBasePath.size());
  }
  return path == "/v1" || path.substr(0, 4) == "/v1/";
}

int RedirectStatus(std::string_view method) { return method == "GET" ? 301 : 307; }

const char* EndpointName(Endpoint endpoint) {
  switch (endpoint) {
    case E::kRoot:
      return "root";
    case E::kVersion:
      return "version";
    case E::kTags:
      return "tags";
    case E::kPs:
      return "ps";
    case E::kOpenAIModels:
      return "v1.models";
    case E::kGenerate:
      return "generate";
    case E::kChat:
      return "chat";
    case E::kEmbed:
      return "embed";
    case E::kEmbeddings:
      return "embeddings";
    case E::kOpenAIChat:
      return "v1.chat";
    case E::kOpenAICompletions:
      return "v1.completions";
    case E::kOpenAIEmbeddings:
      return "v1.embeddings";
    case E::kOpenAIResponses:
      return "v1.responses";
    case E::kOpenAIMessages:
      return "v1.messages";
    case E::kShow:
      return "show";
    case E::kOpenAIModel:
      return "v1.model";
    case E::kPull:
      return "pull";
    case E::kPush:
      return "push";
    case E::kCreate:
      return "create";
    case E::kCopy:
      return "copy";
    case E::kDelete:
      return "delete";
    case E::kBlobHead:
      return "blob.head";
    case E::kBlobUpload:
      return "blob.upload";
    case E::kProxyHealth:
      return "proxy";
    case E::kProxyState:
      return "proxy.state";
    case E::kMetrics:
      return "metrics";
    case E::kProxyActiveRequests:
      return "proxy.active_requests";
    case E::kApiHealth:
      return "api.health";
    case E::kBackendsHealth:
      return "__proxy.health";
    case E::kBackends:
      return "__proxy.backends";
    case E::kHealth:
      return "health";
    case E::kRedirect:
      return "redirect";
    case E::kMethodNotAllowed:
      return "method_not_allowed";
    case E::kNotFound:
      return "not_found";
  }
  return "unknown";
}

}  // namespace corral::dataplane
