// WorkerPool: threads on demand, bounded, every queued job run before shutdown returns.
#include "dataplane/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "tests/support/process.h"

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;

TEST(WorkerPoolTest, StartsThreadsOnDemandUpToTheLimit) {
  WorkerPool pool(3);
  EXPECT_EQ(pool.threads(), 0u);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) {
    pool.enqueue([&, gate] {
      gate.wait();
      ++ran;
    });
  }
  EXPECT_EQ(pool.threads(), 3u);  // two jobs wait for a free thread
  release.set_value();
  ASSERT_TRUE(corral::testing::WaitFor([&] { return ran == 5; }, milliseconds(5000), "all jobs"));
  pool.shutdown();
  EXPECT_EQ(pool.threads(), 0u);
}

TEST(WorkerPoolTest, ShutdownRunsQueuedJobs) {
  std::atomic<int> ran{0};
  WorkerPool pool(1);
  for (int i = 0; i < 10; ++i) pool.enqueue([&] { ++ran; });
  pool.shutdown();
  EXPECT_EQ(ran, 10);
}

TEST(WorkerPoolTest, IdleThreadsRetireAndComeBack) {
  WorkerPool pool(4, milliseconds(20));
  std::atomic<int> ran{0};
  pool.enqueue([&] { ++ran; });
  ASSERT_TRUE(corral::testing::WaitFor([&] { return pool.threads() == 0; }, milliseconds(5000),
                                       "the idle thread to retire"));
  pool.enqueue([&] { ++ran; });
  ASSERT_TRUE(corral::testing::WaitFor([&] { return ran == 2; }, milliseconds(5000), "jobs"));
}

}  // namespace
}  // namespace corral::dataplane
