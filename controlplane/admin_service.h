// AdminService: the operators' gRPC API (corralctl and any gRPC client), a thin adapter over
// FleetAdmin (fleet_admin.h): it checks the admin token, turns each request into one FleetAdmin
// call, and each absl::Status into the gRPC status with the same code and message. PullModel
// writes each node's progress to the stream as FleetAdmin hands it over.
//
// Thread safety: gRPC's synchronous server calls the handlers from its pool; the service keeps
// no mutable state. Every pointer passed in must outlive the server.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "controlplane/auth.h"
#include "controlplane/fleet_admin.h"
#include "controlplane/port_scanner.h"
#include "controlplane/prober.h"
#include "controlplane/proxy_tracker.h"
#include "controlplane/registry.h"
#include "corral/v1/control.grpc.pb.h"

namespace corral::control {

class AdminService final : public corral::v1::Admin::Service {
 public:
  // Serves `fleet`, shared with the other admin front ends.
  AdminService(FleetAdmin* fleet, const Authenticator* auth);
  // Serves a FleetAdmin of its own over these parts (prober and scanner may be null).
  AdminService(Registry* registry, ProxyTracker* tracker, const Authenticator* auth, Prober* prober,
               PortScanner* scanner);

  // corral::v1::Admin::Service
  grpc::Status CreateNode(grpc::ServerContext* context, const corral::v1::CreateNodeRequest* req,
                          corral::v1::NodeInfo* resp) override;
  grpc::Status GetNode(grpc::ServerContext* context, const corral::v1::GetNodeRequest* req,
                       corral::v1::NodeInfo* resp) override;
  grpc::Status ListNodes(grpc::ServerContext* context, const corral::v1::ListNodesRequest* req,
                         corral::v1::ListNodesResponse* resp) override;
  grpc::Status UpdateNode(grpc::ServerContext* context, const corral::v1::UpdateNodeRequest* req,
                          corral::v1::NodeInfo* resp) override;
  grpc::Status RemoveNode(grpc::ServerContext* context, const corral::v1::RemoveNodeRequest* req,
                          corral::v1::RemoveNodeResponse* resp) override;
  grpc::Status DrainNode(grpc::ServerContext* context, const corral::v1::NodeNameRequest* req,
                         corral::v1::NodeInfo* resp) override;
  grpc::Status EnableNode(grpc::ServerContext* context, const corral::v1::NodeNameRequest* req,
                          corral::v1::NodeInfo* resp) override;
  grpc::Status DisableNode(grpc::ServerContext* context, const corral::v1::NodeNameRequest* req,
                           corral::v1::NodeInfo* resp) override;
  grpc::Status GetStrategy(grpc::ServerContext* context, const corral::v1::GetStrategyRequest* req,
                           corral::v1::StrategyConfig* resp) override;
  grpc::Status SetStrategy(grpc::ServerContext* context, const corral::v1::SetStrategyRequest* req,
                           corral::v1::StrategyConfig* resp) override;
  grpc::Status GetFleetState(grpc::ServerContext* context,
                             const corral::v1::GetFleetStateRequest* req,
                             corral::v1::FleetState* resp) override;
  grpc::Status ListModels(grpc::ServerContext* context, const corral::v1::ListModelsRequest* req,
                          corral::v1::ListModelsResponse* resp) override;
  grpc::Status ListProxies(grpc::ServerContext* context, const corral::v1::ListProxiesRequest* req,
                           corral::v1::ListProxiesResponse* resp) override;
  grpc::Status PullModel(grpc::ServerContext* context, const corral::v1::PullModelRequest* req,
                         grpc::ServerWriter<corral::v1::PullProgress>* writer) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const corral::v1::DeleteModelRequest* req,
                           corral::v1::DeleteModelResponse* resp) override;
  grpc::Status SetDiscovery(grpc::ServerContext* context,
                            const corral::v1::SetDiscoveryRequest* req,
                            corral::v1::DiscoveryConfig* resp) override;
  grpc::Status GetDiscovery(grpc::ServerContext* context,
                            const corral::v1::GetDiscoveryRequest* req,
                            corral::v1::DiscoveryConfig* resp) override;
  grpc::Status CreateToken(grpc::ServerContext* context, const corral::v1::CreateTokenRequest* req,
                           corral::v1::CreateTokenResponse* resp) override;
  grpc::Status ListTokens(grpc::ServerContext* context, const corral::v1::ListTokensRequest* req,
                          corral::v1::ListTokensResponse* resp) override;
  grpc::Status RevokeToken(grpc::ServerContext* context, const corral::v1::RevokeTokenRequest* req,
                           corral::v1::RevokeTokenResponse* resp) override;
  grpc::Status GetTokenPolicy(grpc::ServerContext* context,
                              const corral::v1::GetTokenPolicyRequest* req,
                              corral::v1::TokenPolicy* resp) override;
  grpc::Status SetTokenPolicy(grpc::ServerContext* context,
                              const corral::v1::SetTokenPolicyRequest* req,
                              corral::v1::TokenPolicy* resp) override;
  grpc::Status GetUsage(grpc::ServerContext* context, const corral::v1::GetUsageRequest* req,
                        corral::v1::GetUsageResponse* resp) override;

 private:
  std::unique_ptr<FleetAdmin> owned_;  // set by the second constructor only
  FleetAdmin* const fleet_;
  const Authenticator* const auth_;
};

// The gRPC status carrying an absl::Status's code and message (the codes are the same numbers).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace corral::control
