// DiscoveryService: the proxies' side of the gRPC API.
//
// Watch is a server-streaming callback reactor (WatchReactor in the .cc): on connect it sends the
// current snapshot at once, then every newer one the SnapshotPublisher publishes, with at most one
// write in flight per stream. A proxy that reads slowly only ever has the newest snapshot waiting
// (bounded memory) and never holds up other proxies. Report records acks, nacks and per-node load
// in the ProxyTracker, and adds the usage batch it carries to the Registry's hourly rollups
// (applied once per proxy instance and sequence; the answer acknowledges the sequence once it is
// committed). Its answer also carries the proxy's share of every node's limits (SlotAllocator,
// docs/limits.md), and a node where the proxy reports a cold load is re-probed soon
// (Prober::ProbeSoon), so the next snapshot lists the model as loaded. Both need the proxy (or
// admin) token.
//
// Grant acknowledgements ride in ReportRequest.report_seq (a proxy's Reports numbered 1, 2, ...)
// and grants_applied (the Report whose answer the proxy applied last).
//
// Thread safety: gRPC calls the handlers from its own threads; the service holds no mutable state
// of its own. The publisher, tracker and authenticator must outlive the server.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <mutex>

#include "controlplane/auth.h"
#include "controlplane/prober.h"
#include "controlplane/proxy_tracker.h"
#include "controlplane/registry.h"
#include "controlplane/slot_allocator.h"
#include "controlplane/snapshot_publisher.h"
#include "corral/v1/control.grpc.pb.h"

namespace corral::control {

// A snapshot in its wire form. StartWrite reads `bytes` until OnWriteDone; every stream writing
// the same version shares one (gRPC copies a ByteBuffer by reference, not by content).
struct WireSnapshot {
  uint64_t version = 0;
  grpc::ByteBuffer bytes;
};

// The newest snapshot in its wire form, serialised once for every Watch stream (with a thousand
// nodes a snapshot is megabytes, and serialising it once per proxy was most of the control
// plane's CPU). Thread safety: Get may be called from any thread.
class WireCache {
 public:
  // The wire form of `snapshot`, or null if it cannot be serialised.
  std::shared_ptr<const WireSnapshot> Get(
      const std::shared_ptr<const corral::v1::Snapshot>& snapshot);

 private:
  std::mutex mu_;
  std::shared_ptr<const corral::v1::Snapshot> source_;  // guarded by mu_
  std::shared_ptr<const WireSnapshot> wire_;            // guarded by mu_
};

// Watch is served raw (its snapshots written as ready-made bytes, see WireCache); Report as a
// plain callback method.
class DiscoveryService final
    : public corral::v1::Discovery::WithRawCallbackMethod_Watch<
          corral::v1::Discovery::WithCallbackMethod_Report<corral::v1::Discovery::Service>> {
 public:
  // `registry` keeps the usage Reports carry; null drops it (and acknowledges nothing).
  // `prober` re-probes nodes where proxies report cold loads; null = not re-probed.
  DiscoveryService(SnapshotPublisher* publisher, ProxyTracker* tracker, const Authenticator* auth,
                   Registry* registry = nullptr, Prober* prober = nullptr,
                   SlotAllocatorOptions slots = {});

  // Who holds which share of each node's limits (tests, state views).
  const SlotAllocator& allocator() const { return *allocator_; }

  // corral::v1::Discovery (Watch raw: a WatchRequest in, Snapshots out)
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const corral::v1::ReportRequest* request,
                                   corral::v1::ReportResponse* response) override;

 private:
  SnapshotPublisher* const publisher_;
  ProxyTracker* const tracker_;
  const Authenticator* const auth_;
  // The limits of the newest snapshot, rebuilt when it changes.
  std::shared_ptr<const LimitTable> CurrentLimits();

  Registry* const registry_;
  Prober* const prober_;
  const std::shared_ptr<WireCache> wire_cache_;
  const std::shared_ptr<SlotAllocator> allocator_;  // shared with the Watch reactors
  std::mutex limits_mu_;
  std::shared_ptr<const corral::v1::Snapshot> limits_source_;  // guarded by limits_mu_
  std::shared_ptr<const LimitTable> limits_;                   // guarded by limits_mu_
};

}  // namespace corral::control
