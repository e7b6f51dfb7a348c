// WaitQueue: order, bounds, departures and wakes, with the Router's real leases.
#include "dataplane/wait_queue.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "common/model_name.h"
#include "dataplane/router.h"

namespace corral::dataplane {
namespace {

using std::chrono::milliseconds;
using End = WaitQueue::End;

// Waits for `condition` at most 10 s (a condition, not a fixed time).
bool Eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return condition();
}

class WaitQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      v1::Node* node = snapshot_.add_nodes();
      node->set_name(name);
      node->set_url(std::string("http://127.0.0.1:") + (name[0] == 'a' ? "10001" : "10002"));
      node->set_admin_state(v1::ADMIN_STATE_ENABLED);
      node->set_health(v1::HEALTH_HEALTHY);
      node->set_num_parallel(1);
      node->add_models()->set_name(name[0] == 'a' ? "llama3" : "qwen3");
    }
    table_ = *RoutingTable::Build(snapshot_);
  }

  std::string Key(const char* model) { return *CanonicalModelKey(model); }

  // One request waiting in a thread for `model` on the node that has it.
  struct Waiter {
    std::thread thread;
    std::atomic<bool> done{false};
    WaitQueue::Outcome outcome;
    Lease lease;
  };
  void StartWaiter(Waiter& w, const char* model, WaitQueue::Limits limits = {},
                   int client_fd = -1) {
    const std::string key = Key(model);
    w.thread = std::thread([this, &w, key, limits, client_fd] {
      auto can_use = [&](std::string_view node) {
        for (size_t i : table_->NodesWithModel(key)) {
          if (table_->nodes()[i].name == node) return true;
        }
        return false;
      };
      auto take = [&]() -> const std::string* {
        PickResult pick = router_.Pick(table_, key, {});
        if (!pick.lease) return nullptr;
        w.lease = std::move(pick.lease);
        return &w.lease.node().name;
      };
      w.outcome = router_.queue().Wait(limits, key, can_use, take, client_fd, nullptr);
      w.done = true;
    });
  }

  ManualClock clock_;
  Router router_{clock_};
  v1::Snapshot snapshot_;
  std::shared_ptr<const RoutingTable> table_;
};

TEST_F(WaitQueueTest, AReleasedSlotGoesToTheFirstWaiter) {
  PickResult held = router_.Pick(table_, Key("llama3"), {});
  ASSERT_TRUE(held.lease);
  Waiter first, second;
  StartWaiter(first, "llama3");
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 1; }));
  StartWaiter(second, "llama3");
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 2; }));

  held.lease.Release();
  ASSERT_TRUE(Eventually([&] { return first.done.load(); }));
  EXPECT_EQ(first.outcome.end, End::kGot);
  EXPECT_EQ(first.lease.node().name, "a");
  EXPECT_FALSE(second.done.load());
  EXPECT_EQ(router_.queue().depth(), 1);

  first.lease.Release();
  ASSERT_TRUE(Eventually([&] { return second.done.load(); }));
  EXPECT_EQ(second.outcome.end, End::kGot);
  first.thread.join();
  second.thread.join();
  const WaitQueue::Stats stats = router_.queue().stats();
  EXPECT_EQ(stats.waited_total, 2);
  EXPECT_EQ(stats.served_total, 2);
  EXPECT_EQ(stats.depth, 0);
}

TEST_F(WaitQueueTest, AWakeSkipsWaitersThatCannotUseTheNode) {
  PickResult llama = router_.Pick(table_, Key("llama3"), {});
  PickResult qwen = router_.Pick(table_, Key("qwen3"), {});
  Waiter for_llama, for_qwen;
  StartWaiter(for_llama, "llama3");
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 1; }));
  StartWaiter(for_qwen, "qwen3");
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 2; }));
  EXPECT_EQ(router_.queue().Waiting("b", ""), 1);
  EXPECT_EQ(router_.queue().Waiting("a", Key("llama3")), 1);
  EXPECT_EQ(router_.queue().WaitingByModel("a"),
            (std::map<std::string, int64_t>{{Key("llama3"), 1}}));
  // The report the control plane gets: per node, what waits for it and what runs on it.
  const auto report = router_.TakeLoadReport();
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].node, "a");
  EXPECT_EQ(report[0].waiting, 1);
  ASSERT_EQ(report[0].models.size(), 1u);
  EXPECT_EQ(report[0].models[0].model, Key("llama3"));
  EXPECT_EQ(report[0].models[0].in_flight, 1);
  EXPECT_EQ(report[0].models[0].waiting, 1);

  qwen.lease.Release();  // node b: only the second waiter can use it
  ASSERT_TRUE(Eventually([&] { return for_qwen.done.load(); }));
  EXPECT_EQ(for_qwen.outcome.end, End::kGot);
  EXPECT_FALSE(for_llama.done.load());
  llama.lease.Release();
  ASSERT_TRUE(Eventually([&] { return for_llama.done.load(); }));
  for_llama.thread.join();
  for_qwen.thread.join();
}

TEST_F(WaitQueueTest, AWaitEndsAtItsDeadline) {
  PickResult held = router_.Pick(table_, Key("llama3"), {});
  Waiter w;
  StartWaiter(w, "llama3", {.max_length = 10, .max_wait = std::chrono::seconds(30)});
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 1; }));
  clock_.Advance(std::chrono::seconds(29));
  EXPECT_FALSE(w.done.load());
  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return w.done.load(); }));
  EXPECT_EQ(w.outcome.end, End::kTimedOut);
  EXPECT_EQ(w.outcome.waited, std::chrono::seconds(30));
  EXPECT_EQ(router_.queue().depth(), 0);
  EXPECT_EQ(router_.queue().stats().timed_out_total, 1);
  w.thread.join();
}

TEST_F(WaitQueueTest, AFullQueueRefusesAtOnce) {
  PickResult held = router_.Pick(table_, Key("llama3"), {});
  Waiter first, second;
  StartWaiter(first, "llama3", {.max_length = 1, .max_wait = std::chrono::seconds(30)});
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 1; }));
  StartWaiter(second, "llama3", {.max_length = 1, .max_wait = std::chrono::seconds(30)});
  ASSERT_TRUE(Eventually([&] { return second.done.load(); }));
  EXPECT_EQ(second.outcome.end, End::kFull);
  EXPECT_EQ(router_.queue().stats().full_total, 1);
  held.lease.Release();
  ASSERT_TRUE(Eventually([&] { return first.done.load(); }));
  EXPECT_EQ(first.outcome.end, End::kGot);
  first.thread.join();
  second.thread.join();
}

TEST_F(WaitQueueTest, AClientThatLeavesLeavesTheQueueAtOnce) {
  PickResult held = router_.Pick(table_, Key("llama3"), {});
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Waiter w;
  StartWaiter(w, "llama3", {}, fds[0]);
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 1; }));
  ::close(fds[1]);  // the client hangs up
  ASSERT_TRUE(Eventually([&] { return w.done.load(); }));
  EXPECT_EQ(w.outcome.end, End::kClientGone);
  EXPECT_EQ(router_.queue().depth(), 0);
  w.thread.join();
  ::close(fds[0]);
}

TEST_F(WaitQueueTest, StopWakesEveryWaiter) {
  PickResult held = router_.Pick(table_, Key("llama3"), {});
  Waiter first, second;
  StartWaiter(first, "llama3");
  StartWaiter(second, "llama3");
  ASSERT_TRUE(Eventually([&] { return router_.queue().depth() == 2; }));
  router_.queue().Stop();
  ASSERT_TRUE(Eventually([&] { return first.done.load() && second.done.load(); }));
  EXPECT_EQ(first.outcome.end, End::kStopping);
  EXPECT_EQ(second.outcome.end, End::kStopping);
  first.thread.join();
  second.thread.join();
}

}  // namespace
}  // namespace corral::dataplane
