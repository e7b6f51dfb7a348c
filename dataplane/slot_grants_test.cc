// SlotGrants: whole limits before any answer, the grants while the lease holds, the equal split
// once it ran out, and lookups racing answers.
#include "dataplane/slot_grants.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace corral::dataplane {
namespace {

corral::v1::ReportResponse Answer(int32_t node_slots, int32_t model_slots, int32_t default_slots,
                                  int64_t lease_ms = 3000, int32_t proxies = 3) {
  corral::v1::ReportResponse r;
  corral::v1::SlotGrant* g = r.add_grants();
  g->set_node("gpu1");
  g->set_max_parallel(node_slots);
  g->set_default_model_slots(default_slots);
  corral::v1::ModelSlotGrant* m = g->add_models();
  m->set_model("llama3:latest");
  m->set_num_parallel(model_slots);
  r.set_lease_ms(lease_ms);
  r.set_proxies(proxies);
  return r;
}

TEST(SlotGrantsTest, WithoutAnyAnswerEveryLimitIsWhole) {
  ManualClock clock;
  SlotGrants grants(clock);
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 8);
  EXPECT_EQ(grants.NodeLimit("gpu1", 0), 0);  // no limit stays no limit
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 4), 4);
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 0), 1);  // the default, 1
}

TEST(SlotGrantsTest, GrantsHoldWhileTheLeaseRuns) {
  ManualClock clock;
  SlotGrants grants(clock);
  grants.Apply(Answer(3, 2, 1));
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 3);
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 4), 2);
  EXPECT_EQ(grants.ModelLimit("gpu1", "qwen2:7b", 4), 1);  // not listed: the default
  // A grant of zero is zero: the slots are another proxy's for now.
  grants.Apply(Answer(0, 0, 0));
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 0);
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 4), 0);
  // The configured limit caps a grant (lowered in a snapshot since the answer).
  grants.Apply(Answer(6, 4, 4));
  EXPECT_EQ(grants.NodeLimit("gpu1", 5), 5);
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 2), 2);
  clock.Advance(std::chrono::milliseconds(3000));
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 6);  // the lease's last moment still counts
}

TEST(SlotGrantsTest, PastTheLeaseEachLimitIsSplitEquallyWithAtLeastOneSlot) {
  ManualClock clock;
  SlotGrants grants(clock);
  grants.Apply(Answer(0, 0, 0, 3000, 3));
  clock.Advance(std::chrono::milliseconds(3001));
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 2);  // 8 / 3
  EXPECT_EQ(grants.NodeLimit("gpu1", 2), 1);  // fewer slots than proxies: still one each
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 1), 1);
  EXPECT_EQ(grants.ModelLimit("gpu1", "llama3:latest", 6), 2);
  EXPECT_EQ(grants.NodeLimit("gpu1", 0), 0);
  // A newer answer restores the grants.
  grants.Apply(Answer(5, 1, 1, 3000, 3));
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 5);
}

TEST(SlotGrantsTest, ANodeTheAnswerDidNotListGetsTheEqualSplit) {
  ManualClock clock;
  SlotGrants grants(clock);
  grants.Apply(Answer(4, 1, 1, 3000, 2));
  EXPECT_EQ(grants.NodeLimit("gpu2", 6), 3);
  EXPECT_EQ(grants.ModelLimit("gpu2", "llama3:latest", 4), 2);
}

TEST(SlotGrantsTest, AnAnswerWithoutALeaseChangesNothing) {
  ManualClock clock;
  SlotGrants grants(clock);
  corral::v1::ReportResponse old_control_plane;  // divides nothing
  grants.Apply(old_control_plane);
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 8);
  grants.Apply(Answer(2, 1, 1));
  grants.Apply(old_control_plane);
  EXPECT_EQ(grants.NodeLimit("gpu1", 8), 2);
}

TEST(SlotGrantsTest, LookupsRaceAnswersSafely) {
  ManualClock clock;
  SlotGrants grants(clock);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::atomic<int64_t> bad{0};
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        const int64_t n = grants.NodeLimit("gpu1", 8);
        if (n != 8 && n != 1 && n != 7) bad.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) grants.Apply(Answer(i % 2 == 0 ? 1 : 7, 1, 1));
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace corral::dataplane
