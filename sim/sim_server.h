// corral-sim's HTTP behaviour: one simulated Ollama node on the wire.
//
// SimServer installs Ollama's routes (native /api/*, the OpenAI-compatible /v1/*) and the
// simulator's own control routes (/_sim/*) on an httplib::Server. It answers with Ollama's exact
// shapes, content types, status codes and error texts (shared/ollama-api.md), paces streamed
// tokens, holds response headers back until the first token exists (queue wait, cold load and
// prompt evaluation happen first, as on a real node), and injects failures on demand. Tests,
// the demo and the benchmarks drive it; docs/sim.md is the user's guide.
//
// Thread safety: Register once before the server runs. Handlers run on httplib's worker threads
// concurrently; configuration, models, blobs and statistics each have their own mutex (named
// beside the member). Shutdown may be called from any thread, e.g. a signal thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/scheduler.h"
#include "sim/token_gate.h"
#include "sim/wire.h"

namespace corral::sim {

enum class FailMode {
  kNone,
  kError500,        // 500 JSON before the first token
  kBusy503,         // Ollama's exact 503 queue-full answer
  kHang,            // read the request, never answer (until the client leaves)
  kDieMidStream,    // after K tokens the process _exits
  kDropMidStream,   // after K tokens the connection closes without the last chunk
  kErrorMidStream,  // after K tokens an {"error":...} line on the 200 stream, then the end
  kGarbage,         // 200 status line, then bytes that are not valid chunked framing
  kSlowHeaders,     // headers delayed by slow_headers_ms, then a normal answer
  kNotHttp,         // bytes that are not an HTTP response at all, then the connection closes
  kStallMidStream,  // after K tokens nothing more is sent; the connection stays open
};
bool ParseFailMode(std::string_view text, FailMode* mode);
std::string_view FailModeName(FailMode mode);

// Everything a flag or POST /_sim/config can change. Values are read per request (a request
// keeps the settings it started with).
struct SimConfig {
  std::string version = "0.12.3";
  int tokens = 8;              // content tokens per answer (thinking models add tokens/2)
  int token_interval_ms = 20;  // between tokens; the first token also waits this long
  int jitter_ms = 0;           // +/- uniform jitter on each interval
  int load_delay_ms = 500;     // cold load, before headers
  int num_parallel = 1;        // generations per loaded model
  int max_queue = 512;         // waiting requests before 503
  bool fast = false;           // no delays at all (benchmarks)
  double vram_gb = 0;          // 0: unlimited
  FailMode fail = FailMode::kNone;
  int fail_after = 2;            // K for the *-mid-stream modes
  int fail_times = 0;            // failures to inject before reverting to none; 0: unlimited
  bool fail_all_routes = false;  // false: only inference routes fail
  int slow_headers_ms = 90000;
  int pull_interval_ms = 60;  // between pull progress lines
  bool final_text = false;    // put the last token's text in the final chunk
  int keep_requests = 50;     // how many recent requests /_sim/stats shows
};

// Applies the settings in a /_sim/config object. Unknown keys and wrong types are errors.
// Model and gate keys are handled by SimServer, not here.
bool ApplyConfigJson(const Json& patch, SimConfig* config, std::string* error);
Json ConfigJson(const SimConfig& config);

class SimServer {
 public:
  SimServer(SimConfig config, std::vector<SimModel> models);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Installs the routes and the server options the simulation needs (TCP_NODELAY, keep-alive).
  void Register(httplib::Server& server);
  // Wakes every waiting request and ends streams; call before stopping the server.
  void Shutdown();

  struct Generation;  // one inference in progress (defined in the .cc)

 private:
  // Ollama routes
  void HandleGenerate(const httplib::Request& req, httplib::Response& res);
  void HandleChat(const httplib::Request& req, httplib::Response& res);
  void HandleEmbed(const httplib::Request& req, httplib::Response& res);
  void HandleEmbeddings(const httplib::Request& req, httplib::Response& res);
  void HandleTags(const httplib::Request& req, httplib::Response& res);
  void HandlePs(const httplib::Request& req, httplib::Response& res);
  void HandleShow(const httplib::Request& req, httplib::Response& res);
  void HandlePull(const httplib::Request& req, httplib::Response& res);
  void HandlePush(const httplib::Request& req, httplib::Response& res);
  void HandleCreate(const httplib::Request& req, httplib::Response& res);
  void HandleCopy(const httplib::Request& req, httplib::Response& res);
  void HandleDelete(const httplib::Request& req, httplib::Response& res);
  void HandleBlob(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiChat(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiCompletion(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiEmbeddings(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiModels(const httplib::Request& req, httplib::Response& res);
  void HandleOpenAiModel(const httplib::Request& req, httplib::Response& res);
  void HandleUnrouted(const httplib::Request& req, httplib::Response& res);
  // Control routes
  void HandleStats(const httplib::Request& req, httplib::Response& res);
  void HandleConfig(const httplib::Request& req, httplib::Response& res);
  void HandleRelease(const httplib::Request& req, httplib::Response& res);
  void HandleReset(const httplib::Request& req, httplib::Response& res);

  // Shared steps
  SimConfig Config() const;
  std::optional<SimModel> FindModel(std::string_view name) const;
  void InstallModel(SimModel model);
  // Takes the configured failure if it applies to this kind of route (counts fail_times down).
  FailMode TakeFailure(bool inference, bool has_tokens);
  // Acts out a failure that happens before the first token. Returns true when the response is
  // settled (error sent, connection broken or abandoned); false to go on normally.
  bool FailBeforeAnswer(FailMode mode, bool openai, ConnectionWatch& watch, const SimConfig& config,
                        httplib::Response& res);
  // Waits for a slot; answers busy/cancel itself and returns false when there is none.
  bool AcquireSlot(const SimModel& model, int num_ctx, const KeepAlive& keep_alive, bool openai,
                   ConnectionWatch& watch, Scheduler::Lease* lease, httplib::Response& res);
  // Checks the name and finds the model; answers 400/404 itself when there is none.
  std::optional<SimModel> FindRequestedModel(const std::string& name, bool openai,
                                             httplib::Response& res) const;
  // The embedding routes' work: the configured failure, a slot, and one token interval of compute
  // (none without input). Returns false when the response is settled (error or cancel sent).
  bool RunEmbedding(const SimModel& model, int num_ctx, const KeepAlive& keep_alive, bool has_input,
                    bool openai, ConnectionWatch& watch, Scheduler::Lease* lease,
                    httplib::Response& res);
  // Answers a pull/push/create: a stream of status lines (one every pull_interval_ms), or with
  // stream:false one object ({"status":"success"} or a 500 error). `install` runs just before
  // the success line is sent, so a client that saw "success" finds the model at once.
  void RespondWithStatusLines(std::shared_ptr<ConnectionWatch> watch, std::vector<Json> lines,
                              std::function<void()> install, bool stream, const SimConfig& config,
                              httplib::Response& res);
  // Whether a pull of `ref` would find it (the built-in registry or a /_sim/config "pullable").
  bool InRegistry(const ModelRef& ref) const;
  // Streams or returns the answer of a planned generation.
  void Respond(std::shared_ptr<Generation> gen, httplib::Response& res);
  bool Sleep(std::chrono::milliseconds duration, ConnectionWatch& watch);
  bool Cancelled(ConnectionWatch& watch) const;
  void RecordRequest(const httplib::Request& req);
  void CountCancelled();
  void CountCompleted();
  void CountInjected();
  friend struct Generation;

  std::atomic<bool> shutting_down_{false};
  Scheduler scheduler_;
  TokenGate gate_;

  const SimConfig startup_config_;
  const std::vector<SimModel> startup_models_;

  mutable std::mutex config_mu_;
  SimConfig config_;        // guarded by config_mu_
  int fail_remaining_ = 0;  // guarded by config_mu_

  mutable std::mutex models_mu_;
  std::map<std::string, SimModel> models_;  // by canonical key; guarded by models_mu_
  std::set<std::string> pullable_;          // extra registry names; guarded by models_mu_
  std::map<std::string, int64_t> blobs_;    // "sha256:<hex>" → size; guarded by models_mu_

  mutable std::mutex stats_mu_;
  std::map<std::string, int64_t> requests_by_path_;  // guarded by stats_mu_
  int64_t requests_total_ = 0;                       // guarded by stats_mu_
  int64_t cancelled_ = 0;                            // guarded by stats_mu_
  int64_t completed_ = 0;                            // guarded by stats_mu_
  int64_t injected_ = 0;                             // guarded by stats_mu_
  std::deque<Json> last_requests_;                   // guarded by stats_mu_
};

}  // namespace corral::sim
