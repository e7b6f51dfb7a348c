// ProxyTracker: the control plane's view of the proxies — which are connected (an open Watch
// stream), which snapshot each applied or rejected, and the per-node load each reported.
//
// Nothing here is durable: after a restart proxies reconnect and report again within seconds.
// A proxy is "connected" while at least one of its Watch streams is open (a reconnect may
// overlap the old stream's end). Load from a disconnected proxy no longer counts toward the
// fleet totals, and proxies gone for longer than `forget_after` are dropped from the list so
// memory stays bounded however many proxies come and go.
//
// Thread safety: all methods are safe from any thread (one mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "corral/v1/control.pb.h"

namespace corral::control {

// Fleet-wide load of one node: the sum over connected proxies.
struct NodeFleetLoad {
  int64_t in_flight = 0;
  int64_t passive_failures = 0;  // total since the proxies connected
  int ejected_by = 0;            // proxies that currently eject the node
};

struct ControlMetrics;

class ProxyTracker {
 public:
  // `metrics` (not owned, may be null) counts acks and nacks (each new version a proxy reports
  // applied or rejected, not every periodic Report) and the connected proxies.
  explicit ProxyTracker(std::chrono::seconds forget_after = std::chrono::hours(1),
                        ControlMetrics* metrics = nullptr);

  // A Watch stream opened / ended. The id returned by WatchStarted is passed to WatchEnded.
  uint64_t WatchStarted(const std::string& proxy_id, const std::string& peer);
  void WatchEnded(const std::string& proxy_id, uint64_t stream_id);

  // Records a Report: ack/nack and the proxy's per-node load.
  void Report(const corral::v1::ReportRequest& report, const std::string& peer);

  // Every known proxy, sorted by id.
  std::vector<corral::v1::ProxyInfo> List() const;
  // Sum of the loads reported by connected proxies, by node name.
  std::map<std::string, NodeFleetLoad> FleetLoad() const;

 private:
  struct Proxy {
    corral::v1::ProxyInfo info;
    std::map<uint64_t, bool> streams;                   // open Watch streams
    std::map<std::string, corral::v1::NodeLoad> loads;  // latest report, by node
    std::map<std::string, int64_t> failures;            // accumulated passive failures
    std::chrono::steady_clock::time_point disconnected_at{};
  };
  void ForgetOldLocked();  // REQUIRES: mu_ held

  const std::chrono::seconds forget_after_;
  ControlMetrics* const metrics_;
  mutable std::mutex mu_;
  std::map<std::string, Proxy> proxies_;  // guarded by mu_
  uint64_t next_stream_id_ = 1;           // guarded by mu_
  int connected_ = 0;                     // proxies with an open stream; guarded by mu_
};

}  // namespace corral::control
