#include "controlplane/proxy_tracker.h"

#include <chrono>
#include <ctime>

#include "controlplane/control_metrics.h"

namespace corral::control {
namespace {

std::string NowRfc3339() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

ProxyTracker::ProxyTracker(std::chrono::seconds forget_after, ControlMetrics* metrics)
    : forget_after_(forget_after), metrics_(metrics) {}

uint64_t ProxyTracker::WatchStarted(const std::string& proxy_id, const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  ForgetOldLocked();
  Proxy& p = proxies_[proxy_id];
  const uint64_t id = next_stream_id_++;
  if (p.streams.empty()) ++connected_;
  if (metrics_ != nullptr) metrics_->connected_proxies.Set(connected_);
  p.streams[id] = true;
  p.info.set_id(proxy_id);
  p.info.set_peer(peer);
  p.info.set_connected(true);
  p.info.set_connected_at(NowRfc3339());
  return id;
}

void ProxyTracker::WatchEnded(const std::string& proxy_id, uint64_t stream_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = proxies_.find(proxy_id);
  if (it == proxies_.end()) return;
  Proxy& p = it->second;
  if (p.streams.erase(stream_id) > 0 && p.streams.empty()) --connected_;
  if (metrics_ != nullptr) metrics_->connected_proxies.Set(connected_);
  if (p.streams.empty()) {
    p.info.set_connected(false);
    p.disconnected_at = std::chrono::steady_clock::now();
  }
}

void ProxyTracker::Report(const corral::v1::ReportRequest& report, const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  ForgetOldLocked();
  Proxy& p = proxies_[report.proxy_id()];
  p.info.set_id(report.proxy_id());
  if (p.info.peer().empty()) p.info.set_peer(peer);
  // Every periodic Report repeats the versions: only a change is a new answer to a snapshot.
  if (metrics_ != nullptr) {
    if (report.applied_version() != 0 && report.applied_version() != p.info.applied_version()) {
      metrics_->snapshot_reports.Get({"ack"}).Inc();
    }
    if (report.rejected_version() != 0 && report.rejected_version() != p.info.rejected_version()) {
      metrics_->snapshot_reports.Get({"nack"}).Inc();
    }
  }
  if (report.applied_version() != 0) p.info.set_applied_version(report.applied_version());
  if (report.rejected_version() != 0) {
    p.info.set_rejected_version(report.rejected_version());
    p.info.set_rejected_reason(report.rejected_reason());
  }
  p.info.set_last_report_at(NowRfc3339());
  if (report.nodes_size() > 0) {
    p.loads.clear();
    for (const auto& load : report.nodes()) {
      p.loads[load.node()] = load;
      if (load.passive_failures() > 0) p.failures[load.node()] += load.passive_failures();
    }
  }
  if (p.streams.empty() && p.disconnected_at == std::chrono::steady_clock::time_point{}) {
    // Reports before any Watch: count from now for forgetting.
    p.disconnected_at = std::chrono::steady_clock::now();
  }
}

std::vector<corral::v1::ProxyInfo> ProxyTracker::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<corral::v1::ProxyInfo> out;
  for (const auto& [id, p] : proxies_) {
    corral::v1::ProxyInfo info = p.info;
    for (const auto& [node, load] : p.loads) *info.add_nodes() = load;
    out.push_back(std::move(info));
  }
  return out;
}

std::map<std::string, NodeFleetLoad> ProxyTracker::FleetLoad() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, NodeFleetLoad> out;
  for (const auto& [id, p] : proxies_) {
    if (p.streams.empty()) continue;  // a gone proxy's in-flight count is stale
    for (const auto& [node, load] : p.loads) {
      NodeFleetLoad& total = out[node];
      total.in_flight += load.in_flight();
      if (load.ejected()) ++total.ejected_by;
    }
    for (const auto& [node, failures] : p.failures) out[node].passive_failures += failures;
  }
  return out;
}

void ProxyTracker::ForgetOldLocked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = proxies_.begin(); it != proxies_.end();) {
    const Proxy& p = it->second;
    if (p.streams.empty() && now - p.disconnected_at > forget_after_) {
      it = proxies_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace corral::control
