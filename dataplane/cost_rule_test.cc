// The cost rule with fixed figures: warm wait against cold load.
#include "dataplane/cost_rule.h"

#include <gtest/gtest.h>

namespace corral::dataplane {
namespace {

TEST(CostRuleTest, AWarmNodeWithAFreeSlotHasNoWait) {
  EXPECT_EQ(WarmWaitMs(/*ahead=*/3, /*slots=*/4, /*mean_duration_ms=*/2000), 0);
}

TEST(CostRuleTest, TheFirstRequestBeyondTheSlotsWaitsOneShareOfADuration) {
  EXPECT_DOUBLE_EQ(WarmWaitMs(1, 1, 2000), 2000);  // one slot, one holding it
  EXPECT_DOUBLE_EQ(WarmWaitMs(4, 4, 2000), 500);   // four slots finish in parallel
  EXPECT_DOUBLE_EQ(WarmWaitMs(7, 4, 2000), 2000);  // four ahead beyond the slots
}

TEST(CostRuleTest, AnUnmeasuredDurationCountsAsNoWait) { EXPECT_EQ(WarmWaitMs(10, 1, 0), 0); }

TEST(CostRuleTest, AnObservedLoadTimeWins) {
  EXPECT_DOUBLE_EQ(ColdLoadMs(7500, int64_t{40} << 30), 7500);
}

TEST(CostRuleTest, WithoutAnObservationTheLoadIsEstimatedFromTheModelsMemory) {
  // 1 s to start + 8 GB at 2 GB/s.
  EXPECT_DOUBLE_EQ(ColdLoadMs(0, 8'000'000'000), 5000);
  EXPECT_DOUBLE_EQ(ColdLoadMs(0, 0), kUnknownSizeLoadMs);
}

TEST(CostRuleTest, TiesGoWarm) {
  EXPECT_TRUE(PreferWarm(5000, 5000));
  EXPECT_TRUE(PreferWarm(4999, 5000));
  EXPECT_FALSE(PreferWarm(5001, 5000));
}

}  // namespace
}  // namespace corral::dataplane
