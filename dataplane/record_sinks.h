// The readers of finished request records (request_record.h) in corral-proxy: the access log,
// the metrics of proxy_metrics.h, and the usage ledger that Reports carry to the control plane.
// Each turns one finished record into its own output; none looks at the request path itself.
//
// The metrics sink also keeps the gauges no record carries: in-flight requests per node and per
// (node, model), read from the Router's runtime at each scrape, and the snapshot's version and
// age; and it sets the model and node label domains from each snapshot applied (OnSnapshot).
//
// Thread safety: OnFinished may run on any thread, many at once (a sink never takes a lock
// every request contends for: the metrics' Get is lock-free for an existing series, the access
// log writes one line with one write(2), the ledger locks one shard of sixteen). OnSnapshot and
// the scrape hooks are safe from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include "common/access_log.h"
#include "dataplane/proxy_metrics.h"
#include "dataplane/request_record.h"
#include "dataplane/router.h"
#include "dataplane/routing_table.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/usage_ledger.h"

namespace corral::dataplane {

// One JSON line per finished request (AccessLogLine).
class AccessLogSink final : public RecordSink {
 public:
  explicit AccessLogSink(AccessLog& log) : log_(log) {}

  // RecordSink
  void OnFinished(const RequestRecord& record) override;

 private:
  AccessLog& log_;
};

// Requests, times and tokens by route, model, node and status class (proxy_metrics.h).
class MetricsSink final : public RecordSink {
 public:
  // `connected` says whether the control plane's Watch is up (null: no control plane, 0).
  MetricsSink(ProxyMetrics& metrics, Router& router, SnapshotStore& store,
              std::function<bool()> connected);

  // Sets the label domains (models, nodes) from a snapshot the proxy now serves from.
  void OnSnapshot(const RoutingTable& table);

  // RecordSink
  void OnFinished(const RequestRecord& record) override;

 private:
  // Scrape time: in-flight gauges, snapshot version and age, control-plane connection.
  void Collect();

  ProxyMetrics& metrics_;
  Router& router_;
  SnapshotStore& store_;
  std::function<bool()> connected_;
  std::mutex collect_mu_;                  // one Collect at a time (scrapes only, never a request)
  std::atomic<int64_t> applied_at_ns_{0};  // steady clock, when OnSnapshot last ran
};

// Per (token, model, node) request and token counts of inference requests, for the Report.
class UsageSink final : public RecordSink {
 public:
  explicit UsageSink(UsageLedger& ledger) : ledger_(ledger) {}

  // RecordSink
  void OnFinished(const RequestRecord& record) override;

 private:
  UsageLedger& ledger_;
};

// Why a failed attempt moved its request on, as corral_retries_total's `reason` names it.
std::string_view RetryReason(const TriedNode& attempt);

}  // namespace corral::dataplane
