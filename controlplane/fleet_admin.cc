#include "controlplane/fleet_admin.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/model_name.h"
#include "controlplane/auth.h"
#include "controlplane/node_client.h"

namespace corral::control {
namespace {

using corral::v1::NodeInfo;

// Most progress lines one node may have queued for the reader; older ones are dropped first
// (progress is cumulative, so the newest line says everything).
constexpr size_t kMaxQueuedPerNode = 64;

// The input rules a pull and a delete share: a valid model name, and exactly one of a node's name
// and `all` (`every` says what `all` covers).
absl::Status CheckModelAndTarget(const std::string& model, const std::string& node, bool all,
                                 const char* every) {
  if (!ParseModelName(model).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model name \"", model, "\" is not valid (expected e.g. llama3.2 or qwen3:8b)"));
  }
  if (node.empty() == !all) {
    return absl::InvalidArgumentError(
        absl::StrCat("name one node (node) or ask for ", every, " (all), not both"));
  }
  return absl::OkStatus();
}

}  // namespace

FleetAdmin::FleetAdmin(Registry* registry, ProxyTracker* tracker, Prober* prober,
                       PortScanner* scanner)
    : registry_(registry), tracker_(tracker), prober_(prober), scanner_(scanner) {}

void FleetAdmin::FoldLoad(NodeInfo* info) const {
  const std::map<std::string, NodeFleetLoad> loads = tracker_->FleetLoad();
  auto it = loads.find(info->node().name());
  if (it == loads.end()) return;
  info->set_in_flight(it->second.in_flight);
  info->set_passive_failures(it->second.passive_failures);
}

absl::StatusOr<NodeInfo> FleetAdmin::CreateNode(const corral::v1::CreateNodeRequest& req) {
  absl::StatusOr<NodeInfo> created = registry_->CreateNode(req);
  if (!created.ok()) return created.status();
  CORRAL_LOG(kInfo, "admin") << "node " << req.name() << " added at " << created->node().url();
  if (prober_ != nullptr) prober_->ProbeNow(req.name());
  return created;
}

absl::StatusOr<NodeInfo> FleetAdmin::GetNode(const std::string& name) {
  absl::StatusOr<NodeInfo> node = registry_->GetNode(name);
  if (!node.ok()) return node.status();
  FoldLoad(&*node);
  return node;
}

absl::StatusOr<corral::v1::ListNodesResponse> FleetAdmin::ListNodes() {
  absl::StatusOr<std::vector<NodeInfo>> nodes = registry_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  corral::v1::ListNodesResponse resp;
  for (NodeInfo& n : *nodes) {
    FoldLoad(&n);
    *resp.add_nodes() = std::move(n);
  }
  return resp;
}

absl::StatusOr<NodeInfo> FleetAdmin::UpdateNode(const corral::v1::UpdateNodeRequest& req) {
  std::string old_url;
  if (req.has_url()) {
    if (absl::StatusOr<NodeInfo> before = registry_->GetNode(req.name()); before.ok()) {
      old_url = before->node().url();
    }
  }
  absl::StatusOr<NodeInfo> updated = registry_->UpdateNode(req);
  if (!updated.ok()) return updated.status();
  if (req.has_url() && updated->node().url() != old_url && prober_ != nullptr) {
    prober_->ProbeNow(req.name());
  }
  FoldLoad(&*updated);
  return updated;
}

absl::StatusOr<corral::v1::RemoveNodeResponse> FleetAdmin::RemoveNode(const std::string& name) {
  if (absl::Status removed = registry_->RemoveNode(name); !removed.ok()) return removed;
  CORRAL_LOG(kInfo, "admin") << "node " << name << " removed";
  corral::v1::RemoveNodeResponse resp;
  resp.set_snapshot_version(registry_->version());
  return resp;
}

absl::StatusOr<NodeInfo> FleetAdmin::SetAdminState(const std::string& name,
                                                   corral::v1::AdminState state) {
  absl::StatusOr<NodeInfo> node = registry_->SetAdminState(name, state);
  if (!node.ok()) return node.status();
  CORRAL_LOG(kInfo, "admin") << "node " << name << " is now " << corral::v1::AdminState_Name(state);
  FoldLoad(&*node);
  return node;
}

absl::StatusOr<NodeInfo> FleetAdmin::DrainNode(const std::string& name) {
  return SetAdminState(name, corral::v1::ADMIN_STATE_DRAINING);
}

absl::StatusOr<NodeInfo> FleetAdmin::EnableNode(const std::string& name) {
  return SetAdminState(name, corral::v1::ADMIN_STATE_ENABLED);
}

absl::StatusOr<NodeInfo> FleetAdmin::DisableNode(const std::string& name) {
  return SetAdminState(name, corral::v1::ADMIN_STATE_DISABLED);
}

absl::StatusOr<corral::v1::StrategyConfig> FleetAdmin::GetStrategy() {
  return registry_->GetStrategy();
}

absl::StatusOr<corral::v1::StrategyConfig> FleetAdmin::SetStrategy(
    const corral::v1::SetStrategyRequest& req) {
  absl::StatusOr<corral::v1::StrategyConfig> config = registry_->SetStrategy(req);
  if (!config.ok()) return config.status();
  CORRAL_LOG(kInfo, "admin") << "strategy is now " << corral::v1::Strategy_Name(config->strategy())
                             << (config->queue().disabled() ? ", queue off" : "") << ", "
                             << config->placement_size() << " placement rules, "
                             << config->aliases_size() << " aliases, "
                             << config->model_memory_size() << " model memory rules";
  return config;
}

absl::StatusOr<corral::v1::FleetState> FleetAdmin::GetFleetState() {
  absl::StatusOr<corral::v1::FleetState> state = registry_->GetFleetState();
  if (!state.ok()) return state.status();
  const std::map<std::string, NodeFleetLoad> loads = tracker_->FleetLoad();
  for (NodeInfo& n : *state->mutable_nodes()) {
    if (auto it = loads.find(n.node().name()); it != loads.end()) {
      n.set_in_flight(it->second.in_flight);
      n.set_passive_failures(it->second.passive_failures);
    }
  }
  return state;
}

absl::StatusOr<corral::v1::ListModelsResponse> FleetAdmin::ListModels() {
  absl::StatusOr<std::vector<NodeInfo>> nodes = registry_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  std::map<std::string, corral::v1::FleetModel> models;
  for (const NodeInfo& info : *nodes) {
    const corral::v1::Node& node = info.node();
    std::map<std::string, const corral::v1::LoadedModel*> loaded;
    for (const auto& l : node.loaded_models()) {
      loaded[CanonicalModelKey(l.name()).value_or(l.name())] = &l;
    }
    for (const auto& m : node.models()) {
      const std::string key = CanonicalModelKey(m.name()).value_or(m.name());
      corral::v1::FleetModel& fleet = models[key];
      if (fleet.name().empty()) fleet.set_name(m.name());
      corral::v1::ModelLocation* where = fleet.add_locations();
      where->set_node(node.name());
      where->set_size(m.size());
      where->set_digest(m.digest());
      if (auto it = loaded.find(key); it != loaded.end()) {
        where->set_loaded(true);
        where->set_size_vram(it->second->size_vram());
      }
    }
  }
  corral::v1::ListModelsResponse resp;
  for (auto& [key, model] : models) *resp.add_models() = std::move(model);
  std::sort(resp.mutable_models()->begin(), resp.mutable_models()->end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return resp;
}

absl::StatusOr<corral::v1::ListProxiesResponse> FleetAdmin::ListProxies() {
  corral::v1::ListProxiesResponse resp;
  resp.set_snapshot_version(registry_->version());
  for (auto& p : tracker_->List()) *resp.add_proxies() = std::move(p);
  return resp;
}

absl::StatusOr<std::vector<NodeInfo>> FleetAdmin::PullTargets(
    const corral::v1::PullModelRequest& req) {
  if (absl::Status s =
          CheckModelAndTarget(req.model(), req.node(), req.all(), "every enabled node");
      !s.ok()) {
    return s;
  }
  std::vector<NodeInfo> targets;
  if (!req.node().empty()) {
    absl::StatusOr<NodeInfo> node = registry_->GetNode(req.node());
    if (!node.ok()) return node.status();
    targets.push_back(*std::move(node));
    return targets;
  }
  absl::StatusOr<std::vector<NodeInfo>> nodes = registry_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  for (NodeInfo& n : *nodes) {
    if (n.node().admin_state() == corral::v1::ADMIN_STATE_ENABLED) targets.push_back(std::move(n));
  }
  if (targets.empty()) {
    return absl::FailedPreconditionError(
        "no enabled node to pull onto (see `corralctl node list`)");
  }
  return targets;
}

absl::Status FleetAdmin::Pull(const corral::v1::PullModelRequest& req,
                              const std::vector<NodeInfo>& targets, const PullSink& sink,
                              const std::function<bool()>& cancelled) {
  CORRAL_LOG(kInfo, "admin") << "pulling " << req.model() << " onto " << targets.size()
                             << " node(s)";
  // Pull threads queue progress; the calling thread is the only one that calls the sink.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<corral::v1::PullProgress> queue;   // guarded by mu
  std::map<std::string, size_t> queued;         // per node; guarded by mu
  size_t running = targets.size();              // guarded by mu
  std::map<std::string, absl::Status> results;  // guarded by mu
  std::atomic<bool> abandon{false};

  auto enqueue = [&](corral::v1::PullProgress progress, bool final) {
    std::lock_guard<std::mutex> lock(mu);
    size_t& count = queued[progress.node()];
    if (!final && count >= kMaxQueuedPerNode) return;  // the reader is slow: skip a line
    ++count;
    queue.push_back(std::move(progress));
    cv.notify_one();
  };

  std::vector<std::thread> pulls;
  pulls.reserve(targets.size());
  for (const NodeInfo& target : targets) {
    pulls.emplace_back([&, name = target.node().name(), url = target.node().url()] {
      NodeClient client(url);
      absl::Status result = client.Pull(
          req.model(), req.insecure(),
          [&](const corral::v1::PullProgress& line) {
            corral::v1::PullProgress p = line;
            p.set_node(name);
            enqueue(std::move(p), false);
          },
          [&] { return abandon.load() || cancelled(); });
      corral::v1::PullProgress last;
      last.set_node(name);
      last.set_done(true);
      if (result.ok()) {
        last.set_status("success");
      } else {
        last.set_status("error");
        last.set_error(std::string(result.message()));
      }
      enqueue(std::move(last), true);
      std::lock_guard<std::mutex> lock(mu);
      results[name] = result;
      --running;
      cv.notify_one();
    });
  }

  {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return !queue.empty() || running == 0; });
      if (queue.empty()) break;
      corral::v1::PullProgress next = std::move(queue.front());
      queue.pop_front();
      --queued[next.node()];
      lock.unlock();
      const bool written = !abandon.load() && sink(next);
      lock.lock();
      if (!written) abandon = true;  // the reader went away: stop the pulls
    }
  }
  for (std::thread& t : pulls) t.join();

  if (abandon.load() || cancelled()) {
    return absl::CancelledError("the client stopped reading the pull");
  }
  std::string failures;
  absl::StatusCode first_code = absl::StatusCode::kOk;
  size_t failed = 0;
  for (const auto& [name, result] : results) {
    if (result.ok()) continue;
    if (failed++ == 0) first_code = result.code();
    absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": ", result.message());
  }
  if (failed == 0) return absl::OkStatus();
  return absl::Status(first_code, absl::StrCat("pull of ", req.model(), " failed on ", failed,
                                               " of ", results.size(), " node(s): ", failures));
}

absl::Status FleetAdmin::PullModel(const corral::v1::PullModelRequest& req, const PullSink& sink,
                                   const std::function<bool()>& cancelled) {
  absl::StatusOr<std::vector<NodeInfo>> targets = PullTargets(req);
  if (!targets.ok()) return targets.status();
  return Pull(req, *targets, sink, cancelled);
}

absl::StatusOr<corral::v1::DeleteModelResponse> FleetAdmin::DeleteModel(
    const corral::v1::DeleteModelRequest& req) {
  if (absl::Status s =
          CheckModelAndTarget(req.model(), req.node(), req.all(), "every node that has the model");
      !s.ok()) {
    return s;
  }
  const std::string key = CanonicalModelKey(req.model()).value_or(req.model());
  std::vector<NodeInfo> targets;
  if (!req.node().empty()) {
    absl::StatusOr<NodeInfo> node = registry_->GetNode(req.node());
    if (!node.ok()) return node.status();
    targets.push_back(*std::move(node));
  } else {
    absl::StatusOr<std::vector<NodeInfo>> nodes = registry_->ListNodes();
    if (!nodes.ok()) return nodes.status();
    for (NodeInfo& n : *nodes) {
      const auto& models = n.node().models();
      if (std::any_of(models.begin(), models.end(), [&](const corral::v1::Model& m) {
            return CanonicalModelKey(m.name()).value_or(m.name()) == key;
          })) {
        targets.push_back(std::move(n));
      }
    }
    if (targets.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no node lists model ", req.model(), " (see `corralctl model list`)"));
    }
  }
  CORRAL_LOG(kInfo, "admin") << "deleting " << req.model() << " from " << targets.size()
                             << " node(s)";

  // Each node's delete is bounded by NodeClient's delete timeout; they run side by side so one
  // slow node does not hold up the rest.
  std::vector<absl::Status> results(targets.size());
  std::vector<std::thread> deletes;
  deletes.reserve(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    deletes.emplace_back(
        [&, i] { results[i] = NodeClient(targets[i].node().url()).Delete(req.model()); });
  }
  for (std::thread& t : deletes) t.join();

  corral::v1::DeleteModelResponse resp;
  std::string failures;
  absl::StatusCode first_code = absl::StatusCode::kOk;
  size_t failed = 0;
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string& name = targets[i].node().name();
    // The node's model list changed (or was stale): re-read it soon rather than at the next
    // round, so the fleet's model view follows the delete.
    if (prober_ != nullptr) prober_->ProbeSoon(name);
    corral::v1::NodeDeleteResult* r = resp.add_results();
    r->set_node(name);
    r->set_ok(results[i].ok());
    if (results[i].ok()) continue;
    r->set_error(std::string(results[i].message()));
    if (failed++ == 0) first_code = results[i].code();
    absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": ", results[i].message());
  }
  std::sort(resp.mutable_results()->begin(), resp.mutable_results()->end(),
            [](const auto& a, const auto& b) { return a.node() < b.node(); });
  if (failed > 0 && failed == targets.size()) {
    CORRAL_LOG(kWarn, "admin") << "delete of " << req.model() << " failed: " << failures;
    return absl::Status(first_code, absl::StrCat("delete of ", req.model(), " failed on ", failed,
                                                 " of ", targets.size(), " node(s): ", failures));
  }
  CORRAL_LOG(kInfo, "admin") << "deleted " << req.model() << " from " << targets.size() - failed
                             << " of " << targets.size() << " node(s)";
  return resp;
}

absl::StatusOr<corral::v1::DiscoveryConfig> FleetAdmin::GetDiscovery() {
  return registry_->GetDiscovery();
}

absl::StatusOr<corral::v1::DiscoveryConfig> FleetAdmin::SetDiscovery(
    const corral::v1::SetDiscoveryRequest& req) {
  absl::StatusOr<corral::v1::DiscoveryConfig> config = registry_->SetDiscovery(req);
  if (!config.ok()) return config.status();
  if (scanner_ != nullptr) scanner_->Wake();
  return config;
}

absl::StatusOr<corral::v1::CreateTokenResponse> FleetAdmin::CreateToken(
    const corral::v1::CreateTokenRequest& req) {
  corral::v1::InferenceToken token;
  token.set_name(req.name());
  for (const std::string& model : req.models()) {
    std::optional<std::string> key = CanonicalModelKey(model);
    if (!key.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("model name \"", model, "\" is not valid"));
    }
    token.add_models(*key);
  }
  std::string text = req.token();
  if (text.empty()) {
    absl::StatusOr<std::string> generated = GenerateToken();
    if (!generated.ok()) return generated.status();
    text = *generated;
  } else if (text.size() < 16) {
    return absl::InvalidArgumentError(
        "a token must be at least 16 characters; leave it empty to generate one");
  }
  token.set_sha256_hex(Sha256Hex(text));
  if (absl::Status added = registry_->AddInferenceToken(token); !added.ok()) return added;
  CORRAL_LOG(kInfo, "admin") << "inference token " << req.name() << " created";
  corral::v1::CreateTokenResponse resp;
  *resp.mutable_token() = token;
  resp.set_token_text(text);
  resp.set_snapshot_version(registry_->version());
  return resp;
}

absl::StatusOr<corral::v1::ListTokensResponse> FleetAdmin::ListTokens() {
  absl::StatusOr<std::vector<corral::v1::InferenceToken>> tokens = registry_->ListInferenceTokens();
  if (!tokens.ok()) return tokens.status();
  corral::v1::ListTokensResponse resp;
  for (auto& t : *tokens) *resp.add_tokens() = std::move(t);
  // Read after the list: a token created in between turns require_tokens on, so the answer can
  // say closed for an open fleet but never open for a closed one.
  absl::StatusOr<corral::v1::TokenPolicy> policy = registry_->GetTokenPolicy();
  if (!policy.ok()) return policy.status();
  resp.set_require_tokens(policy->require_tokens());
  resp.set_open(policy->open() && resp.tokens().empty());
  return resp;
}

absl::StatusOr<corral::v1::RevokeTokenResponse> FleetAdmin::RevokeToken(const std::string& name) {
  if (absl::Status removed = registry_->RemoveInferenceToken(name); !removed.ok()) return removed;
  CORRAL_LOG(kInfo, "admin") << "inference token " << name << " revoked";
  corral::v1::RevokeTokenResponse resp;
  resp.set_snapshot_version(registry_->version());
  return resp;
}

absl::StatusOr<corral::v1::TokenPolicy> FleetAdmin::GetTokenPolicy() {
  return registry_->GetTokenPolicy();
}

absl::StatusOr<corral::v1::TokenPolicy> FleetAdmin::SetTokenPolicy(
    const corral::v1::SetTokenPolicyRequest& req) {
  // A request that says nothing must not be read as "off": that would open a fleet by accident.
  if (!req.has_require_tokens()) {
    return absl::InvalidArgumentError("require_tokens must be set (true or false)");
  }
  absl::StatusOr<corral::v1::TokenPolicy> policy =
      registry_->SetRequireTokens(req.require_tokens());
  if (!policy.ok()) return policy.status();
  CORRAL_LOG(kInfo, "admin") << "token policy: require_tokens "
                             << (policy->require_tokens() ? "on" : "off") << " ("
                             << policy->token_count() << " inference tokens; the fleet is "
                             << (policy->open() ? "open" : "closed") << ")";
  return policy;
}

absl::StatusOr<corral::v1::GetUsageResponse> FleetAdmin::GetUsage(
    const corral::v1::GetUsageRequest& req) {
  Registry::UsageGrouping by;
  if (req.by().empty() || req.by() == "all") {
    by = Registry::UsageGrouping::kAll;
  } else if (req.by() == "token") {
    by = Registry::UsageGrouping::kToken;
  } else if (req.by() == "model") {
    by = Registry::UsageGrouping::kModel;
  } else if (req.by() == "node") {
    by = Registry::UsageGrouping::kNode;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("usage cannot be grouped by \"", req.by(),
                                                   "\"; use token, model, node or all"));
  }
  if (req.since_seconds() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "since_seconds must be 0 (everything kept) or positive, got ", req.since_seconds()));
  }
  int64_t window_start = 0;
  if (req.since_seconds() > 0) {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    window_start = std::max<int64_t>(0, now - req.since_seconds());
    window_start -= window_start % 3600;
  }
  absl::StatusOr<std::vector<corral::v1::UsageRow>> rows = registry_->GetUsage(by, window_start);
  if (!rows.ok()) return rows.status();
  corral::v1::GetUsageResponse resp;
  resp.set_by(req.by().empty() ? "all" : req.by());
  resp.set_window_start(window_start);
  corral::v1::UsageRow* total = resp.mutable_total();
  for (corral::v1::UsageRow& row : *rows) {
    total->set_requests(total->requests() + row.requests());
    total->set_errors(total->errors() + row.errors());
    total->set_input_tokens(total->input_tokens() + row.input_tokens());
    total->set_output_tokens(total->output_tokens() + row.output_tokens());
    *resp.add_rows() = std::move(row);
  }
  return resp;
}

}  // namespace corral::control
