// Route classification: which of Ollama's endpoints a request is for, and how the proxy must
// treat it (shared/design.md "The request path", shared/ollama-api.md §2 and §11).
//
// Pure, safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace corral::dataplane {

enum class Endpoint {
  // Proxy-answered, fleet-wide.
  kRoot,          // GET/HEAD /
  kVersion,       // GET/HEAD /api/version
  kTags,          // GET/HEAD /api/tags
  kPs,            // GET /api/ps
  kOpenAIModels,  // GET /v1/models
  // Inference, routed by the body's model.
  kGenerate,
  kChat,
  kEmbed,
  kEmbeddings,
  kOpenAIChat,         // POST /v1/chat/completions
  kOpenAICompletions,  // POST /v1/completions
  kOpenAIEmbeddings,   // POST /v1/embeddings
  kOpenAIResponses,    // POST /v1/responses
  kOpenAIMessages,     // POST /v1/messages
  // Node-local management.
  kShow,
  kOpenAIModel,  // GET /v1/models/:model (model in the path)
  kPull,
  kPush,
  kCreate,
  kCopy,
  kDelete,      // DELETE /api/delete (JSON body)
  kBlobHead,    // HEAD /api/blobs/:digest
  kBlobUpload,  // POST /api/blobs/:digest (raw body, streamed)
  // The proxy's own endpoints.
  kProxyHealth,  // GET /api/proxy
  kProxyState,   // GET /api/proxy/state
  kMetrics,      // GET /metrics (Prometheus text)
  // The endpoints of the proxies Corral replaces, so their users' scripts keep working
  // (docs/migrating.md; the answers are in seed_routes.h).
  kProxyActiveRequests,  // GET /api/proxy/active-requests: the requests in flight now
  kApiHealth,            // GET /api/health: {"status":"ok"} while the proxy runs
  kBackendsHealth,       // GET /__proxy/health: {"status":"ok","healthy_backends":N}
  kBackends,             // GET /__proxy/backends: every node, healthy or not, with in flight
  kHealth,               // GET /health: status and every enabled node's health
  // Errors Ollama answers in text/plain.
  kRedirect,          // trailing slash on a known path: RedirectStatus(method) to `param`
  kMethodNotAllowed,  // known path, wrong method: 405 "405 method not allowed"
  kNotFound,          // unknown path: 404 "404 page not found"
};

enum class RouteClass {
  kFleet,      // answered from the snapshot or by fan-out to every node
  kInference,  // one node chosen by model and strategy
  kNodeLocal,  // node-local management, routed to the node(s) it concerns
  kProxy,      // the proxy's own endpoints
  kError,      // kRedirect / kMethodNotAllowed / kNotFound
};

struct Route {
  Endpoint endpoint = Endpoint::kNotFound;
  RouteClass route_class = RouteClass::kError;
  // True for /v1/* paths: errors use the OpenAI error object, mid-stream errors are SSE events.
  bool openai = false;
  // kBlobHead/kBlobUpload: the digest; kOpenAIModel: the model; kRedirect: the target path.
  std::string param;
  // A path under the base URL /api/proxy (kProxyBasePath): the Ollama path a node is sent, the
  // prefix taken off and a short form spelled out (/api/proxy/chat -> /api/chat). Empty for
  // every other path: the client's target goes to the node as sent.
  std::string node_path;
};

// The base URL an Ollama client may be given instead of the proxy's root, as users of the
// proxy Corral replaces configured it: every Ollama route below it is the route without it,
// and /api/proxy/{generate,chat,embed,embeddings,tags} are short forms of /api/<same>.
// /api/proxy itself and /api/proxy/state (and /api/proxy/active-requests) keep their meaning.
inline constexpr std::string_view kProxyBasePath = "/api/proxy";

// `method` is the HTTP method as received ("HEAD" included, case-sensitive), `path` has no query
// string. HEAD is a route of its own only where Ollama has one (/, /api/version, /api/tags,
// /api/blobs/:digest, and the proxy's own endpoints); elsewhere it is kMethodNotAllowed. OPTIONS
// is kMethodNotAllowed here too: CORS preflight is answered before classification.
// `openai` is set for every path under /v1/ (and /api/proxy/v1/), errors included. A path under
// /api/proxy/ is classified as its Ollama path (Route::node_path) once the exact paths are
// tried, so ordinary paths never pay for the prefix; the proxy's own and the seeds' endpoints
// are not repeated under it (404, as on a node).
Route ClassifyRoute(std::string_view method, std::string_view path);

// True for the paths whose clients expect OpenAI's formats (errors included): /v1 and below.
// `path` has no query string, as for ClassifyRoute.
bool IsOpenAIPath(std::string_view path);

// The status of a kRedirect, as the node's router answers it: 301 for GET, 307 for every other
// method (HEAD included), so a client re-sends its method and body to the target.
int RedirectStatus(std::string_view method);

// The class of an endpoint: how the proxy treats it.
RouteClass RouteClassOf(Endpoint endpoint);

// Stable lower-case name for logs and the state endpoint, e.g. "generate", "v1.chat".
const char* EndpointName(Endpoint endpoint);

}  // namespace corral::dataplane
