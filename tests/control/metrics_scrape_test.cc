// corral-control's --metrics-listen as a Prometheus server sees it: a real corral-control, a
// corral-sim node registered through the Admin API, and a corral-proxy watching, all processes on
// loopback. The scrape must show the node's probes, its health, its model's routable nodes, the
// snapshot builds and pushes, the proxy's ack and connection, and pass promtool.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <memory>
#include <regex>
#include <string>

#include "common/promtool_check.h"
#include "corral/v1/control.grpc.pb.h"
#include "tests/support/process.h"

namespace corral::testing {
namespace {

using std::chrono::seconds;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The value of the sample line that starts with `series` (name and labels exactly as rendered),
// or -1 when there is none.
double Sample(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + prefix.size()));
    at += prefix.size();
  }
  return -1;
}

class ControlMetricsScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("control-metrics");
    sim_ = std::make_unique<ChildProcess>(
        BinaryPath("corral-sim"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--models", "llama3.2"}, dir_);
    ASSERT_NE(sim_->WaitForPort(), 0) << sim_->Log();
    control_ = std::make_unique<ChildProcess>(
        BinaryPath("corral-control"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--data-dir", dir_ + "/var",
                                 "--probe-interval-ms", "200", "--no-discovery", "--metrics-listen",
                                 "127.0.0.1:0", "--metrics-port-file", dir_ + "/metrics.port",
                                 "--http-listen", "off"},
        dir_);
    ASSERT_NE(control_->WaitForPort(), 0) << control_->Log();
    // Written before the gRPC port file: both are there once the control plane listens.
    metrics_port_ = std::atoi(ReadFile(dir_ + "/metrics.port").c_str());
    ASSERT_GT(metrics_port_, 0);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (control_) control_->DumpLog();
      if (proxy_) proxy_->DumpLog();
    }
  }

  std::string Scrape() const {
    httplib::Client client("127.0.0.1", metrics_port_);
    auto res = client.Get("/metrics");
    return res && res->status == 200 ? res->body : "";
  }

  std::string control_address() const { return "127.0.0.1:" + std::to_string(control_->port()); }

  std::string dir_;
  std::unique_ptr<ChildProcess> sim_;
  std::unique_ptr<ChildProcess> control_;
  std::unique_ptr<ChildProcess> proxy_;
  int metrics_port_ = 0;
};

TEST_F(ControlMetricsScrapeTest, AProbedNodeAndAWatchingProxyShowInTheScrape) {
  {
    auto channel = grpc::CreateChannel(control_address(), grpc::InsecureChannelCredentials());
    auto admin = corral::v1::Admin::NewStub(channel);
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + Trim(ReadFile(dir_ + "/var/admin.token")));
    corral::v1::CreateNodeRequest request;
    request.set_name("gpu-a");
    request.set_url("http://127.0.0.1:" + std::to_string(sim_->port()));
    corral::v1::NodeInfo info;
    grpc::Status status = admin->CreateNode(&context, request, &info);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  proxy_ = std::make_unique<ChildProcess>(
      BinaryPath("corral-proxy"),
      std::vector<std::string>{"--listen", "127.0.0.1:0", "--control", control_address(),
                               "--control-token-file", dir_ + "/var/proxy.token", "--snapshot",
                               dir_ + "/proxy.snapshot.json", "--id", "proxy-a"},
      dir_);
  ASSERT_NE(proxy_->WaitForPort(), 0) << proxy_->Log();

  const std::string model = "registry.ollama.ai/library/llama3.2:latest";
  std::string text;
  // Two probe rounds at 200 ms, a snapshot per change, a proxy's first Report: well inside this.
  EXPECT_TRUE(WaitFor(
      [&] {
        text = Scrape();
        return Sample(text, R"(corral_probes_total{node="gpu-a",outcome="up"})") >= 2 &&
               Sample(text, R"(corral_node_healthy{node="gpu-a"})") == 1 &&
               Sample(text, R"(corral_model_healthy_nodes{model=")" + model + "\"}") == 1 &&
               Sample(text, "corral_connected_proxies") == 1 &&
               Sample(text, R"(corral_snapshot_reports_total{result="ack"})") >= 1;
      },
      seconds(20), "the node's probes and health and the proxy's ack in the scrape"))
      << text;

  EXPECT_GE(Sample(text, "corral_snapshot_builds_total"), 2) << "the first and the node's";
  EXPECT_GE(Sample(text, "corral_snapshot_pushes_total"), 1);
  EXPECT_GE(Sample(text, "corral_snapshot_version"), 1);
  EXPECT_GE(Sample(text, R"(corral_probe_duration_seconds_count{node="gpu-a"})"), 2);
  EXPECT_EQ(Sample(text, R"(corral_probes_total{node="gpu-a",outcome="down"})"), -1);
  absl::Status lint = metrics::CheckWithPromtool(text);
  EXPECT_TRUE(lint.ok()) << lint << "\n" << text;

  // The node goes away: its probes fail and both gauges say so.
  ASSERT_NE(sim_->Kill(), -1);
  EXPECT_TRUE(WaitFor(
      [&] {
        text = Scrape();
        return Sample(text, R"(corral_probes_total{node="gpu-a",outcome="down"})") >= 1 &&
               Sample(text, R"(corral_node_healthy{node="gpu-a"})") == 0 &&
               Sample(text, R"(corral_model_healthy_nodes{model=")" + model + "\"}") == 0;
      },
      seconds(20), "the dead node's failed probes and standby in the scrape"))
      << text;

  // The proxy goes away: no proxy is connected any more.
  ASSERT_NE(proxy_->Kill(), -1);
  EXPECT_TRUE(WaitFor([&] { return Sample(Scrape(), "corral_connected_proxies") == 0; },
                      seconds(20), "no connected proxy in the scrape"));
}

TEST_F(ControlMetricsScrapeTest, OnlyMetricsIsServed) {
  httplib::Client client("127.0.0.1", metrics_port_);
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  auto other = client.Get("/api/version");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
}

}  // namespace
}  // namespace corral::testing
