#include "controlplane/snapshot_gauges.h"

#include <limits>
#include <map>
#include <vector>

#include "common/model_name.h"

namespace corral::control {

bool InActivePool(const corral::v1::Node& node) {
  return node.health() != corral::v1::HEALTH_UNHEALTHY;
}

void SnapshotGauges::Record(const corral::v1::Snapshot& snapshot) {
  std::set<std::string> nodes;
  std::map<std::string, int> healthy_nodes;  // by canonical model key
  for (const corral::v1::Node& node : snapshot.nodes()) {
    nodes.insert(node.name());
    const bool routable =
        node.admin_state() == corral::v1::ADMIN_STATE_ENABLED && InActivePool(node);
    // A node may list one model under two spellings: count the node once per model.
    std::set<std::string> keys;
    for (const corral::v1::Model& model : node.models()) {
      if (auto key = CanonicalModelKey(model.name())) keys.insert(*std::move(key));
    }
    for (const std::string& key : keys) healthy_nodes[key] += routable ? 1 : 0;
  }

  ControlMetrics& m = *metrics_;
  constexpr double kGone = std::numeric_limits<double>::quiet_NaN();
  std::lock_guard<std::mutex> lock(mu_);
  // Gone names first, while the domains still hold them: afterwards they fold into "other".
  for (const std::string& name : nodes_) {
    if (!nodes.contains(name)) m.node_healthy.Get({name}).Set(kGone);
  }
  for (const std::string& key : models_) {
    if (!healthy_nodes.contains(key)) m.model_healthy_nodes.Get({key}).Set(kGone);
  }
  m.nodes.SetValues(std::vector<std::string>(nodes.begin(), nodes.end()));
  std::vector<std::string> keys;
  keys.reserve(healthy_nodes.size());
  for (const auto& [key, count] : healthy_nodes) keys.push_back(key);
  m.models.SetValues(std::move(keys));

  for (const corral::v1::Node& node : snapshot.nodes()) {
    m.node_healthy.Get({node.name()}).Set(InActivePool(node) ? 1 : 0);
  }
  for (const auto& [key, count] : healthy_nodes) m.model_healthy_nodes.Get({key}).Set(count);
  m.snapshot_version.Set(static_cast<double>(snapshot.version()));

  nodes_ = std::move(nodes);
  models_.clear();
  for (const auto& [key, count] : healthy_nodes) models_.insert(key);
}

}  // namespace corral::control
