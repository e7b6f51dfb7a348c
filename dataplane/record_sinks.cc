#include "dataplane/record_sinks.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"

namespace corral::dataplane {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool IsInference(Endpoint endpoint) { return GenAiOperationName(endpoint) != metrics::kOther; }

}  // namespace

std::string_view RetryReason(const TriedNode& attempt) {
  if (attempt.status == 503) return "busy";
  if (attempt.status >= 500) return "server_error";
  if (absl::StrContains(attempt.error, "no response within") ||
      absl::StrContains(attempt.error, "timed out")) {
    return "timeout";
  }
  return "connect";
}

void AccessLogSink::OnFinished(const RequestRecord& record) {
  log_.Write(AccessLogLine(record, std::chrono::system_clock::now()));
}

MetricsSink::MetricsSink(ProxyMetrics& metrics, Router& router, SnapshotStore& store,
                         std::function<bool()> connected)
    : metrics_(metrics), router_(router), store_(store), connected_(std::move(connected)) {
  metrics_.registry.AddCollectHook([this] { Collect(); });
}

void MetricsSink::OnSnapshot(const RoutingTable& table) {
  std::vector<std::string> nodes;
  std::vector<std::string> models;
  for (const NodeEntry& node : table.nodes()) {
    nodes.push_back(node.name);
    models.insert(models.end(), node.model_keys.begin(), node.model_keys.end());
  }
  metrics_.nodes.SetValues(std::move(nodes));
  metrics_.models.SetValues(std::move(models));
  metrics_.snapshot_version.Set(static_cast<double>(table.version()));
  applied_at_ns_.store(Clock::now().time_since_epoch().count());
}

void MetricsSink::Collect() {
  // Scrapes may run at once; the ejection counters' catch-up below must run once per change.
  std::lock_guard<std::mutex> lock(collect_mu_);
  const int64_t applied = applied_at_ns_.load();
  metrics_.snapshot_age.Set(
      applied == 0 ? 0 : Seconds(Clock::now().time_since_epoch() - Clock::duration(applied)));
  metrics_.control_plane_connected.Set(connected_ && connected_() ? 1 : 0);
  const auto table = store_.Current();
  if (table == nullptr) return;
  metrics_.snapshot_version.Set(static_cast<double>(table->version()));
  for (const NodeEntry& node : table->nodes()) {
    const std::shared_ptr<NodeRuntime> runtime = router_.Runtime(node.name);
    metrics_.node_in_flight.Get({node.name}).Set(static_cast<double>(runtime->in_flight.load()));
    // The Router counts ejections where it decides them; the counter catches up at scrape time
    // (it never goes back, even when a node's runtime state was forgotten and started over).
    metrics::Counter& ejections = metrics_.ejections.Get({node.name});
    const uint64_t seen = static_cast<uint64_t>(std::max<int64_t>(0, runtime->ejections_total));
    if (seen > ejections.value()) ejections.Inc(seen - ejections.value());
    // Every model the node lists, so a count that fell to zero is shown as zero.
    for (const std::string& model : node.model_keys) {
      metrics_.node_model_in_flight.Get({node.name, model})
          .Set(static_cast<double>(router_.ModelInFlight(node.name, model)));
    }
  }
}

void MetricsSink::OnFinished(const RequestRecord& r) {
  const TriedNode* served = r.served_by();
  const std::string_view model = r.model_key.empty() ? std::string_view("none") : r.model_key;
  const std::string_view node = served != nullptr ? std::string_view(served->node) : "none";
  metrics_.requests.Get({r.route, model, node, StatusClass(r.status)}).Inc();
  for (const TriedNode& attempt : r.attempts) {
    if (&attempt == served || attempt.error.empty()) continue;
    if (attempt.error == "the client left") continue;
    metrics_.retries.Get({model, attempt.node, RetryReason(attempt)}).Inc();
  }
  // The proxy's own time: a wait in the queue for a free slot is the fleet's (it has its own
  // histogram), not the proxy's.
  if (r.sent) metrics_.proxy_overhead.Get({r.route}).Observe(Seconds(*r.sent - r.start - r.queued));
  if (served == nullptr) return;
  const std::string_view operation = GenAiOperationName(r.endpoint);
  if (operation == metrics::kOther) return;
  metrics_.request_duration.Get({operation, model, node}).Observe(Seconds(r.end - r.start));
  if (r.first_token) {
    metrics_.time_to_first_token.Get({operation, model, node})
        .Observe(Seconds(*r.first_token - r.start));
    if (r.output_tokens && *r.output_tokens >= 2 && r.streamed) {
      metrics_.time_per_output_token.Get({operation, model, node})
          .Observe(Seconds(r.end - *r.first_token) / static_cast<double>(*r.output_tokens - 1));
    }
  }
  if (r.input_tokens) {
    metrics_.token_usage.Get({operation, model, node, "input"})
        .Observe(static_cast<double>(*r.input_tokens));
  }
  if (r.output_tokens) {
    metrics_.token_usage.Get({operation, model, node, "output"})
        .Observe(static_cast<double>(*r.output_tokens));
  }
}

void UsageSink::OnFinished(const RequestRecord& r) {
  if (r.model_key.empty() || !IsInference(r.endpoint)) return;
  const TriedNode* served = r.served_by();
  const bool error = r.outcome != RequestOutcome::kAnswered || r.status >= 400;
  ledger_.Add(r.token_name, r.model_key, served != nullptr ? served->node : "",
              static_cast<uint64_t>(r.input_tokens.value_or(0)),
              static_cast<uint64_t>(r.output_tokens.value_or(0)), error);
}

}  // namespace corral::dataplane
