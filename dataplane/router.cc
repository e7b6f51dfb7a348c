#include "dataplane/router.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "dataplane/cost_rule.h"

namespace corral::dataplane {
namespace {

// Weight of the newest sample in the latency EWMA: recent enough to follow a node that slows
// down, smooth enough that one cold model load does not swing the ranking for long.
constexpr double kLatencyAlpha = 0.3;

// Weight of the newest sample in the request-duration and load-time EWMAs (the cost rule).
constexpr double kDurationAlpha = 0.2;

// A node that passed every filter, with the counts read once for this selection.
struct Candidate {
  size_t index = 0;
  const NodeEntry* node = nullptr;
  std::shared_ptr<NodeRuntime> runtime;
  int64_t in_flight = 0;
  int64_t model_in_flight = 0;
  int64_t model_limit = 1;
  bool warm = false;
  bool preferred = false;
};

// A limit below 0 is none; 0 is a limit with no slot now (this proxy's grant is empty).
bool AtLimit(int64_t limit, int64_t in_flight) { return limit >= 0 && in_flight >= limit; }

// The check against the node's limit and the increment are one step, so racing picks can never
// push a node past it.
bool TryTakeNodeSlot(int64_t limit, NodeRuntime& runtime) {
  if (limit < 0) {
    runtime.in_flight.fetch_add(1);
    return true;
  }
  int64_t current = runtime.in_flight.load();
  while (current < limit) {
    if (runtime.in_flight.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

double Ewma(double previous, double sample) {
  return previous > 0 ? previous + kDurationAlpha * (sample - previous) : sample;
}

// Keeps the candidates for which `keep` holds when at least one does, in place.
template <typename Keep>
void KeepIfAny(std::vector<Candidate*>& pool, Keep keep) {
  if (std::any_of(pool.begin(), pool.end(), [&](Candidate* c) { return keep(*c); })) {
    std::erase_if(pool, [&](Candidate* c) { return !keep(*c); });
  }
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
    case PickError::kNotPlaceable:
      return "not_placeable";
  }
  return "unknown";
}

// ---- Lease ----

Lease::Lease(Lease&& other) noexcept
    : table_(std::move(other.table_)),
      node_(std::exchange(other.node_, nullptr)),
      node_index_(std::exchange(other.node_index_, 0)),
      runtime_(std::move(other.runtime_)),
      model_key_(std::move(other.model_key_)),
      router_(std::exchange(other.router_, nullptr)),
      taken_(other.taken_) {
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
    router_ = std::exchange(other.router_, nullptr);
    taken_ = other.taken_;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (node_ == nullptr) return;
  router_->GiveBack(*this);
  node_ = nullptr;
  router_ = nullptr;
  node_index_ = 0;
  runtime_.reset();
  table_.reset();
  model_key_.clear();
}

// ---- Router ----

Router::Router(const Clock& clock) : clock_(clock), queue_(clock) {}

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

int64_t Router::NodeLimit(const NodeEntry& node) const {
  const int64_t configured = node.proto->max_parallel();
  if (configured <= 0) return -1;  // no limit, so nothing to share
  const SlotGrants* grants = grants_.load(std::memory_order_acquire);
  return grants == nullptr ? configured : grants->NodeLimit(node.name, configured);
}

int64_t Router::ModelLimit(const NodeEntry& node, const std::string& model_key) const {
  const int64_t configured = std::max<int32_t>(1, node.proto->num_parallel());
  const SlotGrants* grants = grants_.load(std::memory_order_acquire);
  return grants == nullptr ? configured : grants->ModelLimit(node.name, model_key, configured);
}

bool Router::TryTake(const NodeEntry& node, NodeRuntime& runtime, const std::string& model_key,
                     int64_t model_limit) {
  if (!TryTakeNodeSlot(NodeLimit(node), runtime)) return false;
  if (model_key.empty()) return true;
  {
    std::lock_guard lock(runtime.mu);
    ModelRuntime& model = runtime.models[model_key];
    if (!AtLimit(model_limit, model.in_flight)) {
      ++model.in_flight;
      return true;
    }
  }
  // The node slot was taken for a moment: a waiter that looked then saw the node full.
  runtime.in_flight.fetch_sub(1);
  queue_.SlotFreed(node.name);
  return false;
}

void Router::FillLease(Lease& lease, const std::shared_ptr<const RoutingTable>& table,
                       const NodeEntry& node, std::shared_ptr<NodeRuntime> runtime,
                       const std::string& model_key) {
  lease.table_ = table;
  lease.node_ = &node;
  lease.node_index_ = static_cast<size_t>(&node - table->nodes().data());
  lease.runtime_ = std::move(runtime);
  lease.model_key_ = model_key;
  lease.router_ = this;
  lease.taken_ = clock_.Now();
}

void Router::GiveBack(Lease& lease) {
  NodeRuntime& runtime = *lease.runtime_;
  runtime.in_flight.fetch_sub(1);
  if (!lease.model_key_.empty()) {
    const double held_ms =
        std::chrono::duration<double, std::milli>(clock_.Now() - lease.taken_).count();
    std::lock_guard lock(runtime.mu);
    auto it = runtime.models.find(lease.model_key_);
    if (it != runtime.models.end()) {
      ModelRuntime& model = it->second;
      --model.in_flight;
      if (held_ms >= 0) model.duration_ms = Ewma(model.duration_ms, held_ms);
    }
  }
  queue_.SlotFreed(lease.node_->name);
}

PickResult Router::Pick(const std::shared_ptr<const RoutingTable>& table,
                        const std::string& model_key,
                        const std::unordered_set<std::string>& exclude, PickOptions options) {
  PickResult result;
  if (!table) {
    // No snapshot yet: the fleet is unknown, which is unavailability, not a missing model.
    result.error = PickError::kNoHealthyNode;
    return result;
  }
  const ModelPlacement* placement = table->Placement(model_key);
  if (placement == nullptr) {
    result.error = PickError::kModelNotFound;
    return result;
  }
  if (placement->nodes.empty()) {
    result.error = PickError::kNotPlaceable;
    return result;
  }
  const uint64_t version = table->version();

  // Loops only when another thread took the last slot of the chosen node between reading the
  // counts and taking the slot; the next round sees that node as busy.
  for (;;) {
    std::vector<Candidate> eligible;
    eligible.reserve(placement->nodes.size());
    bool any_excluded = false;
    bool any_busy = false;
    // The shortest expected wait among busy warm nodes (the cost rule); < 0 = none.
    double warm_wait_ms = -1;
    for (size_t position = 0; position < placement->nodes.size(); ++position) {
      const size_t index = placement->nodes[position];
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
      Candidate c;
      c.index = index;
      c.node = &node;
      c.in_flight = runtime->in_flight.load();
      c.model_limit = ModelLimit(node, model_key);
      c.preferred = position < placement->preferred;
      c.warm = node.loaded_keys.contains(model_key);
      double duration_ms = 0;
      {
        std::lock_guard lock(runtime->mu);
        auto it = runtime->models.find(model_key);
        if (it != runtime->models.end()) {
          c.model_in_flight = it->second.in_flight;
          c.warm = c.warm || it->second.ResidentIn(version);
          duration_ms = it->second.duration_ms;
        }
      }
      if (AtLimit(NodeLimit(node), c.in_flight) || AtLimit(c.model_limit, c.model_in_flight)) {
        any_busy = true;
        if (c.warm && options.may_wait) {
          // Requests ahead of this one for the model on the node: those holding its slots and
          // those queued that it could serve.
          const int64_t ahead = c.model_in_flight + queue_.Waiting(node.name, model_key);
          const double wait = WarmWaitMs(ahead, c.model_limit, duration_ms);
          if (warm_wait_ms < 0 || wait < warm_wait_ms) warm_wait_ms = wait;
        }
        continue;
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

    std::vector<Candidate*> pool;
    pool.reserve(eligible.size());
    for (Candidate& c : eligible) pool.push_back(&c);

    // A soft placement rule's nodes first; then, under the priority strategy, the best tier.
    // Tiers come before warmth: a lower tier is the operator's fallback, not a place to chase a
    // loaded model.
    KeepIfAny(pool, [](const Candidate& c) { return c.preferred; });
    const corral::v1::Strategy strategy = table->policy().strategy;
    if (strategy == corral::v1::STRATEGY_PRIORITY) {
      int32_t best_tier = pool.front()->node->proto->priority();
      for (Candidate* c : pool) best_tier = std::min(best_tier, c->node->proto->priority());
      std::erase_if(pool, [&](Candidate* c) { return c->node->proto->priority() != best_tier; });
    }
    // Warm first: a warm node with a free slot always beats a cold load. When only cold nodes
    // are free and a warm one is busy, the cost rule decides whether to wait for it.
    const bool any_warm =
        std::any_of(pool.begin(), pool.end(), [](Candidate* c) { return c->warm; });
    if (any_warm) {
      std::erase_if(pool, [](Candidate* c) { return !c->warm; });
    } else if (warm_wait_ms >= 0 && PreferWarm(warm_wait_ms, ColdLoadMs(ObservedLoadMs(model_key),
                                                                        placement->memory_bytes))) {
      result.error = PickError::kAllBusy;
      result.cold_free = true;
      return result;
    }

    Candidate* choice = nullptr;
    switch (strategy) {
      case corral::v1::STRATEGY_LOWEST_LATENCY:
        choice = LowestLatency(pool);
        break;
      case corral::v1::STRATEGY_ROUND_ROBIN: {
        std::lock_guard lock(mu_);
        choice = pool[rr_cursor_++ % pool.size()];
        break;
      }
      case corral::v1::STRATEGY_WEIGHTED: {
        // Smooth weighted round robin: every candidate gains its weight, the richest is
        // chosen and pays the total. Spreads a 5:1:1 split as a a b a c a a, not a a a a a b c.
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
      default:  // least_active, priority inside its tier, and unspecified (be total)
        choice = LeastActive(pool);
        break;
    }

    if (TryTake(*choice->node, *choice->runtime, model_key, choice->model_limit)) {
      FillLease(result.lease, table, *choice->node, std::move(choice->runtime), model_key);
      return result;
    }
  }
}

Lease Router::Acquire(const std::shared_ptr<const RoutingTable>& table,
                      const std::string& node_name, const std::string& model_key,
                      bool model_limited) {
  Lease lease;
  if (!table) return lease;
  const NodeEntry* node = table->FindNode(node_name);
  if (node == nullptr || !node->routable) return lease;
  std::shared_ptr<NodeRuntime> runtime = Runtime(node_name);
  if (EjectedNow(*runtime)) return lease;
  const int64_t model_limit = model_limited ? ModelLimit(*node, model_key) : -1;
  if (!TryTake(*node, *runtime, model_key, model_limit)) return lease;
  FillLease(lease, table, *node, std::move(runtime), model_key);
  return lease;
}

void Router::RecordFirstByte(const Lease& lease, double latency_ms) {
  if (!lease || lease.model_key_.empty()) return;
  const NodeEntry& node = lease.node();
  if (node.loaded_keys.contains(lease.model_key_)) return;
  const uint64_t version = lease.table_->version();
  {
    std::lock_guard lock(lease.runtime_->mu);
    ModelRuntime& model = lease.runtime_->models[lease.model_key_];
    if (model.ResidentIn(version)) return;  // already seen loaded under this snapshot
    model.resident = true;
    model.resident_in = version;
    lease.runtime_->cold_loads.push_back(lease.model_key_);
  }
  if (!std::isfinite(latency_ms) || latency_ms < 0) return;
  std::lock_guard lock(load_mu_);
  double& load = load_ms_[lease.model_key_];
  load = Ewma(load, latency_ms);
}

double Router::ObservedLoadMs(const std::string& model_key) const {
  std::lock_guard lock(load_mu_);
  auto it = load_ms_.find(model_key);
  return it == load_ms_.end() ? 0 : it->second;
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
  auto it = runtime->models.find(model_key);
  return it == runtime->models.end() ? 0 : it->second.in_flight;
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
    // By key: the models in flight on the node and those waited for that it could serve.
    std::map<std::string, ModelLoadSample> models;
    for (const auto& [key, waiting] : queue_.WaitingByModel(name)) {
      models[key] = {key, 0, waiting};
      sample.waiting += waiting;
    }
    {
      std::lock_guard lock(runtime->mu);
      for (const auto& [key, model] : runtime->models) {
        if (model.in_flight <= 0) continue;
        ModelLoadSample& m = models[key];
        m.model = key;
        m.in_flight = model.in_flight;
      }
      sample.cold_loads.swap(runtime->cold_loads);
    }
    for (auto& [key, model] : models) sample.models.push_back(std::move(model));
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
