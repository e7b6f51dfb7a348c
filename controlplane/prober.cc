#include "controlplane/prober.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "controlplane/control_metrics.h"

namespace corral::control {
namespace {

const char* HealthName(corral::v1::Health health) {
  switch (health) {
    case corral::v1::HEALTH_HEALTHY:
      return "healthy";
    case corral::v1::HEALTH_UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

}  // namespace

// ---- HttpProbeTransport ----

HttpProbeTransport::HttpProbeTransport(const ProberOptions& options) {
  // A live node accepts a connection at once; a longer connect than the liveness budget means
  // the node is not there, so both share one deadline.
  client_options_.connect_timeout = options.liveness_timeout;
  client_options_.liveness_timeout = options.liveness_timeout;
  client_options_.tags_timeout = options.tags_timeout;
  client_options_.ps_timeout = options.ps_timeout;
}

ProbeResult HttpProbeTransport::Probe(const std::string& url) {
  ProbeResult result;
  NodeClient client(url, client_options_);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> version = client.Version();
  result.latency_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!version.ok()) {
    result.error = std::string(version.status().message());
    return result;
  }
  result.reachable = true;
  result.version = *version;

  // Model lists are best effort: a failure keeps the registry's last known list. Running into a
  // limit is worth an operator's attention (a broken or hostile node); a slow or failed call is
  // routine (/api/ps waits for model loads) and stays at debug.
  std::vector<std::string> warnings;
  auto note = [&](const char* what, const ListStats& stats) {
    if (stats.dropped > 0) {
      warnings.push_back(absl::StrCat(what, " lists ", stats.listed, " models; kept the first ",
                                      kMaxModelsPerNode, " (the per-node limit)"));
    }
  };
  auto failed = [&](const char* what, const absl::Status& status) {
    if (absl::IsResourceExhausted(status)) {
      warnings.push_back(absl::StrCat(status.message(), "; keeping the last ", what));
    } else {
      CORRAL_LOG(kDebug, "prober")
          << url << ": keeping the last " << what << ": " << status.message();
    }
  };
  ListStats tags_stats;
  if (auto tags = client.Tags(&tags_stats); tags.ok()) {
    result.models = std::move(*tags);
    note("/api/tags", tags_stats);
  } else {
    failed("model list", tags.status());
  }
  ListStats ps_stats;
  if (auto ps = client.Ps(&ps_stats); ps.ok()) {
    result.loaded_models = std::move(*ps);
    note("/api/ps", ps_stats);
  } else {
    failed("loaded-model list", ps.status());
  }
  result.list_warning = absl::StrJoin(warnings, "; ");
  return result;
}

// ---- HealthThresholds ----

HealthThresholds::HealthThresholds(int unhealthy_threshold, int healthy_threshold,
                                   corral::v1::Health initial)
    : unhealthy_threshold_(std::max(1, unhealthy_threshold)),
      healthy_threshold_(std::max(1, healthy_threshold)),
      health_(initial) {}

corral::v1::Health HealthThresholds::Observe(bool reachable) {
  if (reachable) {
    consecutive_failures_ = 0;
    ++consecutive_successes_;
    // A node with no verdict yet is judged on its first round either way: it has no record that
    // would make one answer a fluke.
    if (health_ == corral::v1::HEALTH_UNKNOWN ||
        (health_ == corral::v1::HEALTH_UNHEALTHY && consecutive_successes_ >= healthy_threshold_)) {
      health_ = corral::v1::HEALTH_HEALTHY;
    }
  } else {
    consecutive_successes_ = 0;
    ++consecutive_failures_;
    if (health_ == corral::v1::HEALTH_UNKNOWN ||
        (health_ == corral::v1::HEALTH_HEALTHY && consecutive_failures_ >= unhealthy_threshold_)) {
      health_ = corral::v1::HEALTH_UNHEALTHY;
    }
  }
  return health_;
}

// ---- Prober ----

Prober::Prober(Registry* registry, ProberOptions options)
    : registry_(registry),
      options_(options),
      owned_transport_(std::make_unique<HttpProbeTransport>(options)),
      transport_(owned_transport_.get()),
      clock_(&SteadyClock::Instance()),
      rng_(std::random_device{}()) {}

Prober::Prober(Registry* registry, ProberOptions options, ProbeTransport* transport,
               const Clock* clock, uint64_t seed)
    : registry_(registry), options_(options), transport_(transport), clock_(clock), rng_(seed) {}

Prober::~Prober() { Stop(); }

void Prober::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  refresh_requested_ = true;
  scheduler_ = std::thread([this] { SchedulerLoop(); });
  const size_t workers = std::max<size_t>(1, options_.workers);
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

void Prober::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  scheduler_cv_.notify_all();
  worker_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

void Prober::ProbeNow(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    probe_now_.push_back(name);
    refresh_requested_ = true;
  }
  scheduler_cv_.notify_all();
}

void Prober::ProbeSoon(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end() || it->second.removed) return;
    NodeState& state = it->second;
    if (state.in_round) {
      state.probe_soon = true;
      return;
    }
    const TimePoint soon = clock_->Now() + options_.probe_soon_delay;
    if (state.next_due <= soon) return;  // already due by then: coalesced
    state.next_due = soon;
    wake_ = true;
  }
  scheduler_cv_.notify_all();
}

void Prober::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
    refresh_requested_ = true;
  }
  scheduler_cv_.notify_all();
}

uint64_t Prober::completed_rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_rounds_;
}

std::optional<TimePoint> Prober::NextProbeAt(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end() || it->second.in_round) return std::nullopt;
  return it->second.next_due;
}

Duration Prober::JitteredIntervalLocked() {
  const double jitter = std::clamp(options_.jitter, 0.0, 0.5);
  std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0 + jitter);
  const auto interval = std::chrono::duration_cast<Duration>(options_.interval);
  return std::chrono::duration_cast<Duration>(interval * factor(rng_));
}

void Prober::RefreshNodes(std::unique_lock<std::mutex>& lock) {
  refresh_requested_ = false;
  last_refresh_ = clock_->Now();
  lock.unlock();
  absl::StatusOr<std::vector<corral::v1::NodeInfo>> listed = registry_->ListNodes();
  lock.lock();
  if (!listed.ok()) {
    // Keep probing the nodes already known; the next refresh tries again.
    CORRAL_LOG(kWarn, "prober") << "cannot list nodes: " << listed.status().message();
    return;
  }
  const TimePoint now = clock_->Now();
  for (auto& [name, state] : nodes_) state.removed = true;
  for (const corral::v1::NodeInfo& info : *listed) {
    const corral::v1::Node& node = info.node();
    auto it = nodes_.find(node.name());
    if (it == nodes_.end()) {
      // Seeded with the stored verdict, so a control-plane restart does not forget that a node
      // was healthy (it keeps its credit) or in standby (it must earn its way back).
      nodes_.emplace(node.name(),
                     NodeState{node.url(),
                               HealthThresholds(options_.unhealthy_threshold,
                                                options_.healthy_threshold, node.health()),
                               now});
      continue;
    }
    NodeState& state = it->second;
    state.removed = false;
    if (state.url != node.url()) {
      // A re-addressed node is a different machine: judge it afresh, at once.
      state.url = node.url();
      state.thresholds = HealthThresholds(options_.unhealthy_threshold, options_.healthy_threshold,
                                          corral::v1::HEALTH_UNKNOWN);
      if (state.in_round) {
        state.probe_again = true;
      } else {
        state.next_due = now;
      }
    }
  }
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (it->second.removed && !it->second.in_round) {
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  for (const std::string& name : probe_now_) {
    auto it = nodes_.find(name);
    if (it == nodes_.end()) continue;
    if (it->second.in_round) {
      it->second.probe_again = true;
    } else {
      it->second.next_due = now;
    }
  }
  probe_now_.clear();
}

void Prober::SchedulerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (refresh_requested_ || clock_->Now() - last_refresh_ >= options_.refresh_interval) {
      RefreshNodes(lock);
      if (stopping_) break;
    }
    const TimePoint now = clock_->Now();
    std::optional<TimePoint> earliest;
    bool queued = false;
    for (auto& [name, state] : nodes_) {
      if (state.in_round || state.removed) continue;
      if (state.next_due <= now) {
        state.in_round = true;
        queue_.push_back(name);
        queued = true;
      } else if (!earliest || state.next_due < *earliest) {
        earliest = state.next_due;
      }
    }
    if (queued) worker_cv_.notify_all();

    Duration wait = std::chrono::duration_cast<Duration>(options_.refresh_interval);
    if (earliest) wait = std::min(wait, *earliest - now);
    wait = std::max(wait, std::chrono::duration_cast<Duration>(std::chrono::milliseconds(1)));
    scheduler_cv_.wait_for(lock, wait, [this] { return wake_ || stopping_ || refresh_requested_; });
    wake_ = false;
  }
}

void Prober::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    worker_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const std::string name = std::move(queue_.front());
    queue_.pop_front();
    auto it = nodes_.find(name);
    if (it == nodes_.end()) continue;
    const std::string url = it->second.url;
    lock.unlock();
    RunRound(name, url);
    lock.lock();
  }
}

void Prober::RunRound(const std::string& name, const std::string& url) {
  ProbeResult result = transport_->Probe(url);
  if (options_.metrics != nullptr) {
    ControlMetrics& m = *options_.metrics;
    m.probes.Get({name, result.reachable ? "up" : "down"}).Inc();
    // A failed call's time says how long the timeout was, not how far away the node is.
    if (result.reachable) m.probe_duration.Get({name}).Observe(result.latency_ms / 1000.0);
  }

  corral::v1::Health before;
  corral::v1::Health after;
  bool removed = false;
  std::string warning_before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return;
    NodeState& state = it->second;
    removed = state.removed || state.url != url;  // re-addressed mid-round: result is stale
    before = state.thresholds.health();
    after = removed ? before : state.thresholds.Observe(result.reachable);
    // Only a round that reached the lists says anything new about them.
    if (!removed && result.reachable) {
      warning_before = std::exchange(state.list_warning, result.list_warning);
    } else {
      warning_before = result.list_warning = state.list_warning;
    }
  }

  // One line per change, not one per round: a node stuck over a limit would otherwise repeat
  // the same warning every interval.
  if (result.list_warning != warning_before) {
    if (!result.list_warning.empty()) {
      CORRAL_LOG(kWarn, "prober") << "node " << name << " (" << url << "): " << result.list_warning;
    } else {
      CORRAL_LOG(kInfo, "prober") << "node " << name << " (" << url
                                  << "): model lists within limits again";
    }
  }

  if (!removed) {
    if (absl::Status recorded = registry_->RecordProbe(name, result, after);
        !recorded.ok() && !absl::IsNotFound(recorded)) {
      CORRAL_LOG(kWarn, "prober") << "cannot record the probe of " << name << ": "
                                  << recorded.message();
    }
    if (after != before) {
      if (after == corral::v1::HEALTH_UNHEALTHY) {
        CORRAL_LOG(kWarn, "prober")
            << "node " << name << " (" << url << ") moves to standby: " << result.error;
      } else {
        CORRAL_LOG(kInfo, "prober") << "node " << name << " (" << url << ") is "
                                    << HealthName(after) << " (was " << HealthName(before) << ")";
      }
    }
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    ++completed_rounds_;
    wake_ = true;  // the scheduler recomputes its sleep with this node's new due time
    auto it = nodes_.find(name);
    if (it != nodes_.end()) {
      NodeState& state = it->second;
      state.in_round = false;
      if (state.removed) {
        nodes_.erase(it);
      } else if (state.probe_again) {
        state.probe_again = false;
        state.probe_soon = false;
        state.next_due = clock_->Now();
      } else if (state.probe_soon) {
        state.probe_soon = false;
        state.next_due = clock_->Now() + options_.probe_soon_delay;
      } else {
        state.next_due = clock_->Now() + JitteredIntervalLocked();
      }
    }
  }
  scheduler_cv_.notify_all();
}

}  // namespace corral::control
