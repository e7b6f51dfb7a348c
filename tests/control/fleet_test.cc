// End-to-end tests of the whole fleet: corral-control, corral-proxy processes, corral-sim nodes
// and corralctl, all real processes on loopback. Each test names one promise of the design and
// fails when it breaks; waits have deadlines, and the only time limits asserted are the ones the
// behaviour itself names ("within one second", "within two probe intervals").
#include "tests/control/fleet.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_split.h"
#include "corral/v1/control.grpc.pb.h"

namespace corral::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using json = nlohmann::json;

// Adds node `name` at sim `sim`'s URL through corralctl.
// Adds a node and waits for its first probe: a node enters the snapshot when added, but its
// models (and so its requests) follow with that probe, in a later snapshot version. Without the
// wait a test could see its proxies in sync on the version before the probe, and send a
// request for a model no node has yet.
::testing::AssertionResult AddNode(const Fleet& fleet, const std::string& name, size_t sim) {
  CtlResult r = fleet.Ctl({"node", "add", name, fleet.sim_url(sim)});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "node add failed: " << r;
  return WaitFor([&] { return fleet.NodeHealth(name) == "HEALTH_HEALTHY"; }, seconds(10),
                 "node " + name + " to be probed healthy");
}

// A fleet of one control plane and `proxies` proxies, in sync.
void StartCore(Fleet& fleet, int proxies) {
  ASSERT_TRUE(fleet.StartControl());
  for (int i = 0; i < proxies; ++i) {
    ASSERT_TRUE(fleet.StartProxy("proxy-" + std::to_string(i)));
  }
}

// ---- snapshots reach every proxy ----

TEST(FleetTest, NodeAddReachesBothProxiesWithinOneSecond) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 2));
  size_t common = 0, only = 0;
  ASSERT_TRUE(fleet.StartSim("shared", &common));
  ASSERT_TRUE(fleet.StartSim("shared,only-here", &only));
  ASSERT_TRUE(AddNode(fleet, "first", common));
  ASSERT_TRUE(fleet.WaitProxiesInSync());

  // Routable with its models: the node enters the snapshot when added, and its models and
  // health follow with its first probe.
  auto routes_to_second = [&](size_t p) {
    const nlohmann::json state = fleet.ProxyState(p);
    if (!state.is_object() || !state.contains("nodes")) return false;
    for (const auto& n : state["nodes"]) {
      if (!n.is_object() || n.value("name", "") != "second" || !n.value("routable", false)) {
        continue;
      }
      for (const auto& m : n.value("models", nlohmann::json::array())) {
        if (m.is_string() && m.get<std::string>().rfind("only-here", 0) == 0) return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(AddNode(fleet, "second", only));
  const auto added = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return routes_to_second(0) && routes_to_second(1); }, seconds(1),
                      "both proxies to route to the new node"))
      << "proxy 0: " << fleet.ProxyState(0).dump() << "\nproxy 1: " << fleet.ProxyState(1).dump();
  std::cerr
      << "node add reached both proxies after "
      << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - added).count()
      << " ms\n";

  // A model only the new node has is routed to it through either proxy.
  for (size_t p = 0; p < 2; ++p) {
    HttpAnswer answer = fleet.Generate(p, "only-here");
    EXPECT_EQ(answer.status, 200) << answer.body << answer.error;
  }
  EXPECT_EQ(fleet.SimRequests(only), 2);
  EXPECT_EQ(fleet.SimRequests(common), 0);
}

TEST(FleetTest, NodeRemoveStopsTrafficToIt) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t a = 0, b = 0;
  ASSERT_TRUE(fleet.StartSim("m", &a));
  ASSERT_TRUE(fleet.StartSim("m", &b));
  ASSERT_TRUE(AddNode(fleet, "a", a));
  ASSERT_TRUE(AddNode(fleet, "b", b));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  // The node that takes the traffic is removed: the requests after the first stay where the
  // model is now loaded (residency between probes, docs/routing.md).
  for (int i = 0; i < 4; ++i) ASSERT_EQ(fleet.Generate(0, "m").status, 200);
  const bool a_busy = fleet.SimRequests(a) > 0;
  const size_t removed_sim = a_busy ? a : b, kept_sim = a_busy ? b : a;
  const std::string removed_name = a_busy ? "a" : "b";
  ASSERT_GT(fleet.SimRequests(removed_sim), 0);

  CtlResult removed = fleet.Ctl({"--json", "node", "remove", removed_name});
  ASSERT_EQ(removed.exit_code, 0) << removed;
  ASSERT_TRUE(WaitFor([&] { return !fleet.ProxyHasNode(0, removed_name); }, seconds(5),
                      "the proxy to drop the removed node"));
  const int64_t removed_before = fleet.SimRequests(removed_sim);
  const int64_t kept_before = fleet.SimRequests(kept_sim);
  for (int i = 0; i < 6; ++i) {
    HttpAnswer answer = fleet.Generate(0, "m");
    EXPECT_EQ(answer.status, 200) << answer.body << answer.error;
  }
  EXPECT_EQ(fleet.SimRequests(removed_sim), removed_before) << "a removed node still got requests";
  EXPECT_EQ(fleet.SimRequests(kept_sim), kept_before + 6);
}

TEST(FleetTest, DrainLetsTheInFlightStreamFinishWhileNewRequestsGoElsewhere) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t a = 0, b = 0;
  ASSERT_TRUE(fleet.StartSim("m", &a));
  ASSERT_TRUE(fleet.StartSim("m", &b));
  ASSERT_TRUE(AddNode(fleet, "a", a));
  ASSERT_TRUE(fleet.WaitProxiesInSync());

  // A stream on node a that cannot finish until the test releases its tokens.
  ASSERT_EQ(fleet.SimPost(a, "/_sim/config", {{"gated", true}}).status, 200);
  std::atomic<int> stream_status{0};
  std::string stream_body;
  std::thread client([&] {
    httplib::Client cli("127.0.0.1", fleet.proxy_port(0));
    cli.set_read_timeout(seconds(60));
    json body = {{"model", "m"}, {"prompt", "tell me a story"}};
    auto res = cli.Post("/api/generate", body.dump(), "application/json");
    if (res) {
      stream_body = res->body;
      stream_status = res->status;
    } else {
      stream_status = -1;
    }
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        json stats = fleet.SimStats(a);
        return stats.is_object() && stats["gate"]["waiting"].get<int>() >= 1;
      },
      seconds(10), "the stream to wait for its first token on node a"));

  ASSERT_TRUE(AddNode(fleet, "b", b));
  CtlResult drained = fleet.Ctl({"--json", "node", "drain", "a"});
  ASSERT_EQ(drained.exit_code, 0) << drained;
  EXPECT_EQ(drained.Json()["node"]["admin_state"], "ADMIN_STATE_DRAINING");
  ASSERT_TRUE(fleet.WaitProxiesInSync());

  // New requests go to b while a's stream is still open.
  for (int i = 0; i < 3; ++i) {
    HttpAnswer answer = fleet.Generate(0, "m");
    EXPECT_EQ(answer.status, 200) << answer.body << answer.error;
  }
  EXPECT_EQ(fleet.SimRequests(b), 3);
  EXPECT_EQ(fleet.SimRequests(a), 1);
  EXPECT_EQ(stream_status.load(), 0) << "the drained node's stream ended early";

  // Released, the stream runs to its end on a.
  ASSERT_EQ(fleet.SimPost(a, "/_sim/config", {{"gated", false}}).status, 200);
  client.join();
  EXPECT_EQ(stream_status.load(), 200);
  EXPECT_NE(stream_body.find("\"done\":true"), std::string::npos) << stream_body;
}

// ---- health: standby pool ----

TEST(FleetTest, KilledNodeGoesToStandbyWithinTwoProbeIntervalsAndComesBack) {
  FleetOptions options;
  options.probe_interval_ms = 500;
  Fleet fleet(options);
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t sim = 0;
  ASSERT_TRUE(fleet.StartSim("m", &sim));
  ASSERT_TRUE(AddNode(fleet, "n", sim));
  ASSERT_TRUE(WaitFor([&] { return fleet.NodeHealth("n") == "HEALTH_HEALTHY"; }, seconds(10),
                      "the node to be probed healthy"));

  ASSERT_TRUE(fleet.KillSim(sim));
  // Two failed rounds move it: two intervals, each up to 10 % longer (jitter), plus what the
  // rounds, the registry write and one corralctl poll take.
  const milliseconds two_intervals(2 * options.probe_interval_ms * 11 / 10 + 250);
  EXPECT_TRUE(WaitFor([&] { return fleet.NodeHealth("n") == "HEALTH_UNHEALTHY"; }, two_intervals,
                      "the killed node to move to standby"));
  ASSERT_TRUE(WaitFor([&] { return fleet.NodeHealth("n") == "HEALTH_UNHEALTHY"; }, seconds(10),
                      "the killed node to move to standby at all"));
  ASSERT_TRUE(fleet.WaitProxiesInSync(seconds(10)));
  EXPECT_EQ(fleet.Generate(0, "m").status, 503) << "a node in standby still takes requests";

  ASSERT_TRUE(fleet.RestartSim(sim));
  ASSERT_TRUE(WaitFor([&] { return fleet.NodeHealth("n") == "HEALTH_HEALTHY"; }, seconds(10),
                      "the restarted node to come back to the active pool"));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  EXPECT_EQ(fleet.Generate(0, "m").status, 200);
}

// ---- static stability ----

TEST(FleetTest, ControlPlaneKilledProxiesKeepServingAndResyncOnRestart) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 2));
  size_t sim = 0;
  ASSERT_TRUE(fleet.StartSim("m", &sim));
  ASSERT_TRUE(AddNode(fleet, "n", sim));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  const uint64_t before = fleet.SnapshotVersion();

  ASSERT_TRUE(fleet.KillControl());
  for (size_t p = 0; p < 2; ++p) {
    for (int i = 0; i < 3; ++i) {
      HttpAnswer answer = fleet.Generate(p, "m");
      EXPECT_EQ(answer.status, 200) << "proxy " << p << ": " << answer.body << answer.error;
    }
  }
  EXPECT_EQ(fleet.SimRequests(sim), 6);
  CtlResult down = fleet.Ctl({"state"});
  EXPECT_EQ(down.exit_code, 1) << down;
  EXPECT_NE(down.err.find("cannot reach the control plane"), std::string::npos) << down;

  ASSERT_TRUE(fleet.StartControl());  // same data dir, same port
  CtlResult changed = fleet.Ctl({"node", "update", "n", "--weight", "2"});
  ASSERT_EQ(changed.exit_code, 0) << changed;
  uint64_t now = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        CtlResult r = fleet.Ctl({"--json", "proxies"});
        if (r.exit_code != 0) return false;
        json j = r.Json();
        now = std::stoull(j["snapshot_version"].get<std::string>());
        int in_sync = 0;
        for (const auto& p : j["proxies"]) {
          if (p["connected"].get<bool>() &&
              std::stoull(p["applied_version"].get<std::string>()) == now) {
            ++in_sync;
          }
        }
        return in_sync == 2;
      },
      seconds(30), "both proxies to apply the restarted control plane's version"));
  EXPECT_GT(now, before) << "versions went backwards across a restart";
  EXPECT_EQ(fleet.ProxyAppliedVersion(0), now);
  EXPECT_EQ(fleet.ProxyAppliedVersion(1), now);
}

TEST(FleetTest, ProxyRestartedWhileControlPlaneIsDownServesFromItsDiskCopy) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t sim = 0;
  ASSERT_TRUE(fleet.StartSim("m", &sim));
  ASSERT_TRUE(AddNode(fleet, "n", sim));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  const uint64_t version = fleet.SnapshotVersion();

  ASSERT_TRUE(fleet.KillControl());
  ASSERT_TRUE(fleet.KillProxy(0));
  ASSERT_TRUE(fleet.RestartProxy(0));
  EXPECT_EQ(fleet.ProxyAppliedVersion(0), version);
  HttpAnswer answer = fleet.Generate(0, "m");
  EXPECT_EQ(answer.status, 200) << answer.body << answer.error;
  EXPECT_EQ(fleet.SimRequests(sim), 1);
}

// ---- corralctl against the real control plane ----

TEST(CorralctlTest, EveryCommandWithJson) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  size_t sim = 0, stray = 0;
  ASSERT_TRUE(fleet.StartSim("llama3.2,all-minilm", &sim, {"--pull-interval-ms", "1"}));
  ASSERT_TRUE(fleet.StartSim("m", &stray));

  // node add
  CtlResult added =
      fleet.Ctl({"--json", "node", "add", "gpu1", fleet.sim_url(sim), "--priority", "2",
                 "--max-parallel", "4", "--max-memory-gb", "24", "--label", "zone=a"});
  ASSERT_EQ(added.exit_code, 0) << added;
  json node = added.Json();
  EXPECT_EQ(node["node"]["name"], "gpu1");
  EXPECT_EQ(node["node"]["url"], fleet.sim_url(sim));
  EXPECT_EQ(node["node"]["admin_state"], "ADMIN_STATE_ENABLED");
  EXPECT_EQ(node["node"]["priority"], 2);
  EXPECT_EQ(node["node"]["max_parallel"], 4);
  EXPECT_EQ(node["node"]["max_memory_gb"], 24);
  EXPECT_EQ(node["node"]["labels"]["zone"], "a");
  EXPECT_EQ(node["discovered"], false);
  EXPECT_TRUE(node.contains("in_flight"));

  // node list / get, once the prober has seen the models
  ASSERT_TRUE(WaitFor([&] { return fleet.NodeHealth("gpu1") == "HEALTH_HEALTHY"; }, seconds(10),
                      "gpu1 healthy"));
  CtlResult list = fleet.Ctl({"--json", "node", "list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  ASSERT_EQ(list.Json()["nodes"].size(), 1u) << list;
  EXPECT_EQ(list.Json()["nodes"][0]["node"]["name"], "gpu1");
  CtlResult got = fleet.Ctl({"--json", "node", "get", "gpu1"});
  ASSERT_EQ(got.exit_code, 0) << got;
  EXPECT_EQ(got.Json()["node"]["health"], "HEALTH_HEALTHY");
  EXPECT_EQ(got.Json()["node"]["models"].size(), 2u) << got;
  EXPECT_FALSE(got.Json()["node"]["version"].get<std::string>().empty());
  CtlResult table = fleet.Ctl({"node", "list"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table;
  EXPECT_NE(table.out.find("gpu1"), std::string::npos) << table;

  // node update
  CtlResult updated = fleet.Ctl({"--json", "node", "update", "gpu1", "--weight", "3", "--label",
                                 "gpu=4090", "--remove-label", "zone"});
  ASSERT_EQ(updated.exit_code, 0) << updated;
  EXPECT_EQ(updated.Json()["node"]["weight"], 3);
  EXPECT_EQ(updated.Json()["node"]["priority"], 2);  // untouched
  EXPECT_EQ(updated.Json()["node"]["labels"], json({{"gpu", "4090"}}));

  // drain / disable / enable
  for (const auto& [verb, state] :
       std::vector<std::pair<std::string, std::string>>{{"drain", "ADMIN_STATE_DRAINING"},
                                                        {"disable", "ADMIN_STATE_DISABLED"},
                                                        {"enable", "ADMIN_STATE_ENABLED"}}) {
    CtlResult r = fleet.Ctl({"--json", "node", verb, "gpu1"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(r.Json()["node"]["admin_state"], state) << verb;
  }

  // strategy get / set: flags not given keep their values
  CtlResult strategy = fleet.Ctl({"--json", "strategy", "get"});
  ASSERT_EQ(strategy.exit_code, 0) << strategy;
  EXPECT_TRUE(strategy.Json().contains("strategy"));
  EXPECT_TRUE(strategy.Json().contains("retry"));
  EXPECT_TRUE(strategy.Json().contains("timeouts"));
  CtlResult set = fleet.Ctl({"--json", "strategy", "set", "round_robin", "--max-attempts", "2"});
  ASSERT_EQ(set.exit_code, 0) << set;
  EXPECT_EQ(set.Json()["strategy"], "STRATEGY_ROUND_ROBIN");
  EXPECT_EQ(set.Json()["retry"]["max_attempts"], 2);
  CtlResult set2 = fleet.Ctl({"--json", "strategy", "set", "priority", "--connect-timeout-ms",
                              "1500", "--eject-after", "4"});
  ASSERT_EQ(set2.exit_code, 0) << set2;
  EXPECT_EQ(set2.Json()["strategy"], "STRATEGY_PRIORITY");
  EXPECT_EQ(set2.Json()["retry"]["max_attempts"], 2);
  EXPECT_EQ(set2.Json()["retry"]["eject_after_failures"], 4);
  EXPECT_EQ(set2.Json()["timeouts"]["connect_ms"], "1500");
  EXPECT_EQ(fleet.Ctl({"--json", "strategy", "get"}).Json(), set2.Json());

  // state / models / proxies
  json state = fleet.State();
  ASSERT_TRUE(state.is_object());
  EXPECT_GT(std::stoull(state["snapshot_version"].get<std::string>()), 0u);
  EXPECT_EQ(state["nodes"].size(), 1u);
  EXPECT_EQ(state["strategy"]["strategy"], "STRATEGY_PRIORITY");
  CtlResult models = fleet.Ctl({"--json", "models"});
  ASSERT_EQ(models.exit_code, 0) << models;
  std::vector<std::string> names;
  const json model_list = models.Json();
  for (const auto& m : model_list["models"]) {
    names.push_back(m["name"]);
    EXPECT_EQ(m["locations"][0]["node"], "gpu1");
  }
  EXPECT_EQ(names, (std::vector<std::string>{"all-minilm:latest", "llama3.2:latest"})) << models;
  // pull: progress per node, the last message says done; an unknown model fails with exit 1
  CtlResult pulled = fleet.Ctl({"--json", "pull", "mistral", "--node", "gpu1"});
  ASSERT_EQ(pulled.exit_code, 0) << pulled;
  auto lines = pulled.JsonLines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["node"], "gpu1");
  EXPECT_EQ(lines.back()["done"], true);
  EXPECT_EQ(lines.back()["error"], "");
  EXPECT_TRUE(
      WaitFor([&] { return fleet.Ctl({"models"}).out.find("mistral:latest") != std::string::npos; },
              seconds(10), "the pulled model in the fleet's model list"));
  CtlResult bad_pull = fleet.Ctl({"pull", "no-such-model", "--all"});
  EXPECT_EQ(bad_pull.exit_code, 1) << bad_pull;
  EXPECT_NE(bad_pull.out.find("gpu1: error:"), std::string::npos) << bad_pull;

  // discovery: a sim answering on a scanned port joins as a discovered node
  const std::string range = "127.0.0.1:" + std::to_string(fleet.sim_port(stray)) + "-" +
                            std::to_string(fleet.sim_port(stray));
  CtlResult disc = fleet.Ctl({"--json", "discovery", "set", range, "--interval-ms", "60000"});
  ASSERT_EQ(disc.exit_code, 0) << disc;
  ASSERT_EQ(disc.Json()["ranges"].size(), 1u);
  EXPECT_EQ(disc.Json()["ranges"][0]["host"], "127.0.0.1");
  EXPECT_EQ(disc.Json()["ranges"][0]["port_from"], fleet.sim_port(stray));
  EXPECT_EQ(disc.Json()["interval_ms"], "60000");
  EXPECT_EQ(fleet.Ctl({"--json", "discovery", "get"}).Json(), disc.Json());
  const std::string discovered_name = "127.0.0.1-" + std::to_string(fleet.sim_port(stray));
  EXPECT_TRUE(WaitFor(
      [&] {
        CtlResult r = fleet.Ctl({"--json", "node", "get", discovered_name});
        return r.exit_code == 0 && r.Json()["discovered"] == true;
      },
      seconds(10), "the sim in the scanned range to join"));
  CtlResult off = fleet.Ctl({"--json", "discovery", "off"});
  ASSERT_EQ(off.exit_code, 0) << off;
  EXPECT_TRUE(off.Json()["ranges"].empty());

  // node remove
  const uint64_t before = fleet.SnapshotVersion();
  CtlResult removed = fleet.Ctl({"--json", "node", "remove", discovered_name});
  ASSERT_EQ(removed.exit_code, 0) << removed;
  EXPECT_GT(std::stoull(removed.Json()["snapshot_version"].get<std::string>()), before);
  EXPECT_EQ(fleet.Ctl({"node", "get", discovered_name}).exit_code, 1);
}

TEST(CorralctlTest, TokensWithJson) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  CtlResult created = fleet.Ctl({"--json", "token", "create", "team-a", "--model", "llama3.2",
                                 "--value", "team-a-secret-0001"});
  ASSERT_EQ(created.exit_code, 0) << created;
  json c = created.Json();
  EXPECT_EQ(c["token"]["name"], "team-a");
  EXPECT_EQ(c["token_text"], "team-a-secret-0001");
  // SHA-256 of "team-a-secret-0001": only the hash is kept.
  EXPECT_EQ(c["token"]["sha256_hex"],
            "15396211c9a6479e4d6051df0ef1cbbb917e8e24133cd239bf4c35411e83fa40");
  ASSERT_EQ(c["token"]["models"].size(), 1u);
  EXPECT_GT(std::stoull(c["snapshot_version"].get<std::string>()), 0u);

  CtlResult generated = fleet.Ctl({"--json", "token", "create", "ci"});
  ASSERT_EQ(generated.exit_code, 0) << generated;
  EXPECT_EQ(generated.Json()["token_text"].get<std::string>().size(), 64u) << generated;

  CtlResult duplicate = fleet.Ctl({"token", "create", "ci"});
  EXPECT_EQ(duplicate.exit_code, 1) << duplicate;
  EXPECT_NE(duplicate.err.find("ci"), std::string::npos) << duplicate;

  CtlResult list = fleet.Ctl({"--json", "token", "list"});
  ASSERT_EQ(list.exit_code, 0) << list;
  ASSERT_EQ(list.Json()["tokens"].size(), 2u) << list;
  EXPECT_EQ(list.out.find("team-a-secret-0001"), std::string::npos) << "a token's text was listed";

  CtlResult revoked = fleet.Ctl({"--json", "token", "revoke", "team-a"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked;
  EXPECT_TRUE(revoked.Json().contains("snapshot_version"));
  EXPECT_EQ(fleet.Ctl({"token", "revoke", "team-a"}).exit_code, 1);
  ASSERT_EQ(fleet.Ctl({"--json", "token", "list"}).Json()["tokens"].size(), 1u);
}

// Requests through a proxy reach `corralctl usage`: counted per request by the proxy, reported
// with its Reports, kept by the control plane.
TEST(CorralctlTest, UsageShowsTheRequestsAProxyServed) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t sim = 0;
  ASSERT_TRUE(fleet.StartSim("m", &sim));
  ASSERT_TRUE(AddNode(fleet, "n", sim));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  for (int i = 0; i < 3; ++i) {
    HttpAnswer answer = fleet.Generate(0, "m");
    ASSERT_EQ(answer.status, 200) << answer.body << answer.error;
  }
  CtlResult usage;
  ASSERT_TRUE(WaitFor(
      [&] {
        usage = fleet.Ctl({"--json", "usage", "--by", "node"});
        if (usage.exit_code != 0) return false;
        const auto json = usage.Json();
        return json.contains("rows") && json["rows"].size() == 1 &&
               json["rows"][0].value("node", "") == "n" &&
               std::stoull(json["rows"][0].value("requests", "0")) == 3;
      },
      seconds(20), "corralctl usage to show the three requests on node n"))
      << usage;
  const auto row = usage.Json()["rows"][0];
  EXPECT_GT(std::stoull(row.value("output_tokens", "0")), 0u) << usage;
}

TEST(CorralctlTest, ProxiesWithJson) {
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(StartCore(fleet, 1));
  size_t sim = 0;
  ASSERT_TRUE(fleet.StartSim("m", &sim));
  ASSERT_TRUE(AddNode(fleet, "n", sim));
  ASSERT_TRUE(fleet.WaitProxiesInSync());
  // A proxy acknowledges a snapshot in its next Report, a moment after applying it: the
  // control plane's view catches up within a Report's interval.
  CtlResult proxies;
  ASSERT_TRUE(WaitFor(
      [&] {
        proxies = fleet.Ctl({"--json", "proxies"});
        return proxies.exit_code == 0 && proxies.Json()["proxies"].size() == 1 &&
               proxies.Json()["proxies"][0]["applied_version"] ==
                   proxies.Json()["snapshot_version"];
      },
      seconds(15), "the control plane to record the proxy's acknowledgement"))
      << proxies;
  EXPECT_EQ(proxies.Json()["proxies"][0]["id"], "proxy-0");
  EXPECT_EQ(proxies.Json()["proxies"][0]["connected"], true);
  EXPECT_EQ(proxies.Json()["proxies"][0]["applied_version"], proxies.Json()["snapshot_version"]);
  EXPECT_FALSE(proxies.Json()["proxies"][0]["connected_at"].get<std::string>().empty());
  CtlResult table = fleet.Ctl({"proxies"});
  EXPECT_EQ(table.exit_code, 0) << table;
  EXPECT_NE(table.out.find("proxy-0"), std::string::npos) << table;
}

TEST(CorralctlTest, AddressAndTokenFromEnvironmentAndDataDir) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  // CORRAL_CONTROL + the token file found through --data-dir.
  CtlResult r = fleet.CtlRaw({"--data-dir", fleet.data_dir(), "node", "list"},
                             {{"CORRAL_CONTROL", fleet.control_address()}});
  EXPECT_EQ(r.exit_code, 0) << r;
  // CORRAL_DATA_DIR, and CORRAL_TOKEN winning over the file.
  r = fleet.CtlRaw({"--control", fleet.control_address(), "state"},
                   {{"CORRAL_DATA_DIR", fleet.data_dir()}});
  EXPECT_EQ(r.exit_code, 0) << r;
  r = fleet.CtlRaw({"--control", fleet.control_address(), "state"},
                   {{"CORRAL_DATA_DIR", fleet.data_dir()}, {"CORRAL_TOKEN", "not-the-token"}});
  EXPECT_EQ(r.exit_code, 1) << r;
}

TEST(CorralctlTest, ExitCodes) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  EXPECT_EQ(fleet.Ctl({"node", "list"}).exit_code, 0);
  EXPECT_EQ(fleet.Ctl({"node", "get", "nobody"}).exit_code, 1);
  EXPECT_EQ(fleet.Ctl({"node", "frobnicate"}).exit_code, 2);
  EXPECT_EQ(fleet.Ctl({"strategy", "set", "fastest"}).exit_code, 2);
  EXPECT_EQ(fleet.CtlRaw({"--help"}).exit_code, 0);
  EXPECT_EQ(fleet.CtlRaw({"node", "add", "--help"}).exit_code, 0);
}

// num_parallel and the routing rules through corralctl: each list edit is a read-modify-write
// of one list, the others stay, and --json is the API's StrategyConfig.
TEST(CorralctlTest, RoutingRulesWithJson) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  CtlResult added =
      fleet.Ctl({"--json", "node", "add", "gpu1", "http://127.0.0.1:9", "--num-parallel", "4"});
  ASSERT_EQ(added.exit_code, 0) << added;
  EXPECT_EQ(added.Json()["node"]["num_parallel"], 4);
  ASSERT_EQ(fleet.Ctl({"node", "update", "gpu1", "--num-parallel", "2"}).exit_code, 0);
  EXPECT_EQ(fleet.Ctl({"--json", "node", "get", "gpu1"}).Json()["node"]["num_parallel"], 2);
  EXPECT_NE(fleet.Ctl({"node", "list"}).out.find("NUM_PAR"), std::string::npos);

  CtlResult queue =
      fleet.Ctl({"--json", "strategy", "set", "--queue-length", "64", "--queue-wait", "2s"});
  ASSERT_EQ(queue.exit_code, 0) << queue;
  EXPECT_EQ(queue.Json()["strategy"], "STRATEGY_LEAST_ACTIVE");  // no NAME: the strategy stays
  EXPECT_EQ(queue.Json()["queue"]["max_length"], 64);
  EXPECT_EQ(queue.Json()["queue"]["max_wait_ms"], "2000");
  ASSERT_EQ(fleet.Ctl({"strategy", "set", "weighted"}).exit_code, 0);  // the old form
  CtlResult shown = fleet.Ctl({"strategy", "get"});
  EXPECT_NE(shown.out.find("strategy:           weighted"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("queue length:       64 requests"), std::string::npos) << shown;

  ASSERT_EQ(fleet.Ctl({"placement", "add", "llama3*", "--node", "gpu1", "--hard"}).exit_code, 0);
  CtlResult placed = fleet.Ctl({"--json", "placement", "add", "qwen*", "--label", "gpu=a100"});
  ASSERT_EQ(placed.exit_code, 0) << placed;
  ASSERT_EQ(placed.Json()["placement"].size(), 2u) << placed;
  EXPECT_EQ(placed.Json()["placement"][1]["labels"]["gpu"], "a100");
  // The same pattern again replaces its rule where it stands.
  CtlResult soft = fleet.Ctl({"--json", "placement", "add", "llama3*", "--node", "gpu1"});
  ASSERT_EQ(soft.Json()["placement"].size(), 2u) << soft;
  EXPECT_EQ(soft.Json()["placement"][0]["pattern"], "llama3*");
  EXPECT_EQ(soft.Json()["placement"][0]["hard"], false);
  CtlResult table = fleet.Ctl({"placement", "list"});
  EXPECT_NE(table.out.find("PATTERN  MODE  NODES  LABELS\n"), std::string::npos) << table;
  EXPECT_NE(table.out.find("qwen*    soft  -      gpu=a100\n"), std::string::npos) << table;
  ASSERT_EQ(fleet.Ctl({"placement", "remove", "qwen*"}).exit_code, 0);
  CtlResult missing = fleet.Ctl({"placement", "remove", "qwen*"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_NE(missing.err.find("no placement rule for pattern \"qwen*\""), std::string::npos)
      << missing;

  ASSERT_EQ(fleet.Ctl({"alias", "set", "fast", "llama3.2:1b"}).exit_code, 0);
  CtlResult retarget = fleet.Ctl({"--json", "alias", "set", "FAST:latest", "qwen2.5:7b"});
  ASSERT_EQ(retarget.Json()["aliases"].size(), 1u) << retarget;  // the same model name
  EXPECT_EQ(retarget.Json()["aliases"][0]["target"], "qwen2.5:7b");
  ASSERT_EQ(fleet.Ctl({"model-memory", "set", "*:70b*", "42.5"}).exit_code, 0);
  CtlResult memory = fleet.Ctl({"--json", "model-memory", "list"});
  ASSERT_EQ(memory.Json()["model_memory"].size(), 1u) << memory;
  EXPECT_EQ(memory.Json()["model_memory"][0]["memory_gb"], 42.5);

  // Every list kept the others' edits.
  json all = fleet.Ctl({"--json", "strategy", "get"}).Json();
  EXPECT_EQ(all["strategy"], "STRATEGY_WEIGHTED");
  EXPECT_EQ(all["queue"]["max_length"], 64);
  EXPECT_EQ(all["placement"].size(), 1u);
  EXPECT_EQ(all["aliases"].size(), 1u);
  EXPECT_EQ(all["model_memory"].size(), 1u);
  ASSERT_EQ(fleet.Ctl({"alias", "remove", "fast"}).exit_code, 0);
  EXPECT_EQ(fleet.Ctl({"alias", "list"}).out, "no model aliases\n");
}

// ---- bad input: a clear error, and nothing changes ----

// What the operator owns of each node (the prober rewrites latency and probe times on its own).
std::string AdminView(const CtlResult& list) {
  json view = json::array();
  json parsed = list.Json();
  if (!parsed.is_object()) return "not JSON: " + list.out;
  for (const auto& info : parsed["nodes"]) {
    json node = info["node"];
    for (const char* probed : {"health", "models", "loaded_models", "latency_ms", "version"}) {
      node.erase(probed);
    }
    view.push_back({{"node", node},
                    {"created_at", info["created_at"]},
                    {"updated_at", info["updated_at"]},
                    {"discovered", info["discovered"]}});
  }
  return view.dump();
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fleet_.StartControl());
    ASSERT_TRUE(fleet_.StartSim("m", &sim_));
    ASSERT_TRUE(fleet_.StartSim("m", &spare_));
    ASSERT_TRUE(AddNode(fleet_, "n1", sim_));
    // Settled: the first probe verdict is in, so nothing else bumps the version meanwhile.
    ASSERT_TRUE(WaitFor([&] { return fleet_.NodeHealth("n1") == "HEALTH_HEALTHY"; }, seconds(10),
                        "n1 healthy"));
  }

  // Runs `args`, expects exit 1 with every word of `needles` in the message, and checks the
  // node list and snapshot version did not change.
  void ExpectRejected(const std::vector<std::string>& args,
                      const std::vector<std::string>& needles) {
    const std::string nodes_before = AdminView(fleet_.Ctl({"--json", "node", "list"}));
    const uint64_t version_before = fleet_.SnapshotVersion();
    ASSERT_GT(version_before, 0u);
    CtlResult r = fleet_.Ctl(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 1) << joined << "\n" << r;
    EXPECT_EQ(r.err.rfind("corralctl: ", 0), 0u) << r;
    for (const auto& needle : needles) {
      // "a|b": either wording names the problem.
      bool found = false;
      for (const auto& alternative : absl::StrSplit(needle, '|')) {
        found = found || r.err.find(std::string(alternative)) != std::string::npos;
      }
      EXPECT_TRUE(found) << joined << ": wanted '" << needle << "' in the message\n" << r;
    }
    EXPECT_EQ(AdminView(fleet_.Ctl({"--json", "node", "list"})), nodes_before) << joined;
    EXPECT_EQ(fleet_.SnapshotVersion(), version_before) << joined;
  }

  Fleet fleet_;
  size_t sim_ = 0, spare_ = 0;
};

TEST_F(BadInputTest, DuplicateName) {
  ExpectRejected({"node", "add", "n1", fleet_.sim_url(spare_)}, {"n1", "exists"});
}

TEST_F(BadInputTest, InvalidUrls) {
  ExpectRejected({"node", "add", "n2", "ftp://127.0.0.1:21"}, {"ftp://127.0.0.1:21", "http"});
  ExpectRejected({"node", "add", "n2", "http://:11434"}, {"no host"});
  ExpectRejected({"node", "add", "n2", "http://127.0.0.1:99999"}, {"99999", "port"});
  ExpectRejected({"node", "add", "n2", "http://127.0.0.1:0"}, {"port 0"});
  ExpectRejected({"node", "add", "n2", "http://127.0.0.1:abc"}, {"invalid port"});
  ExpectRejected({"node", "update", "n1", "--url", "ftp://127.0.0.1:21"}, {"ftp", "http"});
}

TEST_F(BadInputTest, InvalidName) {
  ExpectRejected({"node", "add", "bad name!", fleet_.sim_url(spare_)}, {"name"});
  ExpectRejected({"node", "add", std::string(65, 'x'), fleet_.sim_url(spare_)}, {"name"});
}

TEST_F(BadInputTest, UnknownNode) {
  for (const char* verb : {"get", "remove", "drain", "enable", "disable"}) {
    ExpectRejected({"node", verb, "ghost"}, {"\"ghost\"", "not found|not registered"});
  }
  ExpectRejected({"node", "update", "ghost", "--weight", "2"},
                 {"\"ghost\"", "not found|not registered"});
  ExpectRejected({"pull", "m", "--node", "ghost"}, {"ghost"});
}

TEST_F(BadInputTest, NegativeLimits) {
  const std::string url = fleet_.sim_url(spare_);
  ExpectRejected({"node", "add", "n2", url, "--max-parallel", "-1"}, {"max_parallel"});
  ExpectRejected({"node", "add", "n2", url, "--weight", "-1"}, {"weight"});
  ExpectRejected({"node", "add", "n2", url, "--max-memory-gb", "-2"}, {"max_memory_gb"});
  ExpectRejected({"node", "update", "n1", "--max-parallel", "-5"}, {"max_parallel"});
  ExpectRejected({"strategy", "set", "weighted", "--max-attempts", "-1"}, {"max_attempts"});
  ExpectRejected({"strategy", "set", "weighted", "--connect-timeout-ms", "-1"}, {"timeout"});
  ExpectRejected({"node", "add", "n2", url, "--priority", "-1"}, {"priority"});
}

TEST_F(BadInputTest, BadLabels) {
  const std::string url = fleet_.sim_url(spare_);
  ExpectRejected({"node", "add", "n2", url, "--label", "=v"}, {"label"});
  ExpectRejected({"node", "update", "n1", "--label", "bad key=v"}, {"label"});
  // A label without '=' never leaves the CLI: usage error, nothing sent.
  const uint64_t before = fleet_.SnapshotVersion();
  CtlResult r = fleet_.Ctl({"node", "add", "n2", url, "--label", "novalue"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("KEY=VALUE"), std::string::npos) << r;
  EXPECT_EQ(fleet_.SnapshotVersion(), before);
}

TEST_F(BadInputTest, BadRoutingRules) {
  ExpectRejected({"node", "add", "n2", fleet_.sim_url(spare_), "--num-parallel", "-1"},
                 {"num_parallel"});
  ExpectRejected({"strategy", "set", "--queue-length", "100001"}, {"max_length", "100000"});
  ExpectRejected({"strategy", "set", "--queue-wait", "2h"}, {"max_wait_ms", "one hour"});
  ExpectRejected({"placement", "add", "Llama3*", "--node", "n1"}, {"\"Llama3*\"", "lower case"});
  ExpectRejected({"placement", "add", "llama3*", "--node", "bad node!"}, {"\"bad node!\""});
  ExpectRejected({"alias", "set", "fast", "fast:latest"}, {"\"fast\"", "itself"});
  ExpectRejected({"alias", "set", "bad name", "llama3"}, {"\"bad name\"", "model name"});
  ExpectRejected({"model-memory", "set", "big*", "0"}, {"\"big*\"", "memory_gb"});
  ExpectRejected({"model-memory", "set", "big*", "5000"}, {"4096"});
  ExpectRejected({"alias", "remove", "nothing"}, {"no alias \"nothing\""});
  ASSERT_EQ(fleet_.Ctl({"alias", "set", "fast", "llama3"}).exit_code, 0);
  ExpectRejected({"alias", "set", "quick", "fast"}, {"\"quick\"", "itself an alias"});
}

TEST_F(BadInputTest, BadStrategyAndDiscovery) {
  const std::string before = fleet_.Ctl({"--json", "strategy", "get"}).out;
  CtlResult r = fleet_.Ctl({"strategy", "set", "fastest"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_NE(r.err.find("least_active, lowest_latency, round_robin, weighted, priority"),
            std::string::npos)
      << r;
  EXPECT_EQ(fleet_.Ctl({"--json", "strategy", "get"}).out, before);

  ExpectRejected({"discovery", "set", "127.0.0.1:0-10"}, {"port"});
  ExpectRejected({"discovery", "set", "127.0.0.1:2000-1000"}, {"port"});
  ExpectRejected({"discovery", "set", "127.0.0.1:1000-2000", "--interval-ms", "-5"}, {"interval"});
}

// corralctl never sends a strategy outside the enum; any other gRPC client can.
TEST_F(BadInputTest, UnknownStrategyValueOverTheApi) {
  const std::string before = fleet_.Ctl({"--json", "strategy", "get"}).out;
  const uint64_t version = fleet_.SnapshotVersion();
  auto stub = corral::v1::Admin::NewStub(
      grpc::CreateChannel(fleet_.control_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + fleet_.admin_token());
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
  corral::v1::SetStrategyRequest req;
  req.set_strategy(static_cast<corral::v1::Strategy>(99));
  corral::v1::StrategyConfig reply;
  grpc::Status status = stub->SetStrategy(&ctx, req, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("strategy"), std::string::npos) << status.error_message();
  EXPECT_EQ(fleet_.Ctl({"--json", "strategy", "get"}).out, before);
  EXPECT_EQ(fleet_.SnapshotVersion(), version);
}

TEST_F(BadInputTest, WrongTokenIsAnAuthenticationError) {
  const uint64_t before = fleet_.SnapshotVersion();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"node", "list"}, {"node", "add", "n2", fleet_.sim_url(spare_)}, {"state"}}) {
    std::vector<std::string> full = {"--control", fleet_.control_address(), "--token", "wrong"};
    full.insert(full.end(), args.begin(), args.end());
    CtlResult r = fleet_.CtlRaw(full);
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_NE(r.err.find("authentication"), std::string::npos) << r;
  }
  EXPECT_EQ(fleet_.SnapshotVersion(), before);
  EXPECT_EQ(fleet_.Ctl({"--json", "node", "list"}).Json()["nodes"].size(), 1u);
}

}  // namespace
}  // namespace corral::testing
