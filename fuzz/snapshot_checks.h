// The properties a RoutingTable built from an untrusted snapshot must have, shared by the JSON
// and the binary snapshot fuzz targets.
//
// CheckSnapshot builds the table and, on success, checks that every index agrees with the
// snapshot and with the validation rules; on failure, that the status is ValidateSnapshot's.
// Thread safety: pure, single-threaded use by the fuzz targets.
#pragma once

#include <string>

#include "common/model_name.h"
#include "common/node_name.h"
#include "common/node_url.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/routing_table.h"
#include "fuzz/fuzz_check.h"

namespace corral::fuzz {

inline void CheckSnapshot(const corral::v1::Snapshot& snapshot) {
  using corral::dataplane::RoutingTable;
  const absl::Status validated = corral::dataplane::ValidateSnapshot(snapshot);
  const auto built = RoutingTable::Build(snapshot);
  FUZZ_CHECK(built.ok() == validated.ok(), "Build %s but ValidateSnapshot %s",
             built.ok() ? "succeeded" : "failed", validated.ok() ? "succeeded" : "failed");
  if (!built.ok()) {
    FUZZ_CHECK(built.status() == validated, "Build and ValidateSnapshot disagree");
    FUZZ_CHECK(built.status().code() == absl::StatusCode::kInvalidArgument, "code %d",
               static_cast<int>(built.status().code()));
    return;
  }
  const RoutingTable& table = **built;
  FUZZ_CHECK(table.version() == snapshot.version(), "version changed");
  FUZZ_CHECK(static_cast<int>(table.nodes().size()) == snapshot.nodes_size(), "%zu nodes of %d",
             table.nodes().size(), snapshot.nodes_size());

  const auto& policy = table.policy();
  FUZZ_CHECK(policy.strategy != corral::v1::STRATEGY_UNSPECIFIED, "strategy left unspecified");
  FUZZ_CHECK(policy.max_attempts >= 1 && policy.max_attempts <= 10, "max_attempts %d",
             policy.max_attempts);
  FUZZ_CHECK(policy.eject_after_failures > 0 && policy.eject_base_ms > 0 &&
                 policy.eject_max_ms > 0 && policy.connect_ms > 0 && policy.first_byte_ms > 0 &&
                 policy.idle_ms > 0,
             "a resolved limit is not positive");

  for (size_t i = 0; i < table.nodes().size(); ++i) {
    const auto& entry = table.nodes()[i];
    const corral::v1::Node& node = snapshot.nodes(static_cast<int>(i));
    FUZZ_CHECK(entry.proto == &table.snapshot().nodes(static_cast<int>(i)),
               "node %zu does not point into the table's own snapshot", i);
    FUZZ_CHECK(entry.name == node.name() && corral::IsValidNodeName(entry.name), "node %zu name",
               i);
    FUZZ_CHECK(table.FindNode(entry.name) == &entry, "FindNode(%s) is not node %zu",
               entry.name.c_str(), i);
    const auto url = corral::ParseNodeUrl(node.url());
    FUZZ_CHECK(url.ok() && url->host == entry.host && url->port == entry.port,
               "node %zu address differs from its url", i);
    FUZZ_CHECK(entry.port >= 1 && entry.port <= 65535, "port %d", entry.port);
    FUZZ_CHECK(entry.routable == (node.admin_state() == corral::v1::ADMIN_STATE_ENABLED &&
                                  node.health() != corral::v1::HEALTH_UNHEALTHY),
               "node %zu routable flag", i);
    for (const auto& key : entry.loaded_keys) {
      FUZZ_CHECK(entry.model_keys.count(key) == 1, "loaded %s not servable", key.c_str());
    }
    for (const auto& key : entry.model_keys) {
      // A key is canonical: it maps to itself, and the node is indexed under it.
      FUZZ_CHECK(corral::CanonicalModelKey(key) == key, "key %s not canonical", key.c_str());
      const auto& holders = table.NodesWithModel(key);
      size_t count = 0;
      for (size_t h : holders) count += h == i ? 1 : 0;
      FUZZ_CHECK(count == 1, "node %zu listed %zu times under %s", i, count, key.c_str());
    }
    for (const auto& model : node.models()) {
      if (auto key = corral::CanonicalModelKey(model.name())) {
        FUZZ_CHECK(entry.model_keys.count(*key) == 1, "model %s of node %zu not indexed",
                   model.name().c_str(), i);
      }
    }
  }
  // Names are unique: FindNode found each node's own entry above. No stray index entries:
  FUZZ_CHECK(table.FindNode("") == nullptr, "empty name found");
  // A key that no node lists (installed or loaded) has no holders. The probe key is an ordinary
  // one, so the fuzzer can put it in a snapshot; then it is not unknown.
  const std::string unknown = "no/such/model:key";
  bool listed = false;
  for (const corral::v1::Node& node : snapshot.nodes()) {
    for (const auto& model : node.models())
      listed |= corral::CanonicalModelKey(model.name()) == unknown;
    for (const auto& model : node.loaded_models()) {
      listed |= corral::CanonicalModelKey(model.name()) == unknown;
    }
  }
  FUZZ_CHECK(listed || table.NodesWithModel(unknown).empty(), "unknown key has nodes");
}

}  // namespace corral::fuzz
