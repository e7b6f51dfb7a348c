#include "controlplane/node_client.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/node_url.h"

namespace corral::control {
namespace {

using Json = nlohmann::json;
using SteadyTime = std::chrono::steady_clock;

// How often a pull checks its cancel function while the node is silent.
constexpr std::chrono::milliseconds kCancelPoll(100);

// A fresh client for one call: explicit timeouts, no keep-alive (the connection closes when the
// call returns), no redirects (a node never redirects; something that does is not a node).
absl::StatusOr<std::unique_ptr<httplib::Client>> Connect(const std::string& base_url,
                                                         std::chrono::milliseconds connect_timeout,
                                                         std::chrono::milliseconds io_timeout) {
  absl::StatusOr<NodeUrl> url = ParseNodeUrl(base_url);
  if (!url.ok()) return url.status();
  auto client = std::make_unique<httplib::Client>(url->host, url->port);
  client->set_connection_timeout(connect_timeout);
  client->set_read_timeout(io_timeout);
  client->set_write_timeout(io_timeout);
  client->set_keep_alive(false);
  client->set_follow_location(false);
  return client;
}

// Shuts a call's connection down from a second thread when its deadline passes or `cancel` says
// so. The HTTP library's timeouts bound one read each: a node that sends a byte every second, in
// the head or the body, would otherwise hold the call for ever, and a silent node would hold a
// cancelled pull until its idle timeout.
class CallWatch {
 public:
  // `deadline` may be nullopt (no total deadline); `cancel` may be empty.
  CallWatch(httplib::Client* client, std::optional<SteadyTime::time_point> deadline,
            std::function<bool()> cancel)
      : client_(client), deadline_(deadline), cancel_(std::move(cancel)) {
    if (!deadline_ && !cancel_) return;
    thread_ = std::thread([this] { Run(); });
  }
  ~CallWatch() { Finish(); }
  CallWatch(const CallWatch&) = delete;
  CallWatch& operator=(const CallWatch&) = delete;

  // Ends the watch once the call has returned. Idempotent.
  void Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // Valid after Finish.
  bool expired() const { return expired_; }
  bool cancelled() const { return cancelled_; }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      auto wake = SteadyTime::now() + kCancelPoll;
      if (!cancel_) wake = *deadline_;
      if (deadline_) wake = std::min(wake, *deadline_);
      cv_.wait_until(lock, wake, [this] { return finished_; });
      if (finished_) return;
      if (deadline_ && SteadyTime::now() >= *deadline_) {
        expired_ = true;
        client_->stop();
        return;
      }
      if (cancel_ && cancel_()) {
        cancelled_ = true;
        client_->stop();
        return;
      }
    }
  }

  httplib::Client* const client_;
  const std::optional<SteadyTime::time_point> deadline_;
  const std::function<bool()> cancel_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;  // guarded by mu_
  // Written by the watch thread before it ends; read after Finish joined it.
  bool expired_ = false;
  bool cancelled_ = false;
  std::thread thread_;
};

std::string ByteCount(size_t bytes) {
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) {
    return absl::StrCat(bytes >> 20, " MiB");
  }
  if (bytes >= (size_t{1} << 10) && bytes % (size_t{1} << 10) == 0) {
    return absl::StrCat(bytes >> 10, " KiB");
  }
  return absl::StrCat(bytes, " bytes");
}

absl::Status TooLarge(const std::string& base_url, const std::string& path, size_t max_bytes) {
  return absl::ResourceExhaustedError(absl::StrCat("GET ", base_url, path,
                                                   ": the node answered more than ",
                                                   ByteCount(max_bytes), " to ", path));
}

// Turns a transport failure into a status an operator can act on. httplib reports a read
// timeout and a peer that closed early both as Error::Read; the elapsed time tells them apart.
absl::Status TransportError(const std::string& base_url, const std::string& path,
                            httplib::Error error, SteadyTime::duration elapsed,
                            std::chrono::milliseconds timeout) {
  const std::string where = absl::StrCat("GET ", base_url, path);
  switch (error) {
    case httplib::Error::Connection:
      return absl::UnavailableError(absl::StrCat(where, ": connection refused or unreachable"));
    case httplib::Error::ConnectionTimeout:
      return absl::DeadlineExceededError(absl::StrCat(where, ": connect timed out"));
    case httplib::Error::Read:
    case httplib::Error::Write:
      if (elapsed + std::chrono::milliseconds(50) >= timeout) {
        return absl::DeadlineExceededError(
            absl::StrCat(where, ": no answer within ", timeout.count(), " ms"));
      }
      return absl::UnavailableError(absl::StrCat(where, ": connection closed before an answer"));
    case httplib::Error::Canceled:
      return absl::CancelledError(absl::StrCat(where, ": cancelled"));
    default:
      return absl::UnavailableError(absl::StrCat(where, ": ", httplib::to_string(error)));
  }
}

// GET `path` and return the 200 body. `timeout` bounds the whole call, connect included; reading
// stops as soon as the answer (announced or received) exceeds `max_bytes`, so no more than
// `max_bytes` of it is ever held.
absl::StatusOr<std::string> GetBody(const std::string& base_url, const std::string& path,
                                    std::chrono::milliseconds connect_timeout,
                                    std::chrono::milliseconds timeout, size_t max_bytes) {
  absl::StatusOr<std::unique_ptr<httplib::Client>> client =
      Connect(base_url, std::min(connect_timeout, timeout), timeout);
  if (!client.ok()) return client.status();
  const auto start = SteadyTime::now();
  std::string body;
  bool too_large = false;
  bool head_seen = false;
  httplib::Request req;
  req.method = "GET";
  req.path = path;
  req.response_handler = [&](const httplib::Response& head) {
    head_seen = true;
    // A length announced past the cap fails before a byte of the body is read.
    const std::string length = head.get_header_value("Content-Length");
    uint64_t announced = 0;
    if (!length.empty() && absl::SimpleAtoi(length, &announced) && announced > max_bytes) {
      too_large = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (len > max_bytes - body.size()) {
      too_large = true;
      return false;
    }
    body.append(data, len);
    return true;
  };
  CallWatch watch(client->get(), start + timeout, nullptr);
  httplib::Result res = (*client)->send(req);
  watch.Finish();
  if (too_large) return TooLarge(base_url, path, max_bytes);
  if (watch.expired()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "GET ", base_url, path, head_seen ? ": no complete answer within " : ": no answer within ",
        timeout.count(), " ms"));
  }
  if (!res) {
    return TransportError(base_url, path, res.error(), SteadyTime::now() - start, timeout);
  }
  if (res->status != 200) {
    std::string shown = body.substr(0, 200);
    return absl::InternalError(absl::StrCat("GET ", base_url, path, ": HTTP ", res->status,
                                            shown.empty() ? "" : ": ", shown));
  }
  return body;
}

// A count or size from a node's answer: a non-negative integer that fits int64. Anything else
// (missing, a string, a negative, a fraction, 1e300, 2^70) reads as 0, never as a wrapped or
// undefined conversion.
int64_t CountField(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (it->is_number_unsigned()) {
    const uint64_t v = it->get<uint64_t>();
    return v <= kMax ? static_cast<int64_t>(v) : 0;
  }
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    return v >= 0 ? v : 0;
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    // 2^63 is exactly representable; every double below it converts without overflow.
    if (!(v >= 0.0 && v < 9223372036854775808.0) || v != std::floor(v)) return 0;
    return static_cast<int64_t>(v);
  }
  return 0;
}

// A string field; empty when missing, not a string, or longer than `max_bytes`.
std::string StringField(const Json& j, const char* key, size_t max_bytes = kMaxFieldBytes) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::string();
  const std::string& s = it->get_ref<const std::string&>();
  return s.size() <= max_bytes ? s : std::string();
}

std::string EntryName(const Json& entry) {
  std::string name = StringField(entry, "name", kMaxModelNameBytes);
  return name.empty() ? StringField(entry, "model", kMaxModelNameBytes) : name;
}

// The "models" array of a /api/tags or /api/ps body. Entries that are not objects or carry no
// usable name are skipped rather than failing the whole list: one odd entry must not hide the
// rest. At most kMaxModelsPerNode entries are kept.
absl::StatusOr<std::vector<Json>> ModelEntries(const std::string& body, const char* what,
                                               ListStats* stats) {
  ListStats local;
  ListStats& st = stats != nullptr ? *stats : local;
  st = ListStats{};
  if (!JsonDepthAtMost(body, kMaxJsonDepth)) {
    return absl::InternalError(
        absl::StrCat(what, ": answer nests deeper than ", kMaxJsonDepth, " levels"));
  }
  Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InternalError(absl::StrCat(what, ": answer is not a JSON object"));
  }
  auto models = doc.find("models");
  std::vector<Json> entries;
  if (models == doc.end() || models->is_null()) return entries;
  if (!models->is_array()) {
    return absl::InternalError(absl::StrCat(what, ": \"models\" is not an array"));
  }
  st.listed = models->size();
  for (Json& entry : *models) {
    if (!entry.is_object() || EntryName(entry).empty()) {
      ++st.skipped;
      continue;
    }
    if (entries.size() == kMaxModelsPerNode) {
      ++st.dropped;
      continue;
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace

bool JsonDepthAtMost(std::string_view json, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return false;
        break;
      case ']':
      case '}':
        --depth;
        break;
      default:
        break;
    }
  }
  return true;
}

absl::StatusOr<std::vector<corral::v1::Model>> ParseTags(const std::string& body,
                                                         ListStats* stats) {
  absl::StatusOr<std::vector<Json>> entries = ModelEntries(body, "/api/tags", stats);
  if (!entries.ok()) return entries.status();
  std::vector<corral::v1::Model> models;
  models.reserve(entries->size());
  for (const Json& entry : *entries) {
    corral::v1::Model m;
    m.set_name(EntryName(entry));
    m.set_size(CountField(entry, "size"));
    m.set_digest(StringField(entry, "digest"));
    m.set_modified_at(StringField(entry, "modified_at"));
    m.set_raw_json(entry.dump());
    models.push_back(std::move(m));
  }
  return models;
}

absl::StatusOr<std::vector<corral::v1::LoadedModel>> ParsePs(const std::string& body,
                                                             ListStats* stats) {
  absl::StatusOr<std::vector<Json>> entries = ModelEntries(body, "/api/ps", stats);
  if (!entries.ok()) return entries.status();
  std::vector<corral::v1::LoadedModel> loaded;
  loaded.reserve(entries->size());
  for (const Json& entry : *entries) {
    corral::v1::LoadedModel m;
    m.set_name(EntryName(entry));
    m.set_size(CountField(entry, "size"));
    m.set_size_vram(CountField(entry, "size_vram"));
    m.set_expires_at(StringField(entry, "expires_at"));
    m.set_context_length(CountField(entry, "context_length"));
    m.set_raw_json(entry.dump());
    loaded.push_back(std::move(m));
  }
  return loaded;
}

NodeClient::NodeClient(std::string base_url, NodeClientOptions options)
    : base_url_(std::move(base_url)), options_(options) {}

absl::Status NodeClient::Root() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/", options_.connect_timeout, options_.liveness_timeout,
              options_.small_answer_max_bytes);
  if (!body.ok()) return body.status();
  if (*body != "Ollama is running") {
    return absl::FailedPreconditionError(
        absl::StrCat(base_url_, " answers GET / with something other than \"Ollama is running\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NodeClient::Version() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/api/version", options_.connect_timeout, options_.liveness_timeout,
              options_.small_answer_max_bytes);
  if (!body.ok()) return body.status();
  Json doc = JsonDepthAtMost(*body, kMaxJsonDepth)
                 ? Json::parse(*body, nullptr, /*allow_exceptions=*/false)
                 : Json(Json::value_t::discarded);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("version") ||
      !doc["version"].is_string()) {
    return absl::InternalError(
        absl::StrCat("GET ", base_url_, "/api/version: answer has no \"version\" string"));
  }
  std::string version = doc["version"].get<std::string>();
  if (version.size() > kMaxFieldBytes) {
    return absl::InternalError(absl::StrCat("GET ", base_url_, "/api/version: version is longer ",
                                            "than ", kMaxFieldBytes, " bytes"));
  }
  return version;
}

absl::StatusOr<std::vector<corral::v1::Model>> NodeClient::Tags(ListStats* stats) const {
  absl::StatusOr<std::string> body = GetBody(base_url_, "/api/tags", options_.connect_timeout,
                                             options_.tags_timeout, options_.list_answer_max_bytes);
  if (!body.ok()) return body.status();
  return ParseTags(*body, stats);
}

absl::StatusOr<std::vector<corral::v1::LoadedModel>> NodeClient::Ps(ListStats* stats) const {
  absl::StatusOr<std::string> body = GetBody(base_url_, "/api/ps", options_.connect_timeout,
                                             options_.ps_timeout, options_.list_answer_max_bytes);
  if (!body.ok()) return body.status();
  return ParsePs(*body, stats);
}

absl::Status NodeClient::Pull(
    const std::string& model, bool insecure,
    const std::function<void(const corral::v1::PullProgress&)>& on_progress,
    const std::function<bool()>& cancel) const {
  absl::StatusOr<std::unique_ptr<httplib::Client>> client =
      Connect(base_url_, options_.connect_timeout, options_.pull_idle_timeout);
  if (!client.ok()) return client.status();

  // What the stream said: the node's error line wins over everything, "success" means done.
  std::string node_error;
  bool succeeded = false;
  bool cancelled = false;
  bool line_too_long = false;
  std::string pending;     // bytes after the last newline
  std::string error_body;  // a non-NDJSON error answer (e.g. 400 before streaming)

  auto handle_line = [&](std::string_view line) {
    if (line.empty()) return;
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      if (error_body.size() < 512) error_body.append(line.substr(0, 512 - error_body.size()));
      return;
    }
    if (auto err = j.find("error"); err != j.end()) {
      node_error = err->is_string() ? err->get<std::string>() : err->dump();
    }
    corral::v1::PullProgress progress;
    progress.set_status(StringField(j, "status"));
    progress.set_digest(StringField(j, "digest"));
    progress.set_total(CountField(j, "total"));
    progress.set_completed(CountField(j, "completed"));
    progress.set_error(node_error);
    if (progress.status() == "success") succeeded = true;
    if (on_progress) on_progress(progress);
  };

  httplib::Request req;
  req.method = "POST";
  req.path = "/api/pull";
  req.body = Json{{"model", model}, {"insecure", insecure}, {"stream", true}}.dump();
  req.headers.emplace("Content-Type", "application/json");
  req.headers.emplace("Accept", "application/x-ndjson");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (cancel && cancel()) {
      cancelled = true;
      return false;
    }
    pending.append(data, len);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      handle_line(line);
    }
    pending.erase(0, start);
    // A node that never ends a line must not grow the buffer without bound.
    if (pending.size() > kMaxPullLineBytes) {
      line_too_long = true;
      return false;
    }
    return true;
  };

  // A node can stay silent for minutes (digest verification), so `cancel` is also watched from a
  // second thread that shuts the connection down, instead of waiting for the next line.
  const auto start = SteadyTime::now();
  CallWatch watch(client->get(), std::nullopt, cancel);
  httplib::Result res = (*client)->send(req);
  watch.Finish();
  if (watch.cancelled()) cancelled = true;
  if (line_too_long) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "pull of ", model, ": the node sent a line longer than ", ByteCount(kMaxPullLineBytes)));
  }
  if (!res) {
    if (cancelled) return absl::CancelledError(absl::StrCat("pull of ", model, " cancelled"));
    // The node may have written its whole answer and closed; a final line without a newline
    // still counts.
    if (!pending.empty()) handle_line(pending);
    if (!node_error.empty()) return absl::InternalError(node_error);
    if (succeeded) return absl::OkStatus();
    absl::Status err = TransportError(base_url_, "/api/pull", res.error(),
                                      SteadyTime::now() - start, options_.pull_idle_timeout);
    return absl::Status(err.code(), absl::StrCat("pull of ", model, ": ", err.message()));
  }
  if (!pending.empty()) handle_line(pending);
  if (!node_error.empty()) return absl::InternalError(node_error);
  if (res->status != 200) {
    return absl::InternalError(absl::StrCat("pull of ", model, ": HTTP ", res->status,
                                            error_body.empty() ? "" : ": ", error_body));
  }
  if (!succeeded) {
    return absl::InternalError(
        absl::StrCat("pull of ", model, ": the node ended the stream without \"success\""));
  }
  return absl::OkStatus();
}

absl::Status NodeClient::Delete(const std::string& model) const {
  const std::string path = "/api/delete";
  const std::chrono::milliseconds timeout = options_.delete_timeout;
  absl::StatusOr<std::unique_ptr<httplib::Client>> client =
      Connect(base_url_, std::min(options_.connect_timeout, timeout), timeout);
  if (!client.ok()) return client.status();
  const size_t max_bytes = options_.small_answer_max_bytes;
  std::string body;
  int status = 0;
  bool capped = false;
  httplib::Request req;
  req.method = "DELETE";
  req.path = path;
  req.body = Json{{"model", model}}.dump();
  req.headers.emplace("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& head) {
    status = head.status;
    return true;
  };
  // Only an error answer has a body worth reading; reading stops at the cap.
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    body.append(data, std::min(len, max_bytes - body.size()));
    capped = body.size() >= max_bytes;
    return !capped;
  };
  const auto start = SteadyTime::now();
  CallWatch watch(client->get(), start + timeout, nullptr);
  httplib::Result res = (*client)->send(req);
  watch.Finish();
  const std::string where = absl::StrCat("delete of ", model, " on ", base_url_);
  if (watch.expired()) {
    return absl::DeadlineExceededError(
        absl::StrCat(where, ": no answer within ", timeout.count(), " ms"));
  }
  if (!res && !capped) {
    absl::Status err =
        TransportError(base_url_, path, res.error(), SteadyTime::now() - start, timeout);
    return absl::Status(err.code(), absl::StrCat(where, ": ", err.message()));
  }
  if (status == 200) return absl::OkStatus();
  // Ollama answers {"error": "model 'x' not found"}; keep its text, else the start of the body.
  std::string shown = body.substr(0, 200);
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object()) {
    if (std::string e = StringField(j, "error"); !e.empty()) shown = e;
  }
  const std::string message =
      absl::StrCat(where, ": HTTP ", status, shown.empty() ? "" : ": ", shown);
  if (status == 404) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

}  // namespace corral::control
