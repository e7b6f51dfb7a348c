#include "ctl/commands.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_limits.h"
#include "common/grpc_tls.h"
#include "common/model_name.h"
#include "corral/v1/control.grpc.pb.h"
#include "ctl/format.h"

namespace corral::ctl {
namespace {

namespace v1 = corral::v1;

// The channel to the control plane: TLS when a CA is named (mTLS with a certificate too), and
// messages up to the limit the control plane uses (`state` of a large fleet is as big as its
// snapshot). A TLS file that cannot be used is an error naming the flag and the file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const Connection& conn, bool* tls) {
  ClientTlsFiles files;
  files.ca_file = conn.tls_ca_file;
  files.cert_file = conn.tls_cert_file;
  files.key_file = conn.tls_key_file;
  absl::StatusOr<ClientSecurity> security = MakeChannelCredentials(files);
  if (!security.ok()) return security.status();
  *tls = security->security != TransportSecurity::kPlaintext;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return grpc::CreateCustomChannel(conn.address, security->credentials, args);
}

class AdminCall {
 public:
  AdminCall(const Connection& conn, std::shared_ptr<grpc::Channel> channel, bool tls,
            std::ostream& out, std::ostream& err, bool json)
      : address_(conn.address),
        token_(conn.token),
        tls_(tls),
        stub_(v1::Admin::NewStub(std::move(channel))),
        out_(out),
        err_(err),
        json_(json) {}

  // A fresh context per call: the token, and the deadline unless the call streams.
  std::unique_ptr<grpc::ClientContext> Context(bool deadline = true) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
    if (deadline) ctx->set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    return ctx;
  }

  v1::Admin::Stub& stub() { return *stub_; }

  // Prints why a call failed, in words an operator can act on. Returns kExitFailed.
  int Fail(const grpc::Status& status) const {
    std::string message = status.error_message();
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        // A TLS port refuses a plaintext client and the reverse with nothing but a closed
        // connection: say what to check.
        message = absl::StrCat(
            "cannot reach the control plane at ", address_, ": ", message,
            tls_ ? " (over TLS: check that --tls-ca is the CA that signed the control plane's "
                   "certificate, that the certificate names the host in --control, and whether "
                   "the control plane requires a client certificate: --tls-cert and --tls-key)"
                 : " (if the control plane serves TLS, pass --tls-ca FILE or set CORRAL_TLS_CA)");
        break;
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        message = absl::StrCat("the control plane at ", address_, " did not answer within ",
                               kCallDeadline.count(), " s");
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        message = absl::StrCat("authentication failed: ", message,
                               " (check --token, CORRAL_TOKEN or the admin.token file)");
        break;
      default:
        if (message.empty()) message = absl::StrCat("call failed (code ", status.error_code(), ")");
        break;
    }
    err_ << "corralctl: " << message << "\n";
    return kExitFailed;
  }

  // Prints `message` as JSON or through `human`, and returns kExitOk.
  template <typename Message, typename Human>
  int Print(const Message& message, Human human) const {
    out_ << (json_ ? ToJson(message) : human(message));
    return kExitOk;
  }

  std::ostream& out() const { return out_; }
  bool json() const { return json_; }

 private:
  std::string address_;
  std::string token_;
  bool tls_;
  std::unique_ptr<v1::Admin::Stub> stub_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_;
};

// Reads the current policy and overlays what the command line gave, so `strategy set` changes
// only the fields named (the API replaces a policy message whole).
int StrategySet(AdminCall& call, const Invocation& inv) {
  v1::SetStrategyRequest req;
  req.set_strategy(inv.strategy);
  const StrategyOverrides& o = inv.strategy_overrides;
  if (!o.empty()) {
    v1::StrategyConfig current;
    auto ctx = call.Context();
    grpc::Status status = call.stub().GetStrategy(ctx.get(), v1::GetStrategyRequest(), &current);
    if (!status.ok()) return call.Fail(status);
    if (o.max_attempts || o.eject_after_failures) {
      v1::RetryPolicy* retry = req.mutable_retry();
      *retry = current.retry();
      if (o.max_attempts) retry->set_max_attempts(*o.max_attempts);
      if (o.eject_after_failures) retry->set_eject_after_failures(*o.eject_after_failures);
    }
    if (o.connect_ms || o.first_byte_ms || o.idle_ms) {
      v1::TimeoutPolicy* timeouts = req.mutable_timeouts();
      *timeouts = current.timeouts();
      if (o.connect_ms) timeouts->set_connect_ms(*o.connect_ms);
      if (o.first_byte_ms) timeouts->set_first_byte_ms(*o.first_byte_ms);
      if (o.idle_ms) timeouts->set_idle_ms(*o.idle_ms);
    }
    if (!o.queue_empty()) {
      v1::QueuePolicy* queue = req.mutable_queue();
      *queue = current.queue();
      if (o.queue_length) queue->set_max_length(*o.queue_length);
      if (o.queue_wait_ms) queue->set_max_wait_ms(*o.queue_wait_ms);
      if (o.queue_disabled) queue->set_disabled(*o.queue_disabled);
    }
  }
  v1::StrategyConfig reply;
  auto ctx = call.Context();
  grpc::Status status = call.stub().SetStrategy(ctx.get(), req, &reply);
  if (!status.ok()) return call.Fail(status);
  return call.Print(reply, FormatStrategy);
}

// Whether two model names denote the same model (an alias is found however it was spelled).
bool SameModel(const std::string& a, const std::string& b) {
  if (a == b) return true;
  std::optional<std::string> ka = CanonicalModelKey(a), kb = CanonicalModelKey(b);
  return ka && kb && *ka == *kb;
}

// One edit of a routing-rule list: reads the StrategyConfig, changes one list, writes that list
// back with its set_ flag (the other lists and policies stay as they are), prints the list the
// control plane answers with. Two operators editing the same list at the same moment can lose
// one edit: the API replaces a list whole.
int EditRules(AdminCall& call, const Invocation& inv) {
  v1::StrategyConfig current;
  {
    auto ctx = call.Context();
    grpc::Status status = call.stub().GetStrategy(ctx.get(), v1::GetStrategyRequest(), &current);
    if (!status.ok()) return call.Fail(status);
  }
  v1::SetStrategyRequest req;
  auto not_found = [&](const char* what, const char* group) {
    return call.Fail(grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("no ", what, " \"", inv.rule_key, "\" (see corralctl ", group, " list)")));
  };
  // Replaces the entry `same` finds in `list`, or appends `entry`; removes when `entry` is null.
  // Returns false when a removal found nothing.
  auto edit = [](auto* list, const auto* entry, auto same) {
    for (int i = 0; i < list->size(); ++i) {
      if (!same(list->Get(i))) continue;
      if (entry != nullptr) {
        *list->Mutable(i) = *entry;
      } else {
        list->erase(list->begin() + i);
      }
      return true;
    }
    if (entry == nullptr) return false;
    *list->Add() = *entry;
    return true;
  };
  switch (inv.kind) {
    case CommandKind::kPlacementAdd:
    case CommandKind::kPlacementRemove: {
      const bool add = inv.kind == CommandKind::kPlacementAdd;
      const std::string& pattern = add ? inv.placement_rule.pattern() : inv.rule_key;
      *req.mutable_placement() = current.placement();
      if (!edit(req.mutable_placement(), add ? &inv.placement_rule : nullptr,
                [&](const v1::PlacementRule& r) { return r.pattern() == pattern; })) {
        return not_found("placement rule for pattern", "placement");
      }
      req.set_set_placement(true);
      break;
    }
    case CommandKind::kAliasSet:
    case CommandKind::kAliasRemove: {
      const bool set = inv.kind == CommandKind::kAliasSet;
      const std::string& alias = set ? inv.alias.alias() : inv.rule_key;
      *req.mutable_aliases() = current.aliases();
      if (!edit(req.mutable_aliases(), set ? &inv.alias : nullptr,
                [&](const v1::ModelAlias& a) { return SameModel(a.alias(), alias); })) {
        return not_found("alias", "alias");
      }
      req.set_set_aliases(true);
      break;
    }
    case CommandKind::kModelMemorySet:
    case CommandKind::kModelMemoryRemove: {
      const bool set = inv.kind == CommandKind::kModelMemorySet;
      const std::string& pattern = set ? inv.memory_rule.pattern() : inv.rule_key;
      *req.mutable_model_memory() = current.model_memory();
      if (!edit(req.mutable_model_memory(), set ? &inv.memory_rule : nullptr,
                [&](const v1::ModelMemoryRule& m) { return m.pattern() == pattern; })) {
        return not_found("model memory rule for pattern", "model-memory");
      }
      req.set_set_model_memory(true);
      break;
    }
    default:
      return call.Fail(grpc::Status(grpc::StatusCode::INTERNAL, "not a rule edit"));
  }
  v1::StrategyConfig reply;
  auto ctx = call.Context();
  grpc::Status status = call.stub().SetStrategy(ctx.get(), req, &reply);
  if (!status.ok()) return call.Fail(status);
  if (req.set_placement()) return call.Print(reply, FormatPlacement);
  if (req.set_aliases()) return call.Print(reply, FormatAliases);
  return call.Print(reply, FormatModelMemory);
}

// Streams progress; one line per message (NDJSON with --json). Exit 1 when any node failed or
// the stream broke.
int Pull(AdminCall& call, const Invocation& inv) {
  auto ctx = call.Context(/*deadline=*/false);
  auto reader = call.stub().PullModel(ctx.get(), inv.pull);
  v1::PullProgress progress;
  std::map<std::string, std::string> failed;  // node -> error
  std::map<std::string, bool> done;
  std::string last_line;
  while (reader->Read(&progress)) {
    if (!progress.error().empty()) failed[progress.node()] = progress.error();
    if (progress.done()) done[progress.node()] = true;
    if (call.json()) {
      call.out() << ToJson(progress);
    } else {
      // Byte counters move in small steps: print a line only when what it says changes.
      std::string line = FormatPullProgress(progress);
      if (line != last_line) call.out() << line;
      last_line = line;
    }
    call.out().flush();
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return call.Fail(status);
  if (!failed.empty()) {
    std::string nodes;
    for (const auto& [node, error] : failed)
      absl::StrAppend(&nodes, nodes.empty() ? "" : ", ", node);
    return call.Fail(grpc::Status(grpc::StatusCode::UNKNOWN,
                                  absl::StrCat("pull of ", inv.pull.model(), " failed on ",
                                               failed.size(), " node(s): ", nodes)));
  }
  return kExitOk;
}

}  // namespace

int RunCommand(const Invocation& inv, const Connection& conn, std::ostream& out,
               std::ostream& err) {
  bool tls = false;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(conn, &tls);
  if (!channel.ok()) {
    err << "corralctl: " << channel.status().message() << "\n";
    return kExitFailed;
  }
  AdminCall call(conn, *std::move(channel), tls, out, err, inv.global.json);
  auto& stub = call.stub();
  auto ctx = call.Context();
  grpc::Status status;

  // The node-state commands share one request shape and differ only in the RPC and the verb.
  auto node_state = [&](auto rpc, const char* verb) {
    v1::NodeNameRequest req;
    req.set_name(inv.node_name);
    v1::NodeInfo reply;
    status = (stub.*rpc)(ctx.get(), req, &reply);
    if (!status.ok()) return call.Fail(status);
    return call.Print(reply, [&](const v1::NodeInfo& n) { return FormatNodeChange(verb, n); });
  };

  switch (inv.kind) {
    case CommandKind::kNodeAdd: {
      v1::NodeInfo reply;
      status = stub.CreateNode(ctx.get(), inv.create, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, [](const v1::NodeInfo& n) { return FormatNodeChange("added", n); });
    }
    case CommandKind::kNodeList: {
      v1::ListNodesResponse reply;
      status = stub.ListNodes(ctx.get(), v1::ListNodesRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatNodeList);
    }
    case CommandKind::kNodeGet: {
      v1::GetNodeRequest req;
      req.set_name(inv.node_name);
      v1::NodeInfo reply;
      status = stub.GetNode(ctx.get(), req, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatNodeDetail);
    }
    case CommandKind::kNodeUpdate: {
      v1::NodeInfo reply;
      status = stub.UpdateNode(ctx.get(), inv.update, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply,
                        [](const v1::NodeInfo& n) { return FormatNodeChange("updated", n); });
    }
    case CommandKind::kNodeRemove: {
      v1::RemoveNodeRequest req;
      req.set_name(inv.node_name);
      v1::RemoveNodeResponse reply;
      status = stub.RemoveNode(ctx.get(), req, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, [&](const v1::RemoveNodeResponse& r) {
        return absl::StrCat("node \"", inv.node_name, "\" removed (snapshot version ",
                            r.snapshot_version(), ")\n");
      });
    }
    case CommandKind::kNodeDrain:
      return node_state(&v1::Admin::Stub::DrainNode, "draining");
    case CommandKind::kNodeEnable:
      return node_state(&v1::Admin::Stub::EnableNode, "enabled");
    case CommandKind::kNodeDisable:
      return node_state(&v1::Admin::Stub::DisableNode, "disabled");
    case CommandKind::kStrategyGet: {
      v1::StrategyConfig reply;
      status = stub.GetStrategy(ctx.get(), v1::GetStrategyRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatStrategy);
    }
    case CommandKind::kStrategySet:
      return StrategySet(call, inv);
    case CommandKind::kPlacementList:
    case CommandKind::kAliasList:
    case CommandKind::kModelMemoryList: {
      v1::StrategyConfig reply;
      status = stub.GetStrategy(ctx.get(), v1::GetStrategyRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      if (inv.kind == CommandKind::kPlacementList) return call.Print(reply, FormatPlacement);
      if (inv.kind == CommandKind::kAliasList) return call.Print(reply, FormatAliases);
      return call.Print(reply, FormatModelMemory);
    }
    case CommandKind::kPlacementAdd:
    case CommandKind::kPlacementRemove:
    case CommandKind::kAliasSet:
    case CommandKind::kAliasRemove:
    case CommandKind::kModelMemorySet:
    case CommandKind::kModelMemoryRemove:
      return EditRules(call, inv);
    case CommandKind::kState: {
      v1::FleetState reply;
      status = stub.GetFleetState(ctx.get(), v1::GetFleetStateRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatFleetState);
    }
    case CommandKind::kModels: {
      v1::ListModelsResponse reply;
      status = stub.ListModels(ctx.get(), v1::ListModelsRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatModels);
    }
    case CommandKind::kProxies: {
      v1::ListProxiesResponse reply;
      status = stub.ListProxies(ctx.get(), v1::ListProxiesRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatProxies);
    }
    case CommandKind::kPull:
      return Pull(call, inv);
    case CommandKind::kDiscoveryGet: {
      v1::DiscoveryConfig reply;
      status = stub.GetDiscovery(ctx.get(), v1::GetDiscoveryRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatDiscovery);
    }
    case CommandKind::kDiscoverySet:
    case CommandKind::kDiscoveryOff: {
      v1::DiscoveryConfig reply;
      status = stub.SetDiscovery(ctx.get(), inv.discovery, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatDiscovery);
    }
    case CommandKind::kTokenCreate: {
      v1::CreateTokenResponse reply;
      status = stub.CreateToken(ctx.get(), inv.token, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatTokenCreated);
    }
    case CommandKind::kTokenList: {
      v1::ListTokensResponse reply;
      status = stub.ListTokens(ctx.get(), v1::ListTokensRequest(), &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatTokens);
    }
    case CommandKind::kTokenRequire: {
      v1::SetTokenPolicyRequest req;
      req.set_require_tokens(inv.require_tokens);
      v1::TokenPolicy reply;
      status = stub.SetTokenPolicy(ctx.get(), req, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatTokenPolicy);
    }
    case CommandKind::kUsage: {
      v1::GetUsageResponse reply;
      status = stub.GetUsage(ctx.get(), inv.usage, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, FormatUsage);
    }
    case CommandKind::kTokenRevoke: {
      v1::RevokeTokenRequest req;
      req.set_name(inv.token_name);
      v1::RevokeTokenResponse reply;
      status = stub.RevokeToken(ctx.get(), req, &reply);
      if (!status.ok()) return call.Fail(status);
      return call.Print(reply, [&](const v1::RevokeTokenResponse& r) {
        return absl::StrCat("token \"", inv.token_name, "\" revoked (snapshot version ",
                            r.snapshot_version(), ")\n");
      });
    }
  }
  err << "corralctl: internal error: unhandled command\n";
  return kExitFailed;
}

}  // namespace corral::ctl
