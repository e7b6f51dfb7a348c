// Prober: threshold state machine (pure), scheduling with a ManualClock and a scripted probe
// transport against a real Registry on a temp SQLite file, the real HTTP transport against a
// live node, and one integration test with a real corral-sim killed and restarted on its port. (The
// real transport against a wedged node is in node_client_test.cc, beside the wedged-node listener.)
#include "controlplane/prober.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::BinaryPath;
using corral::testing::ChildProcess;
using corral::testing::MakeTempDir;
using corral::testing::WaitFor;
using corral::v1::HEALTH_HEALTHY;
using corral::v1::HEALTH_UNHEALTHY;
using corral::v1::HEALTH_UNKNOWN;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ---- HealthThresholds ----

TEST(HealthThresholdsTest, DefaultsNeedTwoFailuresToLeaveAndOneSuccessToReturn) {
  HealthThresholds t(2, 1, HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(true), HEALTH_HEALTHY);
}

TEST(HealthThresholdsTest, ANodeWithNoVerdictIsJudgedOnItsFirstRound) {
  HealthThresholds up(2, 3);
  EXPECT_EQ(up.health(), HEALTH_UNKNOWN);
  EXPECT_EQ(up.Observe(true), HEALTH_HEALTHY);
  HealthThresholds down(5, 1);
  EXPECT_EQ(down.Observe(false), HEALTH_UNHEALTHY);
}

TEST(HealthThresholdsTest, AFlappingNodeNeverReachesTheThreshold) {
  HealthThresholds t(2, 1, HEALTH_HEALTHY);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(t.Observe(i % 2 == 0), HEALTH_HEALTHY) << "round " << i;
  }
}

TEST(HealthThresholdsTest, ThresholdsAreConfigurableAndCountConsecutiveRounds) {
  HealthThresholds t(3, 2, HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(true), HEALTH_HEALTHY);  // resets the failure count
  EXPECT_EQ(t.Observe(false), HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(true), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_UNHEALTHY);  // resets the success count
  EXPECT_EQ(t.Observe(true), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(true), HEALTH_HEALTHY);
}

TEST(HealthThresholdsTest, ThresholdsBelowOneCountAsOne) {
  HealthThresholds t(0, -4, HEALTH_HEALTHY);
  EXPECT_EQ(t.Observe(false), HEALTH_UNHEALTHY);
  EXPECT_EQ(t.Observe(true), HEALTH_HEALTHY);
}

// ---- Prober with a scripted transport ----

// Answers each URL from a script: queued results first, then the URL's standing answer. A URL
// can be held (its probes block until released) to stand for a node that answers slowly.
class ScriptedTransport : public ProbeTransport {
 public:
  static ProbeResult Up(std::vector<std::string> models = {"llama3.2:latest"}) {
    ProbeResult r;
    r.reachable = true;
    r.version = "0.12.3";
    r.latency_ms = 1.5;
    std::vector<corral::v1::Model> list;
    for (const auto& name : models) {
      corral::v1::Model m;
      m.set_name(name);
      m.set_size(1000);
      m.set_digest(std::string(64, 'a'));
      list.push_back(m);
    }
    r.models = list;
    r.loaded_models = std::vector<corral::v1::LoadedModel>{};
    return r;
  }
  static ProbeResult Down() {
    ProbeResult r;
    r.error = "GET /api/version: connection refused or unreachable";
    return r;
  }

  void Always(const std::string& url, ProbeResult result) {
    std::lock_guard<std::mutex> lock(mu_);
    standing_[url] = std::move(result);
  }
  void Then(const std::string& url, ProbeResult result) {
    std::lock_guard<std::mutex> lock(mu_);
    queued_[url].push_back(std::move(result));
  }
  void Hold(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu_);
    held_.insert(url);
  }
  void Release(const std::string& url) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_.erase(url);
    }
    cv_.notify_all();
  }
  int calls(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[url];
  }
  int waiting(const std::string& url) {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_[url];
  }

  // ProbeTransport
  ProbeResult Probe(const std::string& url) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_[url];
    ++waiting_[url];
    cv_.wait(lock, [&] { return held_.count(url) == 0; });
    --waiting_[url];
    auto& queue = queued_[url];
    if (!queue.empty()) {
      ProbeResult r = std::move(queue.front());
      queue.pop_front();
      return r;
    }
    auto it = standing_.find(url);
    return it != standing_.end() ? it->second : Down();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, ProbeResult> standing_;
  std::map<std::string, std::deque<ProbeResult>> queued_;
  std::set<std::string> held_;
  std::map<std::string, int> calls_;
  std::map<std::string, int> waiting_;
};

class ProberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("prober");
    auto registry = Registry::Open(dir_ + "/registry.db");
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
    options_.interval = seconds(5);
    options_.jitter = 0.1;
    options_.workers = 4;
  }
  void TearDown() override {
    if (prober_) prober_->Stop();
  }

  void AddNode(const std::string& name, const std::string& url) {
    corral::v1::CreateNodeRequest req;
    req.set_name(name);
    req.set_url(url);
    auto created = registry_->CreateNode(req);
    ASSERT_TRUE(created.ok()) << created.status();
  }

  void StartProber() {
    prober_ = std::make_unique<Prober>(registry_.get(), options_, &transport_, &clock_, 42);
    prober_->Start();
  }

  corral::v1::NodeInfo Node(const std::string& name) {
    auto info = registry_->GetNode(name);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : corral::v1::NodeInfo();
  }
  corral::v1::Health HealthOf(const std::string& name) { return Node(name).node().health(); }

  // Waits until `rounds` rounds have finished since Start. A round's next probe time is set in
  // the same step that counts it, so after this the clock can be moved safely.
  ::testing::AssertionResult FirstRounds(uint64_t rounds) {
    return WaitFor([&] { return prober_->completed_rounds() >= rounds; }, seconds(10),
                   "first rounds");
  }

  // Moves the clock once past every node's next round (the longest jittered interval) and
  // waits until `rounds` more rounds, over all nodes, have been recorded.
  ::testing::AssertionResult NextRounds(uint64_t rounds) {
    const uint64_t target = prober_->completed_rounds() + rounds;
    clock_.Advance(std::chrono::duration_cast<Duration>(options_.interval * 1.2));
    prober_->Wake();
    return WaitFor([&] { return prober_->completed_rounds() >= target; }, seconds(10),
                   "probe rounds");
  }

  std::string dir_;
  std::unique_ptr<Registry> registry_;
  ManualClock clock_;
  ScriptedTransport transport_;
  ProberOptions options_;
  std::unique_ptr<Prober> prober_;
};

constexpr char kUrlA[] = "http://10.0.0.1:11434";
constexpr char kUrlB[] = "http://10.0.0.2:11434";
constexpr char kUrlC[] = "http://10.0.0.3:11434";

TEST_F(ProberTest, ProbesEveryNodeAtStartAndRecordsWhatItLearned) {
  AddNode("a", kUrlA);
  AddNode("b", kUrlB);
  transport_.Always(kUrlA, ScriptedTransport::Up({"llama3.2:latest", "qwen3:8b"}));
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 2; }, seconds(10), "rounds"));

  corral::v1::NodeInfo a = Node("a");
  EXPECT_EQ(a.node().health(), HEALTH_HEALTHY);
  EXPECT_EQ(a.node().version(), "0.12.3");
  EXPECT_EQ(a.node().models_size(), 2);
  EXPECT_GT(a.node().latency_ms(), 0);
  // Never seen healthy and failing: standby at once, with the reason kept for operators.
  corral::v1::NodeInfo b = Node("b");
  EXPECT_EQ(b.node().health(), HEALTH_UNHEALTHY);
  EXPECT_TRUE(absl::StrContains(b.last_error(), "connection refused")) << b.last_error();
}

TEST_F(ProberTest, AHealthyNodeGoesToStandbyAfterTwoFailedRoundsAndBackAfterOneGoodOne) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(FirstRounds(1));
  ASSERT_EQ(HealthOf("a"), HEALTH_HEALTHY);

  const uint64_t before = registry_->version();
  transport_.Then(kUrlA, ScriptedTransport::Down());
  transport_.Then(kUrlA, ScriptedTransport::Down());
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY) << "one failure is below the threshold";
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_UNHEALTHY);
  // The move to standby is a routing change: the snapshot version moved.
  EXPECT_GT(registry_->version(), before);

  const uint64_t standby = registry_->version();
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY);
  EXPECT_GT(registry_->version(), standby);
}

TEST_F(ProberTest, AFlappingNodeStaysInTheActivePool) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(FirstRounds(1));
  ASSERT_EQ(HealthOf("a"), HEALTH_HEALTHY);
  for (int i = 0; i < 6; ++i) {
    transport_.Then(kUrlA, i % 2 == 0 ? ScriptedTransport::Down() : ScriptedTransport::Up());
    ASSERT_TRUE(NextRounds(1));
    EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY) << "round " << i;
  }
}

TEST_F(ProberTest, ConfiguredThresholdsApply) {
  options_.unhealthy_threshold = 3;
  options_.healthy_threshold = 2;
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(FirstRounds(1));
  ASSERT_EQ(HealthOf("a"), HEALTH_HEALTHY);
  transport_.Always(kUrlA, ScriptedTransport::Down());
  ASSERT_TRUE(NextRounds(1));
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY);
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_UNHEALTHY);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_UNHEALTHY);
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY);
}

TEST_F(ProberTest, NextRoundIsOneJitteredIntervalAway) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 1; }, seconds(10), "round"));
  const Duration low = std::chrono::duration_cast<Duration>(options_.interval * 0.9);
  const Duration high = std::chrono::duration_cast<Duration>(options_.interval * 1.1);
  std::set<Duration::rep> seen;
  for (int i = 0; i < 30; ++i) {
    std::optional<TimePoint> next;
    ASSERT_TRUE(WaitFor([&] { return (next = prober_->NextProbeAt("a")).has_value(); }, seconds(10),
                        "scheduled"));
    const Duration gap = *next - clock_.Now();
    EXPECT_GE(gap, low) << "round " << i;
    EXPECT_LE(gap, high) << "round " << i;
    seen.insert(gap.count());
    ASSERT_TRUE(NextRounds(1));
  }
  // Jitter is applied: thirty draws are not all the same.
  EXPECT_GT(seen.size(), 10u);
}

TEST_F(ProberTest, NoRoundBeforeItIsDue) {
  // One worker so rounds run in the order they were queued: "a" before "z".
  options_.workers = 1;
  options_.jitter = 0;
  AddNode("a", kUrlA);
  AddNode("z", kUrlB);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  transport_.Always(kUrlB, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 2; }, seconds(10), "rounds"));
  ASSERT_EQ(transport_.calls(kUrlA), 1);

  // Not yet due: a ProbeNow of "z" after the clock moved is a barrier — the scheduler pass that
  // queues "z" would have queued a due "a" first.
  clock_.Advance(std::chrono::duration_cast<Duration>(options_.interval * 0.8));
  prober_->ProbeNow("z");
  ASSERT_TRUE(
      WaitFor([&] { return transport_.calls(kUrlB) == 2 && prober_->completed_rounds() >= 3; },
              seconds(10), "z probed"));
  EXPECT_EQ(transport_.calls(kUrlA), 1);

  clock_.Advance(std::chrono::duration_cast<Duration>(options_.interval * 0.3));
  prober_->Wake();
  ASSERT_TRUE(WaitFor([&] { return transport_.calls(kUrlA) == 2; }, seconds(10), "a due"));
}

TEST_F(ProberTest, ProbeNowProbesANodeCreatedAMomentAgo) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  transport_.Always(kUrlC, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 1; }, seconds(10), "round"));
  AddNode("c", kUrlC);
  prober_->ProbeNow("c");  // no clock movement needed
  ASSERT_TRUE(WaitFor([&] { return HealthOf("c") == HEALTH_HEALTHY; }, seconds(10), "c healthy"));
  EXPECT_EQ(Node("c").node().models_size(), 1);
}

TEST_F(ProberTest, ProbeSoonBringsTheNextRoundForwardOnceForABurst) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(FirstRounds(1));
  std::optional<TimePoint> next;
  ASSERT_TRUE(WaitFor([&] { return (next = prober_->NextProbeAt("a")).has_value(); }, seconds(10),
                      "scheduled"));
  ASSERT_GT(*next - clock_.Now(), options_.probe_soon_delay);

  // A cold load of llama3.2 on "a", reported by three proxies: one round, probe_soon_delay on,
  // and it records the model as loaded.
  ProbeResult loaded = ScriptedTransport::Up();
  corral::v1::LoadedModel model;
  model.set_name("llama3.2:latest");
  model.set_size_vram(1000);
  loaded.loaded_models = std::vector<corral::v1::LoadedModel>{model};
  transport_.Always(kUrlA, loaded);
  for (int i = 0; i < 3; ++i) prober_->ProbeSoon("a");
  prober_->ProbeSoon("no-such-node");
  ASSERT_EQ(prober_->NextProbeAt("a"), clock_.Now() + options_.probe_soon_delay);
  clock_.Advance(options_.probe_soon_delay);
  prober_->ProbeSoon("a");  // due now already: not pushed back
  prober_->Wake();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 2; }, seconds(10), "soon"));
  EXPECT_EQ(transport_.calls(kUrlA), 2);
  EXPECT_EQ(Node("a").node().loaded_models_size(), 1);
  // Then the usual interval again.
  ASSERT_TRUE(WaitFor([&] { return (next = prober_->NextProbeAt("a")).has_value(); }, seconds(10),
                      "rescheduled"));
  EXPECT_GT(*next - clock_.Now(), options_.probe_soon_delay);
}

TEST_F(ProberTest, ProbeSoonDuringARoundProbesAgainSoonAfterIt) {
  AddNode("a", kUrlA);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  transport_.Hold(kUrlA);
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return transport_.waiting(kUrlA) == 1; }, seconds(10), "in round"));
  // The round may have read /api/ps before the load the report is about.
  prober_->ProbeSoon("a");
  transport_.Release(kUrlA);
  ASSERT_TRUE(FirstRounds(1));
  std::optional<TimePoint> next;
  ASSERT_TRUE(WaitFor([&] { return (next = prober_->NextProbeAt("a")).has_value(); }, seconds(10),
                      "scheduled"));
  EXPECT_EQ(*next, clock_.Now() + options_.probe_soon_delay);
}

TEST_F(ProberTest, KeepsTheLastModelListsWhenTagsOrPsFail) {
  AddNode("a", kUrlA);
  ProbeResult loaded = ScriptedTransport::Up({"llama3.2:latest"});
  corral::v1::LoadedModel lm;
  lm.set_name("llama3.2:latest");
  lm.set_size(2000);
  loaded.loaded_models = std::vector<corral::v1::LoadedModel>{lm};
  transport_.Then(kUrlA, loaded);
  ProbeResult live_only = ScriptedTransport::Up();
  live_only.models.reset();
  live_only.loaded_models.reset();
  transport_.Always(kUrlA, live_only);
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 1; }, seconds(10), "round"));
  ASSERT_TRUE(NextRounds(1));
  corral::v1::NodeInfo a = Node("a");
  EXPECT_EQ(a.node().health(), HEALTH_HEALTHY);
  ASSERT_EQ(a.node().models_size(), 1);
  EXPECT_EQ(a.node().models(0).name(), "llama3.2:latest");
  ASSERT_EQ(a.node().loaded_models_size(), 1);
}

TEST_F(ProberTest, ASlowNodeDoesNotHoldUpTheOthers) {
  options_.workers = 2;
  AddNode("a", kUrlA);
  AddNode("b", kUrlB);
  AddNode("slow", kUrlC);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  transport_.Always(kUrlB, ScriptedTransport::Up());
  transport_.Always(kUrlC, ScriptedTransport::Up());
  transport_.Hold(kUrlC);
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return transport_.waiting(kUrlC) == 1; }, seconds(10), "slow held"));
  ASSERT_TRUE(FirstRounds(2));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(NextRounds(2));
  EXPECT_GE(transport_.calls(kUrlA), 4);
  EXPECT_GE(transport_.calls(kUrlB), 4);
  // Rounds of one node never overlap: the held round is still the only one.
  EXPECT_EQ(transport_.calls(kUrlC), 1);
  transport_.Release(kUrlC);
  ASSERT_TRUE(
      WaitFor([&] { return HealthOf("slow") == HEALTH_HEALTHY; }, seconds(10), "slow recorded"));
}

TEST_F(ProberTest, ARemovedNodeIsNoLongerProbed) {
  AddNode("a", kUrlA);
  AddNode("b", kUrlB);
  transport_.Always(kUrlA, ScriptedTransport::Up());
  transport_.Always(kUrlB, ScriptedTransport::Up());
  StartProber();
  ASSERT_TRUE(WaitFor([&] { return prober_->completed_rounds() >= 2; }, seconds(10), "rounds"));
  ASSERT_TRUE(registry_->RemoveNode("b").ok());
  prober_->Wake();
  ASSERT_TRUE(
      WaitFor([&] { return !prober_->NextProbeAt("b").has_value(); }, seconds(10), "b dropped"));
  const int b_calls = transport_.calls(kUrlB);
  ASSERT_TRUE(NextRounds(1));
  ASSERT_TRUE(NextRounds(1));
  EXPECT_EQ(transport_.calls(kUrlB), b_calls);
}

// A node stuck over a limit is logged once per change of what it does, not once per round.
TEST_F(ProberTest, ListWarningsAreLoggedOncePerChange) {
  AddNode("a", kUrlA);
  ProbeResult over = ScriptedTransport::Up();
  over.models.reset();
  over.list_warning = "GET /api/tags: the node answered more than 8 MiB to /api/tags";
  transport_.Always(kUrlA, over);
  ::testing::internal::CaptureStderr();
  StartProber();
  ASSERT_TRUE(FirstRounds(1));
  ASSERT_TRUE(NextRounds(1));
  ASSERT_TRUE(NextRounds(1));
  transport_.Always(kUrlA, ScriptedTransport::Up());
  ASSERT_TRUE(NextRounds(1));
  ASSERT_TRUE(NextRounds(1));
  prober_->Stop();
  const std::string log = ::testing::internal::GetCapturedStderr();
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count("more than 8 MiB to /api/tags"), 1u) << log;
  EXPECT_EQ(count("model lists within limits again"), 1u) << log;
  EXPECT_TRUE(absl::StrContains(log, "WARN")) << log;
  // The rounds over the limit kept the node healthy; the good round brought the list back.
  EXPECT_EQ(HealthOf("a"), HEALTH_HEALTHY);
  EXPECT_EQ(Node("a").node().models_size(), 1);
}

// ---- the real HTTP transport ----

TEST(HttpProbeTransportTest, ALiveNodeGivesVersionModelsAndLoadedModels) {
  const std::string logs = MakeTempDir("transport");
  ChildProcess sim(BinaryPath("corral-sim"),
                   {"--listen", "127.0.0.1:0", "--fast", "--version", "0.9.1", "--models",
                    "llama3.2:latest,all-minilm:latest"},
                   logs);
  ASSERT_GT(sim.WaitForPort(), 0) << sim.Log();
  HttpProbeTransport transport(ProberOptions{});
  ProbeResult result = transport.Probe("http://127.0.0.1:" + std::to_string(sim.port()));
  ASSERT_TRUE(result.reachable) << result.error;
  EXPECT_EQ(result.version, "0.9.1");
  EXPECT_GT(result.latency_ms, 0);
  ASSERT_TRUE(result.models.has_value());
  EXPECT_EQ(result.models->size(), 2u);
  ASSERT_TRUE(result.loaded_models.has_value());
  EXPECT_TRUE(result.loaded_models->empty());
}

// An answer over its cap keeps the node live and its last list, and says why in list_warning.
TEST(HttpProbeTransportTest, AnOversizedTagsAnswerKeepsTheNodeLiveAndWarns) {
  httplib::Server node;
  std::atomic<bool> stopping{false};
  node.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"version":"0.12.3"})", "application/json");
  });
  node.Get("/api/tags", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
      const std::string chunk(64 << 10, ' ');
      while (!stopping) {
        if (!sink.write(chunk.data(), chunk.size())) return false;
      }
      return false;
    });
  });
  node.Get("/api/ps", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"models":[]})", "application/json");
  });
  const int port = node.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { node.listen_after_bind(); });
  ASSERT_TRUE(WaitFor([&] { return node.is_running(); }, seconds(10), "listening"));

  HttpProbeTransport transport(ProberOptions{});
  ProbeResult result = transport.Probe("http://127.0.0.1:" + std::to_string(port));
  stopping = true;
  node.stop();
  serving.join();
  EXPECT_TRUE(result.reachable) << result.error;
  EXPECT_FALSE(result.models.has_value());
  ASSERT_TRUE(result.loaded_models.has_value());
  EXPECT_TRUE(absl::StrContains(result.list_warning, "more than 8 MiB to /api/tags"))
      << result.list_warning;
  EXPECT_TRUE(absl::StrContains(result.list_warning, "keeping the last model list"))
      << result.list_warning;
}

// ---- integration: a real node dies and comes back ----

TEST(ProberIntegrationTest, AKilledNodeGoesToStandbyAndReturnsWhenRestartedOnItsPort) {
  const std::string dir = MakeTempDir("prober-it");
  auto registry = Registry::Open(dir + "/registry.db");
  ASSERT_TRUE(registry.ok()) << registry.status();

  auto sim = std::make_unique<ChildProcess>(
      BinaryPath("corral-sim"),
      std::vector<std::string>{"--listen", "127.0.0.1:0", "--fast", "--models", "llama3.2:latest"},
      dir);
  const int port = sim->WaitForPort();
  ASSERT_GT(port, 0) << sim->Log();
  corral::v1::CreateNodeRequest req;
  req.set_name("gpu-1");
  req.set_url("http://127.0.0.1:" + std::to_string(port));
  auto created = (*registry)->CreateNode(req);
  ASSERT_TRUE(created.ok()) << created.status();

  ProberOptions options;
  options.interval = milliseconds(100);
  options.liveness_timeout = milliseconds(1000);
  // Rounds must follow the interval by themselves, not wait for a node-list refresh.
  options.refresh_interval = std::chrono::minutes(10);
  Prober prober(registry->get(), options);
  prober.Start();
  auto health = [&] {
    auto node = (*registry)->GetNode("gpu-1");
    return node.ok() ? node->node().health() : HEALTH_UNKNOWN;
  };
  ASSERT_TRUE(WaitFor([&] { return health() == HEALTH_HEALTHY; }, seconds(10), "healthy"));
  auto node = (*registry)->GetNode("gpu-1");
  ASSERT_TRUE(node.ok());
  ASSERT_EQ(node->node().models_size(), 1);
  EXPECT_EQ(node->node().models(0).name(), "llama3.2:latest");

  // (The threshold itself is pinned down by the ManualClock tests above.)
  sim->Kill();
  ASSERT_TRUE(WaitFor([&] { return health() == HEALTH_UNHEALTHY; }, seconds(15), "standby"));
  EXPECT_FALSE((*registry)->GetNode("gpu-1")->last_error().empty());

  sim = std::make_unique<ChildProcess>(
      BinaryPath("corral-sim"),
      std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(port), "--fast",
                               "--models", "llama3.2:latest,qwen3:8b"},
      dir);
  ASSERT_EQ(sim->WaitForPort(), port) << sim->Log();
  ASSERT_TRUE(WaitFor([&] { return health() == HEALTH_HEALTHY; }, seconds(15), "back"));
  ASSERT_TRUE(WaitFor([&] { return (*registry)->GetNode("gpu-1")->node().models_size() == 2; },
                      seconds(10), "new model list"));
  prober.Stop();
}

}  // namespace
}  // namespace corral::control
