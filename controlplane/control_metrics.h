// The control plane's metrics: the one list naming every metric corral-control exports at
// `GET /metrics` on --metrics-listen (Prometheus text) and in its state views (JSON).
// docs/observability.md describes each one.
//
// Labels are bounded: `nodes` takes the registry's node names and `models` the fleet's
// canonical model names, set by their owner whenever the registry's version moves; any other
// value folds into "other". Series, once created, live as long as the registry, so a reference
// from Get may be kept (a prober worker may keep its node's series for the node's lifetime).
//
// Thread safety: as metrics::Registry. Construct once, before the servers start.
#pragma once

#include "common/metrics.h"

namespace corral::control {

struct ControlMetrics {
  metrics::Registry registry;

  // ---- label domains ----
  metrics::LabelDomain& nodes = registry.AddDomain("node");
  metrics::LabelDomain& models = registry.AddDomain("model");
  // A probe round's outcome: the node answered /api/version (up) or did not (down).
  metrics::LabelDomain& probe_outcomes = registry.AddDomain("outcome", {"up", "down"});
  // A proxy's answer to a snapshot it was sent.
  metrics::LabelDomain& report_results = registry.AddDomain("result", {"ack", "nack"});

  // ---- probing ----
  metrics::CounterFamily<2>& probes =
      registry.AddCounter("corral_probes_total", "Probe rounds of a node, by outcome.",
                          {{"node", nodes}, {"outcome", probe_outcomes}});
  metrics::HistogramFamily<1>& probe_duration = registry.AddHistogram(
      "corral_probe_duration_seconds",
      "Round trip of a node's liveness probe (GET /api/version) that it answered.",
      {{"node", nodes}}, metrics::buckets::kNetworkRoundTrip);
  metrics::GaugeFamily<1>& node_healthy = registry.AddGauge(
      "corral_node_healthy",
      "1 while a node is in the active pool (healthy, or not probed yet), 0 in the standby pool.",
      {{"node", nodes}});
  metrics::GaugeFamily<1>& model_healthy_nodes = registry.AddGauge(
      "corral_model_healthy_nodes",
      "Enabled, healthy nodes that have a model: 0 means requests for it are refused.",
      {{"model", models}}, {.max_series = 2000});

  // ---- snapshots ----
  metrics::Counter& snapshot_builds = registry.AddCounter(
      "corral_snapshot_builds_total", "Routing snapshots built, one per registry version.");
  metrics::Counter& snapshot_pushes = registry.AddCounter(
      "corral_snapshot_pushes_total", "Snapshots sent to proxies over their Watch streams.");
  metrics::CounterFamily<1>& snapshot_reports = registry.AddCounter(
      "corral_snapshot_reports_total",
      "Proxies' answers to the snapshots they were sent: applied (ack) or refused (nack).",
      {{"result", report_results}});
  metrics::Gauge& snapshot_version =
      registry.AddGauge("corral_snapshot_version", "Version of the newest routing snapshot.");

  // ---- proxies ----
  metrics::Gauge& connected_proxies = registry.AddGauge(
      "corral_connected_proxies", "Proxies with an open Watch stream to this control plane.");
};

}  // namespace corral::control
