#include "controlplane/slot_allocator.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <utility>

namespace corral::control {
namespace {

// Most answers remembered per proxy while unacknowledged. Reports of one proxy are sequential,
// so there is one, or a few after lost answers; past the cap the oldest goes (its lease runs out
// soon after anyway, and a proxy that stopped acknowledging falls back to the equal split).
constexpr size_t kMaxUnacked = 16;

// Max-min fair shares of `limit` for `demand` (in proxy order), then what nobody demands split
// equally, the remainder one slot each in proxy order.
std::vector<int64_t> Targets(int64_t limit, const std::vector<int64_t>& demand) {
  const size_t n = demand.size();
  std::vector<int64_t> out(n, 0);
  if (n == 0 || limit <= 0) return out;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return demand[a] < demand[b]; });
  int64_t remaining = limit;
  for (size_t i = 0; i < n; ++i) {
    const int64_t left = static_cast<int64_t>(n - i);
    const int64_t fair = remaining / left;
    if (demand[order[i]] <= fair) {
      out[order[i]] = demand[order[i]];
      remaining -= demand[order[i]];
      continue;
    }
    // Everyone from here on wants more than the fair share: each gets it, and the slots that do
    // not divide evenly go one each in proxy order.
    std::vector<size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(i), order.end());
    std::sort(rest.begin(), rest.end());
    int64_t extra = remaining - fair * left;
    for (size_t r : rest) {
      out[r] = fair + (extra > 0 ? 1 : 0);
      if (extra > 0) --extra;
    }
    remaining = 0;
    break;
  }
  if (remaining > 0) {
    const int64_t each = remaining / static_cast<int64_t>(n);
    int64_t extra = remaining - each * static_cast<int64_t>(n);
    for (size_t i = 0; i < n; ++i) {
      out[i] += each + (extra > 0 ? 1 : 0);
      if (extra > 0) --extra;
    }
  }
  return out;
}

}  // namespace

LimitTable LimitsOf(const corral::v1::Snapshot& snapshot) {
  LimitTable out;
  for (const corral::v1::Node& node : snapshot.nodes()) {
    NodeLimits& limits = out[node.name()];
    limits.max_parallel = std::max<int64_t>(0, node.max_parallel());
    limits.num_parallel = std::max<int64_t>(1, node.num_parallel());
  }
  return out;
}

int64_t FallbackSlots(int64_t limit, int proxies) {
  if (limit <= 0) return 0;
  return std::max<int64_t>(1, limit / std::max(1, proxies));
}

SlotAllocator::SlotAllocator(const Clock& clock, SlotAllocatorOptions options)
    : clock_(clock), options_(options) {}

void SlotAllocator::Connected(const std::string& proxy_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++proxies_[proxy_id].streams;
}

void SlotAllocator::Disconnected(const std::string& proxy_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = proxies_.find(proxy_id);
  if (it != proxies_.end() && it->second.streams > 0) --it->second.streams;
  PruneLocked(clock_.Now());
}

int SlotAllocator::proxies() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(proxies_.size());
}

bool SlotAllocator::Live(const Issued& issued, TimePoint now) const {
  return now <= issued.sent + options_.lease + options_.lease_margin;
}

int64_t SlotAllocator::Slots(const Issued& issued, const std::string& node,
                             const std::string* model, int64_t limit, TimePoint now) const {
  const int64_t fallback = FallbackSlots(limit, issued.proxies);
  auto it = issued.grants.find(node);
  // A node the answer did not list (added since) is used at the equal split, as the proxy does.
  if (it == issued.grants.end()) return fallback;
  int64_t slots = it->second.max_parallel;
  if (model != nullptr) {
    auto m = it->second.models.find(*model);
    slots = m != it->second.models.end() ? m->second : it->second.default_model_slots;
  }
  slots = std::min(slots, limit);
  // Half a lease without a newer answer applied: the proxy may be cut off, and at the end of
  // its lease it falls back to the equal split. Counting that from now leaves the other proxies
  // half a lease to report and acknowledge smaller grants before it can happen. The grant
  // itself still counts: requests started under it may run on, unreported.
  if (now > issued.sent + options_.lease / 2) slots = std::max(slots, fallback);
  return slots;
}

int64_t SlotAllocator::HeldLocked(const Proxy& proxy, const std::string& node,
                                  const std::string* model, int64_t limit, TimePoint now) const {
  int64_t held = 0;
  if (auto it = proxy.loads.find(node); it != proxy.loads.end()) {
    if (model == nullptr) {
      held = it->second.node.in_flight;
    } else if (auto m = it->second.models.find(*model); m != it->second.models.end()) {
      held = m->second.in_flight;
    }
  }
  switch (proxy.base) {
    case Base::kWhole:
      held = std::max(held, limit);
      break;
    case Base::kUnknown:
      held = std::max(held, FallbackSlots(limit, static_cast<int>(proxies_.size())));
      break;
    case Base::kIssued:
      held = std::max(held, Slots(proxy.acked, node, model, limit, now));
      break;
  }
  for (const Issued& issued : proxy.unacked) {
    held = std::max(held, Slots(issued, node, model, limit, now));
  }
  return held;
}

int64_t SlotAllocator::GrantLocked(const std::string& proxy_id, const std::string& node,
                                   const std::string* model, int64_t limit, TimePoint now) const {
  std::vector<int64_t> demand;
  demand.reserve(proxies_.size());
  size_t self = 0;
  int64_t others_held = 0;
  for (const auto& [id, proxy] : proxies_) {
    if (id == proxy_id) {
      self = demand.size();
    } else {
      others_held += HeldLocked(proxy, node, model, limit, now);
    }
    int64_t d = 0;
    if (auto it = proxy.loads.find(node); it != proxy.loads.end()) {
      if (model == nullptr) {
        d = it->second.node.in_flight + it->second.node.waiting;
      } else if (auto m = it->second.models.find(*model); m != it->second.models.end()) {
        d = m->second.in_flight + m->second.waiting;
      }
    }
    demand.push_back(std::max<int64_t>(0, d));
  }
  const int64_t target = Targets(limit, demand)[self];
  // Raised only into what no other proxy may be using; lowering is always safe.
  return std::clamp<int64_t>(limit - others_held, 0, target);
}

void SlotAllocator::Report(const std::string& proxy_id, uint64_t report_seq, uint64_t applied_seq,
                           const google::protobuf::RepeatedPtrField<corral::v1::NodeLoad>& loads,
                           const LimitTable& limits, corral::v1::ReportResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  const TimePoint now = clock_.Now();
  PruneLocked(now);
  if (report_seq == 0) {
    // A proxy that does not number its Reports (an older one) applies no grants: it enforces
    // every limit alone, as before, and takes no part here. Counting it as whole would leave
    // nothing to the others during a rolling upgrade.
    proxies_.erase(proxy_id);
    return;
  }
  Proxy& proxy = proxies_[proxy_id];
  if (report_seq <= proxy.last_report_seq) {
    // Numbering started again: a new process under the same id. What the old one held is gone
    // with it; the new one starts whole until it applies an answer.
    proxy.base = Base::kWhole;
    proxy.acked.grants.clear();
    proxy.unacked.clear();
  }
  proxy.reported = true;
  proxy.last_report_seq = report_seq;

  // The acknowledgement: the answer to `applied_seq` is what the proxy enforces now.
  if (applied_seq != 0) {
    auto it = std::find_if(proxy.unacked.begin(), proxy.unacked.end(),
                           [&](const Issued& i) { return i.seq == applied_seq; });
    if (it != proxy.unacked.end()) {
      proxy.base = Base::kIssued;
      proxy.acked = std::move(*it);
    } else if (!(proxy.base == Base::kIssued && proxy.acked.seq == applied_seq)) {
      proxy.base = Base::kUnknown;  // an answer from before this allocator (a restart)
    }
    while (!proxy.unacked.empty() && proxy.unacked.front().seq <= applied_seq) {
      proxy.unacked.pop_front();
    }
  }

  proxy.loads.clear();
  for (const corral::v1::NodeLoad& load : loads) {
    NodeDemand& d = proxy.loads[load.node()];
    d.node.in_flight = std::max<int64_t>(0, load.in_flight());
    d.node.waiting = std::max<int64_t>(0, load.waiting());
    for (const corral::v1::ModelLoad& model : load.models()) {
      Demand& m = d.models[model.model()];
      m.in_flight += std::max<int64_t>(0, model.in_flight());
      m.waiting += std::max<int64_t>(0, model.waiting());
    }
  }

  Issued issued;
  issued.seq = report_seq;
  issued.sent = now;
  issued.proxies = static_cast<int>(proxies_.size());
  const std::string no_demand;  // a model nobody asks for: what default_model_slots covers
  for (const auto& [node, limit] : limits) {
    NodeGrant grant;
    if (limit.max_parallel > 0) {
      grant.max_parallel = GrantLocked(proxy_id, node, nullptr, limit.max_parallel, now);
    }
    grant.default_model_slots = GrantLocked(proxy_id, node, &no_demand, limit.num_parallel, now);
    std::set<std::string> asked;
    for (const auto& [id, p] : proxies_) {
      auto it = p.loads.find(node);
      if (it == p.loads.end()) continue;
      for (const auto& [model, d] : it->second.models) {
        if (d.in_flight + d.waiting > 0) asked.insert(model);
      }
    }
    for (const std::string& model : asked) {
      grant.models[model] = GrantLocked(proxy_id, node, &model, limit.num_parallel, now);
    }

    corral::v1::SlotGrant* out = response->add_grants();
    out->set_node(node);
    out->set_max_parallel(static_cast<int32_t>(grant.max_parallel));
    out->set_default_model_slots(static_cast<int32_t>(grant.default_model_slots));
    for (const auto& [model, slots] : grant.models) {
      corral::v1::ModelSlotGrant* m = out->add_models();
      m->set_model(model);
      m->set_num_parallel(static_cast<int32_t>(slots));
    }
    issued.grants.emplace(node, std::move(grant));
  }
  response->set_lease_ms(options_.lease.count());
  response->set_proxies(issued.proxies);
  proxy.unacked.push_back(std::move(issued));
  if (proxy.unacked.size() > kMaxUnacked) proxy.unacked.pop_front();
}

int64_t SlotAllocator::HeldTotal(const std::string& node, const std::string& model,
                                 const LimitTable& limits) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = limits.find(node);
  if (it == limits.end()) return 0;
  const int64_t limit = model.empty() ? it->second.max_parallel : it->second.num_parallel;
  const TimePoint now = clock_.Now();
  int64_t total = 0;
  for (const auto& [id, proxy] : proxies_) {
    total += HeldLocked(proxy, node, model.empty() ? nullptr : &model, limit, now);
  }
  return total;
}

void SlotAllocator::PruneLocked(TimePoint now) {
  for (auto it = proxies_.begin(); it != proxies_.end();) {
    const Proxy& p = it->second;
    bool live = p.base == Base::kIssued && Live(p.acked, now);
    for (const Issued& issued : p.unacked) live = live || Live(issued, now);
    // A proxy that never reported is whole until it does; one whose stream ended leaves once
    // nothing it was given still holds (docs/limits.md: a proxy cut off from the control plane
    // but still serving then uses the equal split on its own).
    if (p.streams == 0 && (!live || !p.reported)) {
      it = proxies_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace corral::control
