// ControlClient against a real gRPC Discovery server running in the test process on a loopback
// port: the server streams the snapshots the test publishes and records every Watch and Report.
#include "dataplane/control_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/grpc_tls.h"
#include "controlplane/control_server.h"
#include "tests/support/process.h"
#include "tests/tls/test_pki.h"

namespace corral::dataplane {
namespace {

using corral::testing::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;

corral::v1::Snapshot SnapshotVersion(uint64_t version) {
  corral::v1::Snapshot snapshot;
  snapshot.set_version(version);
  corral::v1::Node* node = snapshot.add_nodes();
  node->set_name("gpu-" + std::to_string(version));
  node->set_url("http://127.0.0.1:11434");
  return snapshot;
}

// What the control plane's Discovery service does, scripted by the test: every Watch gets the
// latest published snapshot at once and each later one; Report is recorded. Calls whose token
// does not match `token` are refused like the real service refuses them.
class ScriptedDiscovery final : public corral::v1::Discovery::Service {
 public:
  explicit ScriptedDiscovery(std::string token) : token_(std::move(token)) {}

  void Publish(const corral::v1::Snapshot& snapshot) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      latest_ = snapshot;
    }
    cv_.notify_all();
  }
  // Ends every open stream (used before a server shutdown so handlers return at once).
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
  }

  std::vector<corral::v1::ReportRequest> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }
  std::vector<corral::v1::WatchRequest> watches() {
    std::lock_guard<std::mutex> lock(mu_);
    return watches_;
  }
  int refused() {
    std::lock_guard<std::mutex> lock(mu_);
    return refused_;
  }
  bool HasReport(const std::function<bool(const corral::v1::ReportRequest&)>& pred) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : reports_) {
      if (pred(r)) return true;
    }
    return false;
  }

  // Discovery
  grpc::Status Watch(grpc::ServerContext* ctx, const corral::v1::WatchRequest* request,
                     grpc::ServerWriter<corral::v1::Snapshot>* writer) override {
    if (!Authorized(ctx)) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token");
    std::unique_lock<std::mutex> lock(mu_);
    watches_.push_back(*request);
    uint64_t sent = 0;
    while (!ctx->IsCancelled() && !closing_) {
      if (latest_ && latest_->version() != sent) {
        corral::v1::Snapshot copy = *latest_;
        lock.unlock();
        if (!writer->Write(copy)) return grpc::Status::OK;
        lock.lock();
        sent = copy.version();
        continue;
      }
      // Short waits so a cancelled call is noticed without a notification.
      cv_.wait_for(lock, milliseconds(20));
    }
    return grpc::Status::OK;
  }

  grpc::Status Report(grpc::ServerContext* ctx, const corral::v1::ReportRequest* request,
                      corral::v1::ReportResponse* response) override {
    if (!Authorized(ctx)) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token");
    std::lock_guard<std::mutex> lock(mu_);
    reports_.push_back(*request);
    if (ack_usage_ && request->has_usage()) {
      response->set_usage_acked_sequence(request->usage().sequence());
    }
    return grpc::Status::OK;
  }
  // Whether Reports acknowledge the usage batch they carry (off: as if each answer were lost).
  void AckUsage(bool ack) {
    std::lock_guard<std::mutex> lock(mu_);
    ack_usage_ = ack;
  }

 private:
  bool Authorized(grpc::ServerContext* ctx) {
    auto it = ctx->client_metadata().find("authorization");
    const bool ok = it != ctx->client_metadata().end() &&
                    std::string(it->second.data(), it->second.size()) == "Bearer " + token_;
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      ++refused_;
    }
    return ok;
  }

  const std::string token_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<corral::v1::Snapshot> latest_;
  bool closing_ = false;
  bool ack_usage_ = false;
  std::vector<corral::v1::ReportRequest> reports_;
  std::vector<corral::v1::WatchRequest> watches_;
  int refused_ = 0;
};

// A real gRPC server on 127.0.0.1 hosting a ScriptedDiscovery.
class DiscoveryServer {
 public:
  // port 0 picks a free port.
  explicit DiscoveryServer(
      int port = 0, const std::string& token = "secret",
      std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials())
      : service_(token) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), credentials, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~DiscoveryServer() { Shutdown(); }

  void Shutdown() {
    if (!server_) return;
    service_.Close();
    server_->Shutdown(std::chrono::system_clock::now() + milliseconds(200));
    server_->Wait();
    server_.reset();
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ScriptedDiscovery& service() { return service_; }

 private:
  ScriptedDiscovery service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// The proxy's side of ApplyFn: records what it was given; rejects the versions it is told to.
class RecordingStore {
 public:
  absl::Status Apply(const corral::v1::Snapshot& snapshot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (reject_.count(snapshot.version())) {
      return absl::InvalidArgumentError("node gpu-x has an invalid url");
    }
    applied_.push_back(snapshot.version());
    return absl::OkStatus();
  }
  void Reject(uint64_t version) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_[version] = true;
  }
  std::vector<uint64_t> applied() {
    std::lock_guard<std::mutex> lock(mu_);
    return applied_;
  }

 private:
  std::mutex mu_;
  std::map<uint64_t, bool> reject_;
  std::vector<uint64_t> applied_;
};

ControlClientOptions OptionsFor(const std::string& address) {
  ControlClientOptions options;
  options.address = address;
  options.proxy_id = "proxy-a";
  options.token = "secret";
  options.report_interval = milliseconds(100);
  options.backoff_initial = milliseconds(100);
  options.backoff_max = milliseconds(400);
  options.usage_interval = milliseconds(100);
  return options;
}

TEST(ControlClientTest, AppliesEachSnapshotAndAcknowledgesIt) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  RecordingStore store;
  ControlClient client(
      OptionsFor(server.address()), [&](const auto& s) { return store.Apply(s); }, nullptr);
  client.Start();

  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(10), "v1 applied"));
  EXPECT_TRUE(client.connected());
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.service().HasReport([](const auto& r) {
          return r.applied_version() == 1 && r.proxy_id() == "proxy-a" && r.rejected_version() == 0;
        });
      },
      seconds(10), "ack of v1"));

  server.service().Publish(SnapshotVersion(2));
  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 2; }, seconds(10), "v2 applied"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.service().HasReport([](const auto& r) { return r.applied_version() == 2; });
      },
      seconds(10), "ack of v2"));
  EXPECT_EQ(store.applied(), (std::vector<uint64_t>{1, 2}));
  ASSERT_FALSE(server.service().watches().empty());
  EXPECT_EQ(server.service().watches()[0].proxy_id(), "proxy-a");
  EXPECT_EQ(server.service().watches()[0].have_version(), 0u);
  EXPECT_EQ(server.service().refused(), 0);
  client.Stop();
  EXPECT_FALSE(client.connected());
}

TEST(ControlClientTest, RejectsWhatApplyRefusesAndKeepsServingTheLastGoodVersion) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  RecordingStore store;
  store.Reject(2);
  ControlClient client(
      OptionsFor(server.address()), [&](const auto& s) { return store.Apply(s); }, nullptr);
  client.Start();
  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(10), "v1 applied"));

  server.service().Publish(SnapshotVersion(2));
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.service().HasReport([](const auto& r) {
          return r.rejected_version() == 2 && r.applied_version() == 1 &&
                 absl::StrContains(r.rejected_reason(), "invalid url");
        });
      },
      seconds(10), "nack of v2"));
  EXPECT_EQ(client.applied_version(), 1u);
  EXPECT_EQ(client.rejected_version(), 2u);

  // A later good snapshot is applied and clears the rejection from the reports.
  server.service().Publish(SnapshotVersion(3));
  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 3; }, seconds(10), "v3 applied"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.service().HasReport(
            [](const auto& r) { return r.applied_version() == 3 && r.rejected_version() == 0; });
      },
      seconds(10), "ack of v3 without the old nack"));
  EXPECT_EQ(store.applied(), (std::vector<uint64_t>{1, 3}));
}

TEST(ControlClientTest, ReportsLoadOnTheInterval) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  std::atomic<int> load_calls{0};
  ControlClient client(
      OptionsFor(server.address()), [](const auto&) { return absl::OkStatus(); },
      [&] {
        ++load_calls;
        corral::v1::NodeLoad load;
        load.set_node("gpu-1");
        load.set_in_flight(3);
        load.set_passive_failures(1);
        return std::vector<corral::v1::NodeLoad>{load};
      });
  client.Start();
  // One ack plus periodic reports: several reports, each with the load.
  ASSERT_TRUE(WaitFor([&] { return server.service().reports().size() >= 4; }, seconds(10),
                      "periodic reports"));
  for (const auto& report : server.service().reports()) {
    ASSERT_EQ(report.nodes_size(), 1);
    EXPECT_EQ(report.nodes(0).node(), "gpu-1");
    EXPECT_EQ(report.nodes(0).in_flight(), 3);
  }
  EXPECT_GE(load_calls.load(), 4);
}

// Usage goes out with Reports. While the control plane does not acknowledge a batch, every
// Report carries that same batch (same sequence, same entries) and what is counted meanwhile waits;
// once acknowledged, the next batch holds exactly what was counted since.
TEST(ControlClientTest, UsageBatchIsResentUnchangedUntilAcknowledged) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  UsageLedger ledger;
  ControlClientOptions options = OptionsFor(server.address());
  options.usage = &ledger;
  ControlClient client(
      options, [](const auto&) { return absl::OkStatus(); }, nullptr);
  ledger.Add("alice", "llama3:latest", "gpu-1", 10, 20, false);
  client.Start();

  auto with_usage = [&](uint64_t sequence) {
    std::vector<corral::v1::ReportRequest> out;
    for (const auto& r : server.service().reports()) {
      if (r.has_usage() && r.usage().sequence() == sequence) out.push_back(r);
    }
    return out;
  };
  ASSERT_TRUE(
      WaitFor([&] { return with_usage(1).size() >= 3; }, seconds(10), "batch 1 sent three times"));
  ledger.Add("bob", "qwen3:8b", "gpu-2", 1, 2, true);  // counted while batch 1 is unacknowledged
  ASSERT_TRUE(WaitFor([&] { return with_usage(1).size() >= 5; }, seconds(10), "batch 1 again"));
  for (const auto& r : with_usage(1)) {
    EXPECT_EQ(r.usage().instance_id(), ledger.instance_id());
    ASSERT_EQ(r.usage().entries_size(), 1);
    EXPECT_EQ(r.usage().entries(0).token(), "alice");
    EXPECT_EQ(r.usage().entries(0).requests(), 1u);
    EXPECT_EQ(r.usage().entries(0).output_tokens(), 20u);
  }

  server.service().AckUsage(true);
  ASSERT_TRUE(WaitFor([&] { return !with_usage(2).empty(); }, seconds(10), "batch 2"));
  const corral::v1::UsageBatch second = with_usage(2)[0].usage();
  ASSERT_EQ(second.entries_size(), 1);
  EXPECT_EQ(second.entries(0).token(), "bob");
  EXPECT_EQ(second.entries(0).errors(), 1u);
  EXPECT_EQ(second.entries(0).hour_start() % 3600, 0);
  // Batch 2 acknowledged too: nothing waits, and Reports go on without usage.
  const size_t reports = server.service().reports().size();
  ASSERT_TRUE(WaitFor([&] { return server.service().reports().size() >= reports + 2; }, seconds(10),
                      "more reports"));
  EXPECT_TRUE(with_usage(3).empty());
  EXPECT_FALSE(server.service().reports().back().has_usage());
}

// The whole path with a real corral-control: a proxy's ledger reaches the SQLite rollups through
// Reports, and a control plane restart in the middle (a batch whose Report failed, more counted
// meanwhile) loses nothing and counts nothing twice.
TEST(ControlClientTest, UsageReachesTheControlPlaneExactlyOnceAcrossItsRestart) {
  const std::string dir = corral::testing::MakeTempDir("usage-e2e");
  auto start = [&](int port) {
    corral::control::ControlServerOptions options;
    options.listen = "127.0.0.1:" + std::to_string(port);
    options.data_dir = dir;
    options.enable_prober = false;
    options.enable_scanner = false;
    auto server = corral::control::ControlServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  };
  auto control = start(0);
  ASSERT_NE(control, nullptr);
  const int port = control->port();
  const std::string proxy_token = control->proxy_token();
  auto requests_counted = [&](corral::control::ControlServer& c) {
    uint64_t total = 0;
    auto rows = c.registry().GetUsage(corral::control::Registry::UsageGrouping::kAll, 0);
    if (rows.ok()) {
      for (const auto& row : *rows) total += row.requests();
    }
    return total;
  };

  UsageLedger ledger;
  ControlClientOptions options = OptionsFor("127.0.0.1:" + std::to_string(port));
  options.token = proxy_token;
  options.usage = &ledger;
  ControlClient client(
      options, [](const auto&) { return absl::OkStatus(); }, nullptr);
  client.Start();
  for (int i = 0; i < 5; ++i) ledger.Add("alice", "llama3:latest", "gpu-1", 10, 100, false);
  ASSERT_TRUE(WaitFor([&] { return requests_counted(*control) == 5; }, seconds(10),
                      "first requests in the rollups"));

  control.reset();  // the control plane goes away; the proxy keeps counting
  for (int i = 0; i < 3; ++i) ledger.Add("bob", "llama3:latest", "gpu-2", 1, 1, i == 0);
  ASSERT_TRUE(WaitFor([&] { return ledger.keys() == 0; }, seconds(10),
                      "a batch drained into a Report that cannot arrive"));
  ledger.Add("bob", "llama3:latest", "gpu-2", 1, 1, false);  // waits for the batch after it

  control = start(port);
  ASSERT_NE(control, nullptr);
  ASSERT_TRUE(WaitFor([&] { return requests_counted(*control) == 9; }, seconds(20),
                      "every request in the rollups after the restart"));
  auto by_token = control->registry().GetUsage(corral::control::Registry::UsageGrouping::kToken, 0);
  ASSERT_TRUE(by_token.ok());
  ASSERT_EQ(by_token->size(), 2u);
  EXPECT_EQ((*by_token)[0].token(), "alice");
  EXPECT_EQ((*by_token)[0].requests(), 5u);
  EXPECT_EQ((*by_token)[0].output_tokens(), 500u);
  EXPECT_EQ((*by_token)[1].token(), "bob");
  EXPECT_EQ((*by_token)[1].requests(), 4u);
  EXPECT_EQ((*by_token)[1].errors(), 1u);
  client.Stop();
}

// A Report goes out as soon as requests start waiting, not an interval later, and then every
// busy_report_interval while they wait.
TEST(ControlClientTest, ReportsAtOnceWhenRequestsStartWaiting) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  ControlClientOptions options = OptionsFor(server.address());
  options.report_interval = seconds(60);
  options.busy_report_interval = milliseconds(50);
  std::atomic<int64_t> waiting{0};
  options.waiting = [&] { return waiting.load(); };
  ControlClient client(
      options, [](const auto&) { return absl::OkStatus(); }, nullptr);
  client.Start();
  ASSERT_TRUE(
      WaitFor([&] { return server.service().reports().size() == 1; }, seconds(10), "the ack"));
  waiting = 3;
  ASSERT_TRUE(WaitFor([&] { return server.service().reports().size() >= 4; }, seconds(30),
                      "reports while requests wait (the interval is a minute)"));
  waiting = 0;
  client.Stop();
}

// The real control plane divides a node's max_parallel between two proxies: idle, each holds
// half; when one has requests waiting and the other is idle, the busy one gets the whole node
// once the idle one has acknowledged its smaller share; their grants never add up to more.
TEST(ControlClientTest, ABusyProxyGetsTheWholeNodeFromAnIdleOne) {
  const std::string dir = corral::testing::MakeTempDir("grants");
  corral::control::ControlServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.data_dir = dir;
  server_options.enable_prober = false;
  server_options.enable_scanner = false;
  auto control = corral::control::ControlServer::Start(server_options);
  ASSERT_TRUE(control.ok()) << control.status();
  corral::v1::CreateNodeRequest node;
  node.set_name("gpu1");
  node.set_url("http://127.0.0.1:9");
  node.set_max_parallel(4);
  node.set_num_parallel(4);
  ASSERT_TRUE((*control)->registry().CreateNode(node).ok());

  struct Proxy {
    SlotGrants grants;
    std::atomic<int64_t> in_flight{0};
    std::atomic<int64_t> waiting{0};
    std::unique_ptr<ControlClient> client;
  };
  Proxy a, b;
  auto start = [&](Proxy& p, const std::string& id) {
    ControlClientOptions options = OptionsFor("127.0.0.1:" + std::to_string((*control)->port()));
    options.proxy_id = id;
    options.token = (*control)->proxy_token();
    options.report_interval = milliseconds(200);
    options.busy_report_interval = milliseconds(100);
    options.grants = &p.grants;
    options.waiting = [&p] { return p.waiting.load(); };
    p.client = std::make_unique<ControlClient>(
        options, [](const auto&) { return absl::OkStatus(); },
        [&p] {
          corral::v1::NodeLoad load;
          load.set_node("gpu1");
          load.set_in_flight(p.in_flight.load());
          load.set_waiting(p.waiting.load());
          corral::v1::ModelLoad* model = load.add_models();
          model->set_model("llama3:latest");
          model->set_in_flight(p.in_flight.load());
          model->set_waiting(p.waiting.load());
          return std::vector<corral::v1::NodeLoad>{load};
        });
    p.client->Start();
  };
  start(a, "proxy-a");
  start(b, "proxy-b");
  auto limit = [](Proxy& p) { return p.grants.NodeLimit("gpu1", 4); };
  ASSERT_TRUE(WaitFor([&] { return limit(a) == 2 && limit(b) == 2; }, seconds(20),
                      "two idle proxies hold two slots each"));

  b.in_flight = 2;
  b.waiting = 6;
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_LE(limit(a) + limit(b), 4);
        return limit(b) == 4 && limit(a) == 0;
      },
      seconds(20), "the busy proxy holds the whole node"));
  EXPECT_EQ(b.grants.ModelLimit("gpu1", "llama3:latest", 4), 4);

  // Demand moves back: both busy, each gets a fair half (b's requests beyond its new share
  // have finished: slots still in use are never given to another proxy).
  a.waiting = 3;
  b.in_flight = 2;
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_LE(limit(a) + limit(b), 4);
        return limit(a) == 2 && limit(b) == 2;
      },
      seconds(20), "fair halves"));
  a.client->Stop();
  b.client->Stop();
}

TEST(ControlClientTest, SendsTheServedVersionAndDoesNotReapplyIt) {
  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(7));
  RecordingStore store;
  ControlClient client(
      OptionsFor(server.address()), [&](const auto& s) { return store.Apply(s); }, nullptr);
  client.Start(/*served_version=*/7);
  ASSERT_TRUE(WaitFor(
      [&] {
        return server.service().HasReport([](const auto& r) { return r.applied_version() == 7; });
      },
      seconds(10), "ack of the served version"));
  ASSERT_TRUE(WaitFor([&] { return client.connected(); }, seconds(10), "connected"));
  EXPECT_EQ(server.service().watches()[0].have_version(), 7u);
  EXPECT_TRUE(store.applied().empty());
}

TEST(ControlClientTest, ReconnectsWhenTheControlPlaneRestartsOnItsPort) {
  auto first = std::make_unique<DiscoveryServer>();
  const int port = first->port();
  first->service().Publish(SnapshotVersion(1));
  RecordingStore store;
  ControlClient client(
      OptionsFor(first->address()), [&](const auto& s) { return store.Apply(s); }, nullptr);
  client.Start();
  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(10), "v1 applied"));

  first->Shutdown();
  ASSERT_TRUE(WaitFor([&] { return !client.connected(); }, seconds(10), "disconnected"));
  // The proxy keeps what it served while the control plane is away.
  EXPECT_EQ(client.applied_version(), 1u);

  DiscoveryServer second(port);
  ASSERT_EQ(second.port(), port);
  second.service().Publish(SnapshotVersion(2));
  ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 2; }, seconds(30),
                      "v2 applied from the restarted control plane"));
  EXPECT_TRUE(client.connected());
  ASSERT_TRUE(WaitFor(
      [&] {
        return second.service().HasReport([](const auto& r) { return r.applied_version() == 2; });
      },
      seconds(10), "ack to the restarted control plane"));
  ASSERT_FALSE(second.service().watches().empty());
  EXPECT_EQ(second.service().watches()[0].have_version(), 1u);
}

// Stop must not wait out a backoff, a pending connect or an open stream. The backoff here is a
// minute, so a Stop that waited for it would blow the bound by far.
TEST(ControlClientTest, StopIsPromptInEveryState) {
  using Clock = std::chrono::steady_clock;
  auto slow = [](const std::string& address, const std::string& token) {
    ControlClientOptions options = OptionsFor(address);
    options.token = token;
    options.backoff_initial = seconds(60);
    options.backoff_max = seconds(60);
    options.report_interval = seconds(60);
    options.report_timeout = seconds(60);
    return options;
  };
  auto ok = [](const corral::v1::Snapshot&) { return absl::OkStatus(); };

  DiscoveryServer server;
  server.service().Publish(SnapshotVersion(1));
  {
    // Streaming.
    ControlClient client(slow(server.address(), "secret"), ok, nullptr);
    client.Start();
    ASSERT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(10), "applied"));
    const auto start = Clock::now();
    client.Stop();
    EXPECT_LT(Clock::now() - start, seconds(10));
  }
  {
    // Backing off after the control plane refused the token.
    ControlClient client(slow(server.address(), "wrong"), ok, nullptr);
    client.Start();
    ASSERT_TRUE(
        WaitFor([&] { return server.service().refused() >= 1; }, seconds(10), "a refused watch"));
    const auto start = Clock::now();
    client.Stop();
    EXPECT_LT(Clock::now() - start, seconds(10));
    EXPECT_FALSE(client.connected());
  }
  {
    // Waiting for a control plane that is not there.
    DiscoveryServer gone;
    const std::string address = gone.address();
    gone.Shutdown();
    ControlClient client(slow(address, "secret"), ok, nullptr);
    client.Start();
    const auto start = Clock::now();
    client.Stop();
    EXPECT_LT(Clock::now() - start, seconds(10));
    EXPECT_EQ(client.applied_version(), 0u);
  }
}

// gRPC's default receive limit is 4 MiB; a large fleet's snapshot is past it, and the client
// must take anything up to the limit the control plane publishes under.
TEST(ControlClientTest, AcceptsSnapshotsLargerThanGrpcsDefaultLimit) {
  DiscoveryServer server;
  corral::v1::Snapshot big = SnapshotVersion(1);
  corral::v1::Node node;
  node.set_url("http://10.0.0.1:11434");
  for (int k = 0; k < 8; ++k)
    (*node.mutable_labels())["k" + std::to_string(k)] = std::string(200, 'x');
  const size_t count = (size_t{5} << 20) / node.ByteSizeLong() + 1;
  for (size_t i = 0; i < count; ++i) {
    node.set_name("node-" + std::to_string(i));
    *big.add_nodes() = node;
  }
  ASSERT_GT(big.ByteSizeLong(), size_t{5} << 20);
  server.service().Publish(big);
  RecordingStore store;
  ControlClient client(
      OptionsFor(server.address()), [&](const auto& s) { return store.Apply(s); }, nullptr);
  client.Start();
  EXPECT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(20), "5 MiB applied"));
  client.Stop();
}

class ControlClientTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = corral::testing::MakeTestPki(corral::testing::MakeTempDir("control-client-tls"));
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new corral::testing::TestPki(*pki);
  }
  static void TearDownTestSuite() { delete pki_; }

  static std::shared_ptr<grpc::ServerCredentials> ServerCredentials(bool mutual) {
    ServerTlsFiles files;
    files.cert_file = pki_->server_cert;
    files.key_file = pki_->server_key;
    if (mutual) files.client_ca_file = pki_->ca_cert;
    auto security = MakeServerCredentials(files);
    EXPECT_TRUE(security.ok()) << security.status();
    return security.ok() ? security->credentials : nullptr;
  }

  static corral::testing::TestPki* pki_;
};

corral::testing::TestPki* ControlClientTlsTest::pki_ = nullptr;

TEST_F(ControlClientTlsTest, WatchesOverTlsWithTheCa) {
  DiscoveryServer server(0, "secret", ServerCredentials(/*mutual=*/false));
  server.service().Publish(SnapshotVersion(1));
  RecordingStore store;
  ControlClientOptions options = OptionsFor(server.address());
  options.tls_ca_file = pki_->ca_cert;
  ControlClient client(
      options, [&](const auto& s) { return store.Apply(s); }, nullptr);
  ASSERT_TRUE(client.init_status().ok()) << client.init_status();
  client.Start();
  EXPECT_TRUE(WaitFor([&] { return client.applied_version() == 1; }, seconds(10), "v1 over TLS"));
  client.Stop();
}

TEST_F(ControlClientTlsTest, MutualTlsNeedsTheClientCertificate) {
  DiscoveryServer server(0, "secret", ServerCredentials(/*mutual=*/true));
  server.service().Publish(SnapshotVersion(1));
  RecordingStore store;
  ControlClientOptions options = OptionsFor(server.address());
  options.tls_ca_file = pki_->ca_cert;
  ControlClient anonymous(
      options, [&](const auto& s) { return store.Apply(s); }, nullptr);
  options.tls_cert_file = pki_->client_cert;
  options.tls_key_file = pki_->client_key;
  ControlClient member(
      options, [&](const auto& s) { return store.Apply(s); }, nullptr);
  anonymous.Start();
  member.Start();
  EXPECT_TRUE(WaitFor([&] { return member.applied_version() == 1; }, seconds(10), "v1 over mTLS"));
  // Both have been trying for as long; only the one with a certificate got through.
  EXPECT_FALSE(anonymous.connected());
  EXPECT_EQ(store.applied(), std::vector<uint64_t>{1});
  anonymous.Stop();
  member.Stop();
}

TEST_F(ControlClientTlsTest, BadTlsFilesAreAnInitErrorAndNothingStarts) {
  ControlClientOptions options = OptionsFor("127.0.0.1:1");
  options.tls_ca_file = "/nonexistent/ca.crt";
  ControlClient client(
      options, [](const auto&) { return absl::OkStatus(); }, nullptr);
  EXPECT_EQ(client.init_status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(client.init_status().message().find("--control-tls-ca /nonexistent/ca.crt"),
            std::string::npos)
      << client.init_status();
  client.Start();  // does nothing
  client.Stop();
  options.tls_ca_file = pki_->ca_cert;
  options.tls_cert_file = pki_->client_cert;
  ControlClient no_key(
      options, [](const auto&) { return absl::OkStatus(); }, nullptr);
  EXPECT_NE(no_key.init_status().message().find("--control-tls-cert needs --control-tls-key"),
            std::string::npos)
      << no_key.init_status();
}

}  // namespace
}  // namespace corral::dataplane
