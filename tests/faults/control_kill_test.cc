// The control plane killed with SIGKILL, again and again, under load and during writes.
//
// Promises (docs/architecture.md, Failure behaviour): proxies never need the control plane on the
// request path, so no request fails while it is down or restarting; once it is back every proxy
// applies its current version again; and the registry loses no acknowledged change: every admin
// call that returned OK is there after any number of kills, and the snapshot version never goes
// back.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "corral/v1/control.grpc.pb.h"
#include "tests/control/fleet.h"
#include "tests/faults/harness.h"

namespace corral::faults {
namespace {

using corral::testing::CtlResult;
using corral::testing::Fleet;
using corral::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Starts the control plane again on its port. The port can be held for a moment by someone's
// outgoing connection once the old process is gone, so a failed start is retried.
::testing::AssertionResult RestartControl(Fleet& fleet) {
  return WaitFor([&] { return static_cast<bool>(fleet.StartControl()); }, seconds(60),
                 "corral-control to start again on port " + std::to_string(fleet.control_port()));
}

TEST(ControlKillTest, ControlPlaneKilledUnderLoadFailsNoRequestAndProxiesResync) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  ASSERT_TRUE(fleet.StartProxy("proxy-0"));
  ASSERT_TRUE(fleet.StartProxy("proxy-1"));
  for (size_t i = 0; i < 3; ++i) {
    size_t sim = 0;
    ASSERT_TRUE(fleet.StartSim("llama3.2:latest", &sim));
    CtlResult added = fleet.Ctl({"node", "add", "n" + std::to_string(i), fleet.sim_url(sim)});
    ASSERT_EQ(added.exit_code, 0) << added;
  }
  ASSERT_TRUE(fleet.WaitProxiesInSync(seconds(60)));

  TrafficOptions options;
  options.ports = {fleet.proxy_port(0), fleet.proxy_port(1)};
  options.threads = 4;
  options.kinds = StandardMix("llama3.2");
  Traffic traffic(options);

  int kills = 0, resyncs = 0;
  uint64_t version = fleet.SnapshotVersion();
  const uint64_t first_version = version;
  const auto end = std::chrono::steady_clock::now() + SoakDuration();
  while (std::chrono::steady_clock::now() < end) {
    const auto finished = [&] { return traffic.finished(); };
    ASSERT_TRUE(WaitForMore(finished, RandomIn(5, 30), "traffic before the kill"));
    ASSERT_TRUE(fleet.KillControl());
    ++kills;
    // The proxies serve on their own while it is down.
    ASSERT_TRUE(WaitForMore(finished, RandomIn(5, 30), "traffic while the control plane is down"));
    ASSERT_TRUE(RestartControl(fleet));
    // A change made on the restarted control plane reaches both proxies.
    CtlResult changed = fleet.Ctl({"node", "update", "n" + std::to_string(kills % 3), "--label",
                                   "restart=" + std::to_string(kills)});
    ASSERT_EQ(changed.exit_code, 0) << changed;
    const uint64_t now = fleet.SnapshotVersion();
    EXPECT_GT(now, version) << "the version went back or did not move across a restart";
    version = now;
    ASSERT_TRUE(fleet.WaitProxiesInSync(seconds(60)));
    ++resyncs;
  }
  traffic.Stop();
  const TrafficCounts counts = traffic.counts();

  std::ostringstream failures;
  for (const auto& f : counts.failures) failures << "\n  " << f;
  EXPECT_EQ(counts.failed, 0) << "requests failed:" << failures.str();
  EXPECT_EQ(counts.cut, 0) << "streams were cut though no node failed";
  EXPECT_GT(counts.complete, 0);
  for (size_t p = 0; p < fleet.proxy_count(); ++p) {
    EXPECT_TRUE(WaitProxyIdle(fleet.proxy_port(p))) << fleet.proxy_id(p);
  }

  std::ostringstream line;
  line << SoakDuration().count() << " s, 2 proxies, 3 sims, 4 client threads: " << counts.sent
       << " requests, " << counts.complete << " complete, " << counts.failed << " failed; " << kills
       << " SIGKILLs of corral-control, " << resyncs << " resyncs of both proxies; version "
       << first_version << " -> " << version << "; slowest request " << counts.slowest_s << " s";
  ReportMeasured("ControlKillTest", line.str());
}

// One admin client over gRPC that reconnects quickly after the control plane comes back.
class AdminClient {
 public:
  AdminClient(const std::string& address, std::string token) : token_(std::move(token)) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
    stub_ = corral::v1::Admin::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  // A call waits for the control plane to be reachable (up to its deadline) instead of failing
  // at once while it is down: the calls that fail are the ones a kill interrupted.
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->AddMetadata("authorization", "Bearer " + token_);
    ctx->set_wait_for_ready(true);
    ctx->set_deadline(std::chrono::system_clock::now() + seconds(10));
  }
  corral::v1::Admin::Stub& stub() { return *stub_; }

 private:
  std::string token_;
  std::unique_ptr<corral::v1::Admin::Stub> stub_;
};

// What the writer learned about each node name it used.
enum class Known { kPresent, kAbsent, kUnknown };

TEST(ControlKillTest, RegistryKeepsEveryAcknowledgedChangeThroughSigkillDuringWrites) {
  Fleet fleet;
  ASSERT_TRUE(fleet.StartControl());
  ASSERT_TRUE(fleet.StartProxy("proxy-0"));
  const std::string token = fleet.admin_token();

  // The writer adds nodes and removes the oldest, as fast as the control plane answers. A call
  // that returned OK is acknowledged: it must survive. One that failed may or may not have
  // committed (the kill may land after the commit, before the answer); the writer then learns
  // the truth later, when it removes that node (OK: it was there; NOT_FOUND: it was not).
  std::mutex mu;
  std::map<std::string, Known> known;    // guarded by mu
  std::vector<uint64_t> acked_versions;  // in the order the writer got them; guarded by mu
  std::atomic<int64_t> acked{0}, unacked{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    AdminClient admin(fleet.control_address(), token);
    std::deque<std::string> live;
    for (int i = 0; !stop.load(); ++i) {
      const std::string name = "w-" + std::to_string(i);
      {
        grpc::ClientContext ctx;
        admin.Prepare(&ctx);
        corral::v1::CreateNodeRequest req;
        req.set_name(name);
        // A port nothing listens on, unique per node: the prober finds it down at once.
        req.set_url("http://127.0.0." + std::to_string(2 + i / 40000) + ":" +
                    std::to_string(20000 + i % 40000));
        req.mutable_labels()->insert({"writer", "fault-suite"});
        corral::v1::NodeInfo reply;
        const grpc::Status status = admin.stub().CreateNode(&ctx, req, &reply);
        std::lock_guard<std::mutex> lock(mu);
        known[name] = status.ok() ? Known::kPresent : Known::kUnknown;
        (status.ok() ? acked : unacked).fetch_add(1);
        live.push_back(name);
      }
      if (live.size() <= 16) continue;
      const std::string oldest = live.front();
      grpc::ClientContext ctx;
      admin.Prepare(&ctx);
      corral::v1::RemoveNodeRequest req;
      req.set_name(oldest);
      corral::v1::RemoveNodeResponse reply;
      const grpc::Status status = admin.stub().RemoveNode(&ctx, req, &reply);
      std::lock_guard<std::mutex> lock(mu);
      if (status.ok()) {
        known[oldest] = Known::kAbsent;
        acked_versions.push_back(reply.snapshot_version());
        acked.fetch_add(1);
        live.pop_front();
      } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        known[oldest] = Known::kAbsent;  // its create never committed
        live.pop_front();
      } else {
        unacked.fetch_add(1);  // tried again on the next round
      }
    }
  });

  int kills = 0;
  uint64_t highest = fleet.SnapshotVersion();
  const auto end = std::chrono::steady_clock::now() + SoakDuration();
  while (std::chrono::steady_clock::now() < end) {
    ASSERT_TRUE(WaitForMore([&] { return acked.load(); }, RandomIn(3, 40),
                            "acknowledged writes before the kill"));
    ASSERT_TRUE(fleet.KillControl());
    ++kills;
    {
      // Everything acknowledged so far came from the process just killed.
      std::lock_guard<std::mutex> lock(mu);
      if (!acked_versions.empty()) highest = std::max(highest, acked_versions.back());
    }
    ASSERT_TRUE(RestartControl(fleet));
    const uint64_t now = fleet.SnapshotVersion();
    EXPECT_GE(now, highest) << "the snapshot version went back across a SIGKILL";
    highest = std::max(highest, now);
  }
  stop = true;
  writer.join();

  // Every version the writer was given went up, restarts included.
  for (size_t i = 1; i < acked_versions.size(); ++i) {
    EXPECT_GT(acked_versions[i], acked_versions[i - 1]) << "acknowledged change " << i;
  }
  // Every acknowledged change is in the registry.
  grpc::ClientContext ctx;
  AdminClient admin(fleet.control_address(), token);
  admin.Prepare(&ctx);
  corral::v1::ListNodesResponse listed;
  const grpc::Status status = admin.stub().ListNodes(&ctx, {}, &listed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::set<std::string> present;
  for (const auto& info : listed.nodes()) present.insert(info.node().name());
  int64_t checked = 0, unknown_committed = 0, unknown = 0;
  for (const auto& [name, state] : known) {
    if (state == Known::kUnknown) {
      ++unknown;
      if (present.count(name)) ++unknown_committed;
      continue;
    }
    ++checked;
    EXPECT_EQ(present.count(name), state == Known::kPresent ? 1u : 0u)
        << name
        << (state == Known::kPresent ? " was acknowledged as added but is missing"
                                     : " was acknowledged as removed but is there");
  }
  EXPECT_GT(kills, 0);
  EXPECT_GT(checked, 0);
  // The proxy follows the registry to its last version.
  ASSERT_TRUE(fleet.WaitProxiesInSync(seconds(60)));
  EXPECT_GE(fleet.SnapshotVersion(), highest);

  std::ostringstream line;
  line << SoakDuration().count() << " s: " << acked.load() << " acknowledged writes (" << checked
       << " node names checked after the last restart, all as acknowledged), " << unacked.load()
       << " writes that failed around a kill (" << unknown_committed << " of " << unknown
       << " uncertain adds had committed); " << kills
       << " SIGKILLs of corral-control; final version " << fleet.SnapshotVersion();
  ReportMeasured("ControlKillTest", line.str());
}

}  // namespace
}  // namespace corral::faults
