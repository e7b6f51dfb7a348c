// Registry: the fleet's durable state in SQLite (WAL) — nodes, strategy and the routing rules set
// with it (queue policy, placement rules, aliases, model memory rules), discovery ranges,
// admin/inference tokens and the token policy, the snapshot version, and the hourly usage
// rollups the proxies report. It also builds the routing snapshot, and logs when one opens or
// closes the fleet.
//
// Every change is one transaction that also bumps the snapshot version, so a version names
// exactly one registry state and versions never go back, restarts included. The schema is
// versioned (PRAGMA user_version) and migrated forward at Open.
//
// A change that would not alter anything (same strategy, same admin state, an update naming the
// current values) commits nothing and keeps the version. Discovery ranges are not routing state
// and do not bump it either.
//
// Thread safety: all methods are safe from any thread (one connection, serialized by a mutex;
// SQLite's busy timeout covers other processes). Change listeners run on the writing thread
// after the commit, outside the mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/v1/control.pb.h"
#include "corral/v1/snapshot.pb.h"

struct sqlite3;

namespace corral::control {

// What the prober learned about a node in one probe round.
struct ProbeResult {
  bool reachable = false;  // /api/version answered 200
  std::string error;       // why not, for operators
  std::string version;     // Ollama version
  double latency_ms = 0;   // round trip of the liveness probe
  // Present only when the corresponding call succeeded; absent keeps the stored list.
  std::optional<std::vector<corral::v1::Model>> models;
  std::optional<std::vector<corral::v1::LoadedModel>> loaded_models;
  // What a node's lists ran into this round (an answer over its size cap, a list cut at the
  // per-node model limit); empty when nothing. Not stored: the prober logs it when it changes.
  std::string list_warning;
};

class Registry {
 public:
  // Opens (creating if needed) `path`, enables WAL, migrates the schema. ":memory:" for tests.
  static absl::StatusOr<std::unique_ptr<Registry>> Open(const std::string& path);
  ~Registry();

  // ---- nodes (admin) ----
  // InvalidArgument for a bad name/URL/limit, AlreadyExists for a duplicate name or URL,
  // NotFound for an unknown node. Each success bumps the version.
  absl::StatusOr<corral::v1::NodeInfo> CreateNode(const corral::v1::CreateNodeRequest& req,
                                                  bool discovered = false);
  absl::StatusOr<corral::v1::NodeInfo> GetNode(const std::string& name);
  absl::StatusOr<std::vector<corral::v1::NodeInfo>> ListNodes();
  absl::StatusOr<corral::v1::NodeInfo> UpdateNode(const corral::v1::UpdateNodeRequest& req);
  absl::Status RemoveNode(const std::string& name);
  absl::StatusOr<corral::v1::NodeInfo> SetAdminState(const std::string& name,
                                                     corral::v1::AdminState state);

  // ---- prober ----
  // Records a probe round for a node and its health verdict (the prober applies thresholds).
  // Bumps the version only when routing-relevant content changed (health, models, loaded
  // models, version); latency-only changes are stored without a bump.
  absl::Status RecordProbe(const std::string& name, const ProbeResult& result,
                           corral::v1::Health health);

  // ---- strategy ----
  absl::StatusOr<corral::v1::StrategyConfig> GetStrategy();
  // Applies what the request carries (a strategy other than UNSPECIFIED, present policies, lists
  // whose set_ flag is true) and checks the resulting rules as one set
  // (common/placement_rules.h): InvalidArgument naming the entry, and nothing changes.
  absl::StatusOr<corral::v1::StrategyConfig> SetStrategy(const corral::v1::SetStrategyRequest& req);

  // ---- discovery ----
  absl::StatusOr<corral::v1::DiscoveryConfig> GetDiscovery();
  absl::StatusOr<corral::v1::DiscoveryConfig> SetDiscovery(
      const corral::v1::SetDiscoveryRequest& req);

  // ---- snapshot ----
  // The current version and a consistent snapshot of everything routing needs, read in one
  // transaction.
  absl::StatusOr<corral::v1::Snapshot> BuildSnapshot();
  uint64_t version();
  // Nodes, strategy and version read in one transaction (the `state` view).
  absl::StatusOr<corral::v1::FleetState> GetFleetState();

  // ---- inference tokens (shipped to proxies as hashes in the snapshot) ----
  // `sha256_hex` is the hex SHA-256 of the token text; the text itself is never stored.
  // InvalidArgument for a bad name/hash, AlreadyExists for a duplicate name or hash.
  absl::Status AddInferenceToken(const corral::v1::InferenceToken& token);
  absl::Status RemoveInferenceToken(const std::string& name);  // NotFound if unknown
  absl::StatusOr<std::vector<corral::v1::InferenceToken>> ListInferenceTokens();

  // ---- token policy (Snapshot.require_tokens) ----
  // Whether proxies require a token even when none is defined. AddInferenceToken turns it on in
  // its own transaction, so revoking the last token keeps the fleet closed; only
  // SetRequireTokens(false) turns it off. The policy, with the token count and whether the fleet
  // is open (no token needed: not required and no token defined).
  absl::StatusOr<corral::v1::TokenPolicy> GetTokenPolicy();
  // Bumps the version when the setting changes; returns the policy after the change.
  absl::StatusOr<corral::v1::TokenPolicy> SetRequireTokens(bool require);

  // ---- usage: hourly rollups of the requests and tokens the proxies counted ----
  // Not routing state: never bumps the version. Rows older than kUsageRetention are dropped.
  enum class UsageGrouping { kAll, kToken, kModel, kNode };
  static constexpr int64_t kUsageRetentionSeconds = 400LL * 24 * 3600;
  static constexpr int kMaxUsageEntries = 100000;  // per batch
  // Adds one proxy instance's batch to the rollups in the same transaction that records its
  // sequence as applied, so a retried Report (the same instance and sequence, or an older one)
  // is applied once: true when applied now, false when it had been already. Entries that cannot
  // be kept (a name over 512 bytes, a negative hour, a count past 2^63) are skipped and
  // counted in `skipped`. InvalidArgument for a batch without instance id or sequence, or with
  // more than kMaxUsageEntries entries. `now_unix` drives retention (0 = the system clock).
  absl::StatusOr<bool> ApplyUsage(const std::string& proxy_id, const corral::v1::UsageBatch& batch,
                                  int* skipped = nullptr, int64_t now_unix = 0);
  // Sums of the hours starting at or after `since_unix` (rounded down to its hour; 0 = all kept),
  // one row per group, most requests first, then by key. Fields not grouped by are empty.
  absl::StatusOr<std::vector<corral::v1::UsageRow>> GetUsage(UsageGrouping by, int64_t since_unix);

  // Called after every committed change that bumped the version.
  void AddChangeListener(std::function<void(uint64_t version)> listener);

 private:
  Registry() = default;
  class Txn;
  // Runs `body` in a BEGIN IMMEDIATE transaction; when it returns true the version is bumped in
  // the same transaction. Commits on success, rolls back on any error. Notifies listeners after
  // a bumping commit. Returns the version after the transaction.
  absl::StatusOr<uint64_t> Write(const char* what,
                                 const std::function<absl::StatusOr<bool>()>& body);
  absl::Status Migrate();
  // Logs when a built snapshot opens or closes the fleet compared with the previous one built
  // (WARN), or the mode of the first one (WARN when open). REQUIRES: mu_ held.
  void LogModeChangeLocked(const corral::v1::Snapshot& snapshot);
  std::mutex mu_;
  sqlite3* db_ = nullptr;                                 // guarded by mu_
  std::vector<std::function<void(uint64_t)>> listeners_;  // guarded by mu_ (copied to notify)
  std::optional<bool> last_snapshot_closed_;              // guarded by mu_
};

}  // namespace corral::control
