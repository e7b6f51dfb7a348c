#include "dataplane/router.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <tuple>
#include <utility>

namespace corral::dataplane {
namespace {

// Weight of the newest sample in the latency EWMA: recent enough to follow a node that slows
// down, smooth enough that one cold model load does not swing the ranking for long.
constexpr double kLatencyAlpha = 0.3;

// A node that passed every filter, with the counts read once for this selection.
struct Candidate {
  size_t index = 0;
  const NodeEntry* node = nullptr;
  std::shared_ptr<NodeRuntime> runtime;
  int64_t in_flight = 0;
  int64_t model_in_flight = 0;
  bool warm = false;
};

bool AtCapacity(const NodeEntry& node, int64_t in_flight) {
  const int32_t limit = node.proto->max_parallel();
  return limit > 0 && in_flight >= limit;
}

// The check against max_parallel and the increment are one step, so racing picks can never
// push a node past its limit.
bool TryTakeSlot(const NodeEntry& node, NodeRuntime& runtime) {
  const int32_t limit = node.proto->max_parallel();
  if (limit <= 0) {
    runtime.in_flight.fetch_add(1);
    return true;
  }
  int64_t current = runtime.in_flight.load();
  while (current < limit) {
    if (runtime.in_flight.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

void CountModel(NodeRuntime& runtime, const std::string& model_key, int64_t delta) {
  if (model_key.empty()) return;
  std::lock_guard lock(runtime.mu);
  auto it = runtime.model_in_flight.try_emplace(model_key, 0).first;
  it->second += delta;
  if (it->second <= 0) runtime.model_in_flight.erase(it);
}

// Keeps only warm candidates when there is at least one: a cold load costs seconds to a minute
// of GPU time, far more than any imbalance the strategy would otherwise correct.
std::vector<Candidate*> WarmFirst(std::vector<Candidate*> candidates) {
  std::vector<Candidate*> warm;
  for (Candidate* c : candidates) {
    if (c->warm) warm.push_back(c);
  }
  return warm.empty() ? candidates : warm;
}

// Candidates are in snapshot order, so the first minimum is the deterministic tie-break.
template <typename Key>
Candidate* FirstMinimum(const std::vector<Candidate*>& candidates, Key key) {
  Candidate* best = candidates.front();
  auto best_key = key(*best);
  for (Candidate* c : candidates) {
    auto k = key(*c);
    if (k < best_key) {
      best = c;
      best_key = k;
    }
  }
  return best;
}

Candidate* LeastActive(const std::vector<Candidate*>& candidates) {
  return FirstMinimum(
      candidates, [](const Candidate& c) { return std::tuple(c.in_flight, c.model_in_flight); });
}

Candidate* LowestLatency(const std::vector<Candidate*>& candidates) {
  return FirstMinimum(candidates, [](const Candidate& c) {
    double latency = c.node->proto->latency_ms();
    if (latency <= 0) latency = c.runtime->latency_ms.load();
    // An unmeasured node is not known to be fast: it ranks after every measured one.
    const bool unmeasured = !(latency > 0);
    return std::tuple(unmeasured, unmeasured ? 0.0 : latency, c.in_flight, c.model_in_flight);
  });
}

// The best (lowest value) priority tier, then warm-first and least-active inside it. Tiers
// come before warmth: a lower tier is the operator's fallback, not a place to chase a loaded
// model.
Candidate* Priority(const std::vector<Candidate*>& candidates) {
  int32_t best_tier = candidates.front()->node->proto->priority();
  for (Candidate* c : candidates) best_tier = std::min(best_tier, c->node->proto->priority());
  std::vector<Candidate*> tier;
  for (Candidate* c : candidates) {
    if (c->node->proto->priority() == best_tier) tier.push_back(c);
  }
  return LeastActive(WarmFirst(std::move(tier)));
}

int64_t EjectionMs(const EffectivePolicy& policy, int ejections) {
  const int64_t cap = policy.eject_max_ms;
  int64_t ms = std::min(policy.eject_base_ms, cap);
  for (int i = 1; i < ejections && ms < cap; ++i) {
    ms = ms > cap / 2 ? cap : ms * 2;
  }
  return ms;
}

}  // namespace

const char* PickErrorName(PickError error) {
  switch (error) {
    case PickError::kNone:
      return "none";
    case PickError::kModelNotFound:
      return "model_not_found";
    case PickError::kNoHealthyNode:
      return "no_healthy_node";
    case PickError::kAllBusy:
      return "all_busy";
    case PickError::kExhausted:
      return "exhausted";
  }
  return "unknown";
}

// ---- Lease ----

Lease::Lease(Lease&& other) noexcept
    : table_(std::move(other.table_)),
      node_(std::exchange(other.node_, nullptr)),
      node_index_(std::exchange(other.node_index_, 0)),
      runtime_(std::move(other.runtime_)),
      model_key_(std::move(other.model_key_)) {
  other.model_key_.clear();
}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    table_ = std::move(other.table_);
    node_ = std::exchange(other.node_, nullptr);
    node_index_ = std::exchange(other.node_index_, 0);
    runtime_ = std::move(other.runtime_);
    model_key_ = std::move(other.model_key_);
    other.model_key_.clear();
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (node_ == nullptr) return;
  runtime_->in_flight.fetch_sub(1);
  CountModel(*runtime_, model_key_, -1);
  node_ = nullptr;
  node_index_ = 0;
  runtime_.reset();
  table_.reset();
  model_key_.clear();
}

// ---- Router ----

Router::Router(const Clock& clock) : clock_(clock) {}

std::shared_ptr<NodeRuntime> Router::Runtime(const std::string& node_name) {
  std::lock_guard lock(mu_);
  auto& runtime = runtimes_[node_name];
  if (!runtime) runtime = std::make_shared<NodeRuntime>();
  return runtime;
}

std::shared_ptr<NodeRuntime> Router::FindRuntime(const std::string& node_name) const {
  std::lock_guard lock(mu_);
  auto it = runtimes_.find(node_name);
  return it == runtimes_.end() ? nullptr : it->second;
}

bool Router::EjectedNow(NodeRuntime& runtime) const {
  std::lock_guard lock(runtime.mu);
  return runtime.ejected_until > clock_.Now();
}

PickResult Router::Pick(const std::shared_ptr<const RoutingTable>& table,
                        const std::string& model_key,
                        const std::unordered_set<std::string>& exclude) {
  PickResult result;
  if (!table) {
    // No snapshot yet: the fleet is unknown, which is unavailability, not a missing model.
    result.error = PickError::kNoHealthyNode;
    return result;
  }
  const std::vector<size_t>& listed = table->NodesWithModel(model_key);
  if (listed.empty()) {
    result.error = PickError::kModelNotFound;
    return result;
  }

  // Loops only when another thread took the last slot of the chosen node between reading the
  // counts and taking the slot; the next round sees that node as busy.
  for (;;) {
    std::vector<Candidate> eligible;
    eligible.reserve(listed.size());
    bool any_excluded = false;
    bool any_busy = false;
    for (size_t index : listed) {
      const NodeEntry& node = table->nodes()[index];
      // Exclusion comes first: a node this request already tried is "tried", whatever its
      // state has become since (it may have been ejected by that very failure).
      if (exclude.contains(node.name)) {
        any_excluded = true;
        continue;
      }
      if (!node.routable) continue;
      std::shared_ptr<NodeRuntime> runtime = Runtime(node.name);
      if (EjectedNow(*runtime)) continue;
      const int64_t in_flight = runtime->in_flight.load();
      if (AtCapacity(node, in_flight)) {
        any_busy = true;
        continue;
      }
      Candidate c;
      c.index = index;
      c.node = &node;
      c.in_flight = in_flight;
      c.warm = node.loaded_keys.contains(model_key);
      {
        std::lock_guard lock(runtime->mu);
        auto it = runtime->model_in_flight.find(model_key);
        c.model_in_flight = it == runtime->model_in_flight.end() ? 0 : it->second;
      }
      c.runtime = std::move(runtime);
      eligible.push_back(std::move(c));
    }

    if (eligible.empty()) {
      result.error = any_busy       ? PickError::kAllBusy
                     : any_excluded ? PickError::kExhausted
                                    : PickError::kNoHealthyNode;
      return result;
    }

    std::vector<Candidate*> all;
    all.reserve(eligible.size());
    for (Candidate& c : eligible) all.push_back(&c);

    Candidate* choice = nullptr;
    switch (table->policy().strategy) {
      case corral::v1::STRATEGY_LOWEST_LATENCY:
        choice = LowestLatency(WarmFirst(all));
        break;
      case corral::v1::STRATEGY_ROUND_ROBIN: {
        std::vector<Candidate*> pool = WarmFirst(all);
        std::lock_guard lock(mu_);
        choice = pool[rr_cursor_++ % pool.size()];
        break;
      }
      case corral::v1::STRATEGY_WEIGHTED: {
        // Smooth weighted round robin: every candidate gains its weight, the richest is
        // chosen and pays the total. Spreads a 5:1:1 split as a a b a c a a, not a a a a a b c.
        std::vector<Candidate*> pool = WarmFirst(all);
        std::lock_guard weighted_lock(weighted_mu_);
        int64_t total = 0;
        int64_t best_current = 0;
        for (Candidate* c : pool) {
          const int64_t weight = std::max<int32_t>(1, c->node->proto->weight());
          std::lock_guard lock(c->runtime->mu);
          c->runtime->weighted_current += weight;
          total += weight;
          if (choice == nullptr || c->runtime->weighted_current > best_current) {
            choice = c;
            best_current = c->runtime->weighted_current;
          }
        }
        std::lock_guard lock(choice->runtime->mu);
        choice->runtime->weighted_current -= total;
        break;
      }
      case corral::v1::STRATEGY_PRIORITY:
        choice = Priority(all);
        break;
      default:  // least_active, and unspecified (the table resolves it, but be total)
        choice = LeastActive(WarmFirst(all));
        break;
    }

    if (TryTakeSlot(*choice->node, *choice->runtime)) {
      CountModel(*choice->runtime, model_key, +1);
      result.lease.table_ = table;
      result.lease.node_ = choice->node;
      result.lease.node_index_ = choice->index;
      result.lease.runtime_ = std::move(choice->runtime);
      result.lease.model_key_ = model_key;
      return result;
    }
  }
}

Lease Router::Acquire(const std::shared_ptr<const RoutingTable>& table,
                      const std::string& node_name, const std::string& model_key) {
  Lease lease;
  if (!table) return lease;
  const NodeEntry* node = table->FindNode(node_name);
  if (node == nullptr || !node->routable) return lease;
  std::shared_ptr<NodeRuntime> runtime = Runtime(node_name);
  if (EjectedNow(*runtime)) return lease;
  if (!TryTakeSlot(*node, *runtime)) return lease;
  CountModel(*runtime, model_key, +1);
  lease.table_ = table;
  lease.node_ = node;
  lease.node_index_ = static_cast<size_t>(node - table->nodes().data());
  lease.runtime_ = std::move(runtime);
  lease.model_key_ = model_key;
  return lease;
}

void Router::RecordSuccess(const std::string& node_name, double header_latency_ms) {
  std::shared_ptr<NodeRuntime> runtime = Runtime(node_name);
  runtime->requests_total.fetch_add(1);
  std::lock_guard lock(runtime->mu);
  runtime->consecutive_failures = 0;
  runtime->ejections = 0;
  if (std::isfinite(header_latency_ms) && header_latency_ms >= 0) {
    const double previous = runtime->latency_ms.load();
    runtime->latency_ms.store(previous > 0
                                  ? previous + kLatencyAlpha * (header_latency_ms - previous)
                                  : header_latency_ms);
  }
}

void Router::RecordFailure(const std::string& node_name, const EffectivePolicy& policy) {
  std::shared_ptr<NodeRuntime> runtime = Runtime(node_name);
  runtime->requests_total.fetch_add(1);
  runtime->failures_total.fetch_add(1);
  runtime->passive_failures_unreported.fetch_add(1);
  std::lock_guard lock(runtime->mu);
  const TimePoint now = clock_.Now();
  // Requests sent before the ejection can still fail during it; they say nothing new, and
  // counting them would eject the node again the moment it returns.
  if (runtime->ejected_until > now) return;
  ++runtime->consecutive_failures;
  if (runtime->consecutive_failures >= std::max(1, policy.eject_after_failures)) {
    runtime->consecutive_failures = 0;
    ++runtime->ejections;
    runtime->ejections_total.fetch_add(1, std::memory_order_relaxed);
    runtime->ejected_until =
        now + std::chrono::milliseconds(EjectionMs(policy, runtime->ejections));
  }
}

bool Router::IsEjected(const std::string& node_name) const {
  std::shared_ptr<NodeRuntime> runtime = FindRuntime(node_name);
  return runtime && EjectedNow(*runtime);
}

int64_t Router::ModelInFlight(const std::string& node_name, const std::string& model_key) const {
  std::shared_ptr<NodeRuntime> runtime = FindRuntime(node_name);
  if (!runtime) return 0;
  std::lock_guard lock(runtime->mu);
  auto it = runtime->model_in_flight.find(model_key);
  return it == runtime->model_in_flight.end() ? 0 : it->second;
}

std::vector<Router::NodeLoadSample> Router::TakeLoadReport() {
  std::vector<std::pair<std::string, std::shared_ptr<NodeRuntime>>> runtimes;
  {
    std::lock_guard lock(mu_);
    runtimes.assign(runtimes_.begin(), runtimes_.end());
  }
  std::sort(runtimes.begin(), runtimes.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<NodeLoadSample> report;
  report.reserve(runtimes.size());
  for (auto& [name, runtime] : runtimes) {
    NodeLoadSample sample;
    sample.node = name;
    sample.in_flight = runtime->in_flight.load();
    sample.passive_failures = runtime->passive_failures_unreported.exchange(0);
    sample.ejected = EjectedNow(*runtime);
    sample.latency_ms = runtime->latency_ms.load();
    report.push_back(std::move(sample));
  }
  return report;
}

void Router::ForgetNodesNotIn(const RoutingTable& table) {
  std::lock_guard lock(mu_);
  std::erase_if(runtimes_, [&](const auto& entry) {
    return table.FindNode(entry.first) == nullptr && entry.second->in_flight.load() == 0;
  });
}

}  // namespace corral::dataplane
