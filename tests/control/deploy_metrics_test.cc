// What deploy/ ships for Prometheus and Grafana against what the processes export: every metric
// name the alerting rules (deploy/prometheus/alerts.yml) and the dashboard
// (deploy/grafana/corral-dashboard.json) query is declared in dataplane/proxy_metrics.h or
// controlplane/control_metrics.h, the dashboard is valid JSON with a Prometheus datasource
// variable, and each of its queries is PromQL that promtool parses. The rules themselves are run
// by `promtool check rules` and `promtool test rules` (ctest prometheus_rules).
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "controlplane/control_metrics.h"
#include "dataplane/proxy_metrics.h"

namespace corral {
namespace {

using json = nlohmann::json;

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(CORRAL_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The names a query may use: every family of both lists (a histogram's _bucket, _sum and _count
// series included) and every label name.
struct Declared {
  std::set<std::string> metrics;
  std::set<std::string> labels;
};

Declared DeclaredNames() {
  Declared out;
  dataplane::ProxyMetrics proxy;
  control::ControlMetrics control;
  for (const metrics::Registry* registry : {&proxy.registry, &control.registry}) {
    for (const json& family : registry->RenderJson()) {
      const std::string name = family["name"];
      out.metrics.insert(name);
      if (family["type"] == "histogram") {
        for (const char* suffix : {"_bucket", "_sum", "_count"}) out.metrics.insert(name + suffix);
      }
      for (const json& label : family["labels"]) out.labels.insert(label.get<std::string>());
    }
  }
  return out;
}

// Checks every corral_* and gen_ai_* name in `expr`; returns how many were metric names.
int CheckNames(const Declared& declared, const std::string& expr, const std::string& where) {
  static const std::regex kName(R"(\b(corral|gen_ai)_[A-Za-z0-9_]*)");
  int metrics = 0;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName);
       it != std::sregex_iterator(); ++it) {
    const std::string name = it->str();
    if (declared.metrics.contains(name)) {
      ++metrics;
    } else {
      EXPECT_TRUE(declared.labels.contains(name))
          << where << ": " << name << " is neither a declared metric nor a label\n  " << expr;
    }
  }
  return metrics;
}

// Every "expr" under `node`, with where it was found.
void CollectExprs(const json& node, const std::string& where,
                  std::vector<std::pair<std::string, std::string>>* out) {
  if (node.is_object()) {
    const std::string here = node.contains("title") && node["title"].is_string()
                                 ? where + " / " + node["title"].get<std::string>()
                                 : where;
    for (const auto& [key, value] : node.items()) {
      if (key == "expr" && value.is_string()) {
        out->emplace_back(here, value.get<std::string>());
      } else {
        CollectExprs(value, here, out);
      }
    }
  } else if (node.is_array()) {
    for (const json& item : node) CollectExprs(item, where, out);
  }
}

std::string Substitute(std::string expr) {
  static const std::regex kRateInterval(R"(\$__rate_interval)");
  static const std::regex kVariable(R"(\$[A-Za-z_]+)");
  expr = std::regex_replace(expr, kRateInterval, "5m");
  return std::regex_replace(expr, kVariable, ".*");
}

// Runs `command`; its exit code (127 when the shell cannot find the program), output in `out`.
int RunCommand(const std::string& command, std::string* out) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(DeployMetricsTest, AlertRulesQueryOnlyDeclaredMetrics) {
  const Declared declared = DeclaredNames();
  const std::string rules = ReadSource("deploy/prometheus/alerts.yml");
  ASSERT_FALSE(rules.empty());
  EXPECT_GE(CheckNames(declared, rules, "alerts.yml"), 4);
  for (const char* needed :
       {"corral_model_healthy_nodes", "corral_control_plane_connected", "corral_requests_total",
        "gen_ai_server_time_to_first_token_seconds_bucket"}) {
    EXPECT_NE(rules.find(needed), std::string::npos) << needed;
  }
}

TEST(DeployMetricsTest, DashboardQueriesAreDeclaredMetricsAndParse) {
  const Declared declared = DeclaredNames();
  const std::string text = ReadSource("deploy/grafana/corral-dashboard.json");
  ASSERT_FALSE(text.empty());
  const json dashboard = json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(dashboard.is_discarded()) << "corral-dashboard.json is not JSON";
  EXPECT_GE(dashboard.value("schemaVersion", 0), 36);
  bool datasource_variable = false;
  for (const json& variable : dashboard["templating"]["list"]) {
    if (variable.value("type", "") == "datasource" && variable.value("query", "") == "prometheus") {
      datasource_variable = true;
    }
    // A variable's own query names metrics too (label_values(metric, label)).
    if (variable.contains("definition")) {
      EXPECT_GE(
          CheckNames(declared, variable["definition"], "variable " + variable.value("name", "")),
          1);
    }
  }
  EXPECT_TRUE(datasource_variable) << "no Prometheus datasource variable";

  std::vector<std::pair<std::string, std::string>> exprs;
  CollectExprs(dashboard["panels"], "dashboard", &exprs);
  ASSERT_GE(exprs.size(), 10u);
  json rules = json::array();
  for (const auto& [where, expr] : exprs) {
    EXPECT_GE(CheckNames(declared, expr, where), 1) << where << " queries no metric";
    rules.push_back({{"record", "corral:dashboard:" + std::to_string(rules.size())},
                     {"expr", Substitute(expr)}});
  }

  // promtool parses each query as a recording rule (YAML is a superset of JSON).
  const std::string path = ::testing::TempDir() + "/dashboard_rules.yml";
  std::ofstream(path) << json{{"groups", json::array({{{"name", "dashboard"}, {"rules", rules}}})}};
  std::string out;
  const int code = RunCommand("promtool check rules '" + path + "'", &out);
  ASSERT_NE(code, 127) << "promtool is not on PATH: install Debian's prometheus package "
                          "(scripts/install-deps.sh does)";
  EXPECT_EQ(code, 0) << out;
}

TEST(DeployMetricsTest, DashboardShowsWhatOperatorsAskFor) {
  const std::string text = ReadSource("deploy/grafana/corral-dashboard.json");
  for (const char* metric :
       {"corral_requests_total", "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_request_duration_seconds_bucket", "gen_ai_client_token_usage_sum",
        "corral_node_in_flight_requests", "corral_retries_total", "corral_node_ejections_total",
        "corral_model_healthy_nodes", "corral_probe_duration_seconds_bucket",
        "corral_snapshot_version", "corral_snapshot_age_seconds", "corral_connected_proxies"}) {
    EXPECT_NE(text.find(metric), std::string::npos) << metric << " is on no panel";
  }
}

}  // namespace
}  // namespace corral
