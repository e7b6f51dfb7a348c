#include "dataplane/upstream_pool.h"

namespace corral::dataplane {

UpstreamPool::UpstreamPool(size_t max_idle_per_node, std::chrono::milliseconds max_idle_age)
    : max_idle_per_node_(max_idle_per_node), max_idle_age_(max_idle_age) {}

std::string UpstreamPool::Endpoint(const std::string& host, int port) {
  return host + ":" + std::to_string(port);
}

std::unique_ptr<UpstreamConnection> UpstreamPool::Take(const std::string& endpoint) {
  std::vector<std::unique_ptr<UpstreamConnection>> stale;  // closed outside the lock
  std::unique_ptr<UpstreamConnection> found;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(endpoint);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    while (!list.empty()) {
      std::unique_ptr<UpstreamConnection> conn = std::move(list.back());
      list.pop_back();
      if (now - conn->idle_since() > max_idle_age_ || !conn->LooksAlive()) {
        stale.push_back(std::move(conn));
        continue;
      }
      found = std::move(conn);
      break;
    }
  }
  if (found) found->MarkReused();
  return found;
}

absl::StatusOr<std::unique_ptr<UpstreamConnection>> UpstreamPool::Obtain(
    const std::string& host, int port, std::chrono::milliseconds timeout) {
  if (auto conn = Take(Endpoint(host, port))) return conn;
  return UpstreamConnection::Connect(host, port, timeout);
}

void UpstreamPool::Give(const std::string& endpoint, std::unique_ptr<UpstreamConnection> conn) {
  if (!conn || conn->fd() < 0) return;
  conn->MarkIdle();
  std::unique_ptr<UpstreamConnection> evicted;
  std::lock_guard<std::mutex> lock(mu_);
  auto& list = idle_[endpoint];
  if (list.size() >= max_idle_per_node_) {
    evicted = std::move(list.front());
    list.erase(list.begin());
  }
  list.push_back(std::move(conn));
}

size_t UpstreamPool::IdleCount(const std::string& endpoint) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = idle_.find(endpoint);
  return it == idle_.end() ? 0 : it->second.size();
}

}  // namespace corral::dataplane
