#include "sim/sim_server.h"

#include <exception>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "sim/replies.h"

namespace corral::sim {
namespace {

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

}  // namespace

SimServer::SimServer(SimConfig config, std::vector<SimModel> models)
    : node_(std::move(config), std::move(models)) {}

SimServer::~SimServer() { Shutdown(); }

void SimServer::Shutdown() { node_.Shutdown(); }

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
      node_.RecordRequest(req);
      handler(req, res);
    };
  };
  server.Get("/", recorded([](Req, Res res) {
               SendText(res, 200, "Ollama is running", "text/plain; charset=utf-8");
             }));
  server.Get("/api/version", recorded([this](Req, Res res) {
               SendJson(res, 200, Json{{"version", node_.Config().version}});
             }));
  server.Get("/api/tags",
             recorded([this](Req req, Res res) { model_routes_.HandleTags(req, res); }));
  server.Get("/api/ps", recorded([this](Req req, Res res) { model_routes_.HandlePs(req, res); }));
  server.Post("/api/generate",
              recorded([this](Req req, Res res) { inference_routes_.HandleGenerate(req, res); }));
  server.Post("/api/chat",
              recorded([this](Req req, Res res) { inference_routes_.HandleChat(req, res); }));
  server.Post("/api/embed",
              recorded([this](Req req, Res res) { inference_routes_.HandleEmbed(req, res); }));
  server.Post("/api/embeddings",
              recorded([this](Req req, Res res) { inference_routes_.HandleEmbeddings(req, res); }));
  server.Post("/api/show",
              recorded([this](Req req, Res res) { model_routes_.HandleShow(req, res); }));
  server.Post("/api/pull",
              recorded([this](Req req, Res res) { model_routes_.HandlePull(req, res); }));
  server.Post("/api/push",
              recorded([this](Req req, Res res) { model_routes_.HandlePush(req, res); }));
  server.Post("/api/create",
              recorded([this](Req req, Res res) { model_routes_.HandleCreate(req, res); }));
  server.Post("/api/copy",
              recorded([this](Req req, Res res) { model_routes_.HandleCopy(req, res); }));
  server.Delete("/api/delete",
                recorded([this](Req req, Res res) { model_routes_.HandleDelete(req, res); }));
  server.Get("/api/blobs/([^/]+)",
             recorded([this](Req req, Res res) { model_routes_.HandleBlob(req, res); }));
  server.Post("/api/blobs/([^/]+)",
              recorded([this](Req req, Res res) { model_routes_.HandleBlob(req, res); }));
  server.Post("/v1/chat/completions",
              recorded([this](Req req, Res res) { inference_routes_.HandleOpenAiChat(req, res); }));
  server.Post("/v1/completions", recorded([this](Req req, Res res) {
                inference_routes_.HandleOpenAiCompletion(req, res);
              }));
  server.Post("/v1/embeddings", recorded([this](Req req, Res res) {
                inference_routes_.HandleOpenAiEmbeddings(req, res);
              }));
  server.Get("/v1/models",
             recorded([this](Req req, Res res) { model_routes_.HandleOpenAiModels(req, res); }));
  server.Get("/v1/models/([^/]+)",
             recorded([this](Req req, Res res) { model_routes_.HandleOpenAiModel(req, res); }));

  server.Get("/_sim/stats", [this](Req req, Res res) { control_routes_.HandleStats(req, res); });
  server.Get("/_sim/config", [this](Req req, Res res) { control_routes_.HandleConfig(req, res); });
  server.Post("/_sim/config", [this](Req req, Res res) { control_routes_.HandleConfig(req, res); });
  server.Post("/_sim/release",
              [this](Req req, Res res) { control_routes_.HandleRelease(req, res); });
  server.Post("/_sim/reset", [this](Req req, Res res) { control_routes_.HandleReset(req, res); });

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

}  // namespace corral::sim
