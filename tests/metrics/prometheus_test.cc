// A real Prometheus server scrapes a real corral-proxy: the proxy's /metrics is what Prometheus
// accepts, and a request sent through the proxy becomes a series Prometheus can be asked for.
// Everything runs on loopback: corral-sim as the node, corral-proxy from a snapshot file, and
// Debian's `prometheus` (installed by scripts/install-deps.sh) with its storage in a temp dir.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "tests/support/process.h"

namespace corral {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::seconds;

// Prometheus scrapes every second here; its first scrape, the request's and a query round trip
// fit well within this on a loaded two-core machine.
constexpr seconds kDeadline(60);

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = corral::testing::MakeTempDir("prometheus_test");
    sim_ = std::make_unique<ChildProcess>(
        BinaryPath("corral-sim"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--models", "llama3.2:latest",
                                 "--load-delay-ms", "0", "--tokens", "3"},
        dir_);
    ASSERT_GT(sim_->WaitForPort(), 0);
    const json snapshot = {{"version", "1"},
                           {"nodes",
                            {{{"name", "node-a"},
                              {"url", "http://127.0.0.1:" + std::to_string(sim_->port())},
                              {"admin_state", "ADMIN_STATE_ENABLED"},
                              {"health", "HEALTH_HEALTHY"},
                              {"models", {{{"name", "llama3.2:latest"}}}}}}}};
    std::ofstream(dir_ + "/snapshot.json") << snapshot.dump();
    proxy_ = std::make_unique<ChildProcess>(
        BinaryPath("corral-proxy"),
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--snapshot", dir_ + "/snapshot.json"},
        dir_);
    ASSERT_GT(proxy_->WaitForPort(), 0);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (prometheus_) prometheus_->DumpLog();
      if (proxy_) proxy_->DumpLog();
    }
  }

  // Starts Prometheus scraping the proxy's /metrics every second. It listens on a port of the
  // kernel's choosing and logs which ("Listening on" address=127.0.0.1:PORT).
  void StartPrometheus() {
    const std::string config = dir_ + "/prometheus.yml";
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 1s\n"
                             "  evaluation_interval: 1s\n"
                             "scrape_configs:\n"
                             "  - job_name: corral-proxy\n"
                             "    static_configs:\n"
                             "      - targets: ['127.0.0.1:"
                          << proxy_->port() << "']\n";
    prometheus_ = std::make_unique<ChildProcess>(
        "/usr/bin/prometheus",
        std::vector<std::string>{"--config.file=" + config, "--storage.tsdb.path=" + dir_ + "/tsdb",
                                 "--web.listen-address=127.0.0.1:0", "--log.level=info"},
        dir_, /*wants_port=*/false);
    const std::regex listening("msg=\"Listening on\" address=127\\.0\\.0\\.1:([0-9]+)");
    ASSERT_TRUE(WaitFor(
        [&] {
          std::smatch m;
          const std::string log = prometheus_->Log();
          if (!std::regex_search(log, m, listening)) return false;
          prometheus_port_ = std::stoi(m[1].str());
          return true;
        },
        kDeadline, "Prometheus to listen"));
  }

  // The result vector of an instant query, or an empty array.
  json Query(const std::string& promql) {
    httplib::Client cli("127.0.0.1", prometheus_port_);
    auto res = cli.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!res || res->status != 200) return json::array();
    const json body = json::parse(res->body, nullptr, false);
    if (!body.is_object() || body.value("status", "") != "success") return json::array();
    return body["data"]["result"];
  }

  std::string dir_;
  std::unique_ptr<ChildProcess> sim_;
  std::unique_ptr<ChildProcess> proxy_;
  std::unique_ptr<ChildProcess> prometheus_;
  int prometheus_port_ = 0;
};

TEST_F(PrometheusTest, ARequestThroughTheProxyBecomesASeriesPrometheusFinds) {
  ASSERT_NO_FATAL_FAILURE(StartPrometheus());
  // Prometheus scrapes the proxy and accepts what it gets (a page it cannot parse makes up 0).
  ASSERT_TRUE(WaitFor(
      [&] {
        const json up = Query("up{job=\"corral-proxy\"}");
        return up.size() == 1 && up[0]["value"][1] == "1";
      },
      kDeadline, "Prometheus to scrape the proxy successfully"))
      << Query("up").dump();

  httplib::Client proxy("127.0.0.1", proxy_->port());
  auto res = proxy.Post("/api/generate", R"({"model":"llama3.2","prompt":"hi","stream":false})",
                        "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;

  // The request's series, with the node that served it and its status class.
  json series;
  ASSERT_TRUE(WaitFor(
      [&] {
        series = Query("corral_requests_total{route=\"generate\",node=\"node-a\"}");
        return series.size() == 1 && std::stod(series[0]["value"][1].get<std::string>()) >= 1;
      },
      kDeadline, "the request's series in Prometheus"))
      << series.dump();
  EXPECT_EQ(series[0]["metric"]["status_class"], "2xx") << series.dump();
  // Its time to first token was observed in the GenAI histogram.
  const json ttft = Query("gen_ai_server_time_to_first_token_seconds_count");
  ASSERT_FALSE(ttft.empty()) << Query("{__name__=~\"gen_ai.*\"}").dump();
}

}  // namespace
}  // namespace corral
