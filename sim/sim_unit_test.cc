// Unit tests of corral-sim's pure pieces: the model list, Go-compatible text formats, the
// token gate and the scheduler's rules (slots, queue, load time, memory and eviction, stats).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sim/model_catalog.h"
#include "sim/scheduler.h"
#include "sim/sim_server.h"
#include "sim/token_gate.h"
#include "sim/wire.h"

namespace corral::sim {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(ModelListTest, ParsesNamesAndSizesIntoDisplayForm) {
  auto models = ParseModelList(" llama3.2:latest=2019393189 , all-minilm,library/qwen3:8b");
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 3u);
  EXPECT_EQ((*models)[0].name, "llama3.2:latest");
  EXPECT_EQ((*models)[0].size, 2019393189);
  EXPECT_EQ((*models)[1].name, "all-minilm:latest");
  EXPECT_FALSE((*models)[1].families.has_value());  // sent as "families": null
  EXPECT_TRUE((*models)[1].Has("embedding"));
  EXPECT_EQ((*models)[2].name, "qwen3:8b");
  EXPECT_TRUE((*models)[2].Has("thinking"));
  EXPECT_EQ((*models)[0].digest.size(), 64u);
  EXPECT_FALSE(ParseModelList("bad name!").ok());
  EXPECT_FALSE(ParseModelList("llama3.2=abc").ok());
  EXPECT_TRUE(ParseModelList("")->empty());
}

TEST(ModelListTest, SameNameSameDigestOnEveryNode) {
  EXPECT_EQ(MakeModel("llama3.2")->digest, MakeModel("LLaMA3.2:latest")->digest);
  EXPECT_NE(MakeModel("llama3.2")->digest, MakeModel("llama3.2:1b")->digest);
}

TEST(WireTest, GoJsonEscapesHtmlCharactersAndLineSeparators) {
  EXPECT_EQ(GoJson(Json{{"a", "<b>&\xe2\x80\xa8"}}), R"({"a":"\u003cb\u003e\u0026\u2028"})");
}

TEST(WireTest, TimeFormatsTrimZerosAndCarryOffsets) {
  EXPECT_EQ(FormatUtc(int64_t{1755802102500000000}), "2025-08-21T18:48:22.5Z");
  EXPECT_EQ(FormatUtc(int64_t{1755802102000000000}), "2025-08-21T18:48:22Z");
  EXPECT_EQ(FormatLocal(1755802102, 837530000), "2025-08-21T11:48:22.83753-07:00");
}

TEST(WireTest, KeepAliveFollowsGoDurationRules) {
  KeepAlive ka;
  std::string error;
  ASSERT_TRUE(ParseKeepAlive(Json("1h30m"), &ka, &error));
  EXPECT_EQ(ka.duration, std::chrono::minutes(90));
  ASSERT_TRUE(ParseKeepAlive(Json(1.5), &ka, &error));
  EXPECT_EQ(ka.duration, milliseconds(1500));
  ASSERT_TRUE(ParseKeepAlive(Json("0"), &ka, &error));
  EXPECT_EQ(ka.duration, nanoseconds(0));
  ASSERT_TRUE(ParseKeepAlive(Json(-1), &ka, &error));
  EXPECT_TRUE(ka.forever);
  ASSERT_TRUE(ParseKeepAlive(Json("-1m"), &ka, &error));
  EXPECT_TRUE(ka.forever);
  EXPECT_FALSE(ParseKeepAlive(Json("-1"), &ka, &error));
  EXPECT_EQ(error, "time: missing unit in duration \"-1\"");
  EXPECT_FALSE(ParseKeepAlive(Json("5x"), &ka, &error));
  EXPECT_EQ(error, "time: unknown unit \"x\" in duration \"5x\"");
}

TEST(WireTest, RequestBodiesParseLikeOllama) {
  std::string error;
  EXPECT_FALSE(ParseRequestBody("  ", &error));
  EXPECT_EQ(error, "missing request body");
  EXPECT_FALSE(ParseRequestBody("{x", &error));
  EXPECT_FALSE(ParseRequestBody("[1]", &error));
  auto body = ParseRequestBody(R"({"Model":"a","name":"b"})", &error);
  ASSERT_TRUE(body);
  EXPECT_EQ(FirstNonEmptyString(*body, {"model", "name"}), "a");  // keys match any case
}

TEST(ConfigTest, RejectsUnknownKeysAndBadModes) {
  SimConfig config;
  std::string error;
  EXPECT_TRUE(ApplyConfigJson(Json{{"fail", "hang"}, {"tokens", 3}}, &config, &error));
  EXPECT_EQ(config.fail, FailMode::kHang);
  EXPECT_EQ(config.tokens, 3);
  EXPECT_FALSE(ApplyConfigJson(Json{{"fail", "explode"}}, &config, &error));
  EXPECT_FALSE(ApplyConfigJson(Json{{"tokenz", 3}}, &config, &error));
  EXPECT_EQ(config.tokens, 3);  // a rejected patch changes nothing
  EXPECT_TRUE(ApplyConfigJson(Json{{"load_ms_per_gb", 250.5}}, &config, &error));
  EXPECT_EQ(config.load_ms_per_gb, 250.5);
  EXPECT_FALSE(ApplyConfigJson(Json{{"load_ms_per_gb", -1}}, &config, &error));
  EXPECT_EQ(error, "load_ms_per_gb must be a non-negative number");
}

TEST(ConfigTest, FastRemovesEveryLoadDelayAndZeroQueueMeansNoLimit) {
  SimConfig config;
  config.load_delay_ms = 100;
  config.load_ms_per_gb = 1000;
  config.max_queue = 0;
  config.vram_gb = 1.5;
  SchedulerLimits limits = LimitsOf(config);
  EXPECT_EQ(limits.load_delay, milliseconds(100));
  EXPECT_EQ(limits.load_ms_per_gib, 1000);
  EXPECT_EQ(limits.max_queue, 0);
  EXPECT_EQ(limits.vram_bytes, int64_t{3} << 29);
  config.fast = true;
  limits = LimitsOf(config);
  EXPECT_EQ(limits.load_delay, milliseconds(0));
  EXPECT_EQ(limits.load_ms_per_gib, 0);
}

TEST(TokenGateTest, ReleasesInArrivalOrder) {
  TokenGate gate;
  gate.SetGated(true);
  std::atomic<int> order{0};
  int first = -1, second = -1;
  auto never = [] { return false; };
  std::thread a([&] {
    ASSERT_TRUE(gate.Pass(never));
    first = order++;
  });
  while (gate.status().waiting != 1) std::this_thread::yield();
  std::thread b([&] {
    ASSERT_TRUE(gate.Pass(never));
    second = order++;
  });
  while (gate.status().waiting != 2) std::this_thread::yield();
  gate.Release(1);
  a.join();
  EXPECT_EQ(first, 0);
  EXPECT_EQ(gate.status().waiting, 1);
  gate.Release(1);
  b.join();
  EXPECT_EQ(second, 1);
}

TEST(TokenGateTest, CancelledWaiterLeavesTheQueue) {
  TokenGate gate;
  gate.SetGated(true);
  EXPECT_FALSE(gate.Pass([] { return true; }));
  EXPECT_EQ(gate.status().waiting, 0);
}

TEST(SchedulerTest, SlotsQueueAndKeepAlive) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.num_parallel = 1;
  limits.max_queue = 1;
  scheduler.SetLimits(limits);
  const SimModel model = *MakeModel("llama3.2");
  const KeepAlive five_minutes{false, std::chrono::minutes(5)};
  auto never = [] { return false; };

  Scheduler::Lease first;
  ASSERT_EQ(scheduler.Acquire(model, 4096, five_minutes, never, &first), Scheduler::Result::kReady);
  EXPECT_EQ(scheduler.Active(), 1);

  std::atomic<bool> second_ready{false};
  Scheduler::Lease second;
  std::thread waiter([&] {
    EXPECT_EQ(scheduler.Acquire(model, 4096, five_minutes, never, &second),
              Scheduler::Result::kReady);
    second_ready = true;
  });
  while (scheduler.Pending() != 1) std::this_thread::yield();
  Scheduler::Lease third;
  EXPECT_EQ(scheduler.Acquire(model, 4096, five_minutes, never, &third), Scheduler::Result::kBusy);
  EXPECT_FALSE(second_ready);
  scheduler.Release(first, five_minutes);
  waiter.join();
  EXPECT_TRUE(second_ready);
  EXPECT_EQ(scheduler.PsJson()["models"].size(), 1u);
  scheduler.Release(second, KeepAlive{false, nanoseconds(0)});
  EXPECT_EQ(scheduler.PsJson()["models"].size(), 0u);  // keep_alive 0 unloads
}

TEST(SchedulerTest, CancelledWaiterGivesUpItsPlace) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.load_delay = std::chrono::hours(1);
  scheduler.SetLimits(limits);
  Scheduler::Lease lease;
  EXPECT_EQ(scheduler.Acquire(
                *MakeModel("llama3.2"), 4096, KeepAlive{}, [] { return true; }, &lease),
            Scheduler::Result::kCancelled);
  EXPECT_EQ(scheduler.Pending(), 0);
  EXPECT_EQ(scheduler.Active(), 0);
  EXPECT_EQ(scheduler.PsJson()["models"].size(), 0u);
}

constexpr int64_t kGib = int64_t{1} << 30;
const KeepAlive kFiveMinutes{false, std::chrono::minutes(5)};
bool Never() { return false; }

SimModel ModelOfSize(const std::string& name, int64_t size) { return *MakeModel(name, size); }

// The names /api/ps lists, in its order.
std::vector<std::string> PsNames(Scheduler& scheduler) {
  std::vector<std::string> names;
  const Json ps = scheduler.PsJson();
  for (const Json& m : ps["models"]) names.push_back(m["name"]);
  std::sort(names.begin(), names.end());
  return names;
}

// Loads `model` (or uses it warm) and releases at once.
void Use(Scheduler& scheduler, const SimModel& model) {
  Scheduler::Lease lease;
  ASSERT_EQ(scheduler.Acquire(model, 4096, kFiveMinutes, Never, &lease), Scheduler::Result::kReady);
  scheduler.Release(lease, kFiveMinutes);
}

bool WaitUntil(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(SchedulerTest, LoadTimeIsTheFixedDelayPlusTimePerGibOfTheModel) {
  SchedulerLimits limits;
  limits.load_delay = milliseconds(100);
  limits.load_ms_per_gib = 1000;
  EXPECT_EQ(LoadTime(limits, 0), milliseconds(100));
  EXPECT_EQ(LoadTime(limits, 2 * kGib), milliseconds(2100));
  EXPECT_EQ(LoadTime(limits, kGib + kGib / 2), milliseconds(1600));
  limits.load_ms_per_gib = 0;  // the default: every model loads in the fixed delay
  EXPECT_EQ(LoadTime(limits, 8 * kGib), milliseconds(100));
}

TEST(SchedulerTest, ColdLoadTakesItsLoadTimeAndIsCounted) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.load_ms_per_gib = 40;
  scheduler.SetLimits(limits);
  const SimModel big = ModelOfSize("big", 2 * kGib);
  Scheduler::Lease lease;
  ASSERT_EQ(scheduler.Acquire(big, 4096, kFiveMinutes, Never, &lease), Scheduler::Result::kReady);
  EXPECT_GE(lease.load_duration, milliseconds(80));  // 2 GiB at 40 ms per GiB
  scheduler.Release(lease, kFiveMinutes);
  Scheduler::Lease warm;
  ASSERT_EQ(scheduler.Acquire(big, 4096, kFiveMinutes, Never, &warm), Scheduler::Result::kReady);
  EXPECT_EQ(warm.load_duration, nanoseconds(0));
  scheduler.Release(warm, kFiveMinutes);

  const SchedulerStats stats = scheduler.Stats();
  EXPECT_EQ(stats.loads, 1);
  EXPECT_GE(stats.load_seconds, 0.08);
  EXPECT_EQ(stats.requests, 2);
  EXPECT_EQ(stats.models.at("big:latest").loads, 1);
  EXPECT_EQ(stats.models.at("big:latest").requests, 2);
  const Json ps = scheduler.PsJson()["models"][0];
  EXPECT_EQ(ps["size"], 2 * kGib);  // a model's memory is its size
  EXPECT_EQ(ps["size_vram"], 2 * kGib);
}

TEST(SchedulerTest, LoadThatDoesNotFitEvictsTheLeastRecentlyUsedIdleModel) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.vram_bytes = 3 * kGib;
  scheduler.SetLimits(limits);
  const SimModel a = ModelOfSize("a", kGib), b = ModelOfSize("b", kGib), c = ModelOfSize("c", kGib),
                 d = ModelOfSize("d", kGib);
  Use(scheduler, a);
  Use(scheduler, b);
  Use(scheduler, c);
  Use(scheduler, a);  // a is now the most recently used; b the least
  EXPECT_EQ(PsNames(scheduler), (std::vector<std::string>{"a:latest", "b:latest", "c:latest"}));
  Use(scheduler, d);
  EXPECT_EQ(PsNames(scheduler), (std::vector<std::string>{"a:latest", "c:latest", "d:latest"}));
  Use(scheduler, b);  // c is the least recently used now
  EXPECT_EQ(PsNames(scheduler), (std::vector<std::string>{"a:latest", "b:latest", "d:latest"}));
  const SchedulerStats stats = scheduler.Stats();
  EXPECT_EQ(stats.evictions, 2);
  EXPECT_EQ(stats.loads, 5);
  EXPECT_EQ(stats.models.at("b:latest").loads, 2);
}

TEST(SchedulerTest, LoadThatDoesNotFitWaitsForRunningRequestsInsteadOfFailing) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.vram_bytes = 2 * kGib;
  scheduler.SetLimits(limits);
  const SimModel a = ModelOfSize("a", 3 * kGib / 2), b = ModelOfSize("b", 3 * kGib / 2);
  Scheduler::Lease running;
  ASSERT_EQ(scheduler.Acquire(a, 4096, kFiveMinutes, Never, &running), Scheduler::Result::kReady);

  std::atomic<bool> b_ready{false};
  Scheduler::Lease waiting;
  std::thread waiter([&] {
    EXPECT_EQ(scheduler.Acquire(b, 4096, kFiveMinutes, Never, &waiting), Scheduler::Result::kReady);
    b_ready = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Pending() == 1; }));
  // a is busy, so nothing is evicted and b is not loaded: it waits.
  EXPECT_EQ(PsNames(scheduler), std::vector<std::string>{"a:latest"});
  EXPECT_EQ(scheduler.Stats().loads, 1);
  EXPECT_EQ(scheduler.Stats().evictions, 0);

  scheduler.Release(running, kFiveMinutes);
  waiter.join();
  EXPECT_TRUE(b_ready);
  EXPECT_EQ(PsNames(scheduler), std::vector<std::string>{"b:latest"});
  EXPECT_EQ(scheduler.Stats().evictions, 1);
  scheduler.Release(waiting, kFiveMinutes);
}

TEST(SchedulerTest, LaterRequestsWaitBehindALoadWaitingForMemory) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.vram_bytes = 2 * kGib;
  limits.num_parallel = 2;
  scheduler.SetLimits(limits);
  const SimModel a = ModelOfSize("a", 3 * kGib / 2), b = ModelOfSize("b", 3 * kGib / 2);
  Scheduler::Lease first_a;
  ASSERT_EQ(scheduler.Acquire(a, 4096, kFiveMinutes, Never, &first_a), Scheduler::Result::kReady);

  std::mutex mu;
  std::vector<std::string> order;  // guarded by mu
  Scheduler::Lease lease_b, second_a;
  std::thread for_b([&] {
    ASSERT_EQ(scheduler.Acquire(b, 4096, kFiveMinutes, Never, &lease_b), Scheduler::Result::kReady);
    std::lock_guard<std::mutex> lock(mu);
    order.push_back("b");
  });
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Pending() == 1; }));
  std::thread for_a([&] {
    ASSERT_EQ(scheduler.Acquire(a, 4096, kFiveMinutes, Never, &second_a),
              Scheduler::Result::kReady);
    std::lock_guard<std::mutex> lock(mu);
    order.push_back("a");
  });
  // a has a free slot, but the request came after b's: it waits behind b.
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Pending() == 2; }));
  EXPECT_EQ(scheduler.Active(), 1);

  scheduler.Release(first_a, kFiveMinutes);  // a idle: b evicts it and loads
  for_b.join();
  scheduler.Release(lease_b, kFiveMinutes);  // b idle: the second a request loads a again
  for_a.join();
  scheduler.Release(second_a, kFiveMinutes);
  EXPECT_EQ(order, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(scheduler.Stats().loads, 3);
  EXPECT_EQ(scheduler.Stats().evictions, 2);
}

TEST(SchedulerTest, ZeroMaxQueueLetsAnyNumberWaitLikeOllamasSemaphore) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.num_parallel = 1;
  limits.max_queue = 0;
  scheduler.SetLimits(limits);
  const SimModel model = ModelOfSize("m", kGib);
  Scheduler::Lease first;
  ASSERT_EQ(scheduler.Acquire(model, 4096, kFiveMinutes, Never, &first), Scheduler::Result::kReady);
  constexpr int kWaiters = 20;
  std::atomic<int> ready{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&] {
      Scheduler::Lease lease;
      ASSERT_EQ(scheduler.Acquire(model, 4096, kFiveMinutes, Never, &lease),
                Scheduler::Result::kReady);
      ++ready;
      scheduler.Release(lease, kFiveMinutes);
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Pending() == kWaiters; }));
  EXPECT_EQ(ready, 0);
  scheduler.Release(first, kFiveMinutes);
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(ready, kWaiters);
  const SchedulerStats stats = scheduler.Stats();
  EXPECT_EQ(stats.requests, kWaiters + 1);
  EXPECT_EQ(stats.max_running, 1);  // one slot per model, never more
}

TEST(SchedulerTest, WaitersForOneModelGetItsSlotsFirstComeFirstServed) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.num_parallel = 1;
  limits.max_queue = 0;
  scheduler.SetLimits(limits);
  const SimModel model = ModelOfSize("m", kGib);
  Scheduler::Lease first;
  ASSERT_EQ(scheduler.Acquire(model, 4096, kFiveMinutes, Never, &first), Scheduler::Result::kReady);
  std::mutex mu;
  std::vector<int> order;  // guarded by mu
  std::vector<std::thread> waiters;
  for (int i = 0; i < 5; ++i) {
    waiters.emplace_back([&, i] {
      Scheduler::Lease lease;
      ASSERT_EQ(scheduler.Acquire(model, 4096, kFiveMinutes, Never, &lease),
                Scheduler::Result::kReady);
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      }
      scheduler.Release(lease, kFiveMinutes);
    });
    // Each waiter is in the queue before the next one arrives.
    ASSERT_TRUE(WaitUntil([&] { return scheduler.Pending() == i + 1; }));
  }
  scheduler.Release(first, kFiveMinutes);
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(SchedulerTest, MaxRunningIsThePeakAndResetStartsFromNow) {
  Scheduler scheduler;
  SchedulerLimits limits;
  limits.num_parallel = 3;
  scheduler.SetLimits(limits);
  const SimModel a = ModelOfSize("a", kGib), b = ModelOfSize("b", kGib);
  Scheduler::Lease l1, l2, l3;
  ASSERT_EQ(scheduler.Acquire(a, 4096, kFiveMinutes, Never, &l1), Scheduler::Result::kReady);
  ASSERT_EQ(scheduler.Acquire(a, 4096, kFiveMinutes, Never, &l2), Scheduler::Result::kReady);
  ASSERT_EQ(scheduler.Acquire(b, 4096, kFiveMinutes, Never, &l3), Scheduler::Result::kReady);
  EXPECT_EQ(scheduler.Stats().max_running, 3);  // across models
  scheduler.Release(l1, kFiveMinutes);
  scheduler.Release(l2, kFiveMinutes);
  EXPECT_EQ(scheduler.Stats().max_running, 3);
  scheduler.ResetStats();
  const SchedulerStats stats = scheduler.Stats();
  EXPECT_EQ(stats.max_running, 1);  // l3 still runs
  EXPECT_EQ(stats.loads, 0);
  EXPECT_EQ(stats.load_seconds, 0);
  EXPECT_EQ(stats.requests, 0);
  EXPECT_TRUE(stats.models.empty());
  scheduler.Release(l3, kFiveMinutes);
}

}  // namespace
}  // namespace corral::sim
