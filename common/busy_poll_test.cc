#include "common/busy_poll.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

namespace corral {
namespace {

TEST(BusyPoll, SpinsOnlyWhileFewerRequestsThanHalfTheCpusAreInProgress) {
  const int limit = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
  EXPECT_TRUE(BusyPoll::Allowed(0));
  std::vector<std::unique_ptr<BusyPoll::Request>> held;
  for (int i = 0; i < limit; ++i) held.push_back(std::make_unique<BusyPoll::Request>());
  EXPECT_FALSE(BusyPoll::Allowed(0));
  EXPECT_TRUE(BusyPoll::Allowed(1)) << "one of the requests is the caller's own";
  held.push_back(std::make_unique<BusyPoll::Request>());
  EXPECT_FALSE(BusyPoll::Allowed(1));
  held.clear();
  EXPECT_TRUE(BusyPoll::Allowed(0));
}

TEST(BusyPoll, SpinEndsWhenReadyOrWhenItsTimeIsUp) {
  int calls = 0;
  EXPECT_TRUE(BusyPoll::Spin([&] { return ++calls == 3; }));
  EXPECT_EQ(calls, 3);
  calls = 0;
  EXPECT_FALSE(BusyPoll::Spin([&] {
    ++calls;
    return false;
  }));
  EXPECT_GE(calls, 1);
}

}  // namespace
}  // namespace corral
