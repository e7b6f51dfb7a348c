#include "controlplane/registry.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/node_name.h"
#include "common/node_url.h"
#include "common/placement_rules.h"
#include "common/private_files.h"

namespace corral::control {
namespace {

using corral::v1::AdminState;
using corral::v1::Health;
using corral::v1::NodeInfo;

constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxPriority = 1000000;
constexpr int kMaxWeight = 1000000;
constexpr size_t kMaxLabels = 64;

// Ordered schema migrations: migration i (1-based) moves a database from user_version i-1 to i.
// Never edit a released migration; append a new one.
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('snapshot_version', 0);
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL UNIQUE,
  admin_state INTEGER NOT NULL DEFAULT 1,
  health INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL DEFAULT 0,
  weight INTEGER NOT NULL DEFAULT 1,
  max_parallel INTEGER NOT NULL DEFAULT 0,
  max_memory_gb REAL NOT NULL DEFAULT 0,
  models TEXT NOT NULL DEFAULT '[]',
  loaded TEXT NOT NULL DEFAULT '[]',
  version TEXT NOT NULL DEFAULT '',
  latency_ms REAL NOT NULL DEFAULT 0,
  last_probe_at TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE config (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  strategy INTEGER NOT NULL,
  retry TEXT NOT NULL DEFAULT '{}',
  timeouts TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO config (id, strategy) VALUES (1, 1);
CREATE TABLE inference_tokens (
  name TEXT PRIMARY KEY,
  sha256_hex TEXT NOT NULL UNIQUE,
  models TEXT NOT NULL DEFAULT '[]',
  created_at TEXT NOT NULL
);
)sql",
    // 2: node labels, port-range discovery (ranges, interval, and which nodes joined through it).
    R"sql(
ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE nodes ADD COLUMN discovered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE config ADD COLUMN discovery_interval_ms INTEGER NOT NULL DEFAULT 0;
CREATE TABLE discovery_ranges (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  config_id INTEGER NOT NULL DEFAULT 1 REFERENCES config(id) ON DELETE CASCADE,
  host TEXT NOT NULL,
  port_from INTEGER NOT NULL CHECK (port_from BETWEEN 1 AND 65535),
  port_to INTEGER NOT NULL CHECK (port_to BETWEEN port_from AND 65535)
);
)sql",
    // 3: the token policy. A fleet that already has tokens starts closed, so revoking its last
    // token does not open it.
    R"sql(
ALTER TABLE config ADD COLUMN require_tokens INTEGER NOT NULL DEFAULT 0;
UPDATE config SET require_tokens = 1 WHERE EXISTS (SELECT 1 FROM inference_tokens);
)sql",
    // 4: usage rollups per (UTC hour, token name, model, node), and the last usage batch applied
    // per proxy instance, so a retried Report is applied once.
    R"sql(
CREATE TABLE usage_hourly (
  hour INTEGER NOT NULL,
  token TEXT NOT NULL,
  model TEXT NOT NULL,
  node TEXT NOT NULL,
  requests INTEGER NOT NULL DEFAULT 0,
  errors INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (hour, token, model, node)
) WITHOUT ROWID;
CREATE TABLE usage_batches (
  instance_id TEXT PRIMARY KEY,
  proxy_id TEXT NOT NULL,
  last_sequence INTEGER NOT NULL,
  updated_unix INTEGER NOT NULL
);
CREATE INDEX usage_batches_updated ON usage_batches (updated_unix);
)sql",
    // 5: per-model parallel slots per node (0 = the default, 1), and the operator's routing rules:
    // the wait queue's policy, placement rules, aliases and model memory rules, as JSON in the
    // same row as the strategy they are set with.
    R"sql(
ALTER TABLE nodes ADD COLUMN num_parallel INTEGER NOT NULL DEFAULT 0;
ALTER TABLE config ADD COLUMN queue TEXT NOT NULL DEFAULT '{}';
ALTER TABLE config ADD COLUMN placement TEXT NOT NULL DEFAULT '[]';
ALTER TABLE config ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';
ALTER TABLE config ADD COLUMN model_memory TEXT NOT NULL DEFAULT '[]';
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

constexpr char kNodeColumns[] =
    "name, url, admin_state, health, priority, weight, max_parallel, max_memory_gb, models, "
    "loaded, version, latency_ms, last_probe_at, last_error, created_at, updated_at, labels, "
    "discovered, num_parallel";

std::string NowRfc3339() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

absl::Status SqliteError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_extended_errcode(db);
  const std::string msg = absl::StrCat("registry: ", what, ": ", sqlite3_errmsg(db));
  if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED) {
    return absl::UnavailableError(
        absl::StrCat(msg, " (another process holds the database; retry)"));
  }
  if ((code & 0xff) == SQLITE_CONSTRAINT) return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, int64_t v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, double v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    if (rc_ == SQLITE_OK) {
      rc_ = sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    return *this;
  }

  // Makes a statement that ran ready to run again with new bindings. Only after a success.
  Stmt& Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (rc_ == SQLITE_ROW || rc_ == SQLITE_DONE) rc_ = SQLITE_OK;
    return *this;
  }

  // SQLITE_ROW or SQLITE_DONE; anything else is an error (status() then says which).
  int Step() {
    if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW && rc_ != SQLITE_DONE) return rc_;
    rc_ = sqlite3_step(stmt_);
    return rc_;
  }
  // Runs a statement that returns no rows.
  absl::Status Run(const std::string& what) {
    if (Step() != SQLITE_DONE) return SqliteError(db_, what);
    return absl::OkStatus();
  }
  absl::Status status(const std::string& what) const {
    if (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE) return absl::OkStatus();
    return SqliteError(db_, what);
  }

  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status Exec(sqlite3* db, const char* sql, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status status = SqliteError(db, what);
    sqlite3_free(err);
    return status;
  }
  return absl::OkStatus();
}

// ---- JSON columns ----

google::protobuf::util::JsonPrintOptions PrintOptions() {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  return options;
}

template <typename Message, typename Container>
std::string ToJsonArray(const Container& items) {
  std::string out = "[";
  bool first = true;
  for (const Message& item : items) {
    std::string one;
    // Serialising a plain message cannot fail; an empty object keeps the array well formed.
    if (!google::protobuf::util::MessageToJsonString(item, &one, PrintOptions()).ok()) one = "{}";
    if (!first) out += ",";
    out += one;
    first = false;
  }
  return out + "]";
}

template <typename Message>
std::vector<Message> FromJsonArray(const std::string& text) {
  std::vector<Message> out;
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return out;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  for (const auto& item : parsed) {
    Message m;
    if (google::protobuf::util::JsonStringToMessage(item.dump(), &m, options).ok()) {
      out.push_back(std::move(m));
    }
  }
  return out;
}

// Parsing a stored model list (nlohmann, then protobuf's JSON parser per entry) costs far more
// than reading its row: rebuilding a 1,000-node snapshot spent most of its time here, under the
// registry mutex. A list's text changes only when a probe finds a different list, so parsed
// lists are memoised by their exact text. The result is a pure function of the text, so one memo
// per message type serves every Registry. Bounded: cleared whole when it passes kMaxEntries
// (loaded-model lists carry expires_at, which moves on every probe, so stale texts accumulate).
//
// Thread safety: every method is safe from any thread (mu_).
template <typename Message>
class ParsedListMemo {
 public:
  static ParsedListMemo& Get() {
    static ParsedListMemo memo;
    return memo;
  }

  // Appends the messages `text` (a JSON array, as ToJsonArray writes) holds to `out`.
  void AppendTo(const std::string& text, google::protobuf::RepeatedPtrField<Message>* out) {
    std::shared_ptr<const std::vector<Message>> parsed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = lists_.find(text); it != lists_.end()) parsed = it->second;
    }
    if (parsed == nullptr) {
      parsed = std::make_shared<const std::vector<Message>>(FromJsonArray<Message>(text));
      std::lock_guard<std::mutex> lock(mu_);
      if (lists_.size() >= kMaxEntries) lists_.clear();
      lists_.emplace(text, parsed);
    }
    out->Reserve(out->size() + static_cast<int>(parsed->size()));
    for (const Message& m : *parsed) *out->Add() = m;
  }

 private:
  static constexpr size_t kMaxEntries = 8192;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const std::vector<Message>>>
      lists_;  // guarded by mu_
};

template <typename Message>
std::string ToJson(const Message& m) {
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, PrintOptions()).ok()) return "{}";
  return out;
}

template <typename Message>
Message FromJson(const std::string& text) {
  Message m;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  // A damaged column reads as defaults rather than failing every call.
  (void)google::protobuf::util::JsonStringToMessage(text, &m, options);
  return m;
}

std::string LabelsToJson(const google::protobuf::Map<std::string, std::string>& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

void LabelsFromJson(const std::string& text, google::protobuf::Map<std::string, std::string>* out) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return;
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) (*out)[k] = v.get<std::string>();
  }
}

// ---- validation ----

absl::Status ValidateName(const std::string& name) {
  if (!IsValidNodeName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node name \"", name, "\" must match [A-Za-z0-9_.-]{1,64}"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NormalizeUrl(const std::string& url) {
  absl::StatusOr<NodeUrl> parsed = ParseNodeUrl(url);
  // ParseNodeUrl's message already quotes the URL and says what to change.
  if (!parsed.ok()) return parsed.status();
  return parsed->Normalized();
}

absl::Status ValidateLimits(int priority, int weight, int max_parallel, double max_memory_gb,
                            int num_parallel) {
  if (priority < 0 || priority > kMaxPriority) {
    return absl::InvalidArgumentError(absl::StrCat("priority must be between 0 and ", kMaxPriority,
                                                   " (lower is preferred), got ", priority));
  }
  if (weight < 0 || weight > kMaxWeight) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight must be between 0 and ", kMaxWeight, " (0 means 1), got ", weight));
  }
  if (max_parallel < 0 || max_parallel > kMaxNodeParallel) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_parallel must be 0 (no limit) or a positive number up to ",
                     kMaxNodeParallel, ", got ", max_parallel));
  }
  if (absl::Status s = ValidateNumParallel(num_parallel); !s.ok()) return s;
  if (!std::isfinite(max_memory_gb) || max_memory_gb < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_memory_gb must be 0 (not set) or a positive number of GB, got ", max_memory_gb));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("a node may carry at most ", kMaxLabels, " labels, got ", labels.size()));
  }
  for (const auto& [k, v] : labels) {
    if (absl::Status s = ValidateLabel(k, v); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateStrategy(corral::v1::Strategy strategy) {
  if (strategy < corral::v1::STRATEGY_UNSPECIFIED || strategy > corral::v1::STRATEGY_PRIORITY) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy ", static_cast<int>(strategy),
        " is unknown; use one of least_active (1), lowest_latency (2), round_robin (3), "
        "weighted (4), priority (5)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRetry(const corral::v1::RetryPolicy& r) {
  if (r.max_attempts() < 0 || r.max_attempts() > 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry.max_attempts must be between 0 (default 3) and 10, got ", r.max_attempts()));
  }
  if (r.eject_after_failures() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry.eject_after_failures must be 0 (default 3) or positive, got ",
                     r.eject_after_failures()));
  }
  if (r.eject_base_ms() < 0 || r.eject_max_ms() < 0) {
    return absl::InvalidArgumentError("retry.eject_base_ms and eject_max_ms must not be negative");
  }
  if (r.eject_base_ms() > 0 && r.eject_max_ms() > 0 && r.eject_base_ms() > r.eject_max_ms()) {
    return absl::InvalidArgumentError(absl::StrCat("retry.eject_base_ms (", r.eject_base_ms(),
                                                   ") must not exceed eject_max_ms (",
                                                   r.eject_max_ms(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTimeouts(const corral::v1::TimeoutPolicy& t) {
  if (t.connect_ms() < 0 || t.first_byte_ms() < 0 || t.idle_ms() < 0) {
    return absl::InvalidArgumentError(
        "timeouts must be 0 (default) or a positive number of milliseconds");
  }
  return absl::OkStatus();
}

absl::Status ValidateAdminState(AdminState state) {
  if (state != corral::v1::ADMIN_STATE_ENABLED && state != corral::v1::ADMIN_STATE_DRAINING &&
      state != corral::v1::ADMIN_STATE_DISABLED) {
    return absl::InvalidArgumentError(absl::StrCat("admin state ", static_cast<int>(state),
                                                   " is not one of enabled, draining, disabled"));
  }
  return absl::OkStatus();
}

absl::Status NodeNotFound(const std::string& name) {
  return absl::NotFoundError(
      absl::StrCat("node \"", name, "\" is not registered (see `corralctl node list`)"));
}

// ---- row mapping ----

NodeInfo ReadNode(Stmt& s) {
  NodeInfo info;
  corral::v1::Node* n = info.mutable_node();
  n->set_name(s.Text(0));
  n->set_url(s.Text(1));
  n->set_admin_state(static_cast<AdminState>(s.Int(2)));
  n->set_health(static_cast<Health>(s.Int(3)));
  n->set_priority(static_cast<int32_t>(s.Int(4)));
  n->set_weight(static_cast<int32_t>(s.Int(5)));
  n->set_max_parallel(static_cast<int32_t>(s.Int(6)));
  n->set_max_memory_gb(s.Real(7));
  ParsedListMemo<corral::v1::Model>::Get().AppendTo(s.Text(8), n->mutable_models());
  ParsedListMemo<corral::v1::LoadedModel>::Get().AppendTo(s.Text(9), n->mutable_loaded_models());
  n->set_version(s.Text(10));
  n->set_latency_ms(s.Real(11));
  info.set_last_probe_at(s.Text(12));
  info.set_last_error(s.Text(13));
  info.set_created_at(s.Text(14));
  info.set_updated_at(s.Text(15));
  LabelsFromJson(s.Text(16), n->mutable_labels());
  info.set_discovered(s.Int(17) != 0);
  n->set_num_parallel(static_cast<int32_t>(s.Int(18)));
  return info;
}

// Looks a node up inside the current transaction. REQUIRES: the registry mutex held.
absl::StatusOr<NodeInfo> LoadNode(sqlite3* db, const std::string& name) {
  Stmt s(db, absl::StrCat("SELECT ", kNodeColumns, " FROM nodes WHERE name = ?"));
  s.Bind(1, name);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return NodeNotFound(name);
  if (rc != SQLITE_ROW) return SqliteError(db, "read node");
  return ReadNode(s);
}

absl::StatusOr<std::vector<NodeInfo>> LoadNodes(sqlite3* db) {
  Stmt s(db, absl::StrCat("SELECT ", kNodeColumns, " FROM nodes ORDER BY name"));
  std::vector<NodeInfo> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(ReadNode(s));
  if (rc != SQLITE_DONE) return SqliteError(db, "list nodes");
  return out;
}

absl::StatusOr<uint64_t> LoadVersion(sqlite3* db) {
  Stmt s(db, "SELECT value FROM meta WHERE key = 'snapshot_version'");
  if (s.Step() != SQLITE_ROW) return SqliteError(db, "read snapshot version");
  return static_cast<uint64_t>(s.Int(0));
}

absl::StatusOr<corral::v1::StrategyConfig> LoadStrategy(sqlite3* db) {
  Stmt s(db,
         "SELECT strategy, retry, timeouts, queue, placement, aliases, model_memory FROM config "
         "WHERE id = 1");
  if (s.Step() != SQLITE_ROW) return SqliteError(db, "read strategy");
  corral::v1::StrategyConfig config;
  config.set_strategy(static_cast<corral::v1::Strategy>(s.Int(0)));
  *config.mutable_retry() = FromJson<corral::v1::RetryPolicy>(s.Text(1));
  *config.mutable_timeouts() = FromJson<corral::v1::TimeoutPolicy>(s.Text(2));
  *config.mutable_queue() = FromJson<corral::v1::QueuePolicy>(s.Text(3));
  for (auto& r : FromJsonArray<corral::v1::PlacementRule>(s.Text(4))) {
    *config.add_placement() = std::move(r);
  }
  for (auto& a : FromJsonArray<corral::v1::ModelAlias>(s.Text(5))) {
    *config.add_aliases() = std::move(a);
  }
  for (auto& m : FromJsonArray<corral::v1::ModelMemoryRule>(s.Text(6))) {
    *config.add_model_memory() = std::move(m);
  }
  return config;
}

absl::StatusOr<bool> LoadRequireTokens(sqlite3* db) {
  Stmt s(db, "SELECT require_tokens FROM config WHERE id = 1");
  if (s.Step() != SQLITE_ROW) return SqliteError(db, "read token policy");
  return s.Int(0) != 0;
}

absl::StatusOr<corral::v1::TokenPolicy> LoadTokenPolicy(sqlite3* db) {
  corral::v1::TokenPolicy policy;
  absl::StatusOr<bool> require = LoadRequireTokens(db);
  if (!require.ok()) return require.status();
  Stmt count(db, "SELECT COUNT(*) FROM inference_tokens");
  if (count.Step() != SQLITE_ROW) return SqliteError(db, "count inference tokens");
  absl::StatusOr<uint64_t> version = LoadVersion(db);
  if (!version.ok()) return version.status();
  policy.set_require_tokens(*require);
  policy.set_token_count(static_cast<int32_t>(count.Int(0)));
  policy.set_open(!*require && count.Int(0) == 0);
  policy.set_snapshot_version(*version);
  return policy;
}

absl::StatusOr<std::vector<corral::v1::InferenceToken>> LoadTokens(sqlite3* db) {
  Stmt s(db, "SELECT name, sha256_hex, models FROM inference_tokens ORDER BY name");
  std::vector<corral::v1::InferenceToken> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    corral::v1::InferenceToken t;
    t.set_name(s.Text(0));
    t.set_sha256_hex(s.Text(1));
    nlohmann::json models = nlohmann::json::parse(s.Text(2), nullptr, false);
    if (models.is_array()) {
      for (const auto& m : models) {
        if (m.is_string()) t.add_models(m.get<std::string>());
      }
    }
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, "list inference tokens");
  return out;
}

// The name of the node already registered at `url`, other than `except`; empty if none.
absl::StatusOr<std::string> NodeAtUrl(sqlite3* db, const std::string& url,
                                      const std::string& except) {
  Stmt s(db, "SELECT name FROM nodes WHERE url = ? AND name != ?");
  s.Bind(1, url).Bind(2, except);
  const int rc = s.Step();
  if (rc == SQLITE_ROW) return s.Text(0);
  if (rc != SQLITE_DONE) return SqliteError(db, "look up node URL");
  return std::string();
}

// What routing sees of a model list: names, digests and sizes. Fields that move on every request
// (a loaded model's expires_at) must not bump the version on every probe.
std::string ModelsKey(const std::vector<corral::v1::Model>& models) {
  std::set<std::string> keys;
  for (const auto& m : models) keys.insert(absl::StrCat(m.name(), "|", m.digest(), "|", m.size()));
  std::string out;
  for (const auto& k : keys) absl::StrAppend(&out, k, ";");
  return out;
}

std::string LoadedKey(const std::vector<corral::v1::LoadedModel>& loaded) {
  std::set<std::string> keys;
  for (const auto& m : loaded) keys.insert(absl::StrCat(m.name(), "|", m.size_vram()));
  std::string out;
  for (const auto& k : keys) absl::StrAppend(&out, k, ";");
  return out;
}

// What the snapshot and the fleet state are both built from.
struct FleetRows {
  uint64_t version = 0;
  corral::v1::StrategyConfig strategy;
  std::vector<NodeInfo> nodes;
};

absl::StatusOr<FleetRows> LoadFleetRows(sqlite3* db) {
  FleetRows rows;
  absl::StatusOr<uint64_t> version = LoadVersion(db);
  if (!version.ok()) return version.status();
  rows.version = *version;
  absl::StatusOr<corral::v1::StrategyConfig> strategy = LoadStrategy(db);
  if (!strategy.ok()) return strategy.status();
  rows.strategy = *std::move(strategy);
  absl::StatusOr<std::vector<NodeInfo>> nodes = LoadNodes(db);
  if (!nodes.ok()) return nodes.status();
  rows.nodes = *std::move(nodes);
  return rows;
}

// Runs `read` in one read transaction: WAL gives it a consistent view even while another
// process writes. `what` names the read in error messages ("begin snapshot").
absl::Status InReadTransaction(sqlite3* db, const std::string& what,
                               const std::function<absl::Status()>& read) {
  if (absl::Status s = Exec(db, "BEGIN", "begin " + what); !s.ok()) return s;
  absl::Status status = read();
  absl::Status end = Exec(db, status.ok() ? "COMMIT" : "ROLLBACK", "end " + what);
  if (!status.ok()) return status;
  return end;
}

template <typename T>
std::vector<T> ToVector(const google::protobuf::RepeatedPtrField<T>& items) {
  return std::vector<T>(items.begin(), items.end());
}

}  // namespace

// ---- open / migrate ----

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(const std::string& path) {
  // The registry holds inference token hashes and the fleet's addresses: owner-only. SQLite gives
  // the -wal and -shm files the mode of the database file, so creating that one 0600 (SQLite
  // would use 0644) covers all three; files left looser by an older version are tightened.
  if (path != ":memory:") {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);  // a failure is reported by sqlite3_open_v2 below, with its reason
    for (const char* suffix : {"", "-wal", "-shm"}) {
      if (absl::Status s = EnsurePrivateFile(path + suffix, "registry database"); !s.ok()) {
        return s;
      }
    }
  }
  std::unique_ptr<Registry> registry(new Registry());
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &registry->db_, flags, nullptr) != SQLITE_OK) {
    const std::string msg =
        registry->db_ ? sqlite3_errmsg(registry->db_) : std::string("out of memory");
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open registry database ", path, ": ", msg,
                     " (check that the data dir exists and is writable)"));
  }
  sqlite3* db = registry->db_;
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db, 1);
  {
    Stmt wal(db, "PRAGMA journal_mode = WAL");
    if (wal.Step() != SQLITE_ROW) return SqliteError(db, "enable WAL on " + path);
    const std::string mode = wal.Text(0);
    if (mode != "wal" && path != ":memory:") {
      return absl::FailedPreconditionError(
          absl::StrCat("registry database ", path, " refused WAL mode (got ", mode,
                       "); put the data dir on a local file system"));
    }
  }
  // FULL: a committed version must survive power loss, or a restart could reuse a version.
  for (const char* pragma : {"PRAGMA foreign_keys = ON", "PRAGMA synchronous = FULL"}) {
    if (absl::Status s = Exec(db, pragma, pragma); !s.ok()) return s;
  }
  if (absl::Status s = registry->Migrate(); !s.ok()) return s;
  return registry;
}

absl::Status Registry::Migrate() {
  std::lock_guard<std::mutex> lock(mu_);
  for (;;) {
    // Each step re-reads user_version inside its write transaction, so two processes opening
    // the same file at once never apply a migration twice.
    if (absl::Status s = Exec(db_, "BEGIN IMMEDIATE", "begin migration"); !s.ok()) return s;
    Stmt read(db_, "PRAGMA user_version");
    if (read.Step() != SQLITE_ROW) {
      absl::Status s = SqliteError(db_, "read schema version");
      (void)Exec(db_, "ROLLBACK", "rollback");
      return s;
    }
    const int current = static_cast<int>(read.Int(0));
    if (current > kSchemaVersion) {
      (void)Exec(db_, "ROLLBACK", "rollback");
      return absl::FailedPreconditionError(absl::StrCat(
          "registry schema version ", current, " is newer than this corral-control supports (",
          kSchemaVersion, "); run a newer corral-control"));
    }
    if (current == kSchemaVersion) return Exec(db_, "COMMIT", "commit");
    absl::Status s = Exec(db_, kMigrations[current], absl::StrCat("migration ", current + 1));
    if (s.ok()) {
      const std::string set_version = absl::StrCat("PRAGMA user_version = ", current + 1);
      s = Exec(db_, set_version.c_str(), "set schema version");
    }
    if (s.ok()) s = Exec(db_, "COMMIT", "commit migration");
    if (!s.ok()) {
      (void)Exec(db_, "ROLLBACK", "rollback");
      return s;
    }
  }
}

Registry::~Registry() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

absl::StatusOr<uint64_t> Registry::Write(const char* what,
                                         const std::function<absl::StatusOr<bool>()>& body) {
  uint64_t version = 0;
  bool bumped = false;
  std::vector<std::function<void(uint64_t)>> listeners;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // IMMEDIATE takes the write lock up front: a deferred transaction that upgrades later can
    // fail with SQLITE_BUSY without waiting when another connection writes meanwhile.
    if (absl::Status s = Exec(db_, "BEGIN IMMEDIATE", absl::StrCat(what, ": begin")); !s.ok()) {
      return s;
    }
    absl::StatusOr<bool> changed = body();
    absl::Status status = changed.status();
    if (status.ok() && *changed) {
      Stmt bump(db_,
                "UPDATE meta SET value = value + 1 WHERE key = 'snapshot_version' RETURNING value");
      if (bump.Step() == SQLITE_ROW) {
        version = static_cast<uint64_t>(bump.Int(0));
        bumped = true;
      } else {
        status = SqliteError(db_, absl::StrCat(what, ": bump version"));
      }
    }
    if (status.ok() && !bumped) {
      absl::StatusOr<uint64_t> v = LoadVersion(db_);
      if (v.ok()) {
        version = *v;
      } else {
        status = v.status();
      }
    }
    if (status.ok()) status = Exec(db_, "COMMIT", absl::StrCat(what, ": commit"));
    if (!status.ok()) {
      (void)Exec(db_, "ROLLBACK", "rollback");
      return status;
    }
    if (bumped) listeners = listeners_;
  }
  for (const auto& listener : listeners) listener(version);
  return version;
}

// ---- nodes ----

absl::StatusOr<NodeInfo> Registry::CreateNode(const corral::v1::CreateNodeRequest& req,
                                              bool discovered) {
  if (absl::Status s = ValidateName(req.name()); !s.ok()) return s;
  absl::StatusOr<std::string> url = NormalizeUrl(req.url());
  if (!url.ok()) return url.status();
  if (absl::Status s = ValidateLimits(req.priority(), req.weight(), req.max_parallel(),
                                      req.max_memory_gb(), req.num_parallel());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateLabels(req.labels()); !s.ok()) return s;

  NodeInfo created;
  absl::StatusOr<uint64_t> written = Write("create node", [&]() -> absl::StatusOr<bool> {
    if (LoadNode(db_, req.name()).ok()) {
      return absl::AlreadyExistsError(absl::StrCat("node \"", req.name(),
                                                   "\" already exists; choose another name or use "
                                                   "`corralctl node update`"));
    }
    absl::StatusOr<std::string> holder = NodeAtUrl(db_, *url, "");
    if (!holder.ok()) return holder.status();
    if (!holder->empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("node URL ", *url, " is already registered as node \"", *holder, "\""));
    }
    const std::string now = NowRfc3339();
    Stmt s(db_,
           "INSERT INTO nodes (name, url, admin_state, health, priority, weight, max_parallel, "
           "max_memory_gb, labels, discovered, created_at, updated_at, num_parallel) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.Bind(1, req.name())
        .Bind(2, *url)
        .Bind(3, static_cast<int>(corral::v1::ADMIN_STATE_ENABLED))
        .Bind(4, static_cast<int>(corral::v1::HEALTH_UNKNOWN))
        .Bind(5, req.priority())
        .Bind(6, req.weight() == 0 ? 1 : req.weight())
        .Bind(7, req.max_parallel())
        .Bind(8, req.max_memory_gb())
        .Bind(9, LabelsToJson(req.labels()))
        .Bind(10, discovered ? 1 : 0)
        .Bind(11, now)
        .Bind(12, now)
        .Bind(13, req.num_parallel());
    if (absl::Status st = s.Run("insert node"); !st.ok()) return st;
    absl::StatusOr<NodeInfo> loaded = LoadNode(db_, req.name());
    if (!loaded.ok()) return loaded.status();
    created = *std::move(loaded);
    return true;
  });
  if (!written.ok()) return written.status();
  return created;
}

absl::StatusOr<NodeInfo> Registry::GetNode(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return LoadNode(db_, name);
}

absl::StatusOr<std::vector<NodeInfo>> Registry::ListNodes() {
  std::lock_guard<std::mutex> lock(mu_);
  return LoadNodes(db_);
}

absl::StatusOr<NodeInfo> Registry::UpdateNode(const corral::v1::UpdateNodeRequest& req) {
  if (absl::Status s = ValidateName(req.name()); !s.ok()) return s;
  std::optional<std::string> url;
  if (req.has_url()) {
    absl::StatusOr<std::string> normalized = NormalizeUrl(req.url());
    if (!normalized.ok()) return normalized.status();
    url = *normalized;
  }
  if (absl::Status s = ValidateLabels(req.set_labels()); !s.ok()) return s;

  NodeInfo updated;
  absl::StatusOr<uint64_t> written = Write("update node", [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<NodeInfo> current = LoadNode(db_, req.name());
    if (!current.ok()) return current.status();
    corral::v1::Node next = current->node();
    if (req.has_priority()) next.set_priority(req.priority());
    if (req.has_weight()) next.set_weight(req.weight() == 0 ? 1 : req.weight());
    if (req.has_max_parallel()) next.set_max_parallel(req.max_parallel());
    if (req.has_max_memory_gb()) next.set_max_memory_gb(req.max_memory_gb());
    if (req.has_num_parallel()) next.set_num_parallel(req.num_parallel());
    for (const auto& [k, v] : req.set_labels()) (*next.mutable_labels())[k] = v;
    for (const auto& k : req.remove_labels()) next.mutable_labels()->erase(k);
    if (absl::Status s =
            ValidateLimits(req.has_priority() ? req.priority() : next.priority(),
                           req.has_weight() ? req.weight() : next.weight(), next.max_parallel(),
                           next.max_memory_gb(), next.num_parallel());
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ValidateLabels(next.labels()); !s.ok()) return s;
    const bool moved = url.has_value() && *url != next.url();
    if (moved) {
      absl::StatusOr<std::string> holder = NodeAtUrl(db_, *url, req.name());
      if (!holder.ok()) return holder.status();
      if (!holder->empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("node URL ", *url, " is already registered as node \"", *holder, "\""));
      }
      next.set_url(*url);
    }
    const corral::v1::Node& before = current->node();
    const bool changed = moved || next.priority() != before.priority() ||
                         next.weight() != before.weight() ||
                         next.max_parallel() != before.max_parallel() ||
                         next.max_memory_gb() != before.max_memory_gb() ||
                         next.num_parallel() != before.num_parallel() ||
                         LabelsToJson(next.labels()) != LabelsToJson(before.labels());
    if (!changed) {
      updated = *std::move(current);
      return false;
    }
    // A new address may be another machine: forget what the prober learned about the old one.
    Stmt s(db_, moved ? "UPDATE nodes SET url = ?, priority = ?, weight = ?, max_parallel = ?, "
                        "max_memory_gb = ?, labels = ?, updated_at = ?, num_parallel = ?, "
                        "health = 0, models = '[]', loaded = '[]', version = '', latency_ms = 0, "
                        "last_error = '' WHERE name = ?"
                      : "UPDATE nodes SET url = ?, priority = ?, weight = ?, max_parallel = ?, "
                        "max_memory_gb = ?, labels = ?, updated_at = ?, num_parallel = ? "
                        "WHERE name = ?");
    s.Bind(1, next.url())
        .Bind(2, next.priority())
        .Bind(3, next.weight())
        .Bind(4, next.max_parallel())
        .Bind(5, next.max_memory_gb())
        .Bind(6, LabelsToJson(next.labels()))
        .Bind(7, NowRfc3339())
        .Bind(8, next.num_parallel())
        .Bind(9, req.name());
    if (absl::Status st = s.Run("update node"); !st.ok()) return st;
    absl::StatusOr<NodeInfo> loaded = LoadNode(db_, req.name());
    if (!loaded.ok()) return loaded.status();
    updated = *std::move(loaded);
    return true;
  });
  if (!written.ok()) return written.status();
  return updated;
}

absl::Status Registry::RemoveNode(const std::string& name) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  return Write("remove node",
               [&]() -> absl::StatusOr<bool> {
                 Stmt s(db_, "DELETE FROM nodes WHERE name = ?");
                 s.Bind(1, name);
                 if (absl::Status st = s.Run("delete node"); !st.ok()) return st;
                 if (sqlite3_changes(db_) == 0) return NodeNotFound(name);
                 return true;
               })
      .status();
}

absl::StatusOr<NodeInfo> Registry::SetAdminState(const std::string& name, AdminState state) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (absl::Status s = ValidateAdminState(state); !s.ok()) return s;
  NodeInfo result;
  absl::StatusOr<uint64_t> written = Write("set admin state", [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<NodeInfo> current = LoadNode(db_, name);
    if (!current.ok()) return current.status();
    if (current->node().admin_state() == state) {
      result = *std::move(current);
      return false;
    }
    Stmt s(db_, "UPDATE nodes SET admin_state = ?, updated_at = ? WHERE name = ?");
    s.Bind(1, static_cast<int>(state)).Bind(2, NowRfc3339()).Bind(3, name);
    if (absl::Status st = s.Run("set admin state"); !st.ok()) return st;
    absl::StatusOr<NodeInfo> loaded = LoadNode(db_, name);
    if (!loaded.ok()) return loaded.status();
    result = *std::move(loaded);
    return true;
  });
  if (!written.ok()) return written.status();
  return result;
}

// ---- prober ----

absl::Status Registry::RecordProbe(const std::string& name, const ProbeResult& result,
                                   Health health) {
  if (health < corral::v1::HEALTH_UNKNOWN || health > corral::v1::HEALTH_UNHEALTHY) {
    return absl::InvalidArgumentError(
        absl::StrCat("health ", static_cast<int>(health), " is not a known health value"));
  }
  if (!std::isfinite(result.latency_ms) || result.latency_ms < 0) {
    return absl::InvalidArgumentError("probe latency must be a finite, non-negative number");
  }
  return Write("record probe",
               [&]() -> absl::StatusOr<bool> {
                 absl::StatusOr<NodeInfo> current = LoadNode(db_, name);
                 if (!current.ok()) return current.status();
                 const corral::v1::Node& before = current->node();
                 const std::string models = result.models
                                                ? ToJsonArray<corral::v1::Model>(*result.models)
                                                : ToJsonArray<corral::v1::Model>(before.models());
                 const std::string loaded =
                     result.loaded_models
                         ? ToJsonArray<corral::v1::LoadedModel>(*result.loaded_models)
                         : ToJsonArray<corral::v1::LoadedModel>(before.loaded_models());
                 const std::string version = result.reachable ? result.version : before.version();
                 const bool routing_changed =
                     health != before.health() || version != before.version() ||
                     (result.models &&
                      ModelsKey(*result.models) != ModelsKey(ToVector(before.models()))) ||
                     (result.loaded_models && LoadedKey(*result.loaded_models) !=
                                                  LoadedKey(ToVector(before.loaded_models())));
                 Stmt s(db_,
                        "UPDATE nodes SET health = ?, models = ?, loaded = ?, version = ?, "
                        "latency_ms = ?, last_probe_at = ?, last_error = ? WHERE name = ?");
                 s.Bind(1, static_cast<int>(health))
                     .Bind(2, models)
                     .Bind(3, loaded)
                     .Bind(4, version)
                     .Bind(5, result.reachable ? result.latency_ms : before.latency_ms())
                     .Bind(6, NowRfc3339())
                     .Bind(7, result.reachable ? std::string() : result.error)
                     .Bind(8, name);
                 if (absl::Status st = s.Run("record probe"); !st.ok()) return st;
                 return routing_changed;
               })
      .status();
}

// ---- strategy ----

absl::StatusOr<corral::v1::StrategyConfig> Registry::GetStrategy() {
  std::lock_guard<std::mutex> lock(mu_);
  return LoadStrategy(db_);
}

absl::StatusOr<corral::v1::StrategyConfig> Registry::SetStrategy(
    const corral::v1::SetStrategyRequest& req) {
  if (absl::Status s = ValidateStrategy(req.strategy()); !s.ok()) return s;
  if (req.has_retry()) {
    if (absl::Status s = ValidateRetry(req.retry()); !s.ok()) return s;
  }
  if (req.has_timeouts()) {
    if (absl::Status s = ValidateTimeouts(req.timeouts()); !s.ok()) return s;
  }
  corral::v1::StrategyConfig result;
  absl::StatusOr<uint64_t> written = Write("set strategy", [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<corral::v1::StrategyConfig> current = LoadStrategy(db_);
    if (!current.ok()) return current.status();
    corral::v1::StrategyConfig next = *current;
    if (req.strategy() != corral::v1::STRATEGY_UNSPECIFIED) next.set_strategy(req.strategy());
    if (req.has_retry()) *next.mutable_retry() = req.retry();
    if (req.has_timeouts()) *next.mutable_timeouts() = req.timeouts();
    if (req.has_queue()) *next.mutable_queue() = req.queue();
    if (req.set_placement()) *next.mutable_placement() = req.placement();
    if (req.set_aliases()) *next.mutable_aliases() = req.aliases();
    if (req.set_model_memory()) *next.mutable_model_memory() = req.model_memory();
    // The rules are checked as the set they become: an alias is valid or not against the others.
    if (absl::Status s = ValidateRoutingRules(next.queue(), next.placement(), next.aliases(),
                                              next.model_memory());
        !s.ok()) {
      return s;
    }
    result = next;
    // Field by field: a map's serialised order (placement labels) is not stable.
    if (google::protobuf::util::MessageDifferencer::Equals(next, *current)) return false;
    Stmt s(db_,
           "UPDATE config SET strategy = ?, retry = ?, timeouts = ?, queue = ?, placement = ?, "
           "aliases = ?, model_memory = ? WHERE id = 1");
    s.Bind(1, static_cast<int>(next.strategy()))
        .Bind(2, ToJson(next.retry()))
        .Bind(3, ToJson(next.timeouts()))
        .Bind(4, ToJson(next.queue()))
        .Bind(5, ToJsonArray<corral::v1::PlacementRule>(next.placement()))
        .Bind(6, ToJsonArray<corral::v1::ModelAlias>(next.aliases()))
        .Bind(7, ToJsonArray<corral::v1::ModelMemoryRule>(next.model_memory()));
    if (absl::Status st = s.Run("set strategy"); !st.ok()) return st;
    return true;
  });
  if (!written.ok()) return written.status();
  return result;
}

// ---- discovery ----

absl::StatusOr<corral::v1::DiscoveryConfig> Registry::GetDiscovery() {
  std::lock_guard<std::mutex> lock(mu_);
  corral::v1::DiscoveryConfig config;
  Stmt interval(db_, "SELECT discovery_interval_ms FROM config WHERE id = 1");
  if (interval.Step() != SQLITE_ROW) return SqliteError(db_, "read discovery interval");
  config.set_interval_ms(interval.Int(0));
  Stmt s(db_, "SELECT host, port_from, port_to FROM discovery_ranges ORDER BY id");
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    corral::v1::DiscoveryRange* r = config.add_ranges();
    r->set_host(s.Text(0));
    r->set_port_from(static_cast<int32_t>(s.Int(1)));
    r->set_port_to(static_cast<int32_t>(s.Int(2)));
  }
  if (rc != SQLITE_DONE) return SqliteError(db_, "read discovery ranges");
  return config;
}

absl::StatusOr<corral::v1::DiscoveryConfig> Registry::SetDiscovery(
    const corral::v1::SetDiscoveryRequest& req) {
  int64_t total_ports = 0;
  for (const auto& r : req.ranges()) {
    if (r.port_from() < 1 || r.port_from() > 65535 || r.port_to() < r.port_from() ||
        r.port_to() > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("discovery range ", r.host(), ":", r.port_from(), "-", r.port_to(),
                       " must have 1 <= port_from <= port_to <= 65535"));
    }
    const bool ipv6 = r.host().find(':') != std::string::npos;
    const std::string host = ipv6 ? absl::StrCat("[", r.host(), "]") : r.host();
    if (absl::StatusOr<NodeUrl> url = ParseNodeUrl(absl::StrCat(host, ":", r.port_from()));
        !url.ok() || r.host().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("discovery host \"", r.host(), "\" is not a valid host name or IP address"));
    }
    total_ports += r.port_to() - r.port_from() + 1;
  }
  if (total_ports > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("discovery ranges cover ", total_ports,
                                                   " ports; at most 65536 may be scanned"));
  }
  if (req.interval_ms() < 0 || (req.interval_ms() > 0 && req.interval_ms() < 1000)) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery interval must be 0 (default 30000) or at least 1000 ms, got ",
                     req.interval_ms()));
  }
  absl::StatusOr<uint64_t> written = Write("set discovery", [&]() -> absl::StatusOr<bool> {
    if (absl::Status s = Exec(db_, "DELETE FROM discovery_ranges", "clear discovery ranges");
        !s.ok()) {
      return s;
    }
    for (const auto& r : req.ranges()) {
      Stmt s(db_, "INSERT INTO discovery_ranges (host, port_from, port_to) VALUES (?, ?, ?)");
      s.Bind(1, r.host()).Bind(2, r.port_from()).Bind(3, r.port_to());
      if (absl::Status st = s.Run("insert discovery range"); !st.ok()) return st;
    }
    Stmt s(db_, "UPDATE config SET discovery_interval_ms = ? WHERE id = 1");
    s.Bind(1, req.interval_ms());
    if (absl::Status st = s.Run("set discovery interval"); !st.ok()) return st;
    return false;  // not routing state: no new snapshot
  });
  if (!written.ok()) return written.status();
  return GetDiscovery();
}

// ---- inference tokens ----

absl::Status Registry::AddInferenceToken(const corral::v1::InferenceToken& token) {
  // Token names follow the node-name rule: both appear as plain words in corralctl's tables.
  if (!IsValidNodeName(token.name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("token name \"", token.name(), "\" must match [A-Za-z0-9_.-]{1,64}"));
  }
  const std::string& hex = token.sha256_hex();
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError("token hash must be 64 lower-case hex characters (SHA-256)");
  }
  return Write("add inference token",
               [&]() -> absl::StatusOr<bool> {
                 Stmt exists(db_,
                             "SELECT name FROM inference_tokens WHERE name = ? OR sha256_hex = ?");
                 exists.Bind(1, token.name()).Bind(2, hex);
                 if (exists.Step() == SQLITE_ROW) {
                   return absl::AlreadyExistsError(absl::StrCat("an inference token named \"",
                                                                exists.Text(0),
                                                                "\" already has that name or "
                                                                "token"));
                 }
                 nlohmann::json models = nlohmann::json::array();
                 for (const auto& m : token.models()) models.push_back(m);
                 Stmt s(db_,
                        "INSERT INTO inference_tokens (name, sha256_hex, models, created_at) "
                        "VALUES (?, ?, ?, ?)");
                 s.Bind(1, token.name()).Bind(2, hex).Bind(3, models.dump()).Bind(4, NowRfc3339());
                 if (absl::Status st = s.Run("insert inference token"); !st.ok()) return st;
                 // A fleet with a token is closed from now on, whatever is revoked later.
                 Stmt require(db_, "UPDATE config SET require_tokens = 1 WHERE id = 1");
                 if (absl::Status st = require.Run("require tokens"); !st.ok()) return st;
                 return true;
               })
      .status();
}

absl::Status Registry::RemoveInferenceToken(const std::string& name) {
  return Write("remove inference token",
               [&]() -> absl::StatusOr<bool> {
                 Stmt s(db_, "DELETE FROM inference_tokens WHERE name = ?");
                 s.Bind(1, name);
                 if (absl::Status st = s.Run("delete inference token"); !st.ok()) return st;
                 if (sqlite3_changes(db_) == 0) {
                   return absl::NotFoundError(
                       absl::StrCat("inference token \"", name, "\" does not exist"));
                 }
                 return true;
               })
      .status();
}

absl::StatusOr<std::vector<corral::v1::InferenceToken>> Registry::ListInferenceTokens() {
  std::lock_guard<std::mutex> lock(mu_);
  return LoadTokens(db_);
}

absl::StatusOr<corral::v1::TokenPolicy> Registry::GetTokenPolicy() {
  std::lock_guard<std::mutex> lock(mu_);
  corral::v1::TokenPolicy policy;
  absl::Status status = InReadTransaction(db_, "token policy", [&]() -> absl::Status {
    absl::StatusOr<corral::v1::TokenPolicy> loaded = LoadTokenPolicy(db_);
    if (!loaded.ok()) return loaded.status();
    policy = *std::move(loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return policy;
}

absl::StatusOr<corral::v1::TokenPolicy> Registry::SetRequireTokens(bool require) {
  corral::v1::TokenPolicy policy;
  absl::StatusOr<uint64_t> written = Write("set token policy", [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<bool> current = LoadRequireTokens(db_);
    if (!current.ok()) return current.status();
    if (*current == require) return false;
    Stmt s(db_, "UPDATE config SET require_tokens = ? WHERE id = 1");
    s.Bind(1, require ? 1 : 0);
    if (absl::Status st = s.Run("set token policy"); !st.ok()) return st;
    return true;
  });
  if (!written.ok()) return written.status();
  return GetTokenPolicy();
}

// ---- snapshot ----

absl::StatusOr<corral::v1::Snapshot> Registry::BuildSnapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  corral::v1::Snapshot snapshot;
  absl::Status status = InReadTransaction(db_, "snapshot", [&]() -> absl::Status {
    absl::StatusOr<FleetRows> rows = LoadFleetRows(db_);
    if (!rows.ok()) return rows.status();
    absl::StatusOr<std::vector<corral::v1::InferenceToken>> tokens = LoadTokens(db_);
    if (!tokens.ok()) return tokens.status();
    absl::StatusOr<bool> require_tokens = LoadRequireTokens(db_);
    if (!require_tokens.ok()) return require_tokens.status();
    snapshot.set_require_tokens(*require_tokens);
    snapshot.set_version(rows->version);
    snapshot.set_strategy(rows->strategy.strategy());
    *snapshot.mutable_retry() = rows->strategy.retry();
    *snapshot.mutable_timeouts() = rows->strategy.timeouts();
    *snapshot.mutable_queue() = rows->strategy.queue();
    *snapshot.mutable_placement() = rows->strategy.placement();
    *snapshot.mutable_aliases() = rows->strategy.aliases();
    *snapshot.mutable_model_memory() = rows->strategy.model_memory();
    for (auto& info : rows->nodes) *snapshot.add_nodes() = std::move(*info.mutable_node());
    for (auto& t : *tokens) *snapshot.add_tokens() = std::move(t);
    snapshot.set_created_at(NowRfc3339());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  LogModeChangeLocked(snapshot);
  return snapshot;
}

void Registry::LogModeChangeLocked(const corral::v1::Snapshot& snapshot) {
  const bool closed = snapshot.require_tokens() || snapshot.tokens_size() > 0;
  const std::optional<bool> before = std::exchange(last_snapshot_closed_, closed);
  if (before == closed) return;
  const std::string version = absl::StrCat("snapshot version ", snapshot.version());
  if (!closed) {
    CORRAL_LOG(kWarn, "registry")
        << version << (before ? " opens the fleet" : ": the fleet is open")
        << ": no inference token is defined and require_tokens is off, so proxies serve every "
           "request without a token (corralctl token create, or token require on, closes it)";
  } else if (before.has_value()) {
    CORRAL_LOG(kWarn, "registry") << version << " closes the fleet: proxies now require an "
                                  << "inference token (" << snapshot.tokens_size() << " defined"
                                  << (snapshot.require_tokens() ? ", require_tokens on" : "")
                                  << ")";
  } else {
    CORRAL_LOG(kInfo, "registry") << version << ": the fleet is closed: proxies require an "
                                  << "inference token (" << snapshot.tokens_size() << " defined"
                                  << (snapshot.require_tokens() ? ", require_tokens on" : "")
                                  << ")";
  }
}

absl::StatusOr<corral::v1::FleetState> Registry::GetFleetState() {
  std::lock_guard<std::mutex> lock(mu_);
  corral::v1::FleetState state;
  absl::Status status = InReadTransaction(db_, "fleet state", [&]() -> absl::Status {
    absl::StatusOr<FleetRows> rows = LoadFleetRows(db_);
    if (!rows.ok()) return rows.status();
    state.set_snapshot_version(rows->version);
    *state.mutable_strategy() = rows->strategy;
    for (auto& n : rows->nodes) *state.add_nodes() = std::move(n);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return state;
}

uint64_t Registry::version() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<uint64_t> v = LoadVersion(db_);
  return v.ok() ? *v : 0;
}

// ---- usage ----

namespace {

constexpr int64_t kHourSeconds = 3600;
constexpr size_t kMaxUsageNameBytes = 512;
// An instance unheard of for this long is forgotten. Its ledger re-sends an unacknowledged batch
// within seconds of reconnecting, so only a proxy cut off for longer could count a batch twice.
constexpr int64_t kUsageInstanceMemorySeconds = 30LL * 24 * 3600;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t FloorHour(int64_t t) { return t - (((t % kHourSeconds) + kHourSeconds) % kHourSeconds); }

bool KeepableEntry(const corral::v1::UsageEntry& e) {
  constexpr uint64_t kMaxCount = static_cast<uint64_t>(INT64_MAX);
  return e.hour_start() >= 0 && e.token().size() <= kMaxUsageNameBytes &&
         e.model().size() <= kMaxUsageNameBytes && e.node().size() <= kMaxUsageNameBytes &&
         e.requests() <= kMaxCount && e.errors() <= kMaxCount && e.input_tokens() <= kMaxCount &&
         e.output_tokens() <= kMaxCount;
}

}  // namespace

absl::StatusOr<bool> Registry::ApplyUsage(const std::string& proxy_id,
                                          const corral::v1::UsageBatch& batch, int* skipped,
                                          int64_t now_unix) {
  if (batch.instance_id().empty() || batch.instance_id().size() > 128 || batch.sequence() == 0) {
    return absl::InvalidArgumentError(
        "a usage batch needs an instance_id (1 to 128 bytes) and a sequence above 0");
  }
  if (batch.entries_size() > kMaxUsageEntries) {
    return absl::InvalidArgumentError(absl::StrCat("a usage batch holds at most ", kMaxUsageEntries,
                                                   " entries, got ", batch.entries_size()));
  }
  if (now_unix == 0) now_unix = UnixNow();
  int dropped = 0;
  bool applied = false;
  absl::StatusOr<uint64_t> written = Write("apply usage", [&]() -> absl::StatusOr<bool> {
    Stmt last(db_, "SELECT last_sequence FROM usage_batches WHERE instance_id = ?");
    last.Bind(1, batch.instance_id());
    const int rc = last.Step();
    if (rc == SQLITE_ROW && static_cast<uint64_t>(last.Int(0)) >= batch.sequence()) return false;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db_, "read usage sequence");

    Stmt add(db_,
             "INSERT INTO usage_hourly (hour, token, model, node, requests, errors, input_tokens, "
             "output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT (hour, token, model, node) DO UPDATE SET "
             "requests = requests + excluded.requests, errors = errors + excluded.errors, "
             "input_tokens = input_tokens + excluded.input_tokens, "
             "output_tokens = output_tokens + excluded.output_tokens");
    if (absl::Status st = add.status("prepare usage upsert"); !st.ok()) return st;
    for (const corral::v1::UsageEntry& e : batch.entries()) {
      if (!KeepableEntry(e)) {
        ++dropped;
        continue;
      }
      if (e.requests() == 0 && e.input_tokens() == 0 && e.output_tokens() == 0) continue;
      add.Reset()
          .Bind(1, FloorHour(e.hour_start()))
          .Bind(2, e.token())
          .Bind(3, e.model())
          .Bind(4, e.node())
          .Bind(5, static_cast<int64_t>(e.requests()))
          .Bind(6, static_cast<int64_t>(e.errors()))
          .Bind(7, static_cast<int64_t>(e.input_tokens()))
          .Bind(8, static_cast<int64_t>(e.output_tokens()));
      if (absl::Status st = add.Run("add usage"); !st.ok()) return st;
    }
    Stmt mark(db_,
              "INSERT INTO usage_batches (instance_id, proxy_id, last_sequence, updated_unix) "
              "VALUES (?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET "
              "proxy_id = excluded.proxy_id, last_sequence = excluded.last_sequence, "
              "updated_unix = excluded.updated_unix");
    mark.Bind(1, batch.instance_id())
        .Bind(2, proxy_id)
        .Bind(3, static_cast<int64_t>(batch.sequence()))
        .Bind(4, now_unix);
    if (absl::Status st = mark.Run("record usage sequence"); !st.ok()) return st;
    Stmt prune_rows(db_, "DELETE FROM usage_hourly WHERE hour < ?");
    prune_rows.Bind(1, FloorHour(now_unix - kUsageRetentionSeconds));
    if (absl::Status st = prune_rows.Run("prune usage"); !st.ok()) return st;
    Stmt prune_instances(db_, "DELETE FROM usage_batches WHERE updated_unix < ?");
    prune_instances.Bind(1, now_unix - kUsageInstanceMemorySeconds);
    if (absl::Status st = prune_instances.Run("prune usage instances"); !st.ok()) return st;
    applied = true;
    return false;  // not routing state: the snapshot version stays
  });
  if (!written.ok()) return written.status();
  if (skipped != nullptr) *skipped = dropped;
  return applied;
}

absl::StatusOr<std::vector<corral::v1::UsageRow>> Registry::GetUsage(UsageGrouping by,
                                                                     int64_t since_unix) {
  const char* keys = "token, model, node";
  const char* group = "token, model, node";
  switch (by) {
    case UsageGrouping::kAll:
      break;
    case UsageGrouping::kToken:
      keys = "token, '', ''";
      group = "token";
      break;
    case UsageGrouping::kModel:
      keys = "'', model, ''";
      group = "model";
      break;
    case UsageGrouping::kNode:
      keys = "'', '', node";
      group = "node";
      break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, absl::StrCat("SELECT ", keys,
                           ", SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens) "
                           "FROM usage_hourly WHERE hour >= ? GROUP BY ",
                           group, " ORDER BY 4 DESC, 1, 2, 3"));
  s.Bind(1, since_unix > 0 ? FloorHour(since_unix) : INT64_MIN);
  std::vector<corral::v1::UsageRow> rows;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    corral::v1::UsageRow& row = rows.emplace_back();
    row.set_token(s.Text(0));
    row.set_model(s.Text(1));
    row.set_node(s.Text(2));
    row.set_requests(static_cast<uint64_t>(s.Int(3)));
    row.set_errors(static_cast<uint64_t>(s.Int(4)));
    row.set_input_tokens(static_cast<uint64_t>(s.Int(5)));
    row.set_output_tokens(static_cast<uint64_t>(s.Int(6)));
  }
  if (rc != SQLITE_DONE) return s.status("read usage");
  return rows;
}

void Registry::AddChangeListener(std::function<void(uint64_t version)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.push_back(std::move(listener));
}

}  // namespace corral::control
