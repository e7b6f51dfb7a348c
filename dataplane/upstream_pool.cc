#include "dataplane/upstream_pool.h"

#include <vector>

#include "dataplane/routing_table.h"

namespace corral::dataplane {

UpstreamPool::UpstreamPool(size_t max_idle_per_node, std::chrono::milliseconds max_idle_age,
                           std::chrono::milliseconds probe_after_idle)
    : max_idle_per_node_(max_idle_per_node),
      max_idle_age_(max_idle_age),
      probe_after_idle_(probe_after_idle) {}

std::string UpstreamPool::Endpoint(const std::string& host, int port) {
  return NodeEndpoint(host, port);
}

std::unique_ptr<UpstreamConnection> UpstreamPool::Take(const std::string& endpoint) {
  while (true) {
    std::unique_ptr<UpstreamConnection> conn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = idle_.find(endpoint);
      if (it == idle_.end() || it->second.empty()) return nullptr;
      conn = std::move(it->second.back());
      it->second.pop_back();
    }
    // Checked (and, when stale, closed) outside the lock.
    const auto idle_for = std::chrono::steady_clock::now() - conn->idle_since();
    if (idle_for > max_idle_age_) continue;
    if (idle_for >= probe_after_idle_ && !conn->LooksAlive()) continue;
    conn->MarkReused();
    return conn;
  }
}

absl::StatusOr<std::unique_ptr<UpstreamConnection>> UpstreamPool::Obtain(
    const std::string& host, int port, std::chrono::milliseconds timeout) {
  if (auto conn = Take(Endpoint(host, port))) return conn;
  return UpstreamConnection::Connect(host, port, timeout);
}

void UpstreamPool::Give(const std::string& endpoint, std::unique_ptr<UpstreamConnection> conn) {
  if (!conn || conn->fd() < 0) return;
  conn->MarkIdle();
  const auto oldest_kept = conn->idle_since() - max_idle_age_;
  std::vector<std::unique_ptr<UpstreamConnection>> dropped;  // closed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  IdleList& list = idle_[endpoint];
  while (!list.empty() &&
         (list.size() >= max_idle_per_node_ || list.front()->idle_since() < oldest_kept)) {
    dropped.push_back(std::move(list.front()));
    list.pop_front();
  }
  list.push_back(std::move(conn));
}

size_t UpstreamPool::IdleCount(const std::string& endpoint) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = idle_.find(endpoint);
  return it == idle_.end() ? 0 : it->second.size();
}

}  // namespace corral::dataplane
