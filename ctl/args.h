// Command-line parsing for corralctl: turns argv into one Invocation (a command with its request
// already built as the proto the Admin API takes), a help text, or a usage error.
//
// Parsing is pure: no I/O, no gRPC, so every command and every usage error is tested directly
// (args_test.cc). Resolving where to connect and which token to send reads the environment and
// the token file through ResolveConnection, kept apart so the parse itself stays pure.
//
// Exit codes of corralctl: 0 success (and --help), 1 the call failed, 2 usage error.
//
// Thread safety: stateless functions, safe from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/v1/control.pb.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

inline constexpr char kDefaultControlAddress[] = "127.0.0.1:11400";
inline constexpr char kDefaultDataDir[] = "./var";

enum class CommandKind {
  kNodeAdd,
  kNodeList,
  kNodeGet,
  kNodeUpdate,
  kNodeRemove,
  kNodeDrain,
  kNodeEnable,
  kNodeDisable,
  kStrategyGet,
  kStrategySet,
  kState,
  kModels,
  kProxies,
  kPull,
  kDiscoveryGet,
  kDiscoverySet,
  kDiscoveryOff,
  kTokenCreate,
  kTokenList,
  kTokenRevoke,
  kTokenRequire,
  kUsage,
  kPlacementList,
  kPlacementAdd,
  kPlacementRemove,
  kAliasList,
  kAliasSet,
  kAliasRemove,
  kModelMemoryList,
  kModelMemorySet,
  kModelMemoryRemove,
};

// Options that apply to every command; accepted before or after the command words.
struct GlobalOptions {
  std::optional<std::string> control;   // --control ADDR
  std::optional<std::string> token;     // --token T
  std::optional<std::string> data_dir;  // --data-dir DIR (where admin.token lives)
  std::optional<std::string> tls_ca;    // --tls-ca FILE: TLS, trusting this CA
  std::optional<std::string> tls_cert;  // --tls-cert FILE: client certificate (mTLS)
  std::optional<std::string> tls_key;   // --tls-key FILE: its private key
  bool json = false;                    // --json
};

// `strategy set` changes only the policy fields given on the command line; the rest keep their
// current values (the command reads the current config first, see commands.h).
struct StrategyOverrides {
  std::optional<int32_t> max_attempts;
  std::optional<int32_t> eject_after_failures;
  std::optional<int64_t> connect_ms;
  std::optional<int64_t> first_byte_ms;
  std::optional<int64_t> idle_ms;
  std::optional<int32_t> queue_length;   // --queue-length
  std::optional<int64_t> queue_wait_ms;  // --queue-wait
  std::optional<bool> queue_disabled;    // --queue on|off
  bool queue_empty() const { return !queue_length && !queue_wait_ms && !queue_disabled; }
  bool empty() const {
    return !max_attempts && !eject_after_failures && !connect_ms && !first_byte_ms && !idle_ms &&
           queue_empty();
  }
};

// One parsed command. Only the members its `kind` names are meaningful.
struct Invocation {
  GlobalOptions global;
  CommandKind kind = CommandKind::kNodeList;
  std::string node_name;                 // get, remove, drain, enable, disable
  corral::v1::CreateNodeRequest create;  // node add
  corral::v1::UpdateNodeRequest update;  // node update
  corral::v1::Strategy strategy = corral::v1::STRATEGY_UNSPECIFIED;  // strategy set
  StrategyOverrides strategy_overrides;                              // strategy set
  corral::v1::PullModelRequest pull;                                 // pull
  corral::v1::SetDiscoveryRequest discovery;                         // discovery set / off
  corral::v1::CreateTokenRequest token;                              // token create
  std::string token_name;                                            // token revoke
  bool require_tokens = false;                                       // token require on|off
  corral::v1::GetUsageRequest usage;                                 // usage
  // placement add, alias set, model-memory set: the entry to add or replace. The list edits
  // are read-modify-writes of the StrategyConfig (commands.h).
  corral::v1::PlacementRule placement_rule;
  corral::v1::ModelAlias alias;
  corral::v1::ModelMemoryRule memory_rule;
  std::string rule_key;  // placement remove / model-memory remove: PATTERN; alias remove: ALIAS
};

struct ParseOutcome {
  enum class Kind { kRun, kHelp, kUsageError };
  Kind kind = Kind::kUsageError;
  Invocation invocation;  // kRun
  // kHelp: the help text (stdout, exit 0). kUsageError: what is wrong plus the usage of the
  // command concerned (stderr, exit 2).
  std::string text;
};

// Parses the arguments after the program name.
ParseOutcome ParseArgs(const std::vector<std::string>& args);

// A duration as `strategy set --queue-wait` takes it: "0" (the default), or a positive whole
// number and a unit, ms, s, m or h ("500ms", "30s", "2m"); nullopt otherwise. In milliseconds.
std::optional<int64_t> ParseDurationMs(const std::string& text);


// The design's strategy names (least_active, lowest_latency, round_robin, weighted, priority).
std::optional<corral::v1::Strategy> ParseStrategyName(const std::string& name);
std::string StrategyName(corral::v1::Strategy strategy);  // "least_active" for UNSPECIFIED
std::string ValidStrategyNames();                         // "least_active, lowest_latency, ..."

// Where to connect, with which admin token, and over what (TLS when tls_ca_file is set).
struct Connection {
  std::string address;
  std::string token;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Reads a variable of the environment; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Address: --control, else CORRAL_CONTROL, else 127.0.0.1:11400. Token: --token, else
// CORRAL_TOKEN, else the file admin.token in --data-dir / CORRAL_DATA_DIR / ./var (surrounding
// whitespace trimmed). Fails with a message naming every place looked at when no token is found.
// TLS files: --tls-ca, --tls-cert, --tls-key, else CORRAL_TLS_CA, CORRAL_TLS_CERT,
// CORRAL_TLS_KEY; none = plaintext. They are only named here; commands read them.
absl::StatusOr<Connection> ResolveConnection(const GlobalOptions& global, const EnvLookup& env);

}  // namespace corral::ctl
