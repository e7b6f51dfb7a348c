// SlotGrants: this proxy's share of every node's limits when several proxies serve one fleet.
//
// A node's max_parallel and its per-model num_parallel hold for the whole fleet of proxies, not
// for each proxy alone. The control plane divides them among the connected proxies from their
// reports (demand: in flight and waiting) and answers each Report with this proxy's grants and a
// lease. A proxy that never received grants (a static snapshot file, no control plane) uses each
// limit whole; a proxy whose lease ran out without a newer answer uses an equal split of each
// limit among the proxies last known to be connected, at least one slot (docs/limits.md).
//
// A grant may be 0: the node's slots are other proxies' for now, and a request must wait (or
// go elsewhere) until a Report's answer gives this proxy some. So a 0 from NodeLimit means "no
// limit" only when `configured` is 0, and a 0 from ModelLimit always means "no slot now".
//
// Thread safety: every method is safe from any thread. The limit lookups are on the request
// path and take no lock that Apply holds for long (the grants are swapped as one immutable
// table).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "corral/v1/control.pb.h"

namespace corral::dataplane {

class SlotGrants {
 public:
  explicit SlotGrants(const Clock& clock = SteadyClock::Instance());
  ~SlotGrants();

  // Applies the grants of a Report answer; the lease counts from now.
  void Apply(const corral::v1::ReportResponse& response);

  // The node-wide slots this proxy may use on `node`, whose configured max_parallel is
  // `configured` (0 = no limit, which stays 0: no limit). With `configured` > 0 the answer is
  // in [0, configured], and 0 means no slot now (the node is full for this proxy).
  int64_t NodeLimit(const std::string& node, int64_t configured) const;

  // The slots this proxy may use for `model_key` on `node`, whose configured per-model limit
  // (num_parallel with the default applied) is `configured` (always at least 1). The answer is
  // in [0, configured]; 0 means no slot now.
  int64_t ModelLimit(const std::string& node, const std::string& model_key,
                     int64_t configured) const;

 private:
  struct Table;
  const Clock& clock_;
  std::shared_ptr<const Table> table_;  // read and swapped with std::atomic_load/atomic_store
};

}  // namespace corral::dataplane
