#include "controlplane/node_client.h"

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

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

// GET `path` and return the 200 body.
absl::StatusOr<std::string> GetBody(const std::string& base_url, const std::string& path,
                                    std::chrono::milliseconds connect_timeout,
                                    std::chrono::milliseconds timeout) {
  absl::StatusOr<std::unique_ptr<httplib::Client>> client =
      Connect(base_url, connect_timeout, timeout);
  if (!client.ok()) return client.status();
  const auto start = SteadyTime::now();
  httplib::Result res = (*client)->Get(path.c_str());
  if (!res) {
    return TransportError(base_url, path, res.error(), SteadyTime::now() - start, timeout);
  }
  if (res->status != 200) {
    std::string body = res->body.substr(0, 200);
    return absl::InternalError(absl::StrCat("GET ", base_url, path, ": HTTP ", res->status,
                                            body.empty() ? "" : ": ", body));
  }
  return std::move(res->body);
}

int64_t IntField(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->is_number_float() ? static_cast<int64_t>(it->get<double>()) : it->get<int64_t>();
}

std::string StringField(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The "models" array of a /api/tags or /api/ps body. Entries that are not objects or carry no
// name are skipped rather than failing the whole list: one odd entry must not hide the rest.
absl::StatusOr<std::vector<Json>> ModelEntries(const std::string& body, const char* what) {
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
  for (const Json& entry : *models) {
    if (!entry.is_object()) continue;
    std::string name = StringField(entry, "name");
    if (name.empty()) name = StringField(entry, "model");
    if (name.empty()) continue;
    entries.push_back(entry);
  }
  return entries;
}

std::string EntryName(const Json& entry) {
  std::string name = StringField(entry, "name");
  return name.empty() ? StringField(entry, "model") : name;
}

}  // namespace

absl::StatusOr<std::vector<corral::v1::Model>> ParseTags(const std::string& body) {
  absl::StatusOr<std::vector<Json>> entries = ModelEntries(body, "/api/tags");
  if (!entries.ok()) return entries.status();
  std::vector<corral::v1::Model> models;
  models.reserve(entries->size());
  for (const Json& entry : *entries) {
    corral::v1::Model m;
    m.set_name(EntryName(entry));
    m.set_size(IntField(entry, "size"));
    m.set_digest(StringField(entry, "digest"));
    m.set_modified_at(StringField(entry, "modified_at"));
    m.set_raw_json(entry.dump());
    models.push_back(std::move(m));
  }
  return models;
}

absl::StatusOr<std::vector<corral::v1::LoadedModel>> ParsePs(const std::string& body) {
  absl::StatusOr<std::vector<Json>> entries = ModelEntries(body, "/api/ps");
  if (!entries.ok()) return entries.status();
  std::vector<corral::v1::LoadedModel> loaded;
  loaded.reserve(entries->size());
  for (const Json& entry : *entries) {
    corral::v1::LoadedModel m;
    m.set_name(EntryName(entry));
    m.set_size(IntField(entry, "size"));
    m.set_size_vram(IntField(entry, "size_vram"));
    m.set_expires_at(StringField(entry, "expires_at"));
    m.set_context_length(IntField(entry, "context_length"));
    m.set_raw_json(entry.dump());
    loaded.push_back(std::move(m));
  }
  return loaded;
}

NodeClient::NodeClient(std::string base_url, NodeClientOptions options)
    : base_url_(std::move(base_url)), options_(options) {}

absl::Status NodeClient::Root() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/", options_.connect_timeout, options_.liveness_timeout);
  if (!body.ok()) return body.status();
  if (*body != "Ollama is running") {
    return absl::FailedPreconditionError(
        absl::StrCat(base_url_, " answers GET / with something other than \"Ollama is running\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NodeClient::Version() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/api/version", options_.connect_timeout, options_.liveness_timeout);
  if (!body.ok()) return body.status();
  Json doc = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("version") ||
      !doc["version"].is_string()) {
    return absl::InternalError(
        absl::StrCat("GET ", base_url_, "/api/version: answer has no \"version\" string"));
  }
  return doc["version"].get<std::string>();
}

absl::StatusOr<std::vector<corral::v1::Model>> NodeClient::Tags() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/api/tags", options_.connect_timeout, options_.tags_timeout);
  if (!body.ok()) return body.status();
  return ParseTags(*body);
}

absl::StatusOr<std::vector<corral::v1::LoadedModel>> NodeClient::Ps() const {
  absl::StatusOr<std::string> body =
      GetBody(base_url_, "/api/ps", options_.connect_timeout, options_.ps_timeout);
  if (!body.ok()) return body.status();
  return ParsePs(*body);
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
  std::string pending;     // bytes after the last newline
  std::string error_body;  // a non-NDJSON error answer (e.g. 400 before streaming)

  auto handle_line = [&](std::string_view line) {
    if (line.empty()) return;
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      if (error_body.size() < 512) error_body.append(line.substr(0, 512));
      return;
    }
    if (auto err = j.find("error"); err != j.end()) {
      node_error = err->is_string() ? err->get<std::string>() : err->dump();
    }
    corral::v1::PullProgress progress;
    progress.set_status(StringField(j, "status"));
    progress.set_digest(StringField(j, "digest"));
    progress.set_total(IntField(j, "total"));
    progress.set_completed(IntField(j, "completed"));
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
    return true;
  };

  // A node can stay silent for minutes (digest verification), so `cancel` is also watched from a
  // second thread that shuts the connection down, instead of waiting for the next line.
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  bool finished = false;  // guarded by watch_mu
  std::atomic<bool> stopped_by_watch{false};
  std::thread watcher;
  if (cancel) {
    watcher = std::thread([&] {
      std::unique_lock<std::mutex> lock(watch_mu);
      while (!watch_cv.wait_for(lock, kCancelPoll, [&] { return finished; })) {
        if (cancel()) {
          stopped_by_watch = true;
          (*client)->stop();
          return;
        }
      }
    });
  }
  const auto start = SteadyTime::now();
  httplib::Result res = (*client)->send(req);
  if (watcher.joinable()) {
    {
      std::lock_guard<std::mutex> lock(watch_mu);
      finished = true;
    }
    watch_cv.notify_all();
    watcher.join();
  }
  if (stopped_by_watch) cancelled = true;
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

}  // namespace corral::control
