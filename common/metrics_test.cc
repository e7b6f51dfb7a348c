#include "common/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/promtool_check.h"

namespace corral::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A small declaration list of each kind, as a process would write one.
struct TestMetrics {
  Registry registry;
  LabelDomain& models = registry.AddDomain("model", {"none"});
  LabelDomain& classes = registry.AddDomain("status_class", {"2xx", "4xx", "5xx"});
  CounterFamily<2>& requests = registry.AddCounter("test_requests_total", "Requests answered.",
                                                   {{"model", models}, {"status_class", classes}});
  Gauge& version = registry.AddGauge("test_snapshot_version", "Version applied.");
  GaugeFamily<1>& in_flight =
      registry.AddGauge("test_in_flight_requests", "Requests in flight.", {{"model", models}});
  HistogramFamily<1>& latency = registry.AddHistogram(
      "test_latency_seconds", "Latency.", {{"model", models}}, std::array<double, 3>{0.1, 1, 10});
  Counter& stops = registry.AddCounter("test_stops_total", "Stops.");
};

TEST(MetricsTest, CounterSeriesRenderWithHelpTypeAndLabels) {
  TestMetrics m;
  m.models.SetValues({"llama3:latest"});
  m.requests.Get({"llama3:latest", "2xx"}).Inc();
  m.requests.Get({"llama3:latest", "2xx"}).Inc(2);
  m.requests.Get({"none", "4xx"}).Inc();
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text,
              HasSubstr("# HELP test_requests_total Requests answered.\n"
                        "# TYPE test_requests_total counter\n"
                        "test_requests_total{model=\"llama3:latest\",status_class=\"2xx\"} 3\n"
                        "test_requests_total{model=\"none\",status_class=\"4xx\"} 1\n"));
}

TEST(MetricsTest, UnlabelledMetricsRenderFromTheStartAndLabelledOnesOnceUsed) {
  TestMetrics m;
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE test_snapshot_version gauge\ntest_snapshot_version 0\n"));
  EXPECT_THAT(text, HasSubstr("test_stops_total 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("test_requests_total")));
  EXPECT_THAT(text, Not(HasSubstr("test_latency_seconds")));
}

TEST(MetricsTest, FamiliesRenderInDeclarationOrderAndSeriesSorted) {
  TestMetrics m;
  m.models.SetValues({"b:latest", "a:latest"});
  m.in_flight.Get({"b:latest"}).Inc();
  m.in_flight.Get({"a:latest"}).Inc();
  m.requests.Get({"a:latest", "2xx"}).Inc();
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_LT(text.find("test_requests_total"), text.find("test_snapshot_version"));
  EXPECT_LT(text.find("test_snapshot_version"), text.find("test_in_flight_requests"));
  EXPECT_LT(text.find("test_in_flight_requests"), text.find("test_stops_total"));
  EXPECT_LT(text.find("{model=\"a:latest\"} 1"), text.find("{model=\"b:latest\"} 1"));
}

TEST(MetricsTest, GaugeSetsAddsAndGoesDown) {
  TestMetrics m;
  m.version.Set(42);
  Gauge& g = m.in_flight.Get({"none"});
  g.Inc();
  g.Inc();
  g.Dec();
  g.Add(0.5);
  EXPECT_EQ(g.value(), 1.5);
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("test_snapshot_version 42\n"));
  EXPECT_THAT(text, HasSubstr("test_in_flight_requests{model=\"none\"} 1.5\n"));
}

TEST(MetricsTest, HistogramBucketsAreInclusiveCumulativeAndEndInInf) {
  TestMetrics m;
  Histogram& h = m.latency.Get({"none"});
  h.Observe(0.05);  // le=0.1
  h.Observe(0.1);   // le=0.1: a bound is inclusive
  h.Observe(0.5);   // le=1
  h.Observe(20);    // +Inf only
  h.Observe(std::nan(""));
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# TYPE test_latency_seconds histogram\n"
                              "test_latency_seconds_bucket{model=\"none\",le=\"0.1\"} 2\n"
                              "test_latency_seconds_bucket{model=\"none\",le=\"1\"} 3\n"
                              "test_latency_seconds_bucket{model=\"none\",le=\"10\"} 3\n"
                              "test_latency_seconds_bucket{model=\"none\",le=\"+Inf\"} 4\n"
                              "test_latency_seconds_sum{model=\"none\"} 20.65\n"
                              "test_latency_seconds_count{model=\"none\"} 4\n"));
}

TEST(MetricsTest, UnlabelledHistogramHasOnlyTheLeLabel) {
  Registry r;
  Histogram& h = r.AddHistogram("x_seconds", "X.", std::array<double, 1>{1});
  h.Observe(2);
  EXPECT_THAT(r.RenderPrometheus(), HasSubstr("x_seconds_bucket{le=\"1\"} 0\n"
                                              "x_seconds_bucket{le=\"+Inf\"} 1\n"
                                              "x_seconds_sum 2\n"
                                              "x_seconds_count 1\n"));
}

TEST(MetricsTest, UnknownValuesFoldIntoOther) {
  TestMetrics m;
  m.models.SetValues({"llama3:latest"});
  m.requests.Get({"mistral:latest", "2xx"}).Inc();
  m.requests.Get({"llama3:latest", "302"}).Inc();
  m.requests.Get({"other", "2xx"}).Inc();
  EXPECT_EQ(&m.requests.Get({"mistral:latest", "2xx"}), &m.requests.Get({"qwen:7b", "2xx"}));
  const std::string text = m.registry.RenderPrometheus();
  EXPECT_THAT(text,
              HasSubstr("test_requests_total{model=\"llama3:latest\",status_class=\"other\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("test_requests_total{model=\"other\",status_class=\"2xx\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("mistral")));
}

TEST(MetricsTest, OwnerValuesFollowEachSetAndOldSeriesStay) {
  TestMetrics m;
  EXPECT_FALSE(m.models.Contains("a:latest"));
  EXPECT_TRUE(m.models.Contains("none"));
  EXPECT_TRUE(m.models.Contains("other"));
  m.models.SetValues({"a:latest"});
  EXPECT_TRUE(m.models.Contains("a:latest"));
  Counter& a = m.requests.Get({"a:latest", "2xx"});
  a.Inc();
  m.models.SetValues({"b:latest"});  // a newer snapshot without a
  EXPECT_FALSE(m.models.Contains("a:latest"));
  EXPECT_TRUE(m.models.Contains("b:latest"));
  EXPECT_NE(&m.requests.Get({"a:latest", "2xx"}), &a);  // folds now
  a.Inc();                                              // a kept handle still counts
  EXPECT_THAT(m.registry.RenderPrometheus(),
              HasSubstr("test_requests_total{model=\"a:latest\",status_class=\"2xx\"} 2\n"));
}

TEST(MetricsTest, AnotherThreadSeesTheOwnersNewValues) {
  TestMetrics m;
  m.models.SetValues({"a:latest"});
  bool seen_before = false, seen_after = false, old_after = true;
  std::thread reader([&] { seen_before = m.models.Contains("a:latest"); });
  reader.join();
  m.models.SetValues({"b:latest"});
  std::thread both([&] {
    seen_after = m.models.Contains("b:latest");
    old_after = m.models.Contains("a:latest");
  });
  both.join();
  EXPECT_TRUE(seen_before);
  EXPECT_TRUE(seen_after);
  EXPECT_FALSE(old_after);

  // One thread, its cache warm, then the owner sets new values from another thread.
  LabelDomain& d = m.models;
  std::vector<bool> answers;
  std::mutex mu;
  std::condition_variable cv;
  int step = 0;
  std::thread worker([&] {
    answers.push_back(d.Contains("b:latest"));
    {
      std::unique_lock<std::mutex> lock(mu);
      step = 1;
      cv.notify_all();
      cv.wait(lock, [&] { return step == 2; });
    }
    answers.push_back(d.Contains("b:latest"));
    answers.push_back(d.Contains("c:latest"));
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return step == 1; });
    d.SetValues({"c:latest"});
    step = 2;
    cv.notify_all();
  }
  worker.join();
  EXPECT_EQ(answers, (std::vector<bool>{true, false, true}));
}

// Get skips the domain check for a label set checked since the last SetValues anywhere: a thread
// that has been finding a series without checks must still see the owner drop and re-add a value.
TEST(MetricsTest, AWarmGetOnAnotherThreadFollowsTheOwnersValues) {
  TestMetrics m;
  m.models.SetValues({"a:latest", "b:latest"});
  Counter& a = m.requests.Get({"a:latest", "2xx"});
  std::vector<const Counter*> found;
  std::mutex mu;
  std::condition_variable cv;
  int step = 0;
  auto wait_for = [&](int want) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return step == want; });
  };
  auto advance = [&](int to) {
    std::lock_guard<std::mutex> lock(mu);
    step = to;
    cv.notify_all();
  };
  std::thread worker([&] {
    for (int i = 0; i < 3; ++i) found.push_back(&m.requests.Get({"a:latest", "2xx"}));  // warm
    advance(1);
    wait_for(2);
    found.push_back(&m.requests.Get({"a:latest", "2xx"}));
    found.push_back(&m.requests.Get({"a:latest", "2xx"}));
    advance(3);
    wait_for(4);
    found.push_back(&m.requests.Get({"a:latest", "2xx"}));
  });
  wait_for(1);
  m.models.SetValues({"b:latest"});
  advance(2);
  wait_for(3);
  m.models.SetValues({"a:latest"});
  advance(4);
  worker.join();
  Counter& other = m.requests.Get({"other", "2xx"});
  EXPECT_EQ(found, (std::vector<const Counter*>{&a, &a, &a, &other, &other, &a}));
}

// Values of every length up to a few words, and pairs differing in one byte anywhere, each get
// their own series, found again by an equal value from another buffer.
TEST(MetricsTest, ValuesOfEveryLengthKeepTheirOwnSeries) {
  Registry registry;
  LabelDomain& names = registry.AddDomain("name");
  CounterFamily<1>& family = registry.AddCounter("test_names_total", "Names.", {{"name", names}});
  std::vector<std::string> values;
  for (size_t n = 0; n <= 40; ++n) {
    const std::string base(n, 'x');
    values.push_back(base);
    for (size_t i = 0; i < n; ++i) {
      std::string changed = base;
      changed[i] = 'y';
      values.push_back(changed);
    }
  }
  names.SetValues(values);
  std::vector<const Counter*> series;
  for (const std::string& v : values) series.push_back(&family.Get({v}));
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string copy = values[i];  // another buffer, same bytes
    EXPECT_EQ(&family.Get({copy}), series[i]) << '"' << values[i] << '"';
    for (size_t j = 0; j < i; ++j) {
      ASSERT_NE(series[i], series[j]) << '"' << values[i] << "\" and \"" << values[j] << '"';
    }
  }
  EXPECT_EQ(family.SortedSeries().size(), values.size());
}

TEST(MetricsTest, SeriesAreCappedAndTheRestFoldIntoTheAllOtherSeries) {
  Registry r;
  LabelDomain& nodes = r.AddDomain("node");
  LabelDomain& kinds = r.AddDomain("kind", {"x", "y"});
  CounterFamily<2>& c = r.AddCounter("capped_total", "Capped.", {{"node", nodes}, {"kind", kinds}},
                                     FamilyOptions{.max_series = 3});
  nodes.SetValues({"n1", "n2", "n3", "n4"});
  c.Get({"n1", "x"}).Inc();
  c.Get({"n2", "x"}).Inc();
  c.Get({"n3", "y"}).Inc();
  EXPECT_EQ(c.overflowed(), 0u);
  Counter& over = c.Get({"n4", "x"});
  over.Inc();
  EXPECT_EQ(&c.Get({"n4", "y"}), &over);
  EXPECT_EQ(&c.Get({"other", "other"}), &over);
  EXPECT_EQ(c.overflowed(), 2u);  // the all-"other" label set itself is no overflow
  EXPECT_EQ(&c.Get({"n1", "x"}), &c.Get({"n1", "x"}));  // existing series still found
  EXPECT_EQ(c.SortedSeries().size(), 4u);
  EXPECT_THAT(r.RenderPrometheus(), HasSubstr("capped_total{node=\"other\",kind=\"other\"} 1\n"));
}

TEST(MetricsTest, EscapesHelpAndLabelValuesAsTheFormatSays) {
  EXPECT_EQ(EscapeHelp("a\\b\nc\"d"), "a\\\\b\\nc\"d");
  EXPECT_EQ(EscapeLabelValue("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
  Registry r;
  LabelDomain& odd = r.AddDomain("odd", {"back\\slash", "quo\"te", "new\nline", "ünï"});
  CounterFamily<1>& c = r.AddCounter(
      "odd_total", "Help with a \\ backslash,\na newline and \"quotes\".", {{"v", odd}});
  for (const char* v : {"back\\slash", "quo\"te", "new\nline", "ünï"}) c.Get({v}).Inc();
  const std::string text = r.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("# HELP odd_total Help with a \\\\ backslash,\\na newline and "
                              "\"quotes\".\n"));
  EXPECT_THAT(text, HasSubstr("odd_total{v=\"back\\\\slash\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("odd_total{v=\"quo\\\"te\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("odd_total{v=\"new\\nline\"} 1\n"));
  absl::Status check = CheckWithPromtool(text);
  EXPECT_TRUE(check.ok()) << check << "\n" << text;
}

TEST(MetricsTest, FormatsValuesAsPrometheusReadsThem) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(0.00001), "1e-05");
  EXPECT_EQ(FormatValue(131072), "131072");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(MetricsTest, JsonViewHoldsTheSameFiguresInDeclarationOrder) {
  TestMetrics m;
  m.models.SetValues({"a:latest"});
  m.requests.Get({"a:latest", "2xx"}).Inc(5);
  m.latency.Get({"a:latest"}).Observe(0.5);
  m.version.Set(7);
  const nlohmann::json j = m.registry.RenderJson();
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 5u);
  EXPECT_EQ(j[0]["name"], "test_requests_total");
  EXPECT_EQ(j[0]["type"], "counter");
  EXPECT_EQ(j[0]["help"], "Requests answered.");
  EXPECT_EQ(j[0]["labels"], nlohmann::json({"model", "status_class"}));
  EXPECT_EQ(j[0]["series"][0]["labels"],
            nlohmann::json({{"model", "a:latest"}, {"status_class", "2xx"}}));
  EXPECT_EQ(j[0]["series"][0]["value"], 5);
  EXPECT_EQ(j[1]["series"][0]["value"], 7.0);
  EXPECT_EQ(j[2]["series"], nlohmann::json::array());  // declared, no series yet
  const nlohmann::json& h = j[3]["series"][0];
  EXPECT_EQ(h["count"], 1);
  EXPECT_EQ(h["sum"], 0.5);
  EXPECT_EQ(h["buckets"], nlohmann::json::parse(R"([{"le":0.1,"count":0},{"le":1.0,"count":1},
                                                    {"le":10.0,"count":1}])"));
  EXPECT_EQ(j[4]["name"], "test_stops_total");
}

TEST(MetricsTest, CollectHooksRunBeforeEachRendering) {
  TestMetrics m;
  int runs = 0;
  m.registry.AddCollectHook([&] { m.version.Set(++runs * 10); });
  EXPECT_THAT(m.registry.RenderPrometheus(), HasSubstr("test_snapshot_version 10\n"));
  EXPECT_EQ(m.registry.RenderJson()[1]["series"][0]["value"], 20.0);
}

TEST(MetricsTest, EveryKindPassesPromtool) {
  TestMetrics m;
  m.models.SetValues({"llama3:latest", "qwen2.5:7b"});
  m.requests.Get({"llama3:latest", "2xx"}).Inc();
  m.requests.Get({"unknown", "5xx"}).Inc();
  m.in_flight.Get({"qwen2.5:7b"}).Set(3);
  m.latency.Get({"llama3:latest"}).Observe(0.3);
  m.latency.Get({"none"}).Observe(std::numeric_limits<double>::infinity());
  m.version.Set(std::nan(""));
  const std::string text = m.registry.RenderPrometheus();
  absl::Status check = CheckWithPromtool(text);
  EXPECT_TRUE(check.ok()) << check << "\n" << text;
}

TEST(MetricsTest, PromtoolCheckReportsProblems) {
  // The check must really fail on a bad text, or the tests that rely on it prove nothing.
  absl::Status check = CheckWithPromtool("# HELP bad x\n# TYPE bad counter\nbad 1\n");
  EXPECT_FALSE(check.ok());
  EXPECT_THAT(check.message(), HasSubstr("_total"));
  EXPECT_FALSE(CheckWithPromtool("not a metric line at all {\n").ok());
}

TEST(MetricsTest, PromtoolMissingIsAFailureNotASkip) {
  const std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  setenv("PATH", "/nonexistent", 1);
  absl::Status check = CheckWithPromtool("# HELP a_total x\n# TYPE a_total counter\na_total 1\n");
  setenv("PATH", path.c_str(), 1);
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(check.message(), HasSubstr("prometheus package"));
}

TEST(MetricsTest, BucketPresetsReachWhatTheyMeasure) {
  auto increasing = [](std::span<const double> b) {
    for (size_t i = 1; i < b.size(); ++i) {
      if (b[i] <= b[i - 1]) return false;
    }
    return true;
  };
  EXPECT_TRUE(increasing(buckets::kTimeToFirstToken));
  EXPECT_TRUE(increasing(buckets::kRequestDuration));
  EXPECT_TRUE(increasing(buckets::kTimePerOutputToken));
  EXPECT_TRUE(increasing(buckets::kProxyOverhead));
  EXPECT_TRUE(increasing(buckets::kTokens));
  EXPECT_TRUE(increasing(buckets::kNetworkRoundTrip));
  EXPECT_GT(buckets::kTimeToFirstToken.back(), 60);  // past a cold load of a minute
  EXPECT_LE(buckets::kTimeToFirstToken.front(), 0.01);
  EXPECT_EQ(buckets::kRequestDuration.back(), 600);  // ten minutes
  EXPECT_EQ(buckets::kProxyOverhead.front(), 10e-6);
  EXPECT_EQ(buckets::kProxyOverhead.back(), 0.1);
  EXPECT_EQ(buckets::kTokens.front(), 1);
  EXPECT_EQ(buckets::kTokens.back(), 128 * 1024);
}

TEST(MetricsDeathTest, BadDeclarationsStopWithTheReason) {
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("bad-name_total", "x");
      },
      "metric name 'bad-name_total'");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("twice_total", "x");
        r.AddGauge("twice_total", "y");
      },
      "declared twice");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("h_count", "x");
        r.AddHistogram("h", "y", std::array<double, 1>{1});
      },
      "'h_count' declared twice");
  EXPECT_DEATH(
      {
        Registry r;
        LabelDomain& d = r.AddDomain("d");
        r.AddHistogram("h_seconds", "x", {{"le", d}}, std::array<double, 1>{1});
      },
      "'le' is the bucket label");
  EXPECT_DEATH(
      {
        Registry r;
        LabelDomain& d = r.AddDomain("d");
        r.AddCounter("c_total", "x", {{"a", d}, {"a", d}});
      },
      "label 'a' twice");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogram("h_seconds", "x", std::array<double, 2>{1, 1});
      },
      "strictly increasing");
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  TestMetrics m;
  m.models.SetValues({"a:latest", "b:latest"});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const char* model = t % 2 == 0 ? "a:latest" : "b:latest";
      for (int i = 0; i < kPerThread; ++i) {
        // Get on every iteration: the first ones race to create the series.
        m.requests.Get({model, "2xx"}).Inc();
        m.latency.Get({model}).Observe(0.5);
        m.in_flight.Get({model}).Inc();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.requests.SortedSeries().size(), 2u);
  for (const char* model : {"a:latest", "b:latest"}) {
    EXPECT_EQ(m.requests.Get({model, "2xx"}).value(), 2u * kPerThread);
    EXPECT_EQ(m.latency.Get({model}).Read().count, 2u * kPerThread);
    EXPECT_EQ(m.latency.Get({model}).Read().sum, 0.5 * 2 * kPerThread);
    EXPECT_EQ(m.in_flight.Get({model}).value(), 2.0 * kPerThread);
  }
}

TEST(MetricsTest, RenderingWhileUpdatingIsSafe) {
  TestMetrics m;
  m.models.SetValues({"a:latest"});
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      m.latency.Get({i % 2 == 0 ? "a:latest" : "x"}).Observe(i % 20);
      if (i % 1000 == 0) m.models.SetValues({"a:latest", "m" + std::to_string(i % 7)});
      m.requests.Get({"m" + std::to_string(i % 7), "2xx"}).Inc();
    }
  });
  for (int i = 0; i < 200; ++i) {
    const std::string text = m.registry.RenderPrometheus();
    (void)m.registry.RenderJson();
    ASSERT_THAT(text, HasSubstr("# TYPE test_snapshot_version gauge"));
  }
  stop = true;
  writer.join();
}

// Two threads sharing series, held and looked up each time, lose no observation (speed is a
// benchmark's business, never a test's).
TEST(MetricsTest, ObservationsFromTwoThreadsOnSharedSeriesAreAllCounted) {
  TestMetrics m;
  m.models.SetValues({"llama3:latest", "qwen2.5:7b"});
  constexpr int kIterations = 500000;
  auto run = [&](auto body) {
    std::thread a([&] { body(); });
    std::thread b([&] { body(); });
    a.join();
    b.join();
  };
  Histogram& held = m.latency.Get({"llama3:latest"});
  run([&] {
    for (int i = 0; i < kIterations; ++i) held.Observe(i * 1e-4);
  });
  run([&] {
    for (int i = 0; i < kIterations; ++i) m.latency.Get({"llama3:latest"}).Observe(i * 1e-4);
  });
  run([&] {
    for (int i = 0; i < kIterations; ++i) m.requests.Get({"qwen2.5:7b", "2xx"}).Inc();
  });
  // The widest label set of the proxy's request record: two fixed domains, two owner-set ones.
  LabelDomain& routes = m.registry.AddDomain("route", {"chat", "generate", "embed", "tags"});
  LabelDomain& nodes = m.registry.AddDomain("node", {"none"});
  nodes.SetValues({"node-a", "node-b", "node-c"});
  CounterFamily<4>& wide = m.registry.AddCounter(
      "test_wide_total", "Requests by route, model, node and status class.",
      {{"route", routes}, {"model", m.models}, {"node", nodes}, {"status_class", m.classes}});
  run([&] {
    for (int i = 0; i < kIterations; ++i) wide.Get({"chat", "qwen2.5:7b", "node-b", "2xx"}).Inc();
  });
  EXPECT_EQ(wide.Get({"chat", "qwen2.5:7b", "node-b", "2xx"}).value(), 2u * kIterations);
  EXPECT_EQ(held.Read().count, 4u * kIterations);
  EXPECT_EQ(m.requests.Get({"qwen2.5:7b", "2xx"}).value(), 2u * kIterations);
}

}  // namespace
}  // namespace corral::metrics
