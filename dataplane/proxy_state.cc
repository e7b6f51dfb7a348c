#include "dataplane/proxy_state.h"

#include <chrono>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "dataplane/replies.h"

namespace corral::dataplane {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

std::string StrategyName(corral::v1::Strategy s) {
  std::string name = corral::v1::Strategy_Name(s);
  if (absl::StartsWith(name, "STRATEGY_")) name = name.substr(9);
  if (name == "UNSPECIFIED") name = "LEAST_ACTIVE";
  return absl::AsciiStrToLower(name);
}

double Finite(double v) { return std::isfinite(v) ? v : 0.0; }

// The wait queue: its policy, depth and totals (docs/routing.md "The queue").
nlohmann::json QueueJson(const WaitQueue& queue, const RoutingTable* table) {
  const WaitQueue::Stats stats = queue.stats();
  const EffectivePolicy policy = table ? table->policy() : EffectivePolicy();
  return {
      {"enabled", policy.queue_enabled},
      {"max_length", policy.queue_max_length},
      {"max_wait_ms", policy.queue_max_wait_ms},
      {"depth", stats.depth},
      {"longest_wait_seconds", Finite(stats.longest_wait_seconds)},
      {"waited_total", stats.waited_total},
      {"served_total", stats.served_total},
      {"timed_out_total", stats.timed_out_total},
      {"full_total", stats.full_total},
      {"client_gone_total", stats.client_gone_total},
      {"wait_seconds_total", Finite(stats.wait_seconds_total)},
  };
}

}  // namespace

ProxyStateView::ProxyStateView(std::string proxy_id, FrontDoor& front_door, SnapshotStore& store,
                               Router& router)
    : proxy_id_(std::move(proxy_id)), front_door_(front_door), store_(store), router_(router) {}

void ProxyStateView::Answer(ProxyCall& call) {
  if (call.route.endpoint == Endpoint::kProxyState) {
    call.res.set_content(StateJson(), kJsonContentType);
    return;
  }
  int available = 0;
  if (call.table) {
    for (const NodeEntry& node : call.table->nodes()) {
      if (node.routable && !router_.IsEjected(node.name)) ++available;
    }
  }
  nlohmann::json body = {{"status", available > 0 ? "ok" : "unavailable"},
                         {"available_nodes", available}};
  if (available == 0) {
    body["error"] = call.table ? "no node can serve requests" : "no routing snapshot yet";
    call.res.status = 503;
    call.res.set_header("Retry-After", "1");
  }
  call.res.set_content(DumpJson(body), kJsonContentType);
}

std::string ProxyStateView::StateJson() {
  auto table = store_.Current();
  nlohmann::json nodes = nlohmann::json::array();
  const auto now = Clock::now();
  if (table) {
    for (const NodeEntry& node : table->nodes()) {
      auto rt = router_.Runtime(node.name);
      nlohmann::json per_model = nlohmann::json::object();
      nlohmann::json resident = nlohmann::json::array();  // seen loaded since the snapshot
      int64_t ejected_ms = 0;
      {
        std::lock_guard<std::mutex> lock(rt->mu);
        for (const auto& [key, model] : rt->models) {
          if (model.in_flight != 0) per_model[key] = model.in_flight;
          if (model.ResidentIn(table->version())) resident.push_back(key);
        }
        if (rt->ejected_until > now) {
          ejected_ms = std::chrono::duration_cast<milliseconds>(rt->ejected_until - now).count();
        }
      }
      nlohmann::json models = nlohmann::json::array();
      nlohmann::json loaded = nlohmann::json::array();
      if (node.proto) {
        for (const auto& m : node.proto->models()) models.push_back(m.name());
        for (const auto& m : node.proto->loaded_models()) loaded.push_back(m.name());
      }
      nodes.push_back({
          {"name", node.name},
          {"url", node.proto ? node.proto->url() : ""},
          {"admin_state", node.proto ? corral::v1::AdminState_Name(node.proto->admin_state()) : ""},
          {"health", node.proto ? corral::v1::Health_Name(node.proto->health()) : ""},
          {"routable", node.routable},
          {"ejected", ejected_ms > 0},
          {"ejected_for_ms", ejected_ms},
          {"in_flight", rt->in_flight.load()},
          {"model_in_flight", std::move(per_model)},
          {"requests_total", rt->requests_total.load()},
          {"failures_total", rt->failures_total.load()},
          {"latency_ms", Finite(rt->latency_ms.load())},
          {"probe_latency_ms", node.proto ? Finite(node.proto->latency_ms()) : 0.0},
          {"max_parallel", node.proto ? node.proto->max_parallel() : 0},
          // 0 with max_parallel 0: no limit; 0 with a limit: no slot granted now.
          {"max_parallel_granted", std::max<int64_t>(0, router_.NodeLimit(node))},
          {"num_parallel", node.proto ? std::max(1, node.proto->num_parallel()) : 1},
          {"waiting", router_.queue().Waiting(node.name, "")},
          {"loaded_since_snapshot", std::move(resident)},
          {"version", node.proto ? node.proto->version() : ""},
          {"models", std::move(models)},
          {"loaded_models", std::move(loaded)},
      });
    }
  }
  // Open: no inference token is asked for, like Ollama itself (front_door.h FleetClosed).
  const bool open = table == nullptr || !FleetClosed(table->snapshot());
  nlohmann::json state = {
      {"proxy",
       {{"id", proxy_id_},
        {"active_requests", front_door_.active()},
        {"max_streams", front_door_.options().max_streams},
        {"open", open},
        {"mode", open ? "open" : "closed"},
        {"body_budget_bytes", front_door_.budget().limit()},
        {"body_budget_used_bytes", front_door_.budget().used()}}},
      {"snapshot",
       {{"version", table ? table->version() : 0},
        {"source", store_.source()},
        {"created_at", table ? table->snapshot().created_at() : ""}}},
      {"strategy", table ? StrategyName(table->policy().strategy) : "least_active"},
      {"queue", QueueJson(router_.queue(), table.get())},
      {"nodes", std::move(nodes)},
  };
  return DumpJson(state);
}

std::vector<corral::v1::NodeLoad> ProxyStateView::NodeLoads() {
  std::vector<corral::v1::NodeLoad> out;
  auto table = store_.Current();
  std::vector<Router::NodeLoadSample> samples = router_.TakeLoadReport();
  if (!table) return out;
  std::unordered_map<std::string, Router::NodeLoadSample*> by_name;
  for (auto& sample : samples) by_name.emplace(sample.node, &sample);
  for (const NodeEntry& node : table->nodes()) {
    corral::v1::NodeLoad load;
    load.set_node(node.name);
    auto it = by_name.find(node.name);
    if (it != by_name.end()) {
      Router::NodeLoadSample& sample = *it->second;
      load.set_in_flight(sample.in_flight);
      load.set_passive_failures(sample.passive_failures);
      load.set_ejected(sample.ejected);
      load.set_latency_ms(Finite(sample.latency_ms));
      load.set_waiting(sample.waiting);
      for (const auto& model : sample.models) {
        auto* m = load.add_models();
        m->set_model(model.model);
        m->set_in_flight(model.in_flight);
        m->set_waiting(model.waiting);
      }
      for (auto& key : sample.cold_loads) load.add_cold_loads(std::move(key));
    }
    out.push_back(std::move(load));
  }
  return out;
}

}  // namespace corral::dataplane
