#include "controlplane/control_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/promtool_check.h"

namespace corral::control {
namespace {

using ::testing::HasSubstr;

// One of every series kind the control plane records.
void RecordSomeRounds(ControlMetrics& m) {
  m.nodes.SetValues({"gpu-a", "gpu-b"});
  m.models.SetValues({"llama3.2:latest"});
  m.probes.Get({"gpu-a", "up"}).Inc(3);
  m.probes.Get({"gpu-b", "down"}).Inc();
  m.probe_duration.Get({"gpu-a"}).Observe(0.0042);
  m.node_healthy.Get({"gpu-a"}).Set(1);
  m.node_healthy.Get({"gpu-b"}).Set(0);
  m.model_healthy_nodes.Get({"llama3.2:latest"}).Set(1);
  m.snapshot_builds.Inc(4);
  m.snapshot_pushes.Inc(8);
  m.snapshot_reports.Get({"ack"}).Inc(8);
  m.snapshot_version.Set(4);
  m.connected_proxies.Set(2);
}

TEST(ControlMetricsTest, TheWholeListPassesPromtool) {
  ControlMetrics m;
  RecordSomeRounds(m);
  const std::string text = m.registry.RenderPrometheus();
  absl::Status check = metrics::CheckWithPromtool(text);
  EXPECT_TRUE(check.ok()) << check << "\n" << text;
}

TEST(ControlMetricsTest, EveryFamilyIsRenderedAndRecordSomeRoundsTouchesThemAll) {
  ControlMetrics m;
  RecordSomeRounds(m);
  const nlohmann::json json = m.registry.RenderJson();
  const std::string text = m.registry.RenderPrometheus();
  ASSERT_EQ(json.size(), 9u);
  std::set<std::string> names;
  for (const auto& family : json) {
    const std::string name = family["name"];
    names.insert(name);
    EXPECT_FALSE(family["series"].empty()) << name;
    EXPECT_THAT(text, HasSubstr("# TYPE " + name + " " + family["type"].get<std::string>()));
  }
  EXPECT_EQ(names.size(), json.size());
  EXPECT_THAT(text, HasSubstr("corral_probes_total{node=\"gpu-a\",outcome=\"up\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("corral_probe_duration_seconds_bucket{node=\"gpu-a\",le=\"0.005\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("corral_connected_proxies 2\n"));
}

TEST(ControlMetricsTest, NodesOutsideTheRegistryFoldIntoOther) {
  ControlMetrics m;
  RecordSomeRounds(m);
  m.probes.Get({"removed-node", "up"}).Inc();
  EXPECT_THAT(m.registry.RenderPrometheus(),
              HasSubstr("corral_probes_total{node=\"other\",outcome=\"up\"} 1\n"));
}

}  // namespace
}  // namespace corral::control
