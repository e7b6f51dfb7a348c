// Router: which node a request goes to, why none does, and the runtime state behind it.
#include "dataplane/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <latch>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/model_name.h"
#include "corral/v1/control.pb.h"

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;
using ::testing::IsEmpty;
using v1::Node;
using v1::Snapshot;

constexpr char kLlama[] = "llama3";  // installed on most test nodes
constexpr char kQwen[] = "qwen3:4b";

std::string Key(const std::string& name) {
  auto key = CanonicalModelKey(name);
  EXPECT_TRUE(key.has_value()) << name;
  return key.value_or("");
}

class RouterTest : public ::testing::Test {
 protected:
  // A healthy, enabled node with `models` installed and `loaded` resident. Its per-model slots
  // are many (num_parallel 1000), so only max_parallel limits it unless a test says otherwise.
  Node* AddNode(const std::string& name, std::vector<std::string> models = {kLlama},
                std::vector<std::string> loaded = {}) {
    Node* node = snapshot_.add_nodes();
    node->set_name(name);
    node->set_url("http://127.0.0.1:" + std::to_string(10000 + snapshot_.nodes_size()));
    node->set_admin_state(v1::ADMIN_STATE_ENABLED);
    node->set_health(v1::HEALTH_HEALTHY);
    node->set_num_parallel(1000);
    for (const auto& m : models) node->add_models()->set_name(m);
    for (const auto& m : loaded) node->add_loaded_models()->set_name(m);
    return node;
  }

  std::shared_ptr<const RoutingTable> Table() {
    auto table = RoutingTable::Build(snapshot_);
    EXPECT_TRUE(table.ok()) << table.status();
    return table.ok() ? *table : nullptr;
  }

  // Picks and keeps the lease (the slot stays taken). Returns the node name or the error name.
  std::string Hold(const std::shared_ptr<const RoutingTable>& table,
                   const std::string& model = kLlama,
                   const std::unordered_set<std::string>& exclude = {}) {
    PickResult r = router_.Pick(table, Key(model), exclude);
    if (!r.lease) return PickErrorName(r.error);
    std::string name = r.lease.node().name;
    held_.push_back(std::move(r.lease));
    return name;
  }

  // Picks and releases at once, as a request that finished.
  std::string Once(const std::shared_ptr<const RoutingTable>& table,
                   const std::string& model = kLlama,
                   const std::unordered_set<std::string>& exclude = {}) {
    PickResult r = router_.Pick(table, Key(model), exclude);
    if (!r.lease) return PickErrorName(r.error);
    return r.lease.node().name;
  }

  // `n` requests that each finish before the next starts.
  std::vector<std::string> Sequence(const std::shared_ptr<const RoutingTable>& table, int n,
                                    const std::string& model = kLlama) {
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) names.push_back(Once(table, model));
    return names;
  }

  // Takes `n` slots on a node directly, to set up its load.
  void Load(const std::shared_ptr<const RoutingTable>& table, const std::string& node, int n,
            const std::string& model = kLlama) {
    for (int i = 0; i < n; ++i) {
      Lease lease = router_.Acquire(table, node, Key(model));
      ASSERT_TRUE(lease) << node;
      held_.push_back(std::move(lease));
    }
  }

  void Fail(const std::string& node, const EffectivePolicy& policy, int times) {
    for (int i = 0; i < times; ++i) router_.RecordFailure(node, policy);
  }

  int64_t InFlight(const std::string& node) { return router_.Runtime(node)->in_flight.load(); }

  ManualClock clock_;
  Router router_{clock_};
  Snapshot snapshot_;
  std::vector<Lease> held_;
};

// ---- 404 vs 503: why no node is picked ----

TEST_F(RouterTest, ModelOnNoNodeIsModelNotFound) {
  AddNode("a", {kLlama});
  EXPECT_EQ(Once(Table(), kQwen), "model_not_found");
}

TEST_F(RouterTest, EmptyFleetIsModelNotFound) { EXPECT_EQ(Once(Table()), "model_not_found"); }

TEST_F(RouterTest, NoTableYetIsNoHealthyNode) {
  PickResult r = router_.Pick(nullptr, Key(kLlama), {});
  EXPECT_FALSE(r.lease);
  EXPECT_EQ(r.error, PickError::kNoHealthyNode);
}

TEST_F(RouterTest, ModelOnlyOnUnhealthyNodesIsNoHealthyNode) {
  AddNode("a")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("b")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("c", {kQwen});
  EXPECT_EQ(Once(Table()), "no_healthy_node");
}

TEST_F(RouterTest, ModelOnlyOnDrainingOrDisabledNodesIsNoHealthyNode) {
  AddNode("a")->set_admin_state(v1::ADMIN_STATE_DRAINING);
  AddNode("b")->set_admin_state(v1::ADMIN_STATE_DISABLED);
  EXPECT_EQ(Once(Table()), "no_healthy_node");
}

TEST_F(RouterTest, NodeNotProbedYetIsRoutable) {
  AddNode("a")->set_health(v1::HEALTH_UNKNOWN);
  EXPECT_EQ(Once(Table()), "a");
}

TEST_F(RouterTest, NonRoutableNodesAreSkippedForRoutableOnes) {
  AddNode("draining")->set_admin_state(v1::ADMIN_STATE_DRAINING);
  AddNode("disabled")->set_admin_state(v1::ADMIN_STATE_DISABLED);
  AddNode("down")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("up");
  auto table = Table();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Hold(table), "up");
}

TEST_F(RouterTest, ModelOnlyOnEjectedNodesIsNoHealthyNode) {
  AddNode("a");
  auto table = Table();
  Fail("a", table->policy(), 3);
  EXPECT_EQ(Once(table), "no_healthy_node");
}

TEST_F(RouterTest, AllAtMaxParallelIsAllBusy) {
  AddNode("a")->set_max_parallel(1);
  AddNode("b")->set_max_parallel(2);
  auto table = Table();
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "b");
  EXPECT_EQ(Hold(table), "b");
  EXPECT_EQ(Hold(table), "all_busy");
}

TEST_F(RouterTest, AllCandidatesExcludedIsExhausted) {
  AddNode("a");
  AddNode("b");
  EXPECT_EQ(Once(Table(), kLlama, {"a", "b"}), "exhausted");
}

TEST_F(RouterTest, ExcludedNodeThatWasEjectedSinceStillCountsAsTried) {
  AddNode("a");
  AddNode("b")->set_health(v1::HEALTH_UNHEALTHY);
  auto table = Table();
  Fail("a", table->policy(), 3);
  EXPECT_EQ(Once(table, kLlama, {"a"}), "exhausted");
}

TEST_F(RouterTest, BusyOutranksExhausted) {
  AddNode("a");
  AddNode("b")->set_max_parallel(1);
  auto table = Table();
  Load(table, "b", 1);
  EXPECT_EQ(Once(table, kLlama, {"a"}), "all_busy");
}

TEST_F(RouterTest, ExcludedNodesAreSkipped) {
  AddNode("a");
  AddNode("b");
  AddNode("c");
  auto table = Table();
  EXPECT_EQ(Once(table, kLlama, {"a"}), "b");
  EXPECT_EQ(Once(table, kLlama, {"a", "b"}), "c");
  EXPECT_EQ(Once(table, kLlama, {"b", "not-in-fleet"}), "a");
}

TEST_F(RouterTest, NeverPicksANodeWithoutTheModel) {
  AddNode("idle", {kQwen});
  AddNode("busy", {kLlama});
  auto table = Table();
  Load(table, "busy", 5);
  EXPECT_EQ(Once(table, kLlama), "busy");
}

TEST_F(RouterTest, EquivalentSpellingsPickTheSameNode) {
  AddNode("a", {kQwen});
  AddNode("b", {"llama3:latest"});
  auto table = Table();
  for (const char* spelling :
       {"llama3", "LLaMA3", "library/llama3:latest", "registry.ollama.ai/library/llama3:latest"}) {
    EXPECT_EQ(Once(table, spelling), "b") << spelling;
  }
  EXPECT_EQ(Once(table, "llama3:8b"), "model_not_found");
}

TEST(PickErrorNameTest, NamesEveryError) {
  EXPECT_STREQ(PickErrorName(PickError::kNone), "none");
  EXPECT_STREQ(PickErrorName(PickError::kModelNotFound), "model_not_found");
  EXPECT_STREQ(PickErrorName(PickError::kNoHealthyNode), "no_healthy_node");
  EXPECT_STREQ(PickErrorName(PickError::kAllBusy), "all_busy");
  EXPECT_STREQ(PickErrorName(PickError::kExhausted), "exhausted");
}

// ---- least_active (the default) ----

TEST_F(RouterTest, LeastActiveIsTheDefault) {
  AddNode("a");
  AddNode("b");
  auto table = Table();
  ASSERT_EQ(table->policy().strategy, v1::STRATEGY_LEAST_ACTIVE);
  Load(table, "a", 1);
  EXPECT_EQ(Once(table), "b");
}

TEST_F(RouterTest, LeastActivePicksTheFewestInFlight) {
  snapshot_.set_strategy(v1::STRATEGY_LEAST_ACTIVE);
  AddNode("a");
  AddNode("b");
  AddNode("c");
  auto table = Table();
  Load(table, "a", 2);
  Load(table, "b", 1);
  Load(table, "c", 3);
  EXPECT_EQ(Hold(table), "b");  // 1 -> 2
  EXPECT_EQ(Hold(table), "a");  // tie a=2, b=2: snapshot order
  EXPECT_EQ(Hold(table), "b");  // a=3 b=2 c=3
}

TEST_F(RouterTest, LeastActiveTiesBreakBySnapshotOrder) {
  AddNode("z");
  AddNode("a");
  AddNode("m");
  auto table = Table();
  EXPECT_EQ(Sequence(table, 3), (std::vector<std::string>{"z", "z", "z"}));
  EXPECT_EQ(Hold(table), "z");
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "m");
  EXPECT_EQ(Hold(table), "z");
}

TEST_F(RouterTest, LeastActiveCountsOtherModelsOnTheNode) {
  AddNode("a", {kLlama, kQwen});
  AddNode("b", {kLlama, kQwen});
  auto table = Table();
  Load(table, "a", 1, kQwen);
  EXPECT_EQ(Once(table, kLlama), "b");
}

TEST_F(RouterTest, LeastActiveBreaksANodeTieByTheModelsInFlight) {
  AddNode("a", {kLlama, kQwen});
  AddNode("b", {kLlama, kQwen});
  auto table = Table();
  Load(table, "a", 1, kQwen);
  Load(table, "b", 1, kLlama);
  // Both carry one request; a's is another model, so a has fewer llama3 requests.
  EXPECT_EQ(Once(table, kLlama), "a");
  EXPECT_EQ(Once(table, kQwen), "b");
}

TEST_F(RouterTest, LeastActivePrefersWarmOverIdle) {
  AddNode("cold");
  AddNode("warm", {kLlama}, {kLlama});
  auto table = Table();
  Load(table, "warm", 4);
  EXPECT_EQ(Once(table), "warm");
}

TEST_F(RouterTest, LeastActiveAmongWarmNodes) {
  AddNode("cold");
  AddNode("warm-1", {kLlama}, {kLlama});
  AddNode("warm-2", {kLlama}, {kLlama});
  auto table = Table();
  Load(table, "warm-1", 2);
  Load(table, "warm-2", 1);
  EXPECT_EQ(Hold(table), "warm-2");
  EXPECT_EQ(Hold(table), "warm-1");  // tie at 2: snapshot order
}

TEST_F(RouterTest, WarmMeansThisModelIsLoaded) {
  AddNode("other-loaded", {kLlama, kQwen}, {kQwen});
  AddNode("this-loaded", {kLlama, kQwen}, {kLlama});
  auto table = Table();
  Load(table, "this-loaded", 1, kQwen);
  EXPECT_EQ(Once(table, kLlama), "this-loaded");
  EXPECT_EQ(Once(table, kQwen), "other-loaded");
}

TEST_F(RouterTest, ColdNodeWhenTheWarmOneIsFull) {
  AddNode("cold");
  AddNode("warm", {kLlama}, {kLlama})->set_max_parallel(1);
  auto table = Table();
  EXPECT_EQ(Hold(table), "warm");
  EXPECT_EQ(Hold(table), "cold");
}

TEST_F(RouterTest, ColdNodeWhenTheWarmOneIsExcludedEjectedOrDown) {
  AddNode("cold");
  AddNode("warm", {kLlama}, {kLlama});
  auto table = Table();
  EXPECT_EQ(Once(table, kLlama, {"warm"}), "cold");
  Fail("warm", table->policy(), 3);
  EXPECT_EQ(Once(table), "cold");

  snapshot_.mutable_nodes(1)->set_health(v1::HEALTH_UNHEALTHY);
  Router fresh(clock_);
  PickResult r = fresh.Pick(Table(), Key(kLlama), {});
  ASSERT_TRUE(r.lease);
  EXPECT_EQ(r.lease.node().name, "cold");
}

// ---- lowest_latency ----

TEST_F(RouterTest, LowestLatencyPicksTheLowestSnapshotLatency) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("slow")->set_latency_ms(40);
  AddNode("fast")->set_latency_ms(3.5);
  AddNode("mid")->set_latency_ms(10);
  auto table = Table();
  EXPECT_EQ(Hold(table), "fast");
  EXPECT_EQ(Hold(table), "fast");  // in-flight only breaks ties
}

TEST_F(RouterTest, LowestLatencyBreaksTiesByInFlightThenOrder) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("a")->set_latency_ms(5);
  AddNode("b")->set_latency_ms(5);
  AddNode("c")->set_latency_ms(9);
  auto table = Table();
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "b");
  EXPECT_EQ(Hold(table), "a");
}

TEST_F(RouterTest, LowestLatencyUsesMeasuredLatencyWhenTheSnapshotHasNone) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("probed")->set_latency_ms(20);
  AddNode("measured");  // 0 in the snapshot
  auto table = Table();
  router_.RecordSuccess("measured", 8);
  EXPECT_EQ(Once(table), "measured");
  router_.RecordSuccess("measured", 100);  // EWMA 8 -> 35.6
  EXPECT_EQ(Once(table), "probed");
}

TEST_F(RouterTest, LowestLatencyPrefersTheSnapshotLatencyOverTheMeasuredOne) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("a")->set_latency_ms(30);
  AddNode("b")->set_latency_ms(20);
  auto table = Table();
  router_.RecordSuccess("a", 1);
  EXPECT_EQ(Once(table), "b");
}

TEST_F(RouterTest, LowestLatencyRanksUnmeasuredNodesLast) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("unknown-1");
  AddNode("measured")->set_latency_ms(500);
  AddNode("unknown-2");
  auto table = Table();
  EXPECT_EQ(Hold(table), "measured");
  snapshot_.mutable_nodes(1)->set_max_parallel(1);
  table = Table();
  EXPECT_EQ(Hold(table), "unknown-1");  // measured is full; unmeasured by in-flight, order
  EXPECT_EQ(Hold(table), "unknown-2");
}

TEST_F(RouterTest, LowestLatencyPrefersWarmOverFaster) {
  snapshot_.set_strategy(v1::STRATEGY_LOWEST_LATENCY);
  AddNode("fast-cold")->set_latency_ms(1);
  AddNode("slow-warm", {kLlama}, {kLlama})->set_latency_ms(50);
  AddNode("slower-warm", {kLlama}, {kLlama})->set_latency_ms(80);
  auto table = Table();
  EXPECT_EQ(Once(table), "slow-warm");
}

// ---- round_robin ----

TEST_F(RouterTest, RoundRobinRotatesOverTheCandidates) {
  snapshot_.set_strategy(v1::STRATEGY_ROUND_ROBIN);
  AddNode("a");
  AddNode("b");
  AddNode("c");
  auto table = Table();
  EXPECT_EQ(Sequence(table, 7), (std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a"}));
}

TEST_F(RouterTest, RoundRobinIgnoresLoad) {
  snapshot_.set_strategy(v1::STRATEGY_ROUND_ROBIN);
  AddNode("a");
  AddNode("b");
  auto table = Table();
  Load(table, "a", 5);
  EXPECT_EQ(Sequence(table, 4), (std::vector<std::string>{"a", "b", "a", "b"}));
}

TEST_F(RouterTest, RoundRobinSkipsIneligibleNodes) {
  snapshot_.set_strategy(v1::STRATEGY_ROUND_ROBIN);
  AddNode("a");
  AddNode("down")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("b");
  AddNode("other", {kQwen});
  auto table = Table();
  EXPECT_EQ(Sequence(table, 4), (std::vector<std::string>{"a", "b", "a", "b"}));
}

TEST_F(RouterTest, RoundRobinRotatesOverWarmNodesOnly) {
  snapshot_.set_strategy(v1::STRATEGY_ROUND_ROBIN);
  AddNode("cold-1");
  AddNode("warm-1", {kLlama}, {kLlama});
  AddNode("cold-2");
  AddNode("warm-2", {kLlama}, {kLlama});
  auto table = Table();
  EXPECT_EQ(Sequence(table, 4), (std::vector<std::string>{"warm-1", "warm-2", "warm-1", "warm-2"}));
}

TEST_F(RouterTest, RoundRobinCursorSurvivesATableSwap) {
  snapshot_.set_strategy(v1::STRATEGY_ROUND_ROBIN);
  AddNode("a");
  AddNode("b");
  EXPECT_EQ(Once(Table()), "a");
  snapshot_.set_version(2);
  EXPECT_EQ(Once(Table()), "b");
}

// ---- weighted ----

TEST_F(RouterTest, WeightedSpreadsSmoothly) {
  snapshot_.set_strategy(v1::STRATEGY_WEIGHTED);
  AddNode("a")->set_weight(5);
  AddNode("b")->set_weight(1);
  AddNode("c")->set_weight(1);
  auto table = Table();
  EXPECT_EQ(Sequence(table, 7), (std::vector<std::string>{"a", "a", "b", "a", "c", "a", "a"}));
}

TEST_F(RouterTest, WeightedSharesFollowTheWeights) {
  snapshot_.set_strategy(v1::STRATEGY_WEIGHTED);
  AddNode("a")->set_weight(3);
  AddNode("b")->set_weight(2);
  AddNode("c")->set_weight(1);
  auto table = Table();
  std::map<std::string, int> counts;
  for (const auto& name : Sequence(table, 600)) ++counts[name];
  EXPECT_EQ(counts["a"], 300);
  EXPECT_EQ(counts["b"], 200);
  EXPECT_EQ(counts["c"], 100);
}

TEST_F(RouterTest, WeightedCountsWeightZeroAsOne) {
  snapshot_.set_strategy(v1::STRATEGY_WEIGHTED);
  AddNode("zero")->set_weight(0);
  AddNode("one")->set_weight(1);
  auto table = Table();
  EXPECT_EQ(Sequence(table, 4), (std::vector<std::string>{"zero", "one", "zero", "one"}));
}

TEST_F(RouterTest, WeightedAmongWarmNodesOnly) {
  snapshot_.set_strategy(v1::STRATEGY_WEIGHTED);
  AddNode("heavy-cold")->set_weight(100);
  AddNode("warm-2", {kLlama}, {kLlama})->set_weight(2);
  AddNode("warm-1", {kLlama}, {kLlama})->set_weight(1);
  auto table = Table();
  EXPECT_EQ(Sequence(table, 3), (std::vector<std::string>{"warm-2", "warm-1", "warm-2"}));
}

TEST_F(RouterTest, WeightedSkipsAFullNode) {
  snapshot_.set_strategy(v1::STRATEGY_WEIGHTED);
  AddNode("a")->set_weight(5);
  snapshot_.mutable_nodes(0)->set_max_parallel(1);
  AddNode("b")->set_weight(1);
  auto table = Table();
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "b");
  EXPECT_EQ(Hold(table), "b");
}

// ---- priority ----

TEST_F(RouterTest, PriorityPicksTheBestTierEvenWhenBusier) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("backup")->set_priority(1);
  AddNode("primary")->set_priority(0);
  auto table = Table();
  Load(table, "primary", 10);
  EXPECT_EQ(Once(table), "primary");
}

TEST_F(RouterTest, PriorityIsLeastActiveInsideATier) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("p-1")->set_priority(2);
  AddNode("p-2")->set_priority(2);
  AddNode("backup")->set_priority(7);
  auto table = Table();
  EXPECT_EQ(Hold(table), "p-1");
  EXPECT_EQ(Hold(table), "p-2");
  EXPECT_EQ(Hold(table), "p-1");
}

TEST_F(RouterTest, PriorityFailsOverDownTheTiersOneAtATime) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("tier-0")->set_priority(0);
  AddNode("tier-1")->set_priority(1);
  AddNode("tier-2")->set_priority(2);
  auto table = Table();
  EXPECT_EQ(Once(table, kLlama, {"tier-0"}), "tier-1");
  EXPECT_EQ(Once(table, kLlama, {"tier-0", "tier-1"}), "tier-2");
}

TEST_F(RouterTest, PriorityFallsToTheNextTierWhenTheBestIsFullEjectedOrDown) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("full")->set_max_parallel(1);
  AddNode("ejected");
  AddNode("down")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("backup")->set_priority(1);
  auto table = Table();
  Load(table, "full", 1);
  Fail("ejected", table->policy(), 3);
  EXPECT_EQ(Once(table), "backup");
}

TEST_F(RouterTest, PriorityPrefersWarmInsideTheTier) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("cold")->set_priority(0);
  AddNode("warm", {kLlama}, {kLlama})->set_priority(0);
  auto table = Table();
  Load(table, "warm", 3);
  EXPECT_EQ(Once(table), "warm");
}

TEST_F(RouterTest, PriorityTierOutranksAWarmNodeInAWorseTier) {
  snapshot_.set_strategy(v1::STRATEGY_PRIORITY);
  AddNode("warm-backup", {kLlama}, {kLlama})->set_priority(1);
  AddNode("cold-primary")->set_priority(0);
  auto table = Table();
  EXPECT_EQ(Once(table), "cold-primary");
}

// ---- max_parallel under concurrency ----

// Steps aside on every reading of the time. The router reads the clock while it looks over the
// candidates, between reading a node's count and taking its slot, so this clock lets other
// threads run inside that window: a check-then-increment that is not one atomic step would let
// them all through.
class YieldingClock : public Clock {
 public:
  TimePoint Now() const override {
    std::this_thread::yield();
    return inner_.Now();
  }

 private:
  ManualClock inner_;
};

TEST_F(RouterTest, ConcurrentPicksNeverExceedMaxParallel) {
  YieldingClock clock;
  Router router(clock);
  AddNode("a")->set_max_parallel(3);
  AddNode("b")->set_max_parallel(2);
  auto table = Table();
  constexpr int kThreads = 8;
  constexpr int kRounds = 3000;
  std::atomic<int64_t> worst_a{0}, worst_b{0}, picked{0}, busy{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        PickResult r = router.Pick(table, Key(kLlama), {});
        if (!r.lease) {
          EXPECT_EQ(r.error, PickError::kAllBusy);
          ++busy;
          continue;
        }
        ++picked;
        auto& worst = r.lease.node().name == "a" ? worst_a : worst_b;
        const int64_t now = router.Runtime(r.lease.node().name)->in_flight.load();
        int64_t seen = worst.load();
        while (now > seen && !worst.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(worst_a.load(), 3);
  EXPECT_LE(worst_b.load(), 2);
  EXPECT_EQ(picked + busy, kThreads * kRounds);
  EXPECT_EQ(router.Runtime("a")->in_flight.load(), 0);
  EXPECT_EQ(router.Runtime("b")->in_flight.load(), 0);
  EXPECT_EQ(router.ModelInFlight("a", Key(kLlama)), 0);
}

TEST_F(RouterTest, ConcurrentHoldersGetExactlyTheFreeSlots) {
  YieldingClock clock;
  Router router(clock);
  for (int round = 0; round < 50; ++round) {
    snapshot_.Clear();
    AddNode("a")->set_max_parallel(3);
    AddNode("b")->set_max_parallel(1);
    snapshot_.set_strategy(round % 2 ? v1::STRATEGY_ROUND_ROBIN : v1::STRATEGY_WEIGHTED);
    auto table = Table();
    constexpr int kThreads = 12;
    std::vector<Lease> leases(kThreads);
    std::vector<PickError> errors(kThreads);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        PickResult r = router.Pick(table, Key(kLlama), {});
        leases[t] = std::move(r.lease);
        errors[t] = r.error;
      });
    }
    for (auto& t : threads) t.join();
    int granted = 0;
    for (int t = 0; t < kThreads; ++t) {
      if (leases[t]) {
        ++granted;
      } else {
        EXPECT_EQ(errors[t], PickError::kAllBusy);
      }
    }
    ASSERT_EQ(granted, 4) << "round " << round;
    ASSERT_EQ(router.Runtime("a")->in_flight.load(), 3) << "round " << round;
    ASSERT_EQ(router.Runtime("b")->in_flight.load(), 1) << "round " << round;
  }
}

TEST_F(RouterTest, AcquireCountsAgainstMaxParallel) {
  AddNode("a")->set_max_parallel(2);
  auto table = Table();
  Lease one = router_.Acquire(table, "a");
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "all_busy");
  EXPECT_FALSE(router_.Acquire(table, "a"));
  one.Release();
  EXPECT_EQ(Hold(table), "a");
}

TEST_F(RouterTest, MaxParallelZeroMeansNoLimit) {
  AddNode("a");
  auto table = Table();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Hold(table), "a");
  EXPECT_EQ(InFlight("a"), 100);
}

// ---- leases ----

TEST_F(RouterTest, LeaseCountsTheNodeAndTheModelUntilReleased) {
  AddNode("a", {kLlama, kQwen});
  auto table = Table();
  PickResult r = router_.Pick(table, Key(kQwen), {});
  ASSERT_TRUE(r.lease);
  EXPECT_EQ(r.error, PickError::kNone);
  EXPECT_EQ(r.lease.node().name, "a");
  EXPECT_EQ(r.lease.node_index(), 0u);
  EXPECT_EQ(r.lease.model_key(), Key(kQwen));
  EXPECT_EQ(InFlight("a"), 1);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kQwen)), 1);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
  r.lease.Release();
  EXPECT_FALSE(r.lease);
  EXPECT_EQ(InFlight("a"), 0);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kQwen)), 0);
  r.lease.Release();  // a second release is a no-op
  EXPECT_EQ(InFlight("a"), 0);
}

TEST_F(RouterTest, LeaseReleasesWhenDestroyed) {
  AddNode("a");
  auto table = Table();
  {
    PickResult r = router_.Pick(table, Key(kLlama), {});
    EXPECT_EQ(InFlight("a"), 1);
  }
  EXPECT_EQ(InFlight("a"), 0);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
}

TEST_F(RouterTest, MovedLeaseReleasesOnce) {
  AddNode("a");
  auto table = Table();
  {
    Lease first = router_.Pick(table, Key(kLlama), {}).lease;
    Lease second(std::move(first));
    EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    EXPECT_TRUE(second);
    EXPECT_EQ(InFlight("a"), 1);
    first.Release();
    EXPECT_EQ(InFlight("a"), 1);
    Lease third;
    third = std::move(second);
    EXPECT_EQ(InFlight("a"), 1);
    EXPECT_EQ(third.node().name, "a");
  }
  EXPECT_EQ(InFlight("a"), 0);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
}

TEST_F(RouterTest, MoveAssigningOverALeaseReleasesTheOldOne) {
  AddNode("a");
  AddNode("b");
  auto table = Table();
  Lease on_a = router_.Acquire(table, "a", Key(kLlama));
  Lease on_b = router_.Acquire(table, "b", Key(kLlama));
  on_a = std::move(on_b);
  EXPECT_EQ(InFlight("a"), 0);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
  EXPECT_EQ(InFlight("b"), 1);
  EXPECT_EQ(on_a.node().name, "b");
}

TEST_F(RouterTest, LeaseOutlivesATableSwapAndStillCounts) {
  AddNode("a")->set_max_parallel(1);
  AddNode("b");
  auto old_table = Table();
  Lease lease = router_.Acquire(old_table, "a", Key(kLlama));
  ASSERT_TRUE(lease);

  // The next snapshot drops b and keeps a's limit; the old table is gone but for the lease.
  snapshot_.set_version(2);
  snapshot_.mutable_nodes()->RemoveLast();
  auto new_table = Table();
  std::weak_ptr<const RoutingTable> watch = old_table;
  old_table.reset();
  EXPECT_FALSE(watch.expired());  // the lease keeps the node it points at alive
  EXPECT_EQ(lease.node().name, "a");
  EXPECT_EQ(lease.node().proto->max_parallel(), 1);

  EXPECT_EQ(Once(new_table), "all_busy");  // in-flight survived the swap
  lease.Release();
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(InFlight("a"), 0);
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
  EXPECT_EQ(Once(new_table), "a");
}

TEST_F(RouterTest, LeaseOnANodeRemovedFromTheFleetReleasesCleanly) {
  AddNode("gone");
  auto old_table = Table();
  Lease lease = router_.Pick(old_table, Key(kLlama), {}).lease;
  snapshot_.Clear();
  AddNode("new");
  auto new_table = Table();
  old_table.reset();
  router_.ForgetNodesNotIn(*new_table);  // keeps "gone": it still has a request in flight
  EXPECT_EQ(InFlight("gone"), 1);
  lease.Release();
  EXPECT_EQ(InFlight("gone"), 0);
}

// ---- Acquire ----

TEST_F(RouterTest, AcquireTakesASlotOnANamedNode) {
  AddNode("a");
  AddNode("b", {kQwen});
  auto table = Table();
  Lease lease = router_.Acquire(table, "b", Key(kLlama));  // regardless of the model list
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease.node().name, "b");
  EXPECT_EQ(lease.node_index(), 1u);
  EXPECT_EQ(InFlight("b"), 1);
  EXPECT_EQ(router_.ModelInFlight("b", Key(kLlama)), 1);
}

TEST_F(RouterTest, AcquireWithoutAModelCountsOnlyTheNode) {
  AddNode("a");
  auto table = Table();
  Lease lease = router_.Acquire(table, "a");
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease.model_key(), "");
  EXPECT_EQ(InFlight("a"), 1);
  EXPECT_EQ(router_.ModelInFlight("a", ""), 0);
}

TEST_F(RouterTest, AcquireRefusesUnknownNonRoutableAndEjectedNodes) {
  AddNode("draining")->set_admin_state(v1::ADMIN_STATE_DRAINING);
  AddNode("disabled")->set_admin_state(v1::ADMIN_STATE_DISABLED);
  AddNode("down")->set_health(v1::HEALTH_UNHEALTHY);
  AddNode("ejected");
  AddNode("fine");
  auto table = Table();
  Fail("ejected", table->policy(), 3);
  for (const char* name : {"nope", "draining", "disabled", "down", "ejected"}) {
    EXPECT_FALSE(router_.Acquire(table, name)) << name;
  }
  EXPECT_FALSE(router_.Acquire(nullptr, "fine"));
  EXPECT_TRUE(router_.Acquire(table, "fine"));
  EXPECT_EQ(InFlight("ejected"), 0);
}

// ---- passive ejection and back-off ----

TEST_F(RouterTest, EjectsAfterTheConfiguredConsecutiveFailures) {
  snapshot_.mutable_retry()->set_eject_after_failures(2);
  AddNode("a");
  AddNode("b");
  auto table = Table();
  router_.RecordFailure("a", table->policy());
  EXPECT_FALSE(router_.IsEjected("a"));
  EXPECT_EQ(Once(table), "a");
  router_.RecordFailure("a", table->policy());
  EXPECT_TRUE(router_.IsEjected("a"));
  EXPECT_EQ(Once(table), "b");
}

TEST_F(RouterTest, DefaultPolicyEjectsAfterThreeFailuresForFiveSeconds) {
  AddNode("a");
  auto table = Table();
  Fail("a", table->policy(), 2);
  EXPECT_FALSE(router_.IsEjected("a"));
  Fail("a", table->policy(), 1);
  EXPECT_TRUE(router_.IsEjected("a"));
  clock_.Advance(milliseconds(4999));
  EXPECT_TRUE(router_.IsEjected("a"));
  clock_.Advance(milliseconds(1));
  EXPECT_FALSE(router_.IsEjected("a"));
  EXPECT_EQ(Once(table), "a");
}

// What corral_node_ejections_total reports: every ejection, never reset by a success.
TEST_F(RouterTest, EveryEjectionIsCounted) {
  snapshot_.mutable_retry()->set_eject_after_failures(1);
  AddNode("a");
  auto table = Table();
  EXPECT_EQ(router_.Runtime("a")->ejections_total.load(), 0);
  Fail("a", table->policy(), 1);
  EXPECT_EQ(router_.Runtime("a")->ejections_total.load(), 1);
  Fail("a", table->policy(), 1);  // while ejected: no second ejection
  EXPECT_EQ(router_.Runtime("a")->ejections_total.load(), 1);
  clock_.Advance(milliseconds(60000));
  router_.RecordSuccess("a", 10);
  Fail("a", table->policy(), 1);
  EXPECT_EQ(router_.Runtime("a")->ejections_total.load(), 2);
}

TEST_F(RouterTest, ASuccessBreaksTheFailureRun) {
  AddNode("a");
  auto table = Table();
  Fail("a", table->policy(), 2);
  router_.RecordSuccess("a", 10);
  Fail("a", table->policy(), 2);
  EXPECT_FALSE(router_.IsEjected("a"));
  Fail("a", table->policy(), 1);
  EXPECT_TRUE(router_.IsEjected("a"));
}

TEST_F(RouterTest, RepeatedEjectionsDoubleUpToTheCap) {
  snapshot_.mutable_retry()->set_eject_after_failures(1);
  snapshot_.mutable_retry()->set_eject_base_ms(1000);
  snapshot_.mutable_retry()->set_eject_max_ms(5000);
  AddNode("a");
  auto table = Table();
  for (int64_t expected : {1000, 2000, 4000, 5000, 5000}) {
    router_.RecordFailure("a", table->policy());
    ASSERT_TRUE(router_.IsEjected("a"));
    clock_.Advance(milliseconds(expected - 1));
    EXPECT_TRUE(router_.IsEjected("a")) << expected;
    clock_.Advance(milliseconds(1));
    EXPECT_FALSE(router_.IsEjected("a")) << expected;
  }
}

TEST_F(RouterTest, ASuccessResetsTheBackOff) {
  snapshot_.mutable_retry()->set_eject_after_failures(1);
  snapshot_.mutable_retry()->set_eject_base_ms(1000);
  AddNode("a");
  auto table = Table();
  router_.RecordFailure("a", table->policy());
  clock_.Advance(milliseconds(1000));
  router_.RecordFailure("a", table->policy());  // second ejection: 2000
  clock_.Advance(milliseconds(2000));
  router_.RecordSuccess("a", 5);
  router_.RecordFailure("a", table->policy());  // back to 1000
  clock_.Advance(milliseconds(1000));
  EXPECT_FALSE(router_.IsEjected("a"));
}

TEST_F(RouterTest, FailuresDuringAnEjectionDoNotExtendIt) {
  AddNode("a");
  auto table = Table();
  Fail("a", table->policy(), 3);
  clock_.Advance(milliseconds(1000));
  Fail("a", table->policy(), 10);  // requests sent before the ejection, failing late
  clock_.Advance(milliseconds(4000));
  EXPECT_FALSE(router_.IsEjected("a"));
  Fail("a", table->policy(), 2);  // a fresh run must reach the threshold again
  EXPECT_FALSE(router_.IsEjected("a"));
}

TEST_F(RouterTest, BaseLongerThanTheCapIsCapped) {
  snapshot_.mutable_retry()->set_eject_after_failures(1);
  snapshot_.mutable_retry()->set_eject_base_ms(9000);
  snapshot_.mutable_retry()->set_eject_max_ms(3000);
  AddNode("a");
  auto table = Table();
  router_.RecordFailure("a", table->policy());
  clock_.Advance(milliseconds(3000));
  EXPECT_FALSE(router_.IsEjected("a"));
}

TEST_F(RouterTest, ManyEjectionsNeverOverflowTheBackOff) {
  snapshot_.mutable_retry()->set_eject_after_failures(1);
  AddNode("a");
  auto table = Table();
  for (int i = 0; i < 200; ++i) {
    router_.RecordFailure("a", table->policy());
    clock_.Advance(milliseconds(60000));
    ASSERT_FALSE(router_.IsEjected("a")) << i;
  }
}

TEST_F(RouterTest, EjectionSurvivesATableSwap) {
  AddNode("a");
  AddNode("b");
  auto table = Table();
  Fail("a", table->policy(), 3);
  snapshot_.set_version(2);
  EXPECT_EQ(Once(Table()), "b");
}

TEST_F(RouterTest, UnknownNodeIsNotEjected) { EXPECT_FALSE(router_.IsEjected("never-seen")); }

// ---- counters, latency and the load report ----

TEST_F(RouterTest, SuccessAndFailureCount) {
  router_.RecordSuccess("a", 10);
  router_.RecordSuccess("a", 10);
  router_.RecordFailure("a", EffectivePolicy{});
  auto runtime = router_.Runtime("a");
  EXPECT_EQ(runtime->requests_total.load(), 3);
  EXPECT_EQ(runtime->failures_total.load(), 1);
}

TEST_F(RouterTest, LatencyIsAnExponentialAverage) {
  router_.RecordSuccess("a", 100);
  EXPECT_DOUBLE_EQ(router_.Runtime("a")->latency_ms.load(), 100);
  router_.RecordSuccess("a", 200);
  EXPECT_DOUBLE_EQ(router_.Runtime("a")->latency_ms.load(), 130);
  router_.RecordSuccess("a", std::nan(""));  // ignored
  router_.RecordSuccess("a", -5);            // ignored
  EXPECT_DOUBLE_EQ(router_.Runtime("a")->latency_ms.load(), 130);
}

TEST_F(RouterTest, RuntimeIsCreatedOnceAndShared) {
  auto first = router_.Runtime("a");
  EXPECT_EQ(first, router_.Runtime("a"));
  EXPECT_NE(first, router_.Runtime("b"));
}

TEST_F(RouterTest, LoadReportListsNodesByNameAndDrainsPassiveFailures) {
  AddNode("b");
  AddNode("a");
  auto table = Table();
  Load(table, "b", 2);
  Fail("a", table->policy(), 3);
  router_.RecordSuccess("b", 12);

  auto report = router_.TakeLoadReport();
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].node, "a");
  EXPECT_EQ(report[0].passive_failures, 3);
  EXPECT_TRUE(report[0].ejected);
  EXPECT_EQ(report[1].node, "b");
  EXPECT_EQ(report[1].in_flight, 2);
  EXPECT_FALSE(report[1].ejected);
  EXPECT_DOUBLE_EQ(report[1].latency_ms, 12);

  report = router_.TakeLoadReport();
  EXPECT_EQ(report[0].passive_failures, 0);
}

TEST_F(RouterTest, ForgetsIdleNodesThatLeftTheFleet) {
  AddNode("a");
  auto table = Table();
  Fail("a", table->policy(), 3);
  snapshot_.Clear();
  AddNode("b");
  router_.ForgetNodesNotIn(*Table());
  EXPECT_THAT(router_.TakeLoadReport(), IsEmpty());
  EXPECT_FALSE(router_.IsEjected("a"));
}

// ---- per-model slots (num_parallel) ----

TEST_F(RouterTest, NumParallelZeroMeansOneSlotPerModel) {
  AddNode("a", {kLlama, kQwen})->set_num_parallel(0);
  auto table = Table();
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "all_busy");  // Ollama's default: one request per model at a time
  EXPECT_EQ(Hold(table, kQwen), "a");  // another model has its own slot
}

TEST_F(RouterTest, AFullWarmNodeIsBusyForThatModel) {
  AddNode("warm", {kLlama}, {kLlama})->set_num_parallel(2);
  AddNode("cold")->set_num_parallel(2);
  auto table = Table();
  EXPECT_EQ(Hold(table), "warm");
  EXPECT_EQ(Hold(table), "warm");
  // Its two slots for llama3 are taken: without waiting, the cold node is the only choice.
  EXPECT_EQ(Hold(table), "cold");
  EXPECT_EQ(Hold(table), "cold");
  EXPECT_EQ(Hold(table), "all_busy");
}

TEST_F(RouterTest, MaxParallelStaysTheNodeWideLimit) {
  Node* a = AddNode("a", {kLlama, kQwen});
  a->set_num_parallel(4);
  a->set_max_parallel(5);
  auto table = Table();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "all_busy");  // the model's four slots
  EXPECT_EQ(Hold(table, kQwen), "a");
  EXPECT_EQ(Hold(table, kQwen), "all_busy");  // the node's five
}

TEST_F(RouterTest, ReleasingAModelSlotFreesItForTheNextPick) {
  AddNode("a")->set_num_parallel(1);
  auto table = Table();
  PickResult first = router_.Pick(table, Key(kLlama), {});
  ASSERT_TRUE(first.lease);
  EXPECT_EQ(Once(table), "all_busy");
  first.lease.Release();
  EXPECT_EQ(Once(table), "a");
  EXPECT_EQ(router_.ModelInFlight("a", Key(kLlama)), 0);
  EXPECT_EQ(InFlight("a"), 0);
}

TEST_F(RouterTest, AcquireForInferenceNeedsAModelSlotManagementDoesNot) {
  AddNode("a")->set_num_parallel(1);
  auto table = Table();
  Lease first = router_.Acquire(table, "a", Key(kLlama), /*model_limited=*/true);
  ASSERT_TRUE(first);
  EXPECT_FALSE(router_.Acquire(table, "a", Key(kLlama), /*model_limited=*/true));
  EXPECT_EQ(InFlight("a"), 1);  // the refused acquire gave its node slot back
  // /api/show of the model runs no generation: only max_parallel limits it.
  EXPECT_TRUE(router_.Acquire(table, "a", Key(kLlama)));
}

TEST_F(RouterTest, SlotGrantsBoundEveryLimit) {
  Node* a = AddNode("a", {kLlama, kQwen});
  a->set_num_parallel(4);
  a->set_max_parallel(8);
  auto table = Table();
  SlotGrants grants(clock_);
  v1::ReportResponse response;
  response.set_lease_ms(60000);
  response.set_proxies(2);
  v1::SlotGrant* grant = response.add_grants();
  grant->set_node("a");
  grant->set_max_parallel(3);
  grant->set_default_model_slots(2);
  grants.Apply(response);
  router_.UseSlotGrants(&grants);
  EXPECT_EQ(router_.NodeLimit(table->nodes()[0]), 3);
  EXPECT_EQ(router_.ModelLimit(table->nodes()[0], Key(kLlama)), 2);
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "a");
  EXPECT_EQ(Hold(table), "all_busy");  // this proxy's 2 of the model's 4
  EXPECT_EQ(Hold(table, kQwen), "a");
  EXPECT_EQ(Hold(table, kQwen), "all_busy");  // this proxy's 3 of the node's 8
  router_.UseSlotGrants(nullptr);
  EXPECT_EQ(Hold(table, kQwen), "a");  // limits whole again
}

// ---- residency between probes, the cost rule ----

TEST_F(RouterTest, AFirstByteMakesTheModelWarmUntilTheNextSnapshot) {
  snapshot_.set_version(7);
  AddNode("a");
  AddNode("b");
  auto table = Table();
  Load(table, "a", 1, kQwen);  // a is busier, so least_active would choose b
  {
    Lease lease = router_.Acquire(table, "a", Key(kLlama), true);
    router_.RecordFirstByte(lease, 4000);
  }
  EXPECT_EQ(Once(table), "a");  // warm now
  EXPECT_DOUBLE_EQ(router_.ObservedLoadMs(Key(kLlama)), 4000);
  auto report = router_.TakeLoadReport();
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].cold_loads, std::vector<std::string>{Key(kLlama)});
  EXPECT_THAT(router_.TakeLoadReport()[0].cold_loads, IsEmpty());  // reported once
  snapshot_.set_version(8);
  EXPECT_EQ(Once(Table()), "b");  // the new snapshot says what is loaded
}

TEST_F(RouterTest, AFirstByteOnAListedWarmNodeIsNoColdLoad) {
  AddNode("a", {kLlama}, {kLlama});
  auto table = Table();
  Lease lease = router_.Acquire(table, "a", Key(kLlama), true);
  router_.RecordFirstByte(lease, 50);
  EXPECT_THAT(router_.TakeLoadReport()[0].cold_loads, IsEmpty());
  EXPECT_EQ(router_.ObservedLoadMs(Key(kLlama)), 0);
}

TEST_F(RouterTest, CostRuleWaitsForAWarmNodeThatFreesSoonerThanALoad) {
  AddNode("warm", {kLlama}, {kLlama})->set_num_parallel(1);
  AddNode("cold")->set_num_parallel(1);
  auto table = Table();
  // One request of 2 s measured on the warm node.
  {
    Lease lease = router_.Acquire(table, "warm", Key(kLlama), true);
    clock_.Advance(std::chrono::seconds(2));
  }
  Load(table, "warm", 1);
  // A cold load of llama3 was seen to take 20 s: waiting ~2 s for the warm node is better.
  {
    Lease lease = router_.Acquire(table, "cold", Key(kLlama), true);
    router_.RecordFirstByte(lease, 20000);
  }
  snapshot_.set_version(2);  // forget that residency: "cold" is cold again
  table = Table();
  PickResult wait = router_.Pick(table, Key(kLlama), {}, {.may_wait = true});
  EXPECT_FALSE(wait.lease);
  EXPECT_EQ(wait.error, PickError::kAllBusy);
  EXPECT_TRUE(wait.cold_free);
  // A request that cannot wait takes the cold node.
  EXPECT_EQ(Once(table), "cold");
}

TEST_F(RouterTest, CostRuleLoadsColdWhenTheWarmQueueIsLonger) {
  AddNode("warm", {kLlama}, {kLlama})->set_num_parallel(1);
  AddNode("cold")->set_num_parallel(1);
  auto table = Table();
  {
    Lease lease = router_.Acquire(table, "warm", Key(kLlama), true);
    clock_.Advance(std::chrono::seconds(30));  // requests of 30 s
  }
  {
    Lease lease = router_.Acquire(table, "cold", Key(kLlama), true);
    router_.RecordFirstByte(lease, 5000);  // loads of 5 s
  }
  snapshot_.set_version(2);
  table = Table();
  Load(table, "warm", 1);
  PickResult pick = router_.Pick(table, Key(kLlama), {}, {.may_wait = true});
  ASSERT_TRUE(pick.lease);
  EXPECT_EQ(pick.lease.node().name, "cold");
}

TEST_F(RouterTest, AWarmNodeWithAFreeSlotAlwaysBeatsCold) {
  AddNode("cold")->set_num_parallel(1);
  AddNode("warm", {kLlama}, {kLlama})->set_num_parallel(2);
  auto table = Table();
  Load(table, "warm", 1);
  EXPECT_EQ(Hold(table), "warm");
}

// ---- placement ----

TEST_F(RouterTest, HardPlacementLimitsTheCandidates) {
  AddNode("a");
  AddNode("b");
  (*AddNode("c")->mutable_labels())["gpu"] = "a100";
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("llama3*");
  rule->set_hard(true);
  rule->add_nodes("b");
  (*rule->mutable_labels())["gpu"] = "a100";
  auto table = Table();
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) seen.insert(Hold(table));
  EXPECT_EQ(seen, (std::set<std::string>{"b", "c"}));
}

TEST_F(RouterTest, SoftPlacementPrefersButDoesNotLimit) {
  AddNode("a")->set_num_parallel(1);
  AddNode("b")->set_num_parallel(1);
  v1::PlacementRule* rule = snapshot_.add_placement();
  rule->set_pattern("llama3:*");
  rule->add_nodes("b");
  auto table = Table();
  EXPECT_EQ(Hold(table), "b");
  EXPECT_EQ(Hold(table), "a");
}

TEST_F(RouterTest, AModelNoNodeMayRunIsNotPlaceable) {
  AddNode("small")->set_max_memory_gb(4);
  snapshot_.mutable_nodes(0)->mutable_models(0)->set_size(int64_t{8} << 30);
  auto table = Table();
  EXPECT_EQ(Once(table), "not_placeable");
  EXPECT_THAT(table->Placement(Key(kLlama))->refusal, ::testing::HasSubstr("8.0 GB"));
}

}  // namespace
}  // namespace corral::dataplane
