// SlotAllocator: divides every node's limits among the connected proxies, so that a node's
// max_parallel (node-wide) and num_parallel (per model) hold for the whole fleet of proxies, not
// for each proxy alone (docs/limits.md).
//
// Input: each proxy's latest Report (per node: requests in flight and waiting, the same per
// model) and which earlier answer it has applied. Output: the reporting proxy's grants, with a
// lease and the number of proxies, written into its ReportResponse. A pure unit: time comes from
// an injected Clock and nothing here does I/O.
//
// Each limit L is shared by demand: a proxy's target is its max-min fair share of L given every
// proxy's demand (in flight + waiting); what nobody demands is split equally as a floor (the
// remainder one slot each, in proxy id order), so a new request on an idle proxy finds a slot
// without waiting for a report round trip whenever the limit allows it.
//
// The bound. For each proxy the allocator keeps what the proxy may be enforcing now: the grant
// it last acknowledged (or, before any, the whole limit, which is what a proxy uses before its
// first answer), every grant sent but not yet acknowledged, the equal split (what a proxy falls
// back to) for any of those whose lease ran out, and the proxy's own reported in-flight count
// (requests started under an earlier, larger grant). `held` is the largest of those. A grant is
// only raised within L minus the other proxies' `held`, and a lowered grant lowers `held` only
// once the proxy acknowledges it (reports with it applied) or its lease runs out. So no grant
// ever makes the sum of `held` exceed L; the sum can only be above L through states the
// allocator did not choose (a proxy's first moments before its first answer, a limit lowered by
// the operator, a control-plane restart), and each proxy's acknowledgement brings it back.
//
// Thread safety: every method is safe from any thread (one mutex; Report's work is a pass over
// the nodes and proxies, no I/O).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "corral/v1/control.pb.h"

namespace corral::control {

// One node's configured limits, as the current snapshot has them.
struct NodeLimits {
  int64_t max_parallel = 0;  // node-wide; 0 = no limit
  int64_t num_parallel = 1;  // per model, the default applied (always >= 1)
};
using LimitTable = std::map<std::string, NodeLimits>;  // by node name

// The limits of every node in `snapshot`.
LimitTable LimitsOf(const corral::v1::Snapshot& snapshot);

// What a proxy uses once its lease ran out: an equal split of `limit` among `proxies`, at least
// one slot (so every proxy can still reach every node while the control plane is away; with
// fewer slots than proxies the node may then see up to `proxies` requests). 0 stays 0 (no
// limit). The proxy's SlotGrants applies the same rule (dataplane/slot_grants.cc).
int64_t FallbackSlots(int64_t limit, int proxies);

struct SlotAllocatorOptions {
  // How long a proxy may use its grants without a newer answer.
  std::chrono::milliseconds lease{3000};
  // Added to a lease on this side: a proxy counts its lease from when it applied the answer,
  // and applies none that took longer than this to arrive (ControlClient).
  std::chrono::milliseconds lease_margin{1000};
};

class SlotAllocator {
 public:
  explicit SlotAllocator(const Clock& clock = SteadyClock::Instance(),
                         SlotAllocatorOptions options = {});

  // One of the proxy's Watch streams opened / ended (a reconnect may overlap the old stream's
  // end). A proxy with no stream open keeps its share until its lease runs out, then leaves the
  // allocation.
  void Connected(const std::string& proxy_id);
  void Disconnected(const std::string& proxy_id);

  // A Report from `proxy_id`. `report_seq` numbers the proxy's Reports (1, 2, ...);
  // `applied_seq` is the Report whose answer the proxy applied last (0 = none yet). A
  // `report_seq` that goes backwards is a restarted proxy. Writes the proxy's grants for every
  // node in `limits`, the lease and the proxy count into `response`. A `report_seq` of 0 is a
  // proxy that applies no grants (an older one): it enforces every limit alone, takes no part
  // in the allocation and gets no grants.
  void Report(const std::string& proxy_id, uint64_t report_seq, uint64_t applied_seq,
              const google::protobuf::RepeatedPtrField<corral::v1::NodeLoad>& loads,
              const LimitTable& limits, corral::v1::ReportResponse* response);

  // The sum over proxies of what each may be using of one limit now (`model` empty: the node's
  // max_parallel): the figure the bound is about. For tests and the state view.
  int64_t HeldTotal(const std::string& node, const std::string& model,
                    const LimitTable& limits) const;
  // Proxies in the allocation.
  int proxies() const;

 private:
  struct NodeGrant {
    int64_t max_parallel = 0;
    int64_t default_model_slots = 0;
    std::map<std::string, int64_t> models;
  };
  // One answer sent to a proxy.
  struct Issued {
    uint64_t seq = 0;
    TimePoint sent{};
    int proxies = 1;
    std::map<std::string, NodeGrant> grants;
  };
  struct Demand {
    int64_t in_flight = 0;
    int64_t waiting = 0;
  };
  struct NodeDemand {
    Demand node;
    std::map<std::string, Demand> models;
  };
  enum class Base {
    kWhole,    // no answer applied yet: the proxy uses each limit whole
    kUnknown,  // applied an answer this allocator did not send (a restart): the equal split
    kIssued,   // applied `acked`
  };
  struct Proxy {
    int streams = 0;  // open Watch streams
    bool reported = false;
    uint64_t last_report_seq = 0;
    Base base = Base::kWhole;
    Issued acked;
    std::deque<Issued> unacked;
    std::map<std::string, NodeDemand> loads;
  };

  // What `proxy` may be using of one limit (model empty: node-wide). REQUIRES: mu_ held.
  int64_t HeldLocked(const Proxy& proxy, const std::string& node, const std::string* model,
                     int64_t limit, TimePoint now) const;
  // What `issued` lets a proxy use of one limit at `now` (the equal split once expired).
  int64_t Slots(const Issued& issued, const std::string& node, const std::string* model,
                int64_t limit, TimePoint now) const;
  bool Live(const Issued& issued, TimePoint now) const;
  // The reporting proxy's grant of one limit. REQUIRES: mu_ held.
  int64_t GrantLocked(const std::string& proxy_id, const std::string& node,
                      const std::string* model, int64_t limit, TimePoint now) const;
  void PruneLocked(TimePoint now);  // REQUIRES: mu_ held

  const Clock& clock_;
  const SlotAllocatorOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Proxy> proxies_;  // by id, so ties break the same way everywhere;
                                          // guarded by mu_
};

}  // namespace corral::control
