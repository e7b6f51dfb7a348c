#include "dataplane/proxy_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/promtool_check.h"

namespace corral::dataplane {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One of every series kind the proxy records, as a finished streamed chat and a refused request
// would leave them.
void RecordSomeTraffic(ProxyMetrics& m) {
  m.models.SetValues({"llama3.2:latest", "nomic-embed-text:latest"});
  m.nodes.SetValues({"gpu-a", "gpu-b"});
  const std::string_view chat = GenAiOperationName(Endpoint::kChat);
  m.time_to_first_token.Get({chat, "llama3.2:latest", "gpu-a"}).Observe(14.2);  // a cold load
  m.request_duration.Get({chat, "llama3.2:latest", "gpu-a"}).Observe(31.5);
  m.time_per_output_token.Get({chat, "llama3.2:latest", "gpu-a"}).Observe(0.021);
  m.token_usage.Get({chat, "llama3.2:latest", "gpu-a", "input"}).Observe(812);
  m.token_usage.Get({chat, "llama3.2:latest", "gpu-a", "output"}).Observe(256);
  m.requests.Get({EndpointName(Endpoint::kChat), "llama3.2:latest", "gpu-a", StatusClass(200)})
      .Inc();
  m.requests.Get({EndpointName(Endpoint::kGenerate), "nope:latest", "none", StatusClass(404)})
      .Inc();
  m.retries.Get({"llama3.2:latest", "gpu-b", "connect"}).Inc();
  m.proxy_overhead.Get({EndpointName(Endpoint::kChat)}).Observe(0.000042);
  m.ejections.Get({"gpu-b"}).Inc();
  m.node_in_flight.Get({"gpu-a"}).Inc();
  m.node_model_in_flight.Get({"gpu-a", "llama3.2:latest"}).Inc();
  m.snapshot_version.Set(17);
  m.snapshot_age.Set(2.5);
  m.control_plane_connected.Set(1);
  m.queue_depth.Set(2);
  m.queue_wait.Observe(0.4);
  m.queue_rejections.Get({"timeout"}).Inc();
}

TEST(ProxyMetricsTest, TheWholeListPassesPromtool) {
  ProxyMetrics m;
  RecordSomeTraffic(m);
  const std::string text = m.registry.RenderPrometheus();
  absl::Status check = metrics::CheckWithPromtool(text);
  EXPECT_TRUE(check.ok()) << check << "\n" << text;
}

TEST(ProxyMetricsTest, EveryFamilyIsRenderedAndRecordSomeTrafficTouchesThemAll) {
  ProxyMetrics m;
  RecordSomeTraffic(m);
  const nlohmann::json json = m.registry.RenderJson();
  const std::string text = m.registry.RenderPrometheus();
  ASSERT_EQ(json.size(), 16u);
  std::set<std::string> names;
  for (const auto& family : json) {
    const std::string name = family["name"];
    names.insert(name);
    EXPECT_FALSE(family["series"].empty()) << name
                                           << " has no series: the promtool test "
                                              "would not see it";
    EXPECT_THAT(text, HasSubstr("# TYPE " + name + " " + family["type"].get<std::string>()));
  }
  EXPECT_EQ(names.size(), json.size());  // no name twice
}

TEST(ProxyMetricsTest, NamesFollowTheGenAiConventions) {
  ProxyMetrics m;
  RecordSomeTraffic(m);
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_operation_"
                              "name=\"chat\",gen_ai_request_model=\"llama3.2:latest\",node=\"gpu-"
                              "a\",le=\"15\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_operation_"
                              "name=\"chat\",gen_ai_request_model=\"llama3.2:latest\",node=\"gpu-"
                              "a\",le=\"120\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_"
                              "ai_request_model=\"llama3.2:latest\",node=\"gpu-a\",gen_ai_token_"
                              "type=\"output\"} 256\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_request_duration_seconds_count{"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_per_output_token_seconds_count{"));
  EXPECT_THAT(text, HasSubstr("corral_proxy_overhead_seconds_bucket{route=\"chat\",le=\"5e-05\"} "
                              "1\n"));
}

TEST(ProxyMetricsTest, ModelsAndNodesOutsideTheSnapshotFoldIntoOther) {
  ProxyMetrics m;
  RecordSomeTraffic(m);
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("corral_requests_total{route=\"generate\",model=\"other\",node="
                              "\"none\",status_class=\"4xx\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("nope:latest")));
  m.nodes.SetValues({"gpu-a"});  // gpu-b left the fleet
  EXPECT_EQ(&m.ejections.Get({"gpu-b"}), &m.ejections.Get({"other"}));
  EXPECT_EQ(&m.ejections.Get({"gpu-a"}), &m.ejections.Get({"gpu-a"}));
}

TEST(ProxyMetricsTest, RouteAndStatusLabelsCoverEveryRoute) {
  ProxyMetrics m;
  for (int e = 0; e <= static_cast<int>(Endpoint::kNotFound); ++e) {
    EXPECT_TRUE(m.routes.Contains(EndpointName(static_cast<Endpoint>(e)))) << e;
  }
  EXPECT_EQ(StatusClass(100), "1xx");
  EXPECT_EQ(StatusClass(200), "2xx");
  EXPECT_EQ(StatusClass(499), "4xx");
  EXPECT_EQ(StatusClass(503), "5xx");
  EXPECT_EQ(StatusClass(599), "5xx");
  EXPECT_EQ(StatusClass(0), "other");
  EXPECT_EQ(StatusClass(600), "other");
  EXPECT_EQ(GenAiOperationName(Endpoint::kOpenAIChat), "chat");
  EXPECT_EQ(GenAiOperationName(Endpoint::kOpenAICompletions), "text_completion");
  EXPECT_EQ(GenAiOperationName(Endpoint::kEmbed), "embeddings");
  EXPECT_EQ(GenAiOperationName(Endpoint::kTags), "other");
}

}  // namespace
}  // namespace corral::dataplane
