#include "controlplane/admin_service.h"

#include <utility>

namespace corral::control {
namespace {

using corral::v1::NodeInfo;

// The answer of a call that produced `result`: its value in `resp`, or its status.
template <typename T, typename Resp>
grpc::Status Answer(absl::StatusOr<T> result, Resp* resp) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *resp = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

AdminService::AdminService(FleetAdmin* fleet, const Authenticator* auth)
    : fleet_(fleet), auth_(auth) {}

AdminService::AdminService(Registry* registry, ProxyTracker* tracker, const Authenticator* auth,
                           Prober* prober, PortScanner* scanner)
    : owned_(std::make_unique<FleetAdmin>(registry, tracker, prober, scanner)),
      fleet_(owned_.get()),
      auth_(auth) {}

// Every handler starts with the token check; a refused call touches nothing.
#define CORRAL_CHECK_ADMIN(context) \
  if (grpc::Status denied = auth_->CheckAdmin(*(context)); !denied.ok()) return denied

grpc::Status AdminService::CreateNode(grpc::ServerContext* context,
                                      const corral::v1::CreateNodeRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->CreateNode(*req), resp);
}

grpc::Status AdminService::GetNode(grpc::ServerContext* context,
                                   const corral::v1::GetNodeRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetNode(req->name()), resp);
}

grpc::Status AdminService::ListNodes(grpc::ServerContext* context,
                                     const corral::v1::ListNodesRequest* /*req*/,
                                     corral::v1::ListNodesResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->ListNodes(), resp);
}

grpc::Status AdminService::UpdateNode(grpc::ServerContext* context,
                                      const corral::v1::UpdateNodeRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->UpdateNode(*req), resp);
}

grpc::Status AdminService::RemoveNode(grpc::ServerContext* context,
                                      const corral::v1::RemoveNodeRequest* req,
                                      corral::v1::RemoveNodeResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->RemoveNode(req->name()), resp);
}

grpc::Status AdminService::DrainNode(grpc::ServerContext* context,
                                     const corral::v1::NodeNameRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->DrainNode(req->name()), resp);
}

grpc::Status AdminService::EnableNode(grpc::ServerContext* context,
                                      const corral::v1::NodeNameRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->EnableNode(req->name()), resp);
}

grpc::Status AdminService::DisableNode(grpc::ServerContext* context,
                                       const corral::v1::NodeNameRequest* req, NodeInfo* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->DisableNode(req->name()), resp);
}

grpc::Status AdminService::GetStrategy(grpc::ServerContext* context,
                                       const corral::v1::GetStrategyRequest* /*req*/,
                                       corral::v1::StrategyConfig* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetStrategy(), resp);
}

grpc::Status AdminService::SetStrategy(grpc::ServerContext* context,
                                       const corral::v1::SetStrategyRequest* req,
                                       corral::v1::StrategyConfig* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->SetStrategy(*req), resp);
}

grpc::Status AdminService::GetFleetState(grpc::ServerContext* context,
                                         const corral::v1::GetFleetStateRequest* /*req*/,
                                         corral::v1::FleetState* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetFleetState(), resp);
}

grpc::Status AdminService::ListModels(grpc::ServerContext* context,
                                      const corral::v1::ListModelsRequest* /*req*/,
                                      corral::v1::ListModelsResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->ListModels(), resp);
}

grpc::Status AdminService::ListProxies(grpc::ServerContext* context,
                                       const corral::v1::ListProxiesRequest* /*req*/,
                                       corral::v1::ListProxiesResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->ListProxies(), resp);
}

grpc::Status AdminService::PullModel(grpc::ServerContext* context,
                                     const corral::v1::PullModelRequest* req,
                                     grpc::ServerWriter<corral::v1::PullProgress>* writer) {
  CORRAL_CHECK_ADMIN(context);
  return ToGrpcStatus(fleet_->PullModel(
      *req, [writer](const corral::v1::PullProgress& line) { return writer->Write(line); },
      [context] { return context->IsCancelled(); }));
}

grpc::Status AdminService::DeleteModel(grpc::ServerContext* context,
                                       const corral::v1::DeleteModelRequest* req,
                                       corral::v1::DeleteModelResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->DeleteModel(*req), resp);
}

grpc::Status AdminService::SetDiscovery(grpc::ServerContext* context,
                                        const corral::v1::SetDiscoveryRequest* req,
                                        corral::v1::DiscoveryConfig* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->SetDiscovery(*req), resp);
}

grpc::Status AdminService::GetDiscovery(grpc::ServerContext* context,
                                        const corral::v1::GetDiscoveryRequest* /*req*/,
                                        corral::v1::DiscoveryConfig* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetDiscovery(), resp);
}

grpc::Status AdminService::CreateToken(grpc::ServerContext* context,
                                       const corral::v1::CreateTokenRequest* req,
                                       corral::v1::CreateTokenResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->CreateToken(*req), resp);
}

grpc::Status AdminService::ListTokens(grpc::ServerContext* context,
                                      const corral::v1::ListTokensRequest* /*req*/,
                                      corral::v1::ListTokensResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->ListTokens(), resp);
}

grpc::Status AdminService::RevokeToken(grpc::ServerContext* context,
                                       const corral::v1::RevokeTokenRequest* req,
                                       corral::v1::RevokeTokenResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->RevokeToken(req->name()), resp);
}

grpc::Status AdminService::GetTokenPolicy(grpc::ServerContext* context,
                                          const corral::v1::GetTokenPolicyRequest* /*req*/,
                                          corral::v1::TokenPolicy* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetTokenPolicy(), resp);
}

grpc::Status AdminService::SetTokenPolicy(grpc::ServerContext* context,
                                          const corral::v1::SetTokenPolicyRequest* req,
                                          corral::v1::TokenPolicy* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->SetTokenPolicy(*req), resp);
}

grpc::Status AdminService::GetUsage(grpc::ServerContext* context,
                                    const corral::v1::GetUsageRequest* req,
                                    corral::v1::GetUsageResponse* resp) {
  CORRAL_CHECK_ADMIN(context);
  return Answer(fleet_->GetUsage(*req), resp);
}

#undef CORRAL_CHECK_ADMIN

}  // namespace corral::control
