#include "controlplane/port_scanner.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/node_url.h"
#include "controlplane/node_client.h"
#include "controlplane/prober.h"

namespace corral::control {
namespace {

struct Target {
  std::string host;
  int port = 0;
  std::string url;
};

// The registry's spelling of a URL, so "127.0.0.1:11434" and "http://127.0.0.1:11434/" match.
std::string NormalizedUrl(const std::string& url) {
  absl::StatusOr<NodeUrl> parsed = ParseNodeUrl(url);
  return parsed.ok() ? parsed->Normalized() : url;
}

}  // namespace

std::string DiscoveredNodeName(const std::string& host, int port) {
  std::string name = absl::StrCat(host, "-", port);
  for (char& c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) c = '-';
  }
  // Keep the port, which is what tells two nodes of one host apart.
  if (name.size() > 64) name = name.substr(name.size() - 64);
  return name;
}

PortScanner::PortScanner(Registry* registry, Prober* prober, PortScannerOptions options)
    : registry_(registry), prober_(prober), options_(options) {}

PortScanner::~PortScanner() { Stop(); }

void PortScanner::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_.joinable() || stopping_) return;
  loop_ = std::thread([this] { Loop(); });
}

void PortScanner::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

void PortScanner::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void PortScanner::Loop() {
  while (true) {
    std::chrono::milliseconds interval = options_.default_interval;
    if (absl::StatusOr<corral::v1::DiscoveryConfig> config = registry_->GetDiscovery();
        config.ok() && config->interval_ms() > 0) {
      interval = std::chrono::milliseconds(config->interval_ms());
    }
    if (absl::StatusOr<std::vector<std::string>> joined = ScanOnce(); !joined.ok()) {
      CORRAL_LOG(kWarn, "discovery") << "scan failed: " << joined.status().message();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, interval, [this] { return wake_ || stopping_; });
    wake_ = false;
    if (stopping_) return;
  }
}

absl::StatusOr<std::vector<std::string>> PortScanner::ScanOnce() {
  std::lock_guard<std::mutex> pass(scan_mu_);
  absl::StatusOr<corral::v1::DiscoveryConfig> config = registry_->GetDiscovery();
  if (!config.ok()) return config.status();
  std::vector<std::string> joined;
  if (config->ranges().empty()) return joined;

  absl::StatusOr<std::vector<corral::v1::NodeInfo>> nodes = registry_->ListNodes();
  if (!nodes.ok()) return nodes.status();
  std::set<std::string> known_urls;
  for (const corral::v1::NodeInfo& info : *nodes) {
    known_urls.insert(NormalizedUrl(info.node().url()));
  }

  std::vector<Target> targets;
  std::set<std::string> queued;
  for (const corral::v1::DiscoveryRange& range : config->ranges()) {
    const int from = std::max(1, range.port_from());
    const int to = std::min(65535, range.port_to());
    for (int port = from; port <= to; ++port) {
      absl::StatusOr<NodeUrl> url = ParseNodeUrl(absl::StrCat(
          range.host().find(':') != std::string::npos ? "[" + range.host() + "]" : range.host(),
          ":", port));
      if (!url.ok()) {
        CORRAL_LOG(kWarn, "discovery")
            << "skipping range host \"" << range.host() << "\": " << url.status().message();
        break;
      }
      std::string normalized = url->Normalized();
      if (known_urls.count(normalized) || !queued.insert(normalized).second) continue;
      targets.push_back(Target{range.host(), port, std::move(normalized)});
    }
  }
  if (targets.empty()) return joined;

  // Knock on every target with at most `workers` threads; each answering target is marked.
  NodeClientOptions knock;
  knock.connect_timeout = options_.connect_timeout;
  knock.liveness_timeout = options_.answer_timeout;
  std::vector<char> answers(targets.size(), 0);
  std::atomic<size_t> next{0};
  auto knock_loop = [&] {
    for (size_t i; (i = next.fetch_add(1)) < targets.size();) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      NodeClient client(targets[i].url, knock);
      answers[i] = client.Root().ok() && client.Version().ok();
    }
  };
  const size_t threads = std::min(std::max<size_t>(1, options_.workers), targets.size());
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(knock_loop);
  for (std::thread& t : pool) t.join();

  for (size_t i = 0; i < targets.size(); ++i) {
    if (!answers[i]) continue;
    corral::v1::CreateNodeRequest req;
    req.set_name(DiscoveredNodeName(targets[i].host, targets[i].port));
    req.set_url(targets[i].url);
    absl::StatusOr<corral::v1::NodeInfo> created = registry_->CreateNode(req, /*discovered=*/true);
    if (!created.ok()) {
      // Most often the name is taken by an operator's node, or the node was added meanwhile.
      CORRAL_LOG(kWarn, "discovery") << targets[i].url << " answers like Ollama but cannot join as "
                                     << req.name() << ": " << created.status().message();
      continue;
    }
    CORRAL_LOG(kInfo, "discovery") << "node " << req.name() << " (" << targets[i].url << ") joined";
    joined.push_back(req.name());
    if (prober_ != nullptr) prober_->ProbeNow(req.name());
  }
  return joined;
}

}  // namespace corral::control
