#include "dataplane/seed_routes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

#include "dataplane/replies.h"

namespace corral::dataplane {
namespace {

using nlohmann::json;

double Finite(double v) { return std::isfinite(v) ? v : 0.0; }

// RFC 3339 in UTC, to the second: 2026-12-06T03:00:00Z (what the replaced proxy wrote).
std::string UtcSeconds(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
  return out;
}

// Active (can serve), standby (enabled but unhealthy or ejected) or inactive (drained or
// disabled by the operator): the node statuses of the replaced proxy's active-requests view.
const char* PoolStatus(const NodeView& node) {
  if (!node.enabled) return "inactive";
  return node.healthy ? "active" : "standby";
}

}  // namespace

std::vector<NodeView> ViewNodes(const RoutingTable& table, Router& router) {
  std::vector<NodeView> views;
  views.reserve(table.nodes().size());
  for (const NodeEntry& node : table.nodes()) {
    NodeView view;
    view.name = node.name;
    view.port = node.port;
    view.ejected = router.IsEjected(node.name);
    view.healthy = node.routable && !view.ejected;
    view.in_flight = router.Runtime(node.name)->in_flight.load();
    if (node.proto != nullptr) {
      const corral::v1::Node& proto = *node.proto;
      view.url = proto.url();
      view.enabled = proto.admin_state() == corral::v1::ADMIN_STATE_ENABLED;
      view.admin_state = corral::v1::AdminState_Name(proto.admin_state());
      view.health = corral::v1::Health_Name(proto.health());
      view.probe_latency_ms = Finite(proto.latency_ms());
      view.priority = proto.priority();
      view.max_memory_gb = Finite(proto.max_memory_gb());
      for (const auto& m : proto.models()) view.models.push_back(m.name());
    }
    views.push_back(std::move(view));
  }
  return views;
}

std::string ApiHealthBody() { return R"({"status":"ok"})"; }

std::string BackendsHealthBody(const std::vector<NodeView>& nodes) {
  const auto healthy =
      std::count_if(nodes.begin(), nodes.end(), [](const NodeView& node) { return node.healthy; });
  return DumpJson({{"status", "ok"}, {"healthy_backends", healthy}});
}

std::string BackendsBody(const std::vector<NodeView>& nodes) {
  std::vector<const NodeView*> sorted;
  for (const NodeView& node : nodes) sorted.push_back(&node);
  std::sort(sorted.begin(), sorted.end(), [](const NodeView* a, const NodeView* b) {
    return a->port != b->port ? a->port < b->port : a->name < b->name;
  });
  json backends = json::array();
  for (const NodeView* node : sorted) {
    backends.push_back({{"port", node->port},
                        {"healthy", node->healthy},
                        {"in_flight", node->in_flight},
                        {"name", node->name},
                        {"url", node->url}});
  }
  return DumpJson({{"backends", std::move(backends)}});
}

std::string HealthBody(const std::vector<NodeView>& nodes,
                       std::chrono::system_clock::time_point now) {
  json servers = json::object();
  for (const NodeView& node : nodes) {
    if (!node.enabled) continue;
    json server = {
        {"status", node.healthy ? "healthy" : "unhealthy"},
        {"priority", node.priority},
        {"max_memory_gb", node.max_memory_gb > 0 ? json(node.max_memory_gb) : json(nullptr)},
    };
    if (node.probe_latency_ms > 0) server["response_time_ms"] = node.probe_latency_ms;
    if (!node.healthy) {
      server["error"] = node.ejected ? "ejected after failed requests" : node.health;
    }
    servers[node.name] = std::move(server);
  }
  return DumpJson({{"status", "ok"},
                   {"timestamp", UtcSeconds(now)},
                   {"servers", std::move(servers)},
                   {"external_hosts", json::object()}});
}

std::string ActiveRequestsBody(const std::vector<NodeView>& nodes,
                               const std::vector<LiveRequests::Row>& rows,
                               RequestRecord::Clock::time_point steady_now,
                               std::chrono::system_clock::time_point wall_now,
                               const std::string& only_node) {
  json node_list = json::array();
  int64_t total = 0;
  for (const NodeView& node : nodes) {
    if (!only_node.empty() && node.name != only_node) continue;
    node_list.push_back({{"name", node.name},
                         {"address", node.url},
                         {"active_requests", node.in_flight},
                         {"status", PoolStatus(node)},
                         {"latency", node.probe_latency_ms / 1000.0},
                         {"models", node.models}});
    total += node.in_flight;
  }
  // Busiest first, as the replaced proxy lists them; ties keep the snapshot's order.
  std::stable_sort(node_list.begin(), node_list.end(), [](const json& a, const json& b) {
    return a["active_requests"].get<int64_t>() > b["active_requests"].get<int64_t>();
  });
  json requests = json::array();
  for (const LiveRequests::Row& row : rows) {
    if (!only_node.empty() && row.node != only_node) continue;
    const auto elapsed = steady_now - row.start;
    const auto started =
        wall_now - std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed);
    const auto started_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(started.time_since_epoch()).count() %
        1000;
    std::string started_text = UtcSeconds(started);
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(started_ms));
    started_text.replace(started_text.size() - 1, 1, millis);
    requests.push_back(
        {{"id", row.request_id},
         {"method", row.method},
         {"route", row.route},
         {"model", row.model},
         {"node", row.node},
         {"client", row.client},
         {"token", row.token},
         {"started", std::move(started_text)},
         {"elapsed_ms", std::chrono::duration<double, std::milli>(elapsed).count()}});
  }
  const size_t in_flight = requests.size();
  return DumpJson({{"requests", std::move(requests)},
                   {"in_flight", in_flight},
                   {"nodes", std::move(node_list)},
                   {"total_active_requests", total}});
}

void SeedRoutes::Answer(ProxyCall& call) {
  httplib::Response& res = call.res;
  const Endpoint endpoint = call.route.endpoint;
  std::vector<NodeView> nodes;
  if (call.table && endpoint != Endpoint::kApiHealth) nodes = ViewNodes(*call.table, router_);
  std::string body;
  switch (endpoint) {
    case Endpoint::kApiHealth:
      body = ApiHealthBody();
      break;
    case Endpoint::kBackendsHealth:
      body = BackendsHealthBody(nodes);
      break;
    case Endpoint::kBackends:
      body = BackendsBody(nodes);
      break;
    case Endpoint::kHealth:
      body = HealthBody(nodes, std::chrono::system_clock::now());
      break;
    case Endpoint::kProxyActiveRequests: {
      std::string only = call.req.get_param_value("node_id");
      if (only.empty()) only = call.req.get_param_value("node");
      if (!only.empty() && std::none_of(nodes.begin(), nodes.end(),
                                        [&](const NodeView& node) { return node.name == only; })) {
        SetErrorReply(res, 404, "node not found: " + only, false);
        return;
      }
      body = ActiveRequestsBody(nodes, live_.List(), RequestRecord::Clock::now(),
                                std::chrono::system_clock::now(), only);
      break;
    }
    default:
      res.status = 404;
      res.set_content("404 page not found", "text/plain");
      return;
  }
  // HEAD: the listener sends the head of this answer, without its body.
  res.set_content(body, kJsonContentType);
}

}  // namespace corral::dataplane
