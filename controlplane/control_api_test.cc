// The control plane's gRPC API end to end: a real ControlServer (SQLite file in a temp data dir,
// gRPC on 127.0.0.1:0) driven through real stubs, with a small scripted Ollama node (a real HTTP
// server on loopback) where probing and pulling need one.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <thread>

#include "controlplane/control_server.h"
#include "corral/v1/control.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/process.h"

namespace corral::control {
namespace {

using corral::testing::WaitFor;
using std::chrono::milliseconds;

// A scripted Ollama node: version, tags, ps and a streaming pull.
class ScriptedNode {
 public:
  ScriptedNode() {
    server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("Ollama is running", "text/plain");
    });
    server_.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"version":"0.12.3"})", "application/json");
    });
    server_.Get("/api/tags", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"models":[{"name":"llama3.2:latest","size":2019393189,"digest":")" +
                          std::string(64, 'a') + R"(","modified_at":"2025-01-01T00:00:00Z"}]})",
                      "application/json");
    });
    server_.Get("/api/ps", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"models":[{"name":"llama3.2:latest","size_vram":1000}]})",
                      "application/json");
    });
    server_.Post("/api/pull", [](const httplib::Request& req, httplib::Response& res) {
      if (req.body.find("\"missing\"") != std::string::npos) {
        res.set_content(
            "{\"status\":\"pulling manifest\"}\n"
            "{\"error\":\"pull model manifest: file does not exist\"}\n",
            "application/x-ndjson");
        return;
      }
      res.set_content(
          "{\"status\":\"pulling manifest\"}\n"
          "{\"status\":\"pulling abc\",\"digest\":\"sha256:abc\",\"total\":100,"
          "\"completed\":40}\n"
          "{\"status\":\"pulling abc\",\"digest\":\"sha256:abc\",\"total\":100,"
          "\"completed\":100}\n"
          "{\"status\":\"success\"}\n",
          "application/x-ndjson");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    EXPECT_TRUE(WaitFor([this] { return server_.is_running(); }, milliseconds(5000)));
  }
  ~ScriptedNode() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

class ControlApiTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = corral::testing::MakeTempDir("control-api"); }

  void StartServer(bool prober = false) {
    ControlServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_;
    options.enable_prober = prober;
    options.enable_scanner = false;
    // Only ProbeNow can explain a prompt probe: the schedule alone would wait an hour.
    options.prober.interval = std::chrono::hours(1);
    options.prober.refresh_interval = std::chrono::hours(1);
    options.shutdown_grace = std::chrono::seconds(30);
    auto server = ControlServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    admin_ = corral::v1::Admin::NewStub(channel_);
    discovery_ = corral::v1::Discovery::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  }
  std::unique_ptr<grpc::ClientContext> AdminCtx() { return Ctx(server_->admin_token()); }

  grpc::Status Create(const std::string& name, const std::string& url,
                      corral::v1::NodeInfo* out = nullptr) {
    corral::v1::CreateNodeRequest req;
    req.set_name(name);
    req.set_url(url);
    corral::v1::NodeInfo info;
    return admin_->CreateNode(AdminCtx().get(), req, out ? out : &info);
  }

  // Node count and snapshot version as the API reports them.
  std::pair<int, uint64_t> Census() {
    corral::v1::FleetState state;
    EXPECT_TRUE(admin_->GetFleetState(AdminCtx().get(), {}, &state).ok());
    return {state.nodes_size(), state.snapshot_version()};
  }

  std::string dir_;
  std::unique_ptr<ControlServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<corral::v1::Admin::Stub> admin_;
  std::unique_ptr<corral::v1::Discovery::Stub> discovery_;
};

TEST_F(ControlApiTest, TokensAreCreatedPrivateAndRequired) {
  StartServer();
  for (const char* file : {"/admin.token", "/proxy.token"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
  EXPECT_EQ(server_->admin_token().size(), 64u);
  EXPECT_NE(server_->admin_token(), server_->proxy_token());

  corral::v1::ListNodesResponse nodes;
  grpc::ClientContext none;
  grpc::Status s = admin_->ListNodes(&none, {}, &nodes);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("admin.token"), std::string::npos) << s.error_message();
  EXPECT_EQ(admin_->ListNodes(Ctx("wrong").get(), {}, &nodes).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The proxy token opens Discovery only.
  EXPECT_EQ(admin_->ListNodes(Ctx(server_->proxy_token()).get(), {}, &nodes).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  corral::v1::ReportRequest report;
  report.set_proxy_id("p");
  corral::v1::ReportResponse ack;
  EXPECT_EQ(discovery_->Report(Ctx("wrong").get(), report, &ack).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(discovery_->Report(Ctx(server_->proxy_token()).get(), report, &ack).ok());
  EXPECT_TRUE(admin_->ListNodes(AdminCtx().get(), {}, &nodes).ok());
  // A mutation without the token changes nothing.
  grpc::ClientContext anon;
  corral::v1::CreateNodeRequest req;
  req.set_name("x");
  req.set_url("http://10.0.0.1:11434");
  corral::v1::NodeInfo info;
  EXPECT_EQ(admin_->CreateNode(&anon, req, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Census(), std::make_pair(0, uint64_t{0}));
}

TEST_F(ControlApiTest, TokensSurviveRestart) {
  StartServer();
  const std::string admin = server_->admin_token();
  server_.reset();
  StartServer();
  EXPECT_EQ(server_->admin_token(), admin);
}

TEST_F(ControlApiTest, BadInputGetsTheRightCodeAndChangesNothing) {
  StartServer();
  ASSERT_TRUE(Create("gpu-1", "http://10.0.0.5:11434").ok());
  const auto before = Census();

  corral::v1::NodeInfo info;
  EXPECT_EQ(Create("a b", "http://10.0.0.6:11434").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status bad_url = Create("gpu-2", "not a url");
  EXPECT_EQ(bad_url.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad_url.error_message().find("not a url"), std::string::npos);
  EXPECT_EQ(Create("gpu-1", "http://10.0.0.6:11434").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create("gpu-2", "10.0.0.5:11434").error_code(), grpc::StatusCode::ALREADY_EXISTS);

  corral::v1::CreateNodeRequest negative;
  negative.set_name("gpu-3");
  negative.set_url("http://10.0.0.7:11434");
  negative.set_max_parallel(-1);
  EXPECT_EQ(admin_->CreateNode(AdminCtx().get(), negative, &info).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  corral::v1::GetNodeRequest get;
  get.set_name("ghost");
  EXPECT_EQ(admin_->GetNode(AdminCtx().get(), get, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
  corral::v1::NodeNameRequest drain;
  drain.set_name("ghost");
  EXPECT_EQ(admin_->DrainNode(AdminCtx().get(), drain, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
  corral::v1::RemoveNodeRequest remove;
  remove.set_name("ghost");
  corral::v1::RemoveNodeResponse removed;
  EXPECT_EQ(admin_->RemoveNode(AdminCtx().get(), remove, &removed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  corral::v1::UpdateNodeRequest update;
  update.set_name("gpu-1");
  update.set_weight(-2);
  EXPECT_EQ(admin_->UpdateNode(AdminCtx().get(), update, &info).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  corral::v1::SetStrategyRequest strategy;
  strategy.set_strategy(static_cast<corral::v1::Strategy>(17));
  corral::v1::StrategyConfig config;
  EXPECT_EQ(admin_->SetStrategy(AdminCtx().get(), strategy, &config).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  corral::v1::PullModelRequest pull;
  pull.set_model("llama3.2");  // neither node nor all
  auto ctx = AdminCtx();
  auto reader = admin_->PullModel(ctx.get(), pull);
  corral::v1::PullProgress progress;
  EXPECT_FALSE(reader->Read(&progress));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  corral::v1::SetDiscoveryRequest discovery;
  auto* range = discovery.add_ranges();
  range->set_host("127.0.0.1");
  range->set_port_from(2000);
  range->set_port_to(1000);
  corral::v1::DiscoveryConfig discovery_config;
  EXPECT_EQ(admin_->SetDiscovery(AdminCtx().get(), discovery, &discovery_config).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Census(), before);
  EXPECT_TRUE(admin_->GetNode(AdminCtx().get(), get, &info).error_code() ==
              grpc::StatusCode::NOT_FOUND);
  get.set_name("gpu-1");
  ASSERT_TRUE(admin_->GetNode(AdminCtx().get(), get, &info).ok());
  EXPECT_EQ(info.node().weight(), 1);
  EXPECT_EQ(info.node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);
}

TEST_F(ControlApiTest, NodeLifecycleThroughTheApi) {
  StartServer();
  corral::v1::NodeInfo info;
  ASSERT_TRUE(Create("gpu-1", "10.0.0.5:11434", &info).ok());
  EXPECT_EQ(info.node().url(), "http://10.0.0.5:11434");

  corral::v1::NodeNameRequest name;
  name.set_name("gpu-1");
  ASSERT_TRUE(admin_->DrainNode(AdminCtx().get(), name, &info).ok());
  EXPECT_EQ(info.node().admin_state(), corral::v1::ADMIN_STATE_DRAINING);
  ASSERT_TRUE(admin_->DisableNode(AdminCtx().get(), name, &info).ok());
  EXPECT_EQ(info.node().admin_state(), corral::v1::ADMIN_STATE_DISABLED);
  ASSERT_TRUE(admin_->EnableNode(AdminCtx().get(), name, &info).ok());
  EXPECT_EQ(info.node().admin_state(), corral::v1::ADMIN_STATE_ENABLED);

  corral::v1::SetStrategyRequest strategy;
  strategy.set_strategy(corral::v1::STRATEGY_WEIGHTED);
  corral::v1::StrategyConfig config;
  ASSERT_TRUE(admin_->SetStrategy(AdminCtx().get(), strategy, &config).ok());
  ASSERT_TRUE(admin_->GetStrategy(AdminCtx().get(), {}, &config).ok());
  EXPECT_EQ(config.strategy(), corral::v1::STRATEGY_WEIGHTED);

  corral::v1::RemoveNodeRequest remove;
  remove.set_name("gpu-1");
  corral::v1::RemoveNodeResponse removed;
  ASSERT_TRUE(admin_->RemoveNode(AdminCtx().get(), remove, &removed).ok());
  EXPECT_EQ(removed.snapshot_version(), 6u);
  EXPECT_EQ(Census(), std::make_pair(0, uint64_t{6}));
}

TEST_F(ControlApiTest, NumParallelIsSetOnCreateAndUpdate) {
  StartServer();
  corral::v1::CreateNodeRequest create;
  create.set_name("gpu-1");
  create.set_url("http://10.0.0.5:11434");
  create.set_num_parallel(4);
  corral::v1::NodeInfo info;
  ASSERT_TRUE(admin_->CreateNode(AdminCtx().get(), create, &info).ok());
  EXPECT_EQ(info.node().num_parallel(), 4);

  corral::v1::UpdateNodeRequest update;
  update.set_name("gpu-1");
  update.set_num_parallel(2);
  ASSERT_TRUE(admin_->UpdateNode(AdminCtx().get(), update, &info).ok());
  EXPECT_EQ(info.node().num_parallel(), 2);
  update.set_num_parallel(-3);
  grpc::Status refused = admin_->UpdateNode(AdminCtx().get(), update, &info);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("num_parallel"), std::string::npos)
      << refused.error_message();

  corral::v1::GetNodeRequest get;
  get.set_name("gpu-1");
  ASSERT_TRUE(admin_->GetNode(AdminCtx().get(), get, &info).ok());
  EXPECT_EQ(info.node().num_parallel(), 2);
  EXPECT_EQ(Census(), std::make_pair(1, uint64_t{2}));
}

// The queue policy, placement rules, aliases and model memory rules: set through SetStrategy
// (each list only with its flag), read back through GetStrategy and the fleet state, refused with
// the offending entry named, kept across a restart, and pushed to a watching proxy.
TEST_F(ControlApiTest, RoutingRulesAreSetReadBackRefusedAndPushed) {
  StartServer();
  auto ctx = Ctx(server_->proxy_token());
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  corral::v1::WatchRequest watch;
  watch.set_proxy_id("proxy-a");
  auto reader = discovery_->Watch(ctx.get(), watch);
  corral::v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));

  corral::v1::SetStrategyRequest set;
  set.mutable_queue()->set_max_length(16);
  set.mutable_queue()->set_max_wait_ms(2000);
  set.set_set_placement(true);
  auto* rule = set.add_placement();
  rule->set_pattern("llama3:70b*");
  rule->add_nodes("gpu-big");
  rule->set_hard(true);
  set.set_set_aliases(true);
  auto* alias = set.add_aliases();
  alias->set_alias("fast");
  alias->set_target("llama3.2:1b");
  set.set_set_model_memory(true);
  auto* memory = set.add_model_memory();
  memory->set_pattern("*:70b*");
  memory->set_memory_gb(40);
  corral::v1::StrategyConfig config;
  ASSERT_TRUE(admin_->SetStrategy(AdminCtx().get(), set, &config).ok());
  EXPECT_EQ(config.placement_size(), 1);

  while (snapshot.version() < 1) ASSERT_TRUE(reader->Read(&snapshot));
  EXPECT_EQ(snapshot.queue().max_length(), 16);
  ASSERT_EQ(snapshot.placement_size(), 1);
  EXPECT_TRUE(snapshot.placement(0).hard());
  ASSERT_EQ(snapshot.aliases_size(), 1);
  EXPECT_EQ(snapshot.aliases(0).target(), "llama3.2:1b");
  ASSERT_EQ(snapshot.model_memory_size(), 1);
  EXPECT_EQ(snapshot.model_memory(0).memory_gb(), 40);
  ctx->TryCancel();
  reader->Finish();

  // A bad alias list is refused whole; the stored rules stay.
  corral::v1::SetStrategyRequest chain;
  chain.set_set_aliases(true);
  auto* a = chain.add_aliases();
  a->set_alias("quick");
  a->set_target("fast");
  auto* b = chain.add_aliases();
  b->set_alias("fast");
  b->set_target("llama3");
  grpc::Status refused = admin_->SetStrategy(AdminCtx().get(), chain, &config);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("alias \"quick\""), std::string::npos)
      << refused.error_message();

  // A strategy change alone keeps every rule.
  corral::v1::SetStrategyRequest strategy;
  strategy.set_strategy(corral::v1::STRATEGY_PRIORITY);
  ASSERT_TRUE(admin_->SetStrategy(AdminCtx().get(), strategy, &config).ok());

  server_.reset();
  StartServer();
  ASSERT_TRUE(admin_->GetStrategy(AdminCtx().get(), {}, &config).ok());
  EXPECT_EQ(config.strategy(), corral::v1::STRATEGY_PRIORITY);
  EXPECT_EQ(config.queue().max_wait_ms(), 2000);
  ASSERT_EQ(config.aliases_size(), 1);
  EXPECT_EQ(config.aliases(0).alias(), "fast");
  EXPECT_EQ(config.placement(0).nodes(0), "gpu-big");
  EXPECT_EQ(config.model_memory(0).pattern(), "*:70b*");
  corral::v1::FleetState state;
  ASSERT_TRUE(admin_->GetFleetState(AdminCtx().get(), {}, &state).ok());
  EXPECT_EQ(state.strategy().aliases_size(), 1);
  EXPECT_EQ(state.snapshot_version(), 2u);
}

TEST_F(ControlApiTest, HealthIsServingForBothServices) {
  StartServer();
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const char* service : {"", "corral.v1.Admin", "corral.v1.Discovery"}) {
    grpc::ClientContext ctx;  // no token: health stays open
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(ControlApiTest, WatchSendsCurrentSnapshotThenTheNextAfterAnAdminChange) {
  StartServer();
  ASSERT_TRUE(Create("gpu-1", "http://10.0.0.5:11434").ok());
  auto ctx = Ctx(server_->proxy_token());
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  corral::v1::WatchRequest req;
  req.set_proxy_id("proxy-a");
  auto reader = discovery_->Watch(ctx.get(), req);
  corral::v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));  // the current one, at once
  // Connecting within the publisher's debounce window after the create may first show the
  // snapshot from before it; the create's own snapshot follows.
  while (snapshot.version() < 1) ASSERT_TRUE(reader->Read(&snapshot));
  EXPECT_EQ(snapshot.version(), 1u);
  ASSERT_EQ(snapshot.nodes_size(), 1);
  EXPECT_EQ(snapshot.nodes(0).name(), "gpu-1");

  corral::v1::NodeNameRequest name;
  name.set_name("gpu-1");
  corral::v1::NodeInfo info;
  ASSERT_TRUE(admin_->DrainNode(AdminCtx().get(), name, &info).ok());
  ASSERT_TRUE(reader->Read(&snapshot));
  EXPECT_EQ(snapshot.version(), 2u);
  EXPECT_EQ(snapshot.nodes(0).admin_state(), corral::v1::ADMIN_STATE_DRAINING);

  // The tracker saw the stream.
  corral::v1::ListProxiesResponse proxies;
  ASSERT_TRUE(admin_->ListProxies(AdminCtx().get(), {}, &proxies).ok());
  ASSERT_EQ(proxies.proxies_size(), 1);
  EXPECT_TRUE(proxies.proxies(0).connected());
  ctx->TryCancel();
  reader->Finish();
  EXPECT_TRUE(WaitFor(
      [&] {
        corral::v1::ListProxiesResponse p;
        return admin_->ListProxies(AdminCtx().get(), {}, &p).ok() && p.proxies_size() == 1 &&
               !p.proxies(0).connected();
      },
      milliseconds(5000), "proxy marked disconnected"));
}

TEST_F(ControlApiTest, ReportIsReflectedInProxiesAndNodeLoad) {
  StartServer();
  ASSERT_TRUE(Create("gpu-1", "http://10.0.0.5:11434").ok());
  auto watch_ctx = Ctx(server_->proxy_token());
  watch_ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  corral::v1::WatchRequest watch;
  watch.set_proxy_id("proxy-a");
  auto reader = discovery_->Watch(watch_ctx.get(), watch);
  corral::v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));
  while (snapshot.version() < 1) ASSERT_TRUE(reader->Read(&snapshot));

  corral::v1::ReportRequest report;
  report.set_proxy_id("proxy-a");
  report.set_applied_version(snapshot.version());
  report.set_rejected_version(snapshot.version() + 7);
  report.set_rejected_reason("strategy unknown");
  auto* load = report.add_nodes();
  load->set_node("gpu-1");
  load->set_in_flight(3);
  load->set_passive_failures(2);
  corral::v1::ReportResponse ack;
  ASSERT_TRUE(discovery_->Report(Ctx(server_->proxy_token()).get(), report, &ack).ok());

  corral::v1::ListProxiesResponse proxies;
  ASSERT_TRUE(admin_->ListProxies(AdminCtx().get(), {}, &proxies).ok());
  EXPECT_EQ(proxies.snapshot_version(), 1u);
  ASSERT_EQ(proxies.proxies_size(), 1);
  const corral::v1::ProxyInfo& p = proxies.proxies(0);
  EXPECT_EQ(p.id(), "proxy-a");
  EXPECT_EQ(p.applied_version(), 1u);
  EXPECT_EQ(p.rejected_version(), 8u);
  EXPECT_EQ(p.rejected_reason(), "strategy unknown");
  EXPECT_FALSE(p.last_report_at().empty());
  ASSERT_EQ(p.nodes_size(), 1);
  EXPECT_EQ(p.nodes(0).node(), "gpu-1");
  EXPECT_EQ(p.nodes(0).in_flight(), 3);

  corral::v1::GetNodeRequest get;
  get.set_name("gpu-1");
  corral::v1::NodeInfo info;
  ASSERT_TRUE(admin_->GetNode(AdminCtx().get(), get, &info).ok());
  EXPECT_EQ(info.in_flight(), 3);
  EXPECT_EQ(info.passive_failures(), 2);
  corral::v1::FleetState state;
  ASSERT_TRUE(admin_->GetFleetState(AdminCtx().get(), {}, &state).ok());
  EXPECT_EQ(state.nodes(0).in_flight(), 3);

  // A report without an id cannot be attributed.
  report.clear_proxy_id();
  EXPECT_EQ(discovery_->Report(Ctx(server_->proxy_token()).get(), report, &ack).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  watch_ctx->TryCancel();
  reader->Finish();
}

TEST_F(ControlApiTest, InferenceTokensReachTheSnapshotAsHashesOnly) {
  StartServer();
  corral::v1::CreateTokenRequest req;
  req.set_name("team-a");
  req.add_models("llama3");
  corral::v1::CreateTokenResponse created;
  ASSERT_TRUE(admin_->CreateToken(AdminCtx().get(), req, &created).ok());
  EXPECT_EQ(created.token_text().size(), 64u);
  EXPECT_EQ(created.token().sha256_hex(), Sha256Hex(created.token_text()));
  ASSERT_EQ(created.token().models_size(), 1);
  EXPECT_EQ(created.token().models(0), "registry.ollama.ai/library/llama3:latest");
  EXPECT_EQ(created.snapshot_version(), 1u);

  const auto before = Census();
  corral::v1::CreateTokenResponse again;
  EXPECT_EQ(admin_->CreateToken(AdminCtx().get(), req, &again).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  corral::v1::CreateTokenRequest bad = req;
  bad.set_name("team-b");
  bad.set_models(0, "bad name!");
  EXPECT_EQ(admin_->CreateToken(AdminCtx().get(), bad, &again).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  bad.clear_models();
  bad.set_token("short");
  EXPECT_EQ(admin_->CreateToken(AdminCtx().get(), bad, &again).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Census(), before);

  corral::v1::ListTokensResponse list;
  ASSERT_TRUE(admin_->ListTokens(AdminCtx().get(), {}, &list).ok());
  ASSERT_EQ(list.tokens_size(), 1);
  EXPECT_EQ(list.tokens(0).sha256_hex(), created.token().sha256_hex());
  EXPECT_EQ(server_->publisher().current() == nullptr, false);
  ASSERT_TRUE(WaitFor([&] { return server_->publisher().current()->tokens_size() == 1; },
                      milliseconds(5000)));
  EXPECT_EQ(server_->publisher().current()->tokens(0).sha256_hex(), created.token().sha256_hex());

  corral::v1::RevokeTokenRequest revoke;
  revoke.set_name("team-a");
  corral::v1::RevokeTokenResponse revoked;
  ASSERT_TRUE(admin_->RevokeToken(AdminCtx().get(), revoke, &revoked).ok());
  EXPECT_EQ(revoked.snapshot_version(), 2u);
  EXPECT_EQ(admin_->RevokeToken(AdminCtx().get(), revoke, &revoked).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(WaitFor([&] { return server_->publisher().current()->tokens_size() == 0; },
                      milliseconds(5000)));
}

// The token policy through gRPC: the first token closes the fleet, revoking it keeps the fleet
// closed, `require off` opens it, a request that says nothing is refused, and only the admin may
// change it. Each change reaches the published snapshot.
TEST_F(ControlApiTest, TokenPolicyIsExplicitAndReachesTheSnapshot) {
  StartServer();
  corral::v1::TokenPolicy policy;
  ASSERT_TRUE(admin_->GetTokenPolicy(AdminCtx().get(), {}, &policy).ok());
  EXPECT_FALSE(policy.require_tokens());
  EXPECT_TRUE(policy.open());

  corral::v1::CreateTokenRequest create;
  create.set_name("ci");
  corral::v1::CreateTokenResponse created;
  ASSERT_TRUE(admin_->CreateToken(AdminCtx().get(), create, &created).ok());
  corral::v1::RevokeTokenRequest revoke;
  revoke.set_name("ci");
  corral::v1::RevokeTokenResponse revoked;
  ASSERT_TRUE(admin_->RevokeToken(AdminCtx().get(), revoke, &revoked).ok());
  ASSERT_TRUE(admin_->GetTokenPolicy(AdminCtx().get(), {}, &policy).ok());
  EXPECT_TRUE(policy.require_tokens());
  EXPECT_FALSE(policy.open());
  EXPECT_EQ(policy.token_count(), 0);
  corral::v1::ListTokensResponse list;
  ASSERT_TRUE(admin_->ListTokens(AdminCtx().get(), {}, &list).ok());
  EXPECT_TRUE(list.require_tokens());
  EXPECT_FALSE(list.open());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto current = server_->publisher().current();
        return current != nullptr && current->version() == revoked.snapshot_version();
      },
      milliseconds(5000)));
  EXPECT_TRUE(server_->publisher().current()->require_tokens());

  // Bad input and a caller without the admin token change nothing.
  const auto before = Census();
  corral::v1::SetTokenPolicyRequest unset;
  grpc::Status refused = admin_->SetTokenPolicy(AdminCtx().get(), unset, &policy);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("require_tokens must be set"), std::string::npos);
  corral::v1::SetTokenPolicyRequest off;
  off.set_require_tokens(false);
  EXPECT_EQ(admin_->SetTokenPolicy(Ctx("not-the-admin-token").get(), off, &policy).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Census(), before);

  ASSERT_TRUE(admin_->SetTokenPolicy(AdminCtx().get(), off, &policy).ok());
  EXPECT_FALSE(policy.require_tokens());
  EXPECT_TRUE(policy.open());
  EXPECT_EQ(policy.snapshot_version(), before.second + 1);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto current = server_->publisher().current();
        return current != nullptr && current->version() == policy.snapshot_version();
      },
      milliseconds(5000)));
  EXPECT_FALSE(server_->publisher().current()->require_tokens());
  ASSERT_TRUE(admin_->ListTokens(AdminCtx().get(), {}, &list).ok());
  EXPECT_TRUE(list.open());
}

TEST_F(ControlApiTest, CreateNodeProbesAtOnceAndModelsAreListed) {
  ScriptedNode node;
  StartServer(/*prober=*/true);
  ASSERT_TRUE(Create("sim-1", node.url()).ok());
  corral::v1::GetNodeRequest get;
  get.set_name("sim-1");
  ASSERT_TRUE(WaitFor(
      [&] {
        corral::v1::NodeInfo info;
        return admin_->GetNode(AdminCtx().get(), get, &info).ok() &&
               info.node().health() == corral::v1::HEALTH_HEALTHY && info.node().models_size() == 1;
      },
      milliseconds(10000), "sim-1 probed healthy"));
  corral::v1::ListModelsResponse models;
  ASSERT_TRUE(admin_->ListModels(AdminCtx().get(), {}, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).name(), "llama3.2:latest");
  ASSERT_EQ(models.models(0).locations_size(), 1);
  EXPECT_EQ(models.models(0).locations(0).node(), "sim-1");
  EXPECT_TRUE(models.models(0).locations(0).loaded());
  EXPECT_EQ(models.models(0).locations(0).size_vram(), 1000);
}

TEST_F(ControlApiTest, PullStreamsEachNodesProgress) {
  ScriptedNode a;
  ScriptedNode b;
  StartServer();
  ASSERT_TRUE(Create("a", a.url()).ok());
  ASSERT_TRUE(Create("b", b.url()).ok());
  ASSERT_TRUE(Create("off", "http://127.0.0.1:1").ok());
  corral::v1::NodeNameRequest off;
  off.set_name("off");
  corral::v1::NodeInfo info;
  ASSERT_TRUE(admin_->DisableNode(AdminCtx().get(), off, &info).ok());

  corral::v1::PullModelRequest req;
  req.set_model("llama3.2");
  req.set_all(true);
  auto ctx = AdminCtx();
  auto reader = admin_->PullModel(ctx.get(), req);
  std::map<std::string, std::vector<corral::v1::PullProgress>> by_node;
  corral::v1::PullProgress progress;
  while (reader->Read(&progress)) by_node[progress.node()].push_back(progress);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(by_node.size(), 2u);  // the disabled node is left out
  for (const auto& [node, lines] : by_node) {
    ASSERT_GE(lines.size(), 2u) << node;
    EXPECT_EQ(lines.front().status(), "pulling manifest");
    EXPECT_TRUE(lines.back().done());
    EXPECT_EQ(lines.back().status(), "success");
    EXPECT_TRUE(lines.back().error().empty());
  }

  // One node, a model the node does not have: the node's error, and a failed call.
  req.set_all(false);
  req.set_node("a");
  req.set_model("missing");
  auto ctx2 = AdminCtx();
  auto failing = admin_->PullModel(ctx2.get(), req);
  std::vector<corral::v1::PullProgress> lines;
  while (failing->Read(&progress)) lines.push_back(progress);
  grpc::Status status = failing->Finish();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.error_message().find("file does not exist"), std::string::npos);
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(lines.back().done());
  EXPECT_NE(lines.back().error().find("file does not exist"), std::string::npos);

  req.set_node("ghost");
  auto ctx3 = AdminCtx();
  auto unknown = admin_->PullModel(ctx3.get(), req);
  EXPECT_FALSE(unknown->Read(&progress));
  EXPECT_EQ(unknown->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ControlApiTest, GracefulShutdownEndsWatchStreamsPromptly) {
  StartServer();
  auto ctx = Ctx(server_->proxy_token());
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  corral::v1::WatchRequest req;
  req.set_proxy_id("proxy-a");
  auto reader = discovery_->Watch(ctx.get(), req);
  corral::v1::Snapshot snapshot;
  ASSERT_TRUE(reader->Read(&snapshot));

  std::atomic<bool> ended{false};
  grpc::Status status;
  std::thread client([&] {
    corral::v1::Snapshot s;
    while (reader->Read(&s)) {
    }
    status = reader->Finish();
    ended = true;
  });
  // The grace is 30 s: the stream ending well within the wait below is FinishAll's doing, not
  // the forced cancellation at the deadline.
  std::thread stopper([&] { server_->Shutdown(); });
  EXPECT_TRUE(WaitFor([&] { return ended.load(); }, milliseconds(10000), "watch ended"));
  stopper.join();
  client.join();
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
              status.error_code() == grpc::StatusCode::OK)
      << status.error_code() << " " << status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    EXPECT_EQ(status.error_message(), "control plane shutting down");
  }
}

TEST_F(ControlApiTest, VersionAndNodesSurviveARestart) {
  StartServer();
  ASSERT_TRUE(Create("gpu-1", "http://10.0.0.5:11434").ok());
  ASSERT_TRUE(Create("gpu-2", "http://10.0.0.6:11434").ok());
  server_.reset();
  StartServer();
  EXPECT_EQ(Census(), std::make_pair(2, uint64_t{2}));
  ASSERT_TRUE(Create("gpu-3", "http://10.0.0.7:11434").ok());
  EXPECT_EQ(Census().second, 3u);
}

// Usage rides on Report: applied once per (instance, sequence) even when the same Report comes
// again, acknowledged either way, kept across a restart, and read back with GetUsage.
TEST_F(ControlApiTest, ReportedUsageIsCountedOnceAndReadBackByEachKey) {
  StartServer();
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t hour = now - now % 3600;
  corral::v1::ReportRequest report;
  report.set_proxy_id("proxy-a");
  corral::v1::UsageBatch* batch = report.mutable_usage();
  batch->set_instance_id("0123456789abcdef");
  batch->set_sequence(1);
  auto add = [&](int64_t h, const std::string& token, const std::string& model,
                 const std::string& node, uint64_t requests, uint64_t in, uint64_t out) {
    corral::v1::UsageEntry* e = batch->add_entries();
    e->set_hour_start(h);
    e->set_token(token);
    e->set_model(model);
    e->set_node(node);
    e->set_requests(requests);
    e->set_input_tokens(in);
    e->set_output_tokens(out);
  };
  add(hour, "alice", "llama3:latest", "gpu1", 3, 30, 300);
  add(hour, "bob", "llama3:latest", "gpu2", 1, 10, 100);
  add(hour - 48 * 3600, "alice", "qwen3:8b", "gpu1", 5, 50, 500);  // two days ago

  for (int attempt = 0; attempt < 2; ++attempt) {  // the second is a retry of the same Report
    corral::v1::ReportResponse ack;
    ASSERT_TRUE(discovery_->Report(Ctx(server_->proxy_token()).get(), report, &ack).ok());
    EXPECT_EQ(ack.usage_acked_sequence(), 1u) << "attempt " << attempt;
  }
  // A Report without usage acknowledges nothing.
  corral::v1::ReportRequest plain;
  plain.set_proxy_id("proxy-a");
  corral::v1::ReportResponse plain_ack;
  ASSERT_TRUE(discovery_->Report(Ctx(server_->proxy_token()).get(), plain, &plain_ack).ok());
  EXPECT_EQ(plain_ack.usage_acked_sequence(), 0u);

  auto get = [&](const std::string& by, int64_t since, corral::v1::GetUsageResponse* out) {
    corral::v1::GetUsageRequest req;
    req.set_by(by);
    req.set_since_seconds(since);
    return admin_->GetUsage(AdminCtx().get(), req, out);
  };
  corral::v1::GetUsageResponse by_token;
  ASSERT_TRUE(get("token", 24 * 3600, &by_token).ok());
  EXPECT_EQ(by_token.by(), "token");
  // The hour 24 h ago (or the next one, should the hour turn between the two clock reads).
  const int64_t day_ago_hour = (now - 24 * 3600) - (now - 24 * 3600) % 3600;
  EXPECT_TRUE(by_token.window_start() == day_ago_hour ||
              by_token.window_start() == day_ago_hour + 3600)
      << by_token.window_start();
  ASSERT_EQ(by_token.rows_size(), 2);
  EXPECT_EQ(by_token.rows(0).token(), "alice");
  EXPECT_EQ(by_token.rows(0).requests(), 3u) << "counted once, and the old hour is outside 24h";
  EXPECT_EQ(by_token.rows(0).output_tokens(), 300u);
  EXPECT_EQ(by_token.rows(0).model(), "");
  EXPECT_EQ(by_token.rows(1).token(), "bob");
  EXPECT_EQ(by_token.total().requests(), 4u);
  EXPECT_EQ(by_token.total().input_tokens(), 40u);

  corral::v1::GetUsageResponse by_model;
  ASSERT_TRUE(get("model", 7 * 24 * 3600, &by_model).ok());
  ASSERT_EQ(by_model.rows_size(), 2);
  EXPECT_EQ(by_model.rows(0).model(), "qwen3:8b");
  EXPECT_EQ(by_model.rows(0).requests(), 5u);
  EXPECT_EQ(by_model.rows(1).model(), "llama3:latest");
  EXPECT_EQ(by_model.rows(1).requests(), 4u);

  // Kept across a restart, and a retry after it is still not counted again.
  server_.reset();
  StartServer();
  corral::v1::ReportResponse ack;
  ASSERT_TRUE(discovery_->Report(Ctx(server_->proxy_token()).get(), report, &ack).ok());
  EXPECT_EQ(ack.usage_acked_sequence(), 1u);
  corral::v1::GetUsageResponse all;
  ASSERT_TRUE(get("", 0, &all).ok());
  EXPECT_EQ(all.by(), "all");
  ASSERT_EQ(all.rows_size(), 3);
  EXPECT_EQ(all.rows(0).token(), "alice");
  EXPECT_EQ(all.rows(0).model(), "qwen3:8b");
  EXPECT_EQ(all.rows(0).node(), "gpu1");
  EXPECT_EQ(all.total().requests(), 9u);

  corral::v1::GetUsageResponse bad;
  grpc::Status status = get("tenant", 0, &bad);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("token, model, node or all"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(get("node", -5, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  corral::v1::GetUsageRequest req;
  EXPECT_EQ(admin_->GetUsage(Ctx("wrong").get(), req, &bad).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ControlApiTest, SecondControlPlaneOnTheSamePortOrDataDirFailsLoudly) {
  StartServer();
  ControlServerOptions same_port;
  same_port.listen = "127.0.0.1:" + std::to_string(server_->port());
  same_port.data_dir = corral::testing::MakeTempDir("control-api-other");
  same_port.enable_prober = false;
  same_port.enable_scanner = false;
  auto second = ControlServer::Start(same_port);
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();

  ControlServerOptions same_dir;
  same_dir.listen = "127.0.0.1:0";
  same_dir.data_dir = dir_;
  same_dir.enable_prober = false;
  same_dir.enable_scanner = false;
  auto third = ControlServer::Start(same_dir);
  EXPECT_FALSE(third.ok());
  EXPECT_NE(third.status().message().find("in use"), std::string::npos) << third.status();
  // The first one still serves.
  EXPECT_EQ(Census(), std::make_pair(0, uint64_t{0}));
}

}  // namespace
}  // namespace corral::control
