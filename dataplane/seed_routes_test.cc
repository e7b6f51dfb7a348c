// The seeds' endpoints (seed_routes.h) and the registry of requests in flight
// (live_requests.h): the bodies their users' scripts read, built from a real routing table and
// router, and the registry's life cycle.
#include "dataplane/seed_routes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "dataplane/live_requests.h"

namespace corral::dataplane {
namespace {

using nlohmann::json;

corral::v1::Node MakeNode(const std::string& name, int port,
                          corral::v1::Health health = corral::v1::HEALTH_HEALTHY) {
  corral::v1::Node node;
  node.set_name(name);
  node.set_url("http://127.0.0.1:" + std::to_string(port));
  node.set_admin_state(corral::v1::ADMIN_STATE_ENABLED);
  node.set_health(health);
  node.set_latency_ms(12.5);
  node.add_models()->set_name("llama3.2:latest");
  return node;
}

std::shared_ptr<const RoutingTable> Table(const std::vector<corral::v1::Node>& nodes) {
  corral::v1::Snapshot snapshot;
  snapshot.set_version(1);
  for (const auto& node : nodes) *snapshot.add_nodes() = node;
  auto table = RoutingTable::Build(std::move(snapshot));
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : nullptr;
}

// Three nodes: "b" healthy on the lowest port, "a" unhealthy, "c" disabled by the operator.
class SeedRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MakeNode("b", 24001);
    b.set_priority(1);
    b.set_max_memory_gb(8);
    auto a = MakeNode("a", 24002, corral::v1::HEALTH_UNHEALTHY);
    auto c = MakeNode("c", 24003);
    c.set_admin_state(corral::v1::ADMIN_STATE_DISABLED);
    table_ = Table({a, b, c});
    ASSERT_NE(table_, nullptr);
  }

  std::shared_ptr<const RoutingTable> table_;
  Router router_;
};

TEST_F(SeedRoutesTest, ViewNodesReadsTheSnapshotAndThisProxysCounts) {
  Lease lease = router_.Acquire(table_, "b", "registry.ollama.ai/library/llama3.2:latest");
  ASSERT_TRUE(lease);
  const std::vector<NodeView> nodes = ViewNodes(*table_, router_);
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].name, "a");
  EXPECT_FALSE(nodes[0].healthy);
  EXPECT_TRUE(nodes[0].enabled);
  EXPECT_EQ(nodes[1].name, "b");
  EXPECT_TRUE(nodes[1].healthy);
  EXPECT_EQ(nodes[1].port, 24001);
  EXPECT_EQ(nodes[1].in_flight, 1);
  EXPECT_EQ(nodes[1].priority, 1);
  EXPECT_DOUBLE_EQ(nodes[1].max_memory_gb, 8);
  EXPECT_DOUBLE_EQ(nodes[1].probe_latency_ms, 12.5);
  EXPECT_EQ(nodes[1].models, std::vector<std::string>{"llama3.2:latest"});
  EXPECT_FALSE(nodes[2].enabled);
  EXPECT_FALSE(nodes[2].healthy) << "a disabled node serves nothing";
}

TEST_F(SeedRoutesTest, ApiHealthIsOkWhileTheProxyRuns) {
  EXPECT_EQ(json::parse(ApiHealthBody()), json({{"status", "ok"}}));
}

TEST_F(SeedRoutesTest, BackendsHealthCountsTheNodesThatCanServe) {
  EXPECT_EQ(json::parse(BackendsHealthBody(ViewNodes(*table_, router_))),
            json({{"status", "ok"}, {"healthy_backends", 1}}));
  // None healthy: still "ok" with 0, as the replaced proxy answered (its users alert on the
  // count, not the status).
  EXPECT_EQ(json::parse(BackendsHealthBody({})), json({{"status", "ok"}, {"healthy_backends", 0}}));
}

TEST_F(SeedRoutesTest, BackendsAreSortedByPortWithHealthAndInFlight) {
  Lease lease = router_.Acquire(table_, "b", "registry.ollama.ai/library/llama3.2:latest");
  const json body = json::parse(BackendsBody(ViewNodes(*table_, router_)));
  ASSERT_EQ(body["backends"].size(), 3u);
  EXPECT_EQ(body["backends"][0], json({{"port", 24001},
                                       {"healthy", true},
                                       {"in_flight", 1},
                                       {"name", "b"},
                                       {"url", "http://127.0.0.1:24001"}}));
  EXPECT_EQ(body["backends"][1]["port"], 24002);
  EXPECT_EQ(body["backends"][1]["healthy"], false);
  EXPECT_EQ(body["backends"][2]["name"], "c");
}

TEST_F(SeedRoutesTest, HealthListsEveryEnabledNodeAndStaysOk) {
  const auto now = std::chrono::system_clock::from_time_t(1781000000);  // 2026-06-09T10:13:20Z
  const json body = json::parse(HealthBody(ViewNodes(*table_, router_), now));
  EXPECT_EQ(body["status"], "ok");
  EXPECT_EQ(body["timestamp"], "2026-06-09T10:13:20Z");
  EXPECT_EQ(body["external_hosts"], json::object());
  ASSERT_EQ(body["servers"].size(), 2u) << "the disabled node is left out: " << body;
  EXPECT_EQ(body["servers"]["b"], json({{"status", "healthy"},
                                        {"response_time_ms", 12.5},
                                        {"priority", 1},
                                        {"max_memory_gb", 8.0}}));
  EXPECT_EQ(body["servers"]["a"]["status"], "unhealthy");
  EXPECT_EQ(body["servers"]["a"]["error"], "HEALTH_UNHEALTHY");
  EXPECT_TRUE(body["servers"]["a"]["max_memory_gb"].is_null()) << "not set";
}

// A record begun as the front door begins one.
struct LiveRecord {
  explicit LiveRecord(const std::string& id, RequestRecord::Clock::time_point start) {
    handle.emplace(nullptr, start);
    RequestRecord& r = handle->record();
    r.request_id = id;
    r.method = "POST";
    r.route = "chat";
    r.client_address = "10.0.0.7";
    r.token_name = "ci";
  }
  RequestRecord& record() { return handle->record(); }
  std::optional<RecordHandle> handle;
  LiveRequests::Entry entry;  // after the handle: leaves first
};

TEST(LiveRequestsTest, ARequestIsListedFromAddUntilItsEntryGoes) {
  LiveRequests live;
  const auto t0 = RequestRecord::Clock::now();
  EXPECT_TRUE(live.List().empty());
  {
    LiveRecord first("req-1", t0);
    LiveRecord second("req-2", t0 + std::chrono::milliseconds(5));
    live.Add(second.entry, *second.handle, second.record());
    live.Add(first.entry, *first.handle, first.record());
    const auto rows = live.List();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].request_id, "req-1") << "oldest first";
    EXPECT_EQ(rows[0].method, "POST");
    EXPECT_EQ(rows[0].route, "chat");
    EXPECT_EQ(rows[0].client, "10.0.0.7");
    EXPECT_EQ(rows[0].token, "ci");
    EXPECT_EQ(rows[0].model, "") << "not read yet";
    EXPECT_EQ(rows[0].node, "");
  }
  EXPECT_TRUE(live.List().empty()) << "destroyed entries leave";
}

TEST(LiveRequestsTest, UpdateShowsTheModelAndTheNodeTriedNow) {
  LiveRequests live;
  LiveRecord request("req-1", RequestRecord::Clock::now());
  live.Add(request.entry, *request.handle, request.record());
  request.record().model = "llama3.2";
  request.record().attempts.push_back(TriedNode{"a", 0, "refused", -1});
  request.record().attempts.push_back(TriedNode{"b", 200, "", 3});
  EXPECT_EQ(live.List()[0].model, "") << "the registry shows what was handed over only";
  LiveRequests::Update(request.entry);
  const auto rows = live.List();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].model, "llama3.2");
  EXPECT_EQ(rows[0].node, "b");
}

TEST(LiveRequestsTest, AFinishedRecordIsNoLongerListed) {
  LiveRequests live;
  LiveRecord request("req-1", RequestRecord::Clock::now());
  live.Add(request.entry, *request.handle, request.record());
  ASSERT_EQ(live.List().size(), 1u);
  request.handle->Finish(200, RequestOutcome::kAnswered);
  EXPECT_TRUE(live.List().empty());
}

TEST(LiveRequestsTest, AnEntryNeverAddedIsHarmless) {
  LiveRequests live;
  { LiveRequests::Entry entry; }
  LiveRequests::Entry entry;
  LiveRequests::Update(entry);
  EXPECT_TRUE(live.List().empty());
}

TEST(LiveRequestsTest, ManyThreadsJoinAndLeaveAtOnce) {
  LiveRequests live;
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) (void)live.List();
  });
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&live, t] {
      for (int i = 0; i < 500; ++i) {
        LiveRecord request("req-" + std::to_string(t) + "-" + std::to_string(i),
                           RequestRecord::Clock::now());
        live.Add(request.entry, *request.handle, request.record());
        request.record().model = "m" + std::to_string(i);
        LiveRequests::Update(request.entry);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  stop.store(true);
  reader.join();
  EXPECT_TRUE(live.List().empty());
}

TEST_F(SeedRoutesTest, ActiveRequestsListsRequestsAndTheNodesView) {
  Lease lease = router_.Acquire(table_, "b", "registry.ollama.ai/library/llama3.2:latest");
  const auto steady_now = RequestRecord::Clock::now();
  const auto wall_now = std::chrono::system_clock::from_time_t(1781000000);
  LiveRequests::Row row;
  row.request_id = "req-1";
  row.method = "POST";
  row.route = "chat";
  row.model = "llama3.2";
  row.node = "b";
  row.client = "10.0.0.7";
  row.start = steady_now - std::chrono::milliseconds(1500);
  const json body =
      json::parse(ActiveRequestsBody(ViewNodes(*table_, router_), {row}, steady_now, wall_now, ""));
  EXPECT_EQ(body["in_flight"], 1);
  EXPECT_EQ(body["total_active_requests"], 1);
  ASSERT_EQ(body["requests"].size(), 1u);
  const json& r = body["requests"][0];
  EXPECT_EQ(r["id"], "req-1");
  EXPECT_EQ(r["route"], "chat");
  EXPECT_EQ(r["model"], "llama3.2");
  EXPECT_EQ(r["node"], "b");
  EXPECT_EQ(r["client"], "10.0.0.7");
  EXPECT_EQ(r["started"], "2026-06-09T10:13:18.500Z");
  EXPECT_DOUBLE_EQ(r["elapsed_ms"].get<double>(), 1500);
  ASSERT_EQ(body["nodes"].size(), 3u);
  EXPECT_EQ(body["nodes"][0]["name"], "b") << "busiest first";
  EXPECT_EQ(body["nodes"][0]["active_requests"], 1);
  EXPECT_EQ(body["nodes"][0]["status"], "active");
  EXPECT_EQ(body["nodes"][0]["address"], "http://127.0.0.1:24001");
  EXPECT_DOUBLE_EQ(body["nodes"][0]["latency"].get<double>(), 0.0125) << "seconds";
  EXPECT_EQ(body["nodes"][1]["status"], "standby");
  EXPECT_EQ(body["nodes"][2]["status"], "inactive");

  const json only_a = json::parse(
      ActiveRequestsBody(ViewNodes(*table_, router_), {row}, steady_now, wall_now, "a"));
  EXPECT_EQ(only_a["requests"].size(), 0u);
  ASSERT_EQ(only_a["nodes"].size(), 1u);
  EXPECT_EQ(only_a["nodes"][0]["name"], "a");
  EXPECT_EQ(only_a["total_active_requests"], 0);
}

}  // namespace
}  // namespace corral::dataplane
