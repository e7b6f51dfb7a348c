// FleetAdmin: everything an operator can do to a fleet — nodes (create, read, update, remove,
// drain, enable, disable), strategy and routing policies, fleet state, models, proxies,
// discovery, inference tokens and their policy, usage, pulls with each node's progress, and
// deletes — as
// plain calls on the Registry, the ProxyTracker, the Prober, the PortScanner and NodeClient.
//
// It is the one implementation behind every admin front end: the gRPC Admin service
// (admin_service.h) and the HTTP admin API (http_admin.h) only turn their messages into these
// calls and the absl::Status back into their own errors, so both answer alike and the logic is
// tested without either. Authentication is the front ends' job.
//
// Node views fold in the fleet-wide load the proxies report. CreateNode and a URL change trigger
// an immediate probe; a delete asks for one soon; SetDiscovery wakes the port scanner. Failures are
// absl::Status codes with messages a user can act on (InvalidArgument for bad input, which changes
// nothing; NotFound; AlreadyExists; FailedPrecondition).
//
// Thread safety: any thread may call any method at once; the class keeps no mutable state of its
// own. Every pointer passed in must outlive it (prober and scanner may be null: no probing, no
// discovery).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/port_scanner.h"
#include "controlplane/prober.h"
#include "controlplane/proxy_tracker.h"
#include "controlplane/registry.h"
#include "corral/v1/control.pb.h"

namespace corral::control {

class FleetAdmin {
 public:
  FleetAdmin(Registry* registry, ProxyTracker* tracker, Prober* prober, PortScanner* scanner);

  // ---- nodes ----
  absl::StatusOr<corral::v1::NodeInfo> CreateNode(const corral::v1::CreateNodeRequest& req);
  absl::StatusOr<corral::v1::NodeInfo> GetNode(const std::string& name);
  absl::StatusOr<corral::v1::ListNodesResponse> ListNodes();
  absl::StatusOr<corral::v1::NodeInfo> UpdateNode(const corral::v1::UpdateNodeRequest& req);
  absl::StatusOr<corral::v1::RemoveNodeResponse> RemoveNode(const std::string& name);
  absl::StatusOr<corral::v1::NodeInfo> DrainNode(const std::string& name);
  absl::StatusOr<corral::v1::NodeInfo> EnableNode(const std::string& name);
  absl::StatusOr<corral::v1::NodeInfo> DisableNode(const std::string& name);

  // ---- strategy, state, models, proxies ----
  absl::StatusOr<corral::v1::StrategyConfig> GetStrategy();
  absl::StatusOr<corral::v1::StrategyConfig> SetStrategy(const corral::v1::SetStrategyRequest& req);
  absl::StatusOr<corral::v1::FleetState> GetFleetState();
  // Grouped by canonical model key ("llama3" and "llama3:latest" are one model), sorted by name.
  absl::StatusOr<corral::v1::ListModelsResponse> ListModels();
  absl::StatusOr<corral::v1::ListProxiesResponse> ListProxies();

  // ---- pull ----
  // Receives each progress line, every node's interleaved, from one thread at a time. Returns
  // false when its reader has gone: the pulls are then abandoned.
  using PullSink = std::function<bool(const corral::v1::PullProgress&)>;
  // Checks a pull request and names the nodes it would pull onto: InvalidArgument for a bad model
  // name or for neither/both of node and all, NotFound for an unknown node, FailedPrecondition
  // when `all` finds no enabled node. Nothing is written to any node.
  absl::StatusOr<std::vector<corral::v1::NodeInfo>> PullTargets(
      const corral::v1::PullModelRequest& req);
  // Pulls onto `targets` (from PullTargets) in parallel, one thread per node, handing `sink` each
  // node's progress and one last line per node with done = true (status "success", or "error" and
  // the error). A node that lags drops its older lines (progress is cumulative). `cancelled` is
  // polled while the pulls run; true stops them. Returns OK when every node succeeded, CANCELLED
  // when the reader went away or `cancelled` said so, otherwise the first failed node's code and a
  // message naming every failed node.
  absl::Status Pull(const corral::v1::PullModelRequest& req,
                    const std::vector<corral::v1::NodeInfo>& targets, const PullSink& sink,
                    const std::function<bool()>& cancelled);
  // PullTargets then Pull.
  absl::Status PullModel(const corral::v1::PullModelRequest& req, const PullSink& sink,
                         const std::function<bool()>& cancelled);

  // ---- delete ----
  // Deletes `model` from one node (`node`) or from every node whose model list has it (`all`),
  // in parallel, then asks the prober to re-read each node's models soon. InvalidArgument for a
  // bad model name or for neither/both of node and all (nothing is deleted), NotFound for an
  // unknown node or when `all` finds no node listing the model. When every node failed, the first
  // failed node's code (NotFound when the node has no such model) and a message naming each;
  // otherwise OK with one result per node, sorted by node name, failures included.
  absl::StatusOr<corral::v1::DeleteModelResponse> DeleteModel(
      const corral::v1::DeleteModelRequest& req);

  // ---- discovery ----
  absl::StatusOr<corral::v1::DiscoveryConfig> GetDiscovery();
  absl::StatusOr<corral::v1::DiscoveryConfig> SetDiscovery(
      const corral::v1::SetDiscoveryRequest& req);

  // ---- inference tokens ----
  // The token text is in the answer only: the registry keeps its SHA-256.
  absl::StatusOr<corral::v1::CreateTokenResponse> CreateToken(
      const corral::v1::CreateTokenRequest& req);
  absl::StatusOr<corral::v1::ListTokensResponse> ListTokens();
  absl::StatusOr<corral::v1::RevokeTokenResponse> RevokeToken(const std::string& name);
  absl::StatusOr<corral::v1::TokenPolicy> GetTokenPolicy();
  // InvalidArgument when require_tokens is absent: silence must not open a fleet.
  absl::StatusOr<corral::v1::TokenPolicy> SetTokenPolicy(
      const corral::v1::SetTokenPolicyRequest& req);

  // ---- usage ----
  // `by`: "", "all", "token", "model" or "node"; since_seconds 0 = everything kept. The window
  // starts on the hour.
  absl::StatusOr<corral::v1::GetUsageResponse> GetUsage(const corral::v1::GetUsageRequest& req);

 private:
  absl::StatusOr<corral::v1::NodeInfo> SetAdminState(const std::string& name,
                                                     corral::v1::AdminState state);
  // Adds the proxies' fleet-wide load to node views.
  void FoldLoad(corral::v1::NodeInfo* info) const;

  Registry* const registry_;
  ProxyTracker* const tracker_;
  Prober* const prober_;
  PortScanner* const scanner_;
};

}  // namespace corral::control
