// The proxy's metrics: the one list naming every metric corral-proxy exports at `GET /metrics`
// (Prometheus text) and in its state view (JSON). docs/observability.md describes each one.
//
// Names follow the OpenTelemetry GenAI semantic conventions in Prometheus form where one exists
// (gen_ai_server_*, gen_ai_client_token_usage, with their attribute names as labels:
// gen_ai_operation_name, gen_ai_request_model, gen_ai_token_type); corral_* for the rest.
//
// Labels are bounded: `models` and `nodes` take the canonical model names and node names of the
// snapshot the proxy serves from, set by its owner on each snapshot it applies; any other value
// folds into "other". "none" is the model of a request that names none and the node of one no
// node answered. A series, once created, lives as long as the registry, so a reference from Get
// may be kept: a finished request resolves its series with Get (lock-free), and a long-lived
// series (a node's in-flight gauge) may be resolved once per snapshot and kept beside it.
//
// Thread safety: as metrics::Registry. Construct once, before the listener starts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.h"
#include "dataplane/route.h"

namespace corral::dataplane {

// Every route's stable name (EndpointName), the values of the `route` label.
inline std::vector<std::string> RouteLabelValues() {
  std::vector<std::string> values;
  for (int e = 0; e <= static_cast<int>(Endpoint::kNotFound); ++e) {
    values.emplace_back(EndpointName(static_cast<Endpoint>(e)));
  }
  return values;
}

// OpenTelemetry's gen_ai.operation.name of an inference route; "other" for the rest.
inline std::string_view GenAiOperationName(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kChat:
    case Endpoint::kOpenAIChat:
    case Endpoint::kOpenAIResponses:
    case Endpoint::kOpenAIMessages:
      return "chat";
    case Endpoint::kGenerate:
    case Endpoint::kOpenAICompletions:
      return "text_completion";
    case Endpoint::kEmbed:
    case Endpoint::kEmbeddings:
    case Endpoint::kOpenAIEmbeddings:
      return "embeddings";
    default:
      return metrics::kOther;
  }
}

// "2xx" for 200..299 and so on; "other" outside 100..599.
inline std::string_view StatusClass(int status) {
  static constexpr std::string_view kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  return status >= 100 && status <= 599 ? kClasses[status / 100 - 1] : metrics::kOther;
}

struct ProxyMetrics {
  metrics::Registry registry;

  // ---- label domains ----
  metrics::LabelDomain& models = registry.AddDomain("model", {"none"});
  metrics::LabelDomain& nodes = registry.AddDomain("node", {"none"});
  metrics::LabelDomain& routes = registry.AddDomain("route", RouteLabelValues());
  metrics::LabelDomain& operations =
      registry.AddDomain("gen_ai_operation_name", {"chat", "text_completion", "embeddings"});
  metrics::LabelDomain& status_classes =
      registry.AddDomain("status_class", {"1xx", "2xx", "3xx", "4xx", "5xx"});
  metrics::LabelDomain& token_types = registry.AddDomain("gen_ai_token_type", {"input", "output"});
  // Why an attempt moved on: connect error, no answer head in time, a 5xx, Ollama's 503 busy.
  metrics::LabelDomain& retry_reasons =
      registry.AddDomain("reason", {"connect", "timeout", "server_error", "busy"});

  // ---- inference, OpenTelemetry GenAI (server side: Corral serves the model) ----
  metrics::HistogramFamily<3>& time_to_first_token = registry.AddHistogram(
      "gen_ai_server_time_to_first_token_seconds",
      "Time from a request's arrival to its first token sent to the client (the whole answer for "
      "an unstreamed one), cold model loads included.",
      {{"gen_ai_operation_name", operations}, {"gen_ai_request_model", models}, {"node", nodes}},
      metrics::buckets::kTimeToFirstToken, {.max_series = 2000});
  metrics::HistogramFamily<3>& request_duration = registry.AddHistogram(
      "gen_ai_server_request_duration_seconds",
      "Time from a request's arrival to the last byte of its answer, by the node that answered.",
      {{"gen_ai_operation_name", operations}, {"gen_ai_request_model", models}, {"node", nodes}},
      metrics::buckets::kRequestDuration, {.max_series = 2000});
  metrics::HistogramFamily<3>& time_per_output_token = registry.AddHistogram(
      "gen_ai_server_time_per_output_token_seconds",
      "Time per output token after the first, of answers with at least two output tokens.",
      {{"gen_ai_operation_name", operations}, {"gen_ai_request_model", models}, {"node", nodes}},
      metrics::buckets::kTimePerOutputToken, {.max_series = 2000});
  metrics::HistogramFamily<4>& token_usage = registry.AddHistogram(
      "gen_ai_client_token_usage",
      "Tokens of one request as the node counted them: input (prompt_eval_count, "
      "usage.prompt_tokens) and output (eval_count, usage.completion_tokens).",
      {{"gen_ai_operation_name", operations},
       {"gen_ai_request_model", models},
       {"node", nodes},
       {"gen_ai_token_type", token_types}},
      metrics::buckets::kTokens, {.max_series = 4000});

  // ---- requests ----
  metrics::CounterFamily<4>& requests = registry.AddCounter(
      "corral_requests_total",
      "Requests finished, by route, canonical model, the node that answered (\"none\" when the "
      "proxy answered itself) and status class.",
      {{"route", routes}, {"model", models}, {"node", nodes}, {"status_class", status_classes}},
      {.max_series = 5000});
  metrics::CounterFamily<3>& retries = registry.AddCounter(
      "corral_retries_total",
      "Attempts that failed before the answer began and moved the request to another node, by "
      "the node that failed and why.",
      {{"model", models}, {"node", nodes}, {"reason", retry_reasons}}, {.max_series = 2000});
  metrics::HistogramFamily<1>& proxy_overhead = registry.AddHistogram(
      "corral_proxy_overhead_seconds",
      "The proxy's own time on a request before the node got it: head and body reading, "
      "admission, node choice, connection from the pool.",
      {{"route", routes}}, metrics::buckets::kProxyOverhead);

  // ---- nodes, as this proxy sees them ----
  metrics::CounterFamily<1>& ejections = registry.AddCounter(
      "corral_node_ejections_total",
      "Passive ejections: times this proxy stopped sending to a node after failures on real "
      "traffic.",
      {{"node", nodes}});
  metrics::GaugeFamily<1>& node_in_flight =
      registry.AddGauge("corral_node_in_flight_requests",
                        "Requests this proxy has in flight on a node.", {{"node", nodes}});
  metrics::GaugeFamily<2>& node_model_in_flight =
      registry.AddGauge("corral_node_model_in_flight_requests",
                        "Requests this proxy has in flight on a node for one model.",
                        {{"node", nodes}, {"model", models}}, {.max_series = 5000});

  // ---- the wait queue (dataplane/wait_queue.h) ----
  metrics::LabelDomain& queue_rejection_reasons =
      registry.AddDomain("reason", {"timeout", "full", "client_gone", "stopping"});
  metrics::Gauge& queue_depth =
      registry.AddGauge("corral_queue_depth",
                        "Requests waiting in this proxy's queue for a slot on a node.");
  metrics::Histogram& queue_wait = registry.AddHistogram(
      "corral_queue_wait_seconds",
      "Time a request waited in the queue, whatever ended the wait (a slot, the queue's time "
      "limit, its client leaving).",
      metrics::buckets::kTimeToFirstToken);
  metrics::CounterFamily<1>& queue_rejections = registry.AddCounter(
      "corral_queue_rejections_total",
      "Requests the queue gave up on: 503 after the queue's time limit (timeout) or with the "
      "queue full (full), the client gone while waiting, the proxy stopping.",
      {{"reason", queue_rejection_reasons}});

  // ---- the snapshot and the control plane ----
  metrics::Gauge& snapshot_version = registry.AddGauge(
      "corral_snapshot_version", "Version of the routing snapshot this proxy serves from.");
  metrics::Gauge& snapshot_age = registry.AddGauge(
      "corral_snapshot_age_seconds",
      "Seconds since this proxy applied the snapshot it serves from (set at each scrape).");
  metrics::Gauge& control_plane_connected =
      registry.AddGauge("corral_control_plane_connected",
                        "1 while this proxy's Watch stream to the control plane is up, else 0.");
};

}  // namespace corral::dataplane
