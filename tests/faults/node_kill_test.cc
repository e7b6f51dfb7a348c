// Nodes killed with SIGKILL at random under sustained load, and restarted on their ports.
//
// Promise (docs/proxy.md, Failures): a request that has not started streaming when its node
// dies moves to another node, so its client sees a complete answer; a stream cut mid-way ends
// with an Ollama error line (an SSE error event on /v1) and a proper end of body; afterwards the
// proxy holds nothing in flight and keeps serving.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "tests/faults/harness.h"

namespace corral::faults {
namespace {

using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kSims = 4;
constexpr int kClients = 6;

TEST(NodeKillTest, KilledNodesLoseNoRequestAndCutStreamsEndWithAnErrorLine) {
  const std::string dir = corral::testing::MakeTempDir("node_kill");
  // Short answers (8 tokens, 10 ms apart) so that many requests are before their first byte or
  // mid-stream when a node dies; no cold load, so a restarted node serves at once.
  const std::vector<std::string> sim_args = {"--load-delay-ms",
                                             "0",
                                             "--token-interval-ms",
                                             "10",
                                             "--tokens",
                                             "8",
                                             "--num-parallel",
                                             "4",
                                             "--models",
                                             "llama3.2:latest"};
  std::vector<std::unique_ptr<SimNode>> sims;
  json nodes = json::array();
  for (int i = 0; i < kSims; ++i) {
    sims.push_back(std::make_unique<SimNode>(dir, sim_args));
    ASSERT_GT(sims.back()->port(), 0);
    nodes.push_back(SnapshotNode("n" + std::to_string(i), sims.back()->url(), {"llama3.2:latest"}));
  }
  // Every node may be tried once; a killed node is ejected for a second, so the fleet's
  // capacity comes back quickly.
  const json snapshot = {{"version", "1"},
                         {"nodes", nodes},
                         {"retry",
                          {{"max_attempts", kSims},
                           {"eject_after_failures", 3},
                           {"eject_base_ms", "1000"},
                           {"eject_max_ms", "2000"}}},
                         {"timeouts", {{"connect_ms", "2000"}, {"first_byte_ms", "30000"}}}};
  FileProxy proxy(dir, snapshot);
  ASSERT_GT(proxy.port(), 0);

  TrafficOptions options;
  options.ports = {proxy.port()};
  options.threads = kClients;
  options.kinds = StandardMix("llama3.2");
  Traffic traffic(options);

  const auto end = std::chrono::steady_clock::now() + SoakDuration();
  int kills = 0;
  while (std::chrono::steady_clock::now() < end) {
    // A kill comes after some traffic, and only once the proxy ejects no node: the promise is
    // about one failing node at a time, with the rest of the fleet there to take its requests.
    const int64_t before = traffic.finished();
    const int64_t gap = RandomIn(10, 40);
    ASSERT_TRUE(WaitFor(
        [&] {
          return traffic.finished() >= before + gap && ReadInFlight(proxy.State()).ejected == 0;
        },
        seconds(60), "traffic, and no ejected node, before the next kill"));
    SimNode& victim = *sims[static_cast<size_t>(RandomIn(0, kSims - 1))];
    ASSERT_TRUE(victim.Kill());
    ++kills;
    // Down for a few requests, so some of them find it refusing connections.
    ASSERT_TRUE(WaitForMore([&] { return traffic.finished(); }, RandomIn(0, 15),
                            "traffic while the node is down"));
    ASSERT_TRUE(victim.Restart());
  }
  traffic.Stop();
  const TrafficCounts counts = traffic.counts();

  std::ostringstream failures;
  for (const auto& f : counts.failures) failures << "\n  " << f;
  EXPECT_EQ(counts.failed, 0) << "requests lost or broken:" << failures.str();
  EXPECT_GT(counts.complete, 0);
  EXPECT_GT(kills, 0);
  for (const auto& [reason, n] : counts.cut_reasons) {
    EXPECT_NE(reason.find("failed mid-stream"), std::string::npos)
        << n << " streams were cut for a reason other than their node dying: " << reason;
  }
  // Nothing stays in flight once the clients are done, and the proxy still serves.
  EXPECT_TRUE(WaitProxyIdle(proxy.port()));
  std::string why;
  EXPECT_EQ(SendOne(proxy.port(), StandardMix("llama3.2")[0], &why), Outcome::kComplete) << why;

  const std::string log = proxy.process().Log();
  const size_t moved = CountOf(log, " failed: ");  // a node failed before the first byte
  const InFlight state = ReadInFlight(proxy.State());
  std::ostringstream line;
  line << SoakDuration().count() << " s, " << kSims << " sims, " << kClients
       << " client threads: " << counts.sent << " requests (" << counts.streamed << " streamed), "
       << counts.complete << " complete, " << counts.cut << " streams cut with an error line, "
       << counts.failed << " failed; " << kills << " SIGKILLs; " << moved
       << " node failures before the first byte (request moved on); " << state.failures
       << " node failures recorded by the proxy; slowest request " << counts.slowest_s << " s";
  ReportMeasured("NodeKillTest", line.str());

  if (HasFailure()) {
    proxy.process().DumpLog();
    for (auto& sim : sims) sim->DumpLogs();
  }
  sims.clear();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace corral::faults
