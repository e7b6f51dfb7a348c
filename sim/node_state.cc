#include "sim/node_state.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "sim/replies.h"

namespace corral::sim {
namespace {

using std::chrono::milliseconds;

constexpr size_t kMaxRecordedBody = 1 << 20;

// The request headers as they came off the wire: httplib adds REMOTE_ADDR, REMOTE_PORT,
// LOCAL_ADDR and LOCAL_PORT itself (after the parsed ones), so the last entry of each of those
// with httplib's value is dropped. A proxy that forwarded such a header is still visible.
std::vector<std::pair<std::string, std::string>> WireHeaders(const httplib::Request& req) {
  std::vector<std::pair<std::string, std::string>> headers(req.headers.begin(), req.headers.end());
  const std::pair<const char*, std::string> injected[] = {
      {"REMOTE_ADDR", req.remote_addr},
      {"REMOTE_PORT", std::to_string(req.remote_port)},
      {"LOCAL_ADDR", req.local_addr},
      {"LOCAL_PORT", std::to_string(req.local_port)}};
  for (const auto& [name, value] : injected) {
    for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
      if (absl::EqualsIgnoreCase(it->first, name)) {
        if (it->second == value) headers.erase(std::next(it).base());
        break;
      }
    }
  }
  return headers;
}

bool IsValidUtf8(const std::string& s) {
  try {
    (void)Json(s).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

void WriteGarbage(ConnectionWatch& watch) {
  const int fd = watch.Fd();
  if (fd < 0) return;
  static const char kBytes[] =
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
      "zz-not-a-chunk-size\r\n{\"model\":\x01\xfe garbage\r\n";
  [[maybe_unused]] ssize_t n = ::send(fd, kBytes, sizeof kBytes - 1, MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
}

// What a node port answers when something other than Ollama listens there (another service's
// banner, a TLS record, binary noise): not even a status line.
void WriteNotHttp(ConnectionWatch& watch) {
  const int fd = watch.Fd();
  if (fd < 0) return;
  static const char kBytes[] =
      "SSH-2.0-OpenSSH_9.2p1\r\n\x15\x03\x01\x00\x02\x02\x50\x00\xff\xfe not http\r\n\r\n";
  [[maybe_unused]] ssize_t n = ::send(fd, kBytes, sizeof kBytes - 1, MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
}

}  // namespace

Json GateJson(const TokenGate::Status& gate) {
  return Json{{"gated", gate.gated},
              {"waiting", gate.waiting},
              {"available", gate.available},
              {"passed", gate.passed}};
}

NodeState::NodeState(SimConfig config, std::vector<SimModel> models)
    : startup_config_(config), startup_models_(models), config_(config) {
  fail_remaining_ = config.fail_times;
  for (SimModel& m : models) models_[m.key] = std::move(m);
  scheduler_.SetLimits(LimitsOf(config));
}

void NodeState::Shutdown() {
  shutting_down_ = true;
  scheduler_.Shutdown();
  gate_.Shutdown();
}

SimConfig NodeState::Config() const {
  std::lock_guard<std::mutex> lock(config_mu_);
  return config_;
}

std::optional<SimModel> NodeState::FindModel(std::string_view name) const {
  std::optional<std::string> key = CanonicalModelKey(name);
  if (!key) return std::nullopt;
  std::lock_guard<std::mutex> lock(models_mu_);
  auto it = models_.find(*key);
  if (it == models_.end()) return std::nullopt;
  return it->second;
}

void NodeState::InstallModel(SimModel model) {
  std::lock_guard<std::mutex> lock(models_mu_);
  models_[model.key] = std::move(model);
}

FailMode NodeState::TakeFailure(bool inference, bool has_tokens) {
  std::lock_guard<std::mutex> lock(config_mu_);
  const FailMode mode = config_.fail;
  if (mode == FailMode::kNone) return mode;
  if (!inference && !config_.fail_all_routes) return FailMode::kNone;
  if (IsMidStream(mode) && !has_tokens) return FailMode::kNone;
  if (config_.fail_times > 0 && --fail_remaining_ <= 0) config_.fail = FailMode::kNone;
  return mode;
}

bool NodeState::Cancelled(ConnectionWatch& watch) const {
  return shutting_down_.load() || watch.ClientGone();
}

bool NodeState::Sleep(milliseconds duration, ConnectionWatch& watch) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (true) {
    if (Cancelled(watch)) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(deadline - now, milliseconds(20)));
  }
}

void NodeState::CountCancelled() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++cancelled_;
}

void NodeState::CountCompleted() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++completed_;
}

void NodeState::CountInjected() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++injected_;
}

bool NodeState::FailBeforeAnswer(FailMode mode, bool openai, ConnectionWatch& watch,
                                 const SimConfig& config, httplib::Response& res) {
  switch (mode) {
    case FailMode::kError500:
      CountInjected();
      ErrorFor(res, 500, kLoadFailureText, openai);
      return true;
    case FailMode::kBusy503:
      CountInjected();
      ErrorFor(res, 503, kBusyText, openai);
      return true;
    case FailMode::kHang:
      CountInjected();
      while (Sleep(milliseconds(1000), watch)) {
      }
      if (!shutting_down_) CountCancelled();
      AnswerCanceled(res, openai);
      return true;
    case FailMode::kGarbage:
      CountInjected();
      WriteGarbage(watch);
      res.status = 200;
      return true;
    case FailMode::kNotHttp:
      CountInjected();
      WriteNotHttp(watch);
      res.status = 200;
      return true;
    case FailMode::kSlowHeaders:
      CountInjected();
      if (!Sleep(milliseconds(config.slow_headers_ms), watch)) {
        CountCancelled();
        AnswerCanceled(res, openai);
        return true;
      }
      return false;
    default:
      return false;
  }
}

bool NodeState::AcquireSlot(const SimModel& model, int num_ctx, const KeepAlive& keep_alive,
                            bool openai, ConnectionWatch& watch, Scheduler::Lease* lease,
                            httplib::Response& res) {
  switch (scheduler_.Acquire(
      model, num_ctx, keep_alive, [&] { return Cancelled(watch); }, lease)) {
    case Scheduler::Result::kReady:
      return true;
    case Scheduler::Result::kBusy:
      ErrorFor(res, 503, kBusyText, openai);
      return false;
    case Scheduler::Result::kCancelled:
      CountCancelled();
      AnswerCanceled(res, openai);
      return false;
    case Scheduler::Result::kShutdown:
      ErrorFor(res, 503, "server shutting down", openai);
      return false;
  }
  return false;
}

std::optional<SimModel> NodeState::FindRequestedModel(const std::string& name, bool openai,
                                                      httplib::Response& res) const {
  if (!ParseModelName(name)) {
    ErrorFor(res, 400, "invalid model name", openai);
    return std::nullopt;
  }
  std::optional<SimModel> model = FindModel(name);
  if (!model) ErrorFor(res, 404, "model '" + name + "' not found", openai);
  return model;
}

void NodeState::RecordRequest(const httplib::Request& req) {
  Json headers = Json::object();
  Json header_list = Json::array();
  for (const auto& [name, value] : WireHeaders(req)) {
    const std::string lower = absl::AsciiStrToLower(name);
    header_list.push_back(Json::array({name, value}));
    if (headers.contains(lower)) {
      headers[lower] = headers[lower].get<std::string>() + ", " + value;
    } else {
      headers[lower] = value;
    }
  }
  Json entry{{"method", req.method},           {"path", req.path},   {"target", req.target},
             {"remote_addr", req.remote_addr}, {"headers", headers}, {"header_list", header_list},
             {"body_size", req.body.size()}};
  const std::string body = req.body.substr(0, kMaxRecordedBody);
  if (IsValidUtf8(body)) {
    entry["body"] = body;
  } else {
    entry["body_base64"] = Base64(body);
  }
  if (req.body.size() > kMaxRecordedBody) entry["body_truncated"] = true;
  const int keep = Config().keep_requests;
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++requests_total_;
  ++requests_by_path_[req.path];
  last_requests_.push_back(std::move(entry));
  while (static_cast<int>(last_requests_.size()) > keep) last_requests_.pop_front();
}

void NodeState::SetConfig(const SimConfig& config, bool restart_failures) {
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    config_ = config;
    if (restart_failures) fail_remaining_ = config.fail_times;
  }
  scheduler_.SetLimits(LimitsOf(config));
}

void NodeState::RemoveModel(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    models_.erase(key);
  }
  scheduler_.Unload(key);
}

std::vector<SimModel> NodeState::Models() const {
  std::vector<SimModel> models;
  std::lock_guard<std::mutex> lock(models_mu_);
  for (const auto& [key, m] : models_) models.push_back(m);
  return models;
}

void NodeState::ChangeModels(const std::optional<std::vector<SimModel>>& replace,
                             const std::vector<SimModel>& add,
                             const std::vector<std::string>& remove,
                             const std::vector<std::string>& pullable) {
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    if (replace) {
      models_.clear();
      for (const SimModel& m : *replace) models_[m.key] = m;
    }
    for (const SimModel& m : add) models_[m.key] = m;
    for (const std::string& key : remove) models_.erase(key);
    pullable_.insert(pullable.begin(), pullable.end());
  }
  for (const std::string& key : remove) scheduler_.Unload(key);
}

bool NodeState::InRegistry(const ModelRef& ref) const {
  if (InBuiltInRegistry(ref)) return true;
  std::lock_guard<std::mutex> lock(models_mu_);
  return pullable_.count(CanonicalKey(ref)) > 0;
}

std::vector<std::string> NodeState::PullableNames() const {
  std::lock_guard<std::mutex> lock(models_mu_);
  return std::vector<std::string>(pullable_.begin(), pullable_.end());
}

std::optional<int64_t> NodeState::BlobSize(const std::string& digest) const {
  std::lock_guard<std::mutex> lock(models_mu_);
  auto it = blobs_.find(digest);
  if (it == blobs_.end()) return std::nullopt;
  return it->second;
}

void NodeState::AddBlob(const std::string& digest, int64_t size) {
  std::lock_guard<std::mutex> lock(models_mu_);
  blobs_[digest] = size;
}

Json NodeState::StatsJson() {
  const TokenGate::Status gate = gate_.status();
  Json out;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    Json by_path = Json::object();
    for (const auto& [path, n] : requests_by_path_) by_path[path] = n;
    Json last = Json::array();
    for (const Json& r : last_requests_) last.push_back(r);
    out = Json{{"requests", by_path},
               {"requests_by_path", by_path},
               {"requests_total", requests_total_},
               {"cancelled", cancelled_},
               {"completed", completed_},
               {"injected_failures", injected_},
               {"last_requests", last}};
  }
  out["active"] = scheduler_.Active();
  out["pending"] = scheduler_.Pending();
  out["loaded"] = scheduler_.LoadedNames();
  out["gate"] = GateJson(gate);
  // What a GPU node's work cost, for benchmarks. "requests" above is the older count by path
  // (tests read it; "requests_by_path" is the same map under its lasting name), so the
  // scheduler's count of requests is "inference_requests".
  const SchedulerStats gpu = scheduler_.Stats();
  out["loads"] = gpu.loads;
  out["load_seconds"] = gpu.load_seconds;
  out["evictions"] = gpu.evictions;
  out["inference_requests"] = gpu.requests;
  out["max_running"] = gpu.max_running;
  Json models = Json::object();
  for (const auto& [name, m] : gpu.models) {
    models[name] = Json{{"loads", m.loads}, {"requests", m.requests}};
  }
  out["models"] = models;
  return out;
}

void NodeState::Reset() {
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    config_ = startup_config_;
    fail_remaining_ = startup_config_.fail_times;
  }
  {
    std::lock_guard<std::mutex> lock(models_mu_);
    models_.clear();
    for (const SimModel& m : startup_models_) models_[m.key] = m;
    pullable_.clear();
    blobs_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    requests_by_path_.clear();
    requests_total_ = cancelled_ = completed_ = injected_ = 0;
    last_requests_.clear();
  }
  gate_.SetGated(false);
  scheduler_.SetLimits(LimitsOf(startup_config_));
  scheduler_.UnloadIdle();
  scheduler_.ResetStats();
}

}  // namespace corral::sim
