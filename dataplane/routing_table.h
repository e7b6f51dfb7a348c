// RoutingTable: an immutable, validated view of one snapshot, indexed for node selection.
//
// Built once per snapshot, then shared read-only: readers hold a shared_ptr<const RoutingTable>
// for the length of a request, so a snapshot swap never changes a request's view half-way.
// Thread safety: immutable after Build, safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/placement.h"

namespace corral::dataplane {

// One node with what routing needs precomputed.
struct NodeEntry {
  const corral::v1::Node* proto = nullptr;  // points into RoutingTable::snapshot()
  std::string name;
  std::string host;
  int port = 0;
  std::string endpoint;   // NodeEndpoint(host, port): the upstream pool's key for the node
  std::string authority;  // what a request's Host header names: host:port, IPv6 in brackets
  bool routable = false;  // admin ENABLED and health not UNHEALTHY
  std::unordered_set<std::string> model_keys;   // canonical keys of installed models
  std::unordered_set<std::string> loaded_keys;  // canonical keys of loaded models
};

// "host:port", the key that identifies a node's address (the upstream pool's idle lists).
inline std::string NodeEndpoint(const std::string& host, int port) {
  return host + ":" + std::to_string(port);
}

// Policies with the snapshot's zero values replaced by the documented defaults.
struct EffectivePolicy {
  corral::v1::Strategy strategy = corral::v1::STRATEGY_LEAST_ACTIVE;
  int max_attempts = 3;
  int eject_after_failures = 3;
  int64_t eject_base_ms = 5000;
  int64_t eject_max_ms = 60000;
  int64_t connect_ms = 2000;
  int64_t first_byte_ms = 600000;
  int64_t idle_ms = 300000;
  // The wait queue (Snapshot.queue): off = 503 at once when every candidate is full.
  bool queue_enabled = true;
  int64_t queue_max_length = 1024;
  int64_t queue_max_wait_ms = 30000;
};

// A fleet-wide model name and the model it stands for.
struct AliasEntry {
  std::string target;      // as the operator wrote it: what the node is asked for
  std::string target_key;  // canonical
};

// Checks what the proxy relies on: unique valid node names, parseable node URLs, known admin
// state and strategy, non-negative limits, valid num_parallel, queue policy, placement rules,
// aliases and memory rules (common/placement_rules.h). The message names the first offending
// field.
absl::Status ValidateSnapshot(const corral::v1::Snapshot& snapshot);

class RoutingTable {
 public:
  // Validates and indexes. Fails with ValidateSnapshot's status.
  static absl::StatusOr<std::shared_ptr<const RoutingTable>> Build(corral::v1::Snapshot snapshot);

  const corral::v1::Snapshot& snapshot() const { return snapshot_; }
  uint64_t version() const { return snapshot_.version(); }
  const EffectivePolicy& policy() const { return policy_; }

  // Nodes in snapshot order (the deterministic tie-break order).
  const std::vector<NodeEntry>& nodes() const { return nodes_; }
  const NodeEntry* FindNode(std::string_view name) const;

  // Indexes into nodes() of every node that lists the model (by canonical key), routable or not.
  const std::vector<size_t>& NodesWithModel(const std::string& canonical_key) const;

  // Where the model may go (placement.h), computed at Build; null when no node lists it.
  const ModelPlacement* Placement(const std::string& canonical_key) const;

  // The model an alias (canonical key) stands for; null when `canonical_key` is no alias.
  const AliasEntry* Alias(const std::string& canonical_key) const;

 private:
  struct ModelEntry {
    std::vector<size_t> listed;
    ModelPlacement placement;
  };

  RoutingTable() = default;

  corral::v1::Snapshot snapshot_;
  EffectivePolicy policy_;
  std::vector<NodeEntry> nodes_;
  std::unordered_map<std::string, size_t> by_name_;
  std::unordered_map<std::string, ModelEntry> by_model_;
  std::unordered_map<std::string, AliasEntry> aliases_;  // alias canonical key -> target
};

}  // namespace corral::dataplane
