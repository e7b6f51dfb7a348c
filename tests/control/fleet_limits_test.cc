// A node's limits across proxies (docs/limits.md), with every part real: corral-control, three
// corral-proxy processes and one corral-sim node whose generations take a second (20 tokens, 50
// ms apart) and which runs up to 8 at once and queues the rest without limit, as Ollama does.
// The node is registered with max_parallel 4 and num_parallel 4: however the load is spread over
// the proxies, the sim never runs more than 4 requests at once, every request is served (those
// over a proxy's share wait in its queue), and one busy proxy beside two idle ones reaches all 4
// slots.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/control/fleet.h"

namespace corral::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using json = nlohmann::json;

constexpr int kLimit = 4;

int64_t SimActive(const Fleet& fleet) {
  const json stats = fleet.SimStats(0);
  return stats.is_object() ? stats.value("active", int64_t{-1}) : -1;
}

// The node-wide slots each proxy may use now, summed (its /api/proxy/state); -1 when a proxy
// does not say.
int64_t GrantedSum(const Fleet& fleet) {
  int64_t sum = 0;
  for (size_t i = 0; i < fleet.proxy_count(); ++i) {
    const json state = fleet.ProxyState(i);
    if (!state.is_object() || !state.contains("nodes")) return -1;
    bool found = false;
    for (const json& node : state["nodes"]) {
      if (node.value("name", "") != "gpu1" || !node.contains("max_parallel_granted")) continue;
      sum += node["max_parallel_granted"].get<int64_t>();
      found = true;
    }
    if (!found) return -1;
  }
  return sum;
}

// Runs `per_client` generations from each client, client c on proxy proxies[c % size], and
// returns every answer's status. Meanwhile samples the sim's running requests into `peak`.
std::vector<int> RunClients(const Fleet& fleet, const std::vector<size_t>& proxies, int clients,
                            int per_client, std::atomic<int64_t>* peak) {
  std::mutex mu;
  std::vector<int> statuses;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done.load()) {
      const int64_t active = SimActive(fleet);
      int64_t seen = peak->load();
      while (active > seen && !peak->compare_exchange_weak(seen, active)) {
      }
      std::this_thread::sleep_for(milliseconds(10));  // sampling rate, not a wait for a condition
    }
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; i < per_client; ++i) {
        const HttpAnswer answer = fleet.Generate(proxies[c % proxies.size()], "llama3");
        std::lock_guard<std::mutex> lock(mu);
        statuses.push_back(answer.status);
        if (answer.status != 200) {
          std::cerr << "client " << c << ": " << answer.status << " " << answer.body << answer.error
                    << "\n";
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  sampler.join();
  return statuses;
}

// Disabled until corral-proxy hands its SlotGrants to the Router and the control client, which
// waits for the Router to read a grant of 0 as "no slot now" rather than "no limit"
// (docs/limits.md, "Open points"). With both, it passed ten runs out of ten.
TEST(FleetLimitsTest, ANodesLimitHoldsAcrossThreeProxiesAndOneBusyProxyReachesIt) {
  FleetOptions options;
  options.sim_args = {"--load-delay-ms", "0", "--token-interval-ms", "50", "--tokens", "20",
                      "--num-parallel",  "8", "--max-queue",         "0"};
  Fleet fleet(options);
  ASSERT_TRUE(fleet.StartControl());
  ASSERT_TRUE(fleet.StartSim("llama3"));
  CtlResult added = fleet.Ctl({"node", "add", "gpu1", fleet.sim_url(0), "--max-parallel",
                               std::to_string(kLimit), "--num-parallel", std::to_string(kLimit)});
  ASSERT_EQ(added.exit_code, 0) << added;
  CtlResult queue = fleet.Ctl({"strategy", "set", "--queue-length", "256", "--queue-wait", "60s"});
  ASSERT_EQ(queue.exit_code, 0) << queue;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(fleet.StartProxy("proxy-" + std::to_string(i)));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  ASSERT_TRUE(WaitFor([&] { return fleet.NodeHealth("gpu1") == "HEALTH_HEALTHY"; }, seconds(20),
                      "gpu1 healthy"));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  // Every proxy has had its first answer: the limit is divided, no longer whole in each.
  ASSERT_TRUE(WaitFor(
      [&] {
        const int64_t sum = GrantedSum(fleet);
        return sum >= 0 && sum <= kLimit;
      },
      seconds(20), "the proxies' shares add up to the node's limit"));

  // Load through all three proxies at once: 12 clients, 3 requests each.
  std::atomic<int64_t> peak{0};
  std::vector<int> statuses = RunClients(fleet, {0, 1, 2}, 12, 3, &peak);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 200), 36)
      << "every request served (those over a proxy's share wait in its queue)";
  json stats = fleet.SimStats(0);
  ASSERT_TRUE(stats.is_object());
  EXPECT_LE(stats["max_running"].get<int64_t>(), kLimit) << stats.dump();
  EXPECT_LE(peak.load(), kLimit);
  EXPECT_EQ(peak.load(), kLimit) << "the node's four slots were used";

  // Load on one proxy only: it reaches the node's four slots while the other two are idle.
  ASSERT_TRUE(WaitFor([&] { return SimActive(fleet) == 0; }, seconds(20), "the node idle"));
  std::atomic<int64_t> reached_ms{-1};
  const auto start = std::chrono::steady_clock::now();
  std::thread watcher([&] {
    const auto deadline = start + seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (SimActive(fleet) >= kLimit) {
        reached_ms =
            std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start)
                .count();
        return;
      }
      std::this_thread::sleep_for(milliseconds(5));  // sampling rate
    }
  });
  std::atomic<int64_t> peak_one{0};
  statuses = RunClients(fleet, {0}, 8, 2, &peak_one);
  watcher.join();
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 200), 16);
  EXPECT_GE(reached_ms.load(), 0) << "one busy proxy never reached the node's " << kLimit
                                  << " slots";
  stats = fleet.SimStats(0);
  EXPECT_LE(stats["max_running"].get<int64_t>(), kLimit) << stats.dump();
}

}  // namespace
}  // namespace corral::testing
