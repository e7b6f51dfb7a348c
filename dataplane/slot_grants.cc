#include "dataplane/slot_grants.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <utility>

namespace corral::dataplane {
namespace {

// The equal split a proxy uses once its lease ran out: at least one slot, so the node stays
// reachable from every proxy while the control plane is away (with fewer slots than proxies the
// node may then see up to one request per proxy). The control plane counts with the same rule
// (controlplane/slot_allocator.cc FallbackSlots).
int64_t Fallback(int64_t limit, int proxies) {
  if (limit <= 0) return 0;
  return std::max<int64_t>(1, limit / std::max(1, proxies));
}

}  // namespace

struct SlotGrants::Table {
  struct Node {
    int64_t max_parallel = 0;
    int64_t default_model_slots = 0;
    std::unordered_map<std::string, int64_t> models;
  };
  TimePoint expires{};
  int proxies = 1;
  std::unordered_map<std::string, Node> nodes;
};

SlotGrants::SlotGrants(const Clock& clock) : clock_(clock) {}

SlotGrants::~SlotGrants() = default;

void SlotGrants::Apply(const corral::v1::ReportResponse& response) {
  // A control plane that divides no limits (an older one) answers without a lease: the limits
  // stay as they were.
  if (response.lease_ms() <= 0) return;
  auto table = std::make_shared<Table>();
  table->expires = clock_.Now() + std::chrono::milliseconds(response.lease_ms());
  table->proxies = std::max(1, response.proxies());
  table->nodes.reserve(static_cast<size_t>(response.grants_size()));
  for (const corral::v1::SlotGrant& grant : response.grants()) {
    Table::Node& node = table->nodes[grant.node()];
    node.max_parallel = std::max(0, grant.max_parallel());
    node.default_model_slots = std::max(0, grant.default_model_slots());
    for (const corral::v1::ModelSlotGrant& model : grant.models()) {
      node.models[model.model()] = std::max(0, model.num_parallel());
    }
  }
  std::atomic_store(&table_, std::shared_ptr<const Table>(std::move(table)));
}

int64_t SlotGrants::NodeLimit(const std::string& node, int64_t configured) const {
  if (configured <= 0) return 0;
  const std::shared_ptr<const Table> table = std::atomic_load(&table_);
  if (table == nullptr) return configured;  // never divided: the limit is this proxy's alone
  if (clock_.Now() > table->expires) return Fallback(configured, table->proxies);
  auto it = table->nodes.find(node);
  // A node added after the answer: the equal split until the next one.
  if (it == table->nodes.end()) return Fallback(configured, table->proxies);
  return std::min(it->second.max_parallel, configured);
}

int64_t SlotGrants::ModelLimit(const std::string& node, const std::string& model_key,
                               int64_t configured) const {
  configured = std::max<int64_t>(1, configured);
  const std::shared_ptr<const Table> table = std::atomic_load(&table_);
  if (table == nullptr) return configured;
  if (clock_.Now() > table->expires) return Fallback(configured, table->proxies);
  auto it = table->nodes.find(node);
  if (it == table->nodes.end()) return Fallback(configured, table->proxies);
  auto m = it->second.models.find(model_key);
  const int64_t granted = m != it->second.models.end() ? m->second : it->second.default_model_slots;
  return std::min(granted, configured);
}

}  // namespace corral::dataplane
