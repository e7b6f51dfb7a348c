// Unit tests of corral-sim's pure pieces: the model list, Go-compatible text formats, the
// token gate and the scheduler's slot and queue rules.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

}  // namespace
}  // namespace corral::sim
