// SnapshotGauges, ProxyTracker's counts and MetricsEndpoint: what each published snapshot, each
// Report and Watch, and a scrape put into (and read from) the control plane's metrics.
#include "controlplane/snapshot_gauges.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <string>

#include "common/promtool_check.h"
#include "controlplane/metrics_endpoint.h"
#include "controlplane/proxy_tracker.h"

namespace corral::control {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

corral::v1::Node MakeNode(const std::string& name, corral::v1::Health health,
                          std::initializer_list<std::string> models,
                          corral::v1::AdminState admin = corral::v1::ADMIN_STATE_ENABLED) {
  corral::v1::Node node;
  node.set_name(name);
  node.set_url("http://127.0.0.1:1");
  node.set_admin_state(admin);
  node.set_health(health);
  for (const std::string& m : models) node.add_models()->set_name(m);
  return node;
}

double Value(metrics::GaugeFamily<1>& family, std::string_view label) {
  return family.Get({label}).value();
}

constexpr char kLlama[] = "registry.ollama.ai/library/llama3:latest";
constexpr char kQwen[] = "registry.ollama.ai/library/qwen3:8b";

TEST(SnapshotGaugesTest, NodeHealthAndRoutableNodesPerModel) {
  ControlMetrics m;
  SnapshotGauges gauges(&m);
  corral::v1::Snapshot snapshot;
  snapshot.set_version(7);
  *snapshot.add_nodes() = MakeNode("a", corral::v1::HEALTH_HEALTHY, {"llama3", "qwen3:8b"});
  // Not probed yet: routable, as proxies treat it.
  *snapshot.add_nodes() = MakeNode("b", corral::v1::HEALTH_UNKNOWN, {"llama3:latest", "LLAMA3"});
  *snapshot.add_nodes() = MakeNode("c", corral::v1::HEALTH_UNHEALTHY, {"llama3", "qwen3:8b"});
  *snapshot.add_nodes() =
      MakeNode("d", corral::v1::HEALTH_HEALTHY, {"qwen3:8b"}, corral::v1::ADMIN_STATE_DRAINING);
  gauges.Record(snapshot);

  EXPECT_EQ(Value(m.node_healthy, "a"), 1);
  EXPECT_EQ(Value(m.node_healthy, "b"), 1);
  EXPECT_EQ(Value(m.node_healthy, "c"), 0);
  EXPECT_EQ(Value(m.node_healthy, "d"), 1);            // healthy, though draining
  EXPECT_EQ(Value(m.model_healthy_nodes, kLlama), 2);  // a, and b once for two spellings
  EXPECT_EQ(Value(m.model_healthy_nodes, kQwen), 1);   // d drains, c is in standby
  EXPECT_EQ(m.snapshot_version.value(), 7);
  EXPECT_TRUE(m.nodes.Contains("c"));
  EXPECT_FALSE(m.nodes.Contains("e"));
  EXPECT_TRUE(m.models.Contains(kQwen));
}

TEST(SnapshotGaugesTest, AModelWithNoRoutableNodeReadsZero) {
  ControlMetrics m;
  SnapshotGauges gauges(&m);
  corral::v1::Snapshot snapshot;
  *snapshot.add_nodes() = MakeNode("a", corral::v1::HEALTH_UNHEALTHY, {"llama3"});
  gauges.Record(snapshot);
  EXPECT_EQ(Value(m.model_healthy_nodes, kLlama), 0);
  EXPECT_THAT(m.registry.RenderPrometheus(),
              HasSubstr(std::string("corral_model_healthy_nodes{model=\"") + kLlama + "\"} 0\n"));
}

TEST(SnapshotGaugesTest, NodesAndModelsThatLeaveReadNaNAndComeBack) {
  ControlMetrics m;
  SnapshotGauges gauges(&m);
  corral::v1::Snapshot first;
  *first.add_nodes() = MakeNode("a", corral::v1::HEALTH_HEALTHY, {"llama3"});
  *first.add_nodes() = MakeNode("b", corral::v1::HEALTH_HEALTHY, {"qwen3:8b"});
  gauges.Record(first);

  corral::v1::Snapshot second;
  *second.add_nodes() = MakeNode("a", corral::v1::HEALTH_HEALTHY, {"llama3"});
  gauges.Record(second);
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("corral_node_healthy{node=\"b\"} NaN\n"));
  EXPECT_THAT(text,
              HasSubstr(std::string("corral_model_healthy_nodes{model=\"") + kQwen + "\"} NaN\n"));
  EXPECT_THAT(text, HasSubstr("corral_node_healthy{node=\"a\"} 1\n"));
  EXPECT_FALSE(m.nodes.Contains("b"));
  absl::Status lint = metrics::CheckWithPromtool(text);
  EXPECT_TRUE(lint.ok()) << lint << "\n" << text;

  gauges.Record(first);
  EXPECT_EQ(Value(m.node_healthy, "b"), 1);
  EXPECT_EQ(Value(m.model_healthy_nodes, kQwen), 1);
}

TEST(ProxyTrackerMetricsTest, ConnectedProxiesFollowTheirStreams) {
  ControlMetrics m;
  ProxyTracker tracker(std::chrono::hours(1), &m);
  const uint64_t a1 = tracker.WatchStarted("a", "peer");
  EXPECT_EQ(m.connected_proxies.value(), 1);
  const uint64_t a2 = tracker.WatchStarted("a", "peer");  // a reconnect overlapping the old one
  const uint64_t b = tracker.WatchStarted("b", "peer");
  EXPECT_EQ(m.connected_proxies.value(), 2);
  tracker.WatchEnded("a", a1);
  EXPECT_EQ(m.connected_proxies.value(), 2);
  tracker.WatchEnded("a", a2);
  tracker.WatchEnded("a", a2);  // twice: counted once
  EXPECT_EQ(m.connected_proxies.value(), 1);
  tracker.WatchEnded("b", b);
  EXPECT_EQ(m.connected_proxies.value(), 0);
}

TEST(ProxyTrackerMetricsTest, AcksAndNacksCountNewVersionsNotRepeatedReports) {
  ControlMetrics m;
  ProxyTracker tracker(std::chrono::hours(1), &m);
  corral::v1::ReportRequest report;
  report.set_proxy_id("a");
  report.set_applied_version(3);
  tracker.Report(report, "peer");
  tracker.Report(report, "peer");  // the periodic repeat
  report.set_rejected_version(4);
  report.set_rejected_reason("bad");
  tracker.Report(report, "peer");
  tracker.Report(report, "peer");
  report.set_applied_version(5);
  report.clear_rejected_version();
  tracker.Report(report, "peer");
  EXPECT_EQ(m.snapshot_reports.Get({"ack"}).value(), 2u);
  EXPECT_EQ(m.snapshot_reports.Get({"nack"}).value(), 1u);
}

TEST(MetricsEndpointTest, ServesTheRegistryAtMetricsAndNothingElse) {
  ControlMetrics m;
  m.snapshot_builds.Inc(3);
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", &m.registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  httplib::Client client("127.0.0.1", (*endpoint)->port());
  auto got = client.Get("/metrics");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->get_header_value("Content-Type"), metrics::kPrometheusContentType);
  EXPECT_THAT(got->body, HasSubstr("corral_snapshot_builds_total 3\n"));
  absl::Status lint = metrics::CheckWithPromtool(got->body);
  EXPECT_TRUE(lint.ok()) << lint;

  for (const char* path : {"/", "/metrics/", "/api/version", "/metricsx"}) {
    auto other = client.Get(path);
    ASSERT_TRUE(other) << path;
    EXPECT_EQ(other->status, 404) << path;
    EXPECT_THAT(other->body, Not(HasSubstr("corral_"))) << path;
  }
  auto post = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 404);
  (*endpoint)->Stop();
  EXPECT_FALSE(client.Get("/metrics"));
}

TEST(MetricsEndpointTest, ABadAddressOrAPortInUseIsAnError) {
  ControlMetrics m;
  EXPECT_TRUE(absl::IsInvalidArgument(MetricsEndpoint::Start("nonsense", &m.registry).status()));
  auto first = MetricsEndpoint::Start("127.0.0.1:0", &m.registry);
  ASSERT_TRUE(first.ok());
  auto second =
      MetricsEndpoint::Start("127.0.0.1:" + std::to_string((*first)->port()), &m.registry);
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
}

TEST(MetricsEndpointTest, StopRightAfterStartReturns) {
  ControlMetrics m;
  for (int i = 0; i < 20; ++i) {
    auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", &m.registry);
    ASSERT_TRUE(endpoint.ok());
  }
}

}  // namespace
}  // namespace corral::control
