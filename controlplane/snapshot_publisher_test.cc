// SnapshotPublisher and the Watch reactor: a real Registry on a temp SQLite file, a real gRPC
// server on 127.0.0.1:0 with the Discovery service, and real stubs reading Watch streams —
// including one that never reads.
#include "controlplane/snapshot_publisher.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "controlplane/auth.h"
#include "controlplane/discovery_service.h"
#include "controlplane/proxy_tracker.h"
#include "corral/v1/control.grpc.pb.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::WaitFor;
using std::chrono::milliseconds;

constexpr char kProxyToken[] = "proxy-secret";

corral::v1::CreateNodeRequest NodeReq(const std::string& name, int port) {
  corral::v1::CreateNodeRequest req;
  req.set_name(name);
  req.set_url("http://10.0.0.1:" + std::to_string(port));
  return req;
}

// A subscriber that records what it is offered: the publisher's side alone, without gRPC.
class RecordingSubscriber final : public SnapshotSubscriber {
 public:
  void Push(std::shared_ptr<const corral::v1::Snapshot> s) override {
    std::lock_guard<std::mutex> lock(mu_);
    versions_.push_back(s->version());
  }
  void Close(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    close_code_ = status.error_code();
  }
  SubscriberStats Stats() const override { return {}; }
  std::vector<uint64_t> versions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return versions_;
  }
  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  grpc::StatusCode close_code() const {
    std::lock_guard<std::mutex> lock(mu_);
    return close_code_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<uint64_t> versions_;
  bool closed_ = false;
  grpc::StatusCode close_code_ = grpc::StatusCode::OK;
};

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = corral::testing::MakeTempDir("publisher");
    auto r = Registry::Open(dir_ + "/corral.db");
    ASSERT_TRUE(r.ok()) << r.status();
    registry_ = *std::move(r);
  }
  std::string dir_;
  std::unique_ptr<Registry> registry_;
};

TEST(WireCacheTest, SerialisesEachSnapshotOnceAndTheBytesParseBack) {
  WireCache cache;
  auto first = std::make_shared<corral::v1::Snapshot>();
  first->set_version(7);
  first->add_nodes()->set_name("gpu-1");
  std::shared_ptr<const corral::v1::Snapshot> snapshot = first;
  const auto wire = cache.Get(snapshot);
  ASSERT_NE(wire, nullptr);
  EXPECT_EQ(wire->version, 7u);
  // Every stream writing this version gets the same bytes.
  EXPECT_EQ(cache.Get(snapshot), wire);
  grpc::ByteBuffer copy(wire->bytes);
  corral::v1::Snapshot parsed;
  ASSERT_TRUE(grpc::SerializationTraits<corral::v1::Snapshot>::Deserialize(&copy, &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), snapshot->SerializeAsString());
  // A newer snapshot is serialised anew.
  auto second = std::make_shared<corral::v1::Snapshot>(*first);
  second->set_version(8);
  const auto next = cache.Get(second);
  ASSERT_NE(next, nullptr);
  EXPECT_NE(next, wire);
  EXPECT_EQ(next->version, 8u);
}

TEST_F(PublisherTest, NewSubscriberGetsCurrentAtOnceThenEveryNewerVersion) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("a", 1)).ok());
  SnapshotPublisher publisher(registry_.get());
  ASSERT_TRUE(publisher.Start().ok());
  auto* sub = new RecordingSubscriber();
  sub->Ref();  // the test's own reference, beyond the creator's
  publisher.Subscribe(sub);
  EXPECT_EQ(sub->versions(), std::vector<uint64_t>{1});
  ASSERT_TRUE(registry_->CreateNode(NodeReq("b", 2)).ok());
  EXPECT_TRUE(WaitFor([&] { return sub->versions().back() == 2; }, milliseconds(5000)));
  // A change that bumps nothing publishes nothing.
  ASSERT_TRUE(registry_->SetAdminState("a", corral::v1::ADMIN_STATE_ENABLED).ok());
  ASSERT_TRUE(registry_->SetAdminState("a", corral::v1::ADMIN_STATE_DISABLED).ok());
  EXPECT_TRUE(WaitFor([&] { return sub->versions().back() == 3; }, milliseconds(5000)));
  EXPECT_EQ(sub->versions(), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(publisher.current()->nodes(0).admin_state(), corral::v1::ADMIN_STATE_DISABLED);

  publisher.FinishAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "bye"));
  EXPECT_TRUE(sub->closed());
  EXPECT_EQ(sub->close_code(), grpc::StatusCode::UNAVAILABLE);
  publisher.Unsubscribe(sub);
  // Subscribing after FinishAll closes at once.
  auto* late = new RecordingSubscriber();
  publisher.Subscribe(late);
  EXPECT_TRUE(late->closed());
  EXPECT_TRUE(late->versions().empty());
  late->Unref();
  publisher.Stop();
  sub->Unref();
  sub->Unref();
}

TEST_F(PublisherTest, BurstOfChangesIsCoalescedAndEndsAtTheLatest) {
  SnapshotPublisherOptions options;
  // Wide enough that a burst of small commits lands in one window on any machine.
  options.debounce = milliseconds(500);
  SnapshotPublisher publisher(registry_.get(), options);
  ASSERT_TRUE(publisher.Start().ok());
  auto* sub = new RecordingSubscriber();
  sub->Ref();
  publisher.Subscribe(sub);
  constexpr int kChanges = 10;
  for (int i = 0; i < kChanges; ++i) {
    ASSERT_TRUE(registry_->CreateNode(NodeReq("n" + std::to_string(i), 100 + i)).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return sub->versions().back() == kChanges; }, milliseconds(10000)));
  const std::vector<uint64_t> seen = sub->versions();
  // The initial snapshot (0), then far fewer snapshots than changes, strictly increasing.
  EXPECT_LT(seen.size(), static_cast<size_t>(kChanges));
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i], seen[i - 1]);
  EXPECT_EQ(publisher.current()->nodes_size(), kChanges);
  publisher.Unsubscribe(sub);
  publisher.Stop();
  sub->Unref();
  sub->Unref();
}

TEST(SnapshotSizeTest, OverTheLimitSaysHowBigTheLimitAndWhatToDo) {
  corral::v1::Snapshot snapshot;
  snapshot.set_version(9);
  snapshot.add_nodes()->set_name("gpu-1");
  const size_t size = snapshot.ByteSizeLong();
  EXPECT_TRUE(CheckSnapshotSize(snapshot, size).ok());
  const absl::Status s = CheckSnapshotSize(snapshot, size - 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("snapshot version 9 is " + std::to_string(size) + " bytes"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("limit of " + std::to_string(size - 1) + " bytes"), std::string::npos)
      << s;
  EXPECT_NE(s.message().find("remove nodes"), std::string::npos) << s;
}

TEST_F(PublisherTest, OversizedSnapshotIsNeverPushedAndTheLastGoodOneStays) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("a", 1)).ok());
  auto small = registry_->BuildSnapshot();
  ASSERT_TRUE(small.ok());
  SnapshotPublisherOptions options;
  // Room for one more small node, not for one with a kilobyte of labels.
  options.max_snapshot_bytes = small->ByteSizeLong() + 200;
  SnapshotPublisher publisher(registry_.get(), options);
  ASSERT_TRUE(publisher.Start().ok());
  auto* sub = new RecordingSubscriber();
  sub->Ref();
  publisher.Subscribe(sub);
  EXPECT_EQ(sub->versions(), std::vector<uint64_t>{1});

  corral::v1::CreateNodeRequest big = NodeReq("big", 2);
  for (int i = 0; i < 8; ++i)
    (*big.mutable_labels())["k" + std::to_string(i)] = std::string(200, 'x');
  ASSERT_TRUE(registry_->CreateNode(big).ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.refused_version() == 2; }, milliseconds(5000)));
  EXPECT_EQ(sub->versions(), std::vector<uint64_t>{1});
  EXPECT_EQ(publisher.current()->version(), 1u);
  // A proxy connecting now still gets the last good snapshot.
  auto* late = new RecordingSubscriber();
  publisher.Subscribe(late);
  EXPECT_EQ(late->versions(), std::vector<uint64_t>{1});

  // Back under the limit: published as usual.
  ASSERT_TRUE(registry_->RemoveNode("big").ok());
  ASSERT_TRUE(WaitFor([&] { return sub->versions().back() == 3; }, milliseconds(5000)));
  EXPECT_EQ(sub->versions(), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(publisher.current()->nodes_size(), 1);

  publisher.Unsubscribe(sub);
  publisher.Unsubscribe(late);
  publisher.Stop();
  late->Unref();
  sub->Unref();
  sub->Unref();
}

TEST_F(PublisherTest, OversizedFirstSnapshotLeavesNothingToServeButStarts) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("a", 1)).ok());
  SnapshotPublisherOptions options;
  options.max_snapshot_bytes = 8;
  SnapshotPublisher publisher(registry_.get(), options);
  ASSERT_TRUE(publisher.Start().ok());
  EXPECT_EQ(publisher.current(), nullptr);
  EXPECT_EQ(publisher.refused_version(), 1u);
  auto* sub = new RecordingSubscriber();
  sub->Ref();
  publisher.Subscribe(sub);
  EXPECT_TRUE(sub->versions().empty());
  publisher.Unsubscribe(sub);
  publisher.Stop();
  sub->Unref();
  sub->Unref();
}

// ---- through gRPC ----

class DiscoveryServer {
 public:
  explicit DiscoveryServer(Registry* registry)
      : publisher_(registry), auth_("admin-secret", kProxyToken, "the test") {
    EXPECT_TRUE(publisher_.Start().ok());
    service_ = std::make_unique<DiscoveryService>(&publisher_, &tracker_, &auth_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
  }
  ~DiscoveryServer() {
    publisher_.FinishAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "test over"));
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    publisher_.Stop();
  }
  int port() const { return port_; }
  SnapshotPublisher& publisher() { return publisher_; }

 private:
  SnapshotPublisher publisher_;
  ProxyTracker tracker_;
  Authenticator auth_;
  std::unique_ptr<DiscoveryService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A proxy's Watch stream read on its own thread.
class Watcher {
 public:
  Watcher(int port, const std::string& id, const grpc::ChannelArguments& args = {}) {
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = corral::v1::Discovery::NewStub(channel_);
    ctx_.AddMetadata("authorization", std::string("Bearer ") + kProxyToken);
    corral::v1::WatchRequest req;
    req.set_proxy_id(id);
    reader_ = stub_->Watch(&ctx_, req);
  }
  ~Watcher() {
    ctx_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  void ReadInBackground() {
    thread_ = std::thread([this] {
      corral::v1::Snapshot s;
      while (reader_->Read(&s)) {
        last_version_ = s.version();
        ++received_;
      }
      status_ = reader_->Finish();
      ended_ = true;
    });
  }
  uint64_t last_version() const { return last_version_.load(); }
  int received() const { return received_.load(); }
  bool ended() const { return ended_.load(); }
  const grpc::Status& status() const { return status_; }  // REQUIRES: ended()

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<corral::v1::Discovery::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<corral::v1::Snapshot>> reader_;
  std::thread thread_;
  std::atomic<uint64_t> last_version_{0};
  std::atomic<int> received_{0};
  std::atomic<bool> ended_{false};
  grpc::Status status_;
};

TEST_F(PublisherTest, ManyWatchersAllReachTheLatestVersion) {
  ASSERT_TRUE(registry_->CreateNode(NodeReq("seed", 1)).ok());
  DiscoveryServer server(registry_.get());
  constexpr int kWatchers = 20;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(std::make_unique<Watcher>(server.port(), "proxy-" + std::to_string(i)));
    watchers.back()->ReadInBackground();
  }
  // Each gets the current snapshot on connect.
  for (auto& w : watchers) {
    EXPECT_TRUE(WaitFor([&] { return w->last_version() == 1; }, milliseconds(10000)));
  }
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(registry_->CreateNode(NodeReq("n" + std::to_string(i), 100 + i)).ok());
  }
  const uint64_t latest = registry_->version();
  for (auto& w : watchers) {
    EXPECT_TRUE(WaitFor([&] { return w->last_version() == latest; }, milliseconds(10000)));
  }
  EXPECT_TRUE(WaitFor([&] { return server.publisher().subscriber_count() == kWatchers; },
                      milliseconds(5000)));
}

TEST_F(PublisherTest, StalledWatcherHoldsOnlyTheNewestAndBlocksNoOne) {
  // Snapshots of ~1 MB: far beyond what HTTP/2 flow control lets through to a client that reads
  // nothing, so the stalled stream's first write never completes.
  ASSERT_TRUE(registry_->CreateNode(NodeReq("big", 1)).ok());
  ProbeResult probe;
  probe.reachable = true;
  probe.version = "0.12.3";
  std::vector<corral::v1::Model> models;
  for (int i = 0; i < 16; ++i) {
    corral::v1::Model m;
    m.set_name("model-" + std::to_string(i) + ":latest");
    m.set_raw_json(std::string(64 * 1024, 'x'));
    models.push_back(m);
  }
  probe.models = models;
  ASSERT_TRUE(registry_->RecordProbe("big", probe, corral::v1::HEALTH_HEALTHY).ok());

  DiscoveryServer server(registry_.get());
  grpc::ChannelArguments small_window;
  small_window.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  small_window.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  Watcher stalled(server.port(), "stalled", small_window);  // never reads
  Watcher healthy(server.port(), "healthy");
  healthy.ReadInBackground();

  auto stalled_stats = [&]() -> std::optional<SubscriberStats> {
    for (const SubscriberStats& s : server.publisher().Stats()) {
      if (s.proxy_id == "stalled") return s;
    }
    return std::nullopt;
  };
  ASSERT_TRUE(WaitFor([&] { return stalled_stats().has_value(); }, milliseconds(5000)));
  const uint64_t first = registry_->version();

  constexpr int kChanges = 8;
  for (int i = 0; i < kChanges; ++i) {
    ASSERT_TRUE(registry_
                    ->SetAdminState("big", i % 2 == 0 ? corral::v1::ADMIN_STATE_DRAINING
                                                      : corral::v1::ADMIN_STATE_ENABLED)
                    .ok());
    const uint64_t v = registry_->version();
    // The reader keeps up with every change while the stalled one sits on its first write.
    ASSERT_TRUE(WaitFor([&] { return healthy.last_version() == v; }, milliseconds(10000)));
  }
  const uint64_t latest = registry_->version();
  ASSERT_TRUE(
      WaitFor([&] { return stalled_stats()->pending_version == latest; }, milliseconds(5000)));
  const SubscriberStats s = *stalled_stats();
  EXPECT_EQ(s.inflight_version, first);  // still being written
  EXPECT_EQ(s.delivered_version, 0u);
  EXPECT_EQ(s.writes_started, 1u);
  // Everything between was replaced, never queued: at most two snapshots held.
  EXPECT_GE(s.superseded, static_cast<uint64_t>(kChanges - 1));
}

TEST_F(PublisherTest, WatchNeedsTheProxyToken) {
  DiscoveryServer server(registry_.get());
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server.port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = corral::v1::Discovery::NewStub(channel);
  for (const std::string token : {"", "Bearer wrong", "proxy-secret"}) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", token);
    auto reader = stub->Watch(&ctx, corral::v1::WatchRequest());
    corral::v1::Snapshot s;
    EXPECT_FALSE(reader->Read(&s));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
  }
}

}  // namespace
}  // namespace corral::control
