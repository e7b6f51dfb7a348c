// DiscoveryService: the proxies' side of the gRPC API.
//
// Watch is a server-streaming callback reactor (WatchReactor in the .cc): on connect it sends the
// current snapshot at once, then every newer one the SnapshotPublisher publishes, with at most one
// write in flight per stream. A proxy that reads slowly only ever has the newest snapshot waiting
// (bounded memory) and never holds up other proxies. Report records acks, nacks and per-node load
// in the ProxyTracker. Both need the proxy (or admin) token.
//
// Thread safety: gRPC calls the handlers from its own threads; the service holds no mutable state
// of its own. The publisher, tracker and authenticator must outlive the server.
#pragma once

#include <grpcpp/grpcpp.h>

#include "controlplane/auth.h"
#include "controlplane/proxy_tracker.h"
#include "controlplane/snapshot_publisher.h"
#include "corral/v1/control.grpc.pb.h"

namespace corral::control {

class DiscoveryService final : public corral::v1::Discovery::CallbackService {
 public:
  DiscoveryService(SnapshotPublisher* publisher, ProxyTracker* tracker, const Authenticator* auth);

  // corral::v1::Discovery::CallbackService
  grpc::ServerWriteReactor<corral::v1::Snapshot>* Watch(
      grpc::CallbackServerContext* context, const corral::v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const corral::v1::ReportRequest* request,
                                   corral::v1::ReportResponse* response) override;

 private:
  SnapshotPublisher* const publisher_;
  ProxyTracker* const tracker_;
  const Authenticator* const auth_;
};

}  // namespace corral::control
