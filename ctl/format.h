// Output of corralctl: readable aligned tables and key/value blocks for people, and stable JSON
// for scripts.
//
// JSON is protobuf's own mapping of the Admin API's answer (MessageToJsonString with every
// primitive field printed and the proto field names kept), so field names are snake_case and
// change only when the API does; docs/corralctl.md documents the shapes. 64-bit integers are
// JSON strings in that mapping; enums are their full proto names.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "corral/v1/control.pb.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::ctl {

// One JSON document on one line, newline-terminated.
std::string ToJson(const google::protobuf::Message& message);

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

std::string AdminStateName(corral::v1::AdminState state);  // "enabled", "draining", "disabled"
std::string HealthName(corral::v1::Health health);         // "unknown", "healthy", "unhealthy"
std::string PoolName(const corral::v1::Node& node);        // "active" or "standby"
std::string FormatLatency(double ms);                      // "12.3ms", "-" when not measured
std::string FormatBytes(int64_t bytes);                    // "4.7 GB", "-" when 0

// node list: NAME URL STATE HEALTH PRIORITY WEIGHT MAX_PAR NUM_PAR MODELS LOADED LATENCY
// INFLIGHT.
std::string FormatNodeList(const corral::v1::ListNodesResponse& list);
// node get: every field of one node, labels and models included.
std::string FormatNodeDetail(const corral::v1::NodeInfo& info);
// node add/update/drain/enable/disable: one line, e.g. `node "gpu1" drained: draining, healthy`.
std::string FormatNodeChange(const std::string& verb, const corral::v1::NodeInfo& info);
// strategy get/set: the strategy, the retry, timeout and queue policy (defaults named), and how
// many placement rules, aliases and memory rules are set.
std::string FormatStrategy(const corral::v1::StrategyConfig& config);
// placement list/add/remove: PATTERN MODE NODES LABELS, in the order they apply.
std::string FormatPlacement(const corral::v1::StrategyConfig& config);
// alias list/set/remove: ALIAS TARGET.
std::string FormatAliases(const corral::v1::StrategyConfig& config);
// model-memory list/set/remove: PATTERN MEMORY, in the order they apply.
std::string FormatModelMemory(const corral::v1::StrategyConfig& config);
// state: the snapshot version and strategy, then one row per node with its pool.
std::string FormatFleetState(const corral::v1::FleetState& state);
std::string FormatModels(const corral::v1::ListModelsResponse& models);
std::string FormatProxies(const corral::v1::ListProxiesResponse& proxies);
std::string FormatDiscovery(const corral::v1::DiscoveryConfig& config);
// token list: NAME SHA256 (first 16 hex) MODELS, then the token policy and the mode.
std::string FormatTokens(const corral::v1::ListTokensResponse& tokens);
// token require: the policy after the change and what it means for the proxies.
std::string FormatTokenPolicy(const corral::v1::TokenPolicy& policy);
// token create: the token text (shown this once) and what it may use.
std::string FormatTokenCreated(const corral::v1::CreateTokenResponse& created);
// usage: the window and grouping, then one row per group (TOKEN, MODEL, NODE as grouped;
// REQUESTS ERRORS INPUT_TOKENS OUTPUT_TOKENS) and a TOTAL row. No token shows as "(none)".
std::string FormatUsage(const corral::v1::GetUsageResponse& usage);
// One progress line of a pull, prefixed with the node name.
std::string FormatPullProgress(const corral::v1::PullProgress& progress);

}  // namespace corral::ctl
