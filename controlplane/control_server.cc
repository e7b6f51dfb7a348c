#include "controlplane/control_server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/grpc_limits.h"
#include "common/http_listener.h"
#include "common/log.h"
#include "common/private_files.h"
#include "grpc/health/v1/health.pb.h"

namespace corral::control {
namespace {

constexpr char kAdminService[] = "corral.v1.Admin";
constexpr char kDiscoveryService[] = "corral.v1.Discovery";

// One control plane per data dir: two writers would each believe they own the fleet.
absl::StatusOr<int> LockDataDir(const std::string& dir) {
  const std::string path = dir + "/corral.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", dir, " is in use by another corral-control (", path,
                     " is locked); stop it or choose another --data-dir"));
  }
  return fd;
}

// Loopback addresses never leave the machine: plaintext there exposes nothing to the network.
bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// Reflection serves the schemas the generated descriptor pool holds. gRPC implements the health
// service without putting its schema there, so the code generated from grpc-proto's health.proto
// is linked in, and referenced here: an object in a static library is only linked when something
// uses it. Without it grpcurl and buf curl see grpc.health.v1.Health listed but cannot call it.
void RegisterHealthSchema() {
  const google::protobuf::FileDescriptor* health =
      grpc::health::v1::HealthCheckRequest::descriptor()->file();
  CORRAL_LOG(kDebug, "control") << "reflection serves " << health->name();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(ControlServerOptions options) {
  std::unique_ptr<ControlServer> server(new ControlServer(std::move(options)));
  if (absl::Status s = server->Init(); !s.ok()) {
    server->Shutdown();
    return s;
  }
  return server;
}

absl::Status ControlServer::Init() {
  absl::StatusOr<ListenAddress> listen = ParseListenAddress(options_.listen);
  if (!listen.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", options_.listen, ": ", listen.status().message()));
  }
  absl::StatusOr<ServerSecurity> security = MakeServerCredentials(options_.tls);
  if (!security.ok()) return security.status();
  // The data dir holds the admin and proxy tokens and the registry (inference token hashes):
  // nobody but this user reads it.
  if (absl::Status s = EnsurePrivateDir(options_.data_dir, "data dir"); !s.ok()) return s;
  absl::StatusOr<int> lock = LockDataDir(options_.data_dir);
  if (!lock.ok()) return lock.status();
  lock_fd_ = *lock;

  absl::StatusOr<std::unique_ptr<Registry>> registry =
      Registry::Open(options_.data_dir + "/corral.db");
  if (!registry.ok()) return registry.status();
  registry_ = *std::move(registry);

  const std::string admin_path = options_.data_dir + "/admin.token";
  absl::StatusOr<std::string> admin = LoadOrCreateToken(admin_path);
  if (!admin.ok()) return admin.status();
  absl::StatusOr<std::string> proxy = LoadOrCreateToken(options_.data_dir + "/proxy.token");
  if (!proxy.ok()) return proxy.status();
  admin_token_ = *admin;
  proxy_token_ = *proxy;
  auth_ = std::make_unique<Authenticator>(admin_token_, proxy_token_, admin_path);

  SnapshotPublisherOptions publisher_options = options_.publisher;
  publisher_options.metrics = &metrics_;
  publisher_ = std::make_unique<SnapshotPublisher>(registry_.get(), publisher_options);
  if (absl::Status s = publisher_->Start(); !s.ok()) return s;

  if (options_.enable_prober) {
    ProberOptions prober_options = options_.prober;
    prober_options.metrics = &metrics_;
    prober_ = std::make_unique<Prober>(registry_.get(), prober_options);
  }
  if (options_.enable_scanner) {
    scanner_ = std::make_unique<PortScanner>(registry_.get(), prober_.get(), options_.scanner);
  }
  fleet_ = std::make_unique<FleetAdmin>(registry_.get(), &tracker_, prober_.get(), scanner_.get());
  admin_ = std::make_unique<AdminService>(fleet_.get(), auth_.get());
  discovery_ = std::make_unique<DiscoveryService>(publisher_.get(), &tracker_, auth_.get(),
                                                  registry_.get(), prober_.get());

  grpc::EnableDefaultHealthCheckService(true);
  RegisterHealthSchema();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Explicit on both sides (the proxies' Watch channel, corralctl), see common/grpc_limits.h; the
  // publisher never offers a snapshot larger than this.
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  builder.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  // Watch streams idle for hours: ping them so a vanished proxy is noticed, and keep pinging
  // without data (the default stops after two pings). Proxies ping every 30 s; allow 10 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, options_.reuse_port ? 1 : 0);
  const std::string address = listen->host.find(':') != std::string::npos
                                  ? absl::StrCat("[", listen->host, "]:", listen->port)
                                  : absl::StrCat(listen->host, ":", listen->port);
  builder.AddListeningPort(address, security->credentials, &port_);
  builder.RegisterService(admin_.get());
  builder.RegisterService(discovery_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen,
                     " (is another corral-control or another program using that port?)"));
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kAdminService, true);
    health->SetServingStatus(kDiscoveryService, true);
  }
  if (!options_.metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> metrics =
        MetricsEndpoint::Start(options_.metrics_listen, &metrics_.registry);
    if (!metrics.ok()) return metrics.status();
    metrics_endpoint_ = *std::move(metrics);
    if (absl::Status s = WritePortFile(options_.metrics_port_file, metrics_endpoint_->port());
        !s.ok()) {
      return s;
    }
  }
  if (!options_.http_listen.empty() && options_.http_listen != "off") {
    absl::StatusOr<std::unique_ptr<HttpAdmin>> http = HttpAdmin::Start(
        options_.http_listen, fleet_.get(), admin_token_, options_.data_dir + "/admin.token");
    if (http.ok()) {
      http_admin_ = *std::move(http);
      if (absl::Status s = WritePortFile(options_.http_port_file, http_admin_->port()); !s.ok()) {
        return s;
      }
    } else if (options_.http_required) {
      return http.status();
    } else {
      CORRAL_LOG(kWarn, "control") << "no HTTP admin API: " << http.status().message()
                                   << " (give --http-listen ADDR for another address, or "
                                      "--http-listen off)";
    }
  }
  if (absl::Status s = WritePortFile(options_.port_file, port_); !s.ok()) return s;
  CORRAL_LOG(kInfo, "control") << "listening on " << listen->host << ":" << port_ << " ("
                               << TransportSecurityName(security->security) << ", data dir "
                               << options_.data_dir << ", snapshot version " << registry_->version()
                               << ")";
  if (security->security == TransportSecurity::kPlaintext && !IsLoopbackHost(listen->host)) {
    CORRAL_LOG(kWarn, "control")
        << "the gRPC port is plaintext on " << listen->host
        << ", beyond loopback: admin and proxy tokens and the snapshots' token hashes cross the "
           "network in clear; give --tls-cert and --tls-key (and --tls-client-ca to require "
           "client certificates)";
  }
  if (prober_ != nullptr) prober_->Start();
  if (scanner_ != nullptr) scanner_->Start();
  return absl::OkStatus();
}

void ControlServer::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    if (auto* health = server_->GetHealthCheckService(); health != nullptr) {
      health->SetServingStatus(false);
    }
  }
  if (publisher_ != nullptr) {
    publisher_->FinishAll(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "control plane shutting down"));
  }
  // The HTTP API first: no new admin request starts from it.
  if (http_admin_ != nullptr) http_admin_->Stop();
  // Stop the writers of the registry before the server: a long pull or probe ends on its own
  // timeouts, and nothing new starts.
  if (scanner_ != nullptr) scanner_->Stop();
  if (prober_ != nullptr) prober_->Stop();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + options_.shutdown_grace);
    server_->Wait();
  }
  if (publisher_ != nullptr) publisher_->Stop();
  if (metrics_endpoint_ != nullptr) metrics_endpoint_->Stop();
  if (server_ != nullptr) {
    CORRAL_LOG(kInfo, "control") << "stopped";
  }
}

ControlServer::~ControlServer() {
  Shutdown();
  // Reactors and handlers point at these: the server goes first, the registry last.
  server_.reset();
  discovery_.reset();
  admin_.reset();
  scanner_.reset();
  prober_.reset();
  publisher_.reset();
  auth_.reset();
  registry_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

int RunControlServer(ControlServerOptions options) {
  // Before any thread exists, so every thread inherits the mask and only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<ControlServer>> server = ControlServer::Start(std::move(options));
  if (!server.ok()) {
    CORRAL_LOG(kError, "control") << server.status().message();
    return 1;
  }
  std::thread waiter([&signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    CORRAL_LOG(kInfo, "control") << "received " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
                                 << ", shutting down";
  });
  waiter.join();
  (*server)->Shutdown();
  server->reset();
  return 0;
}

}  // namespace corral::control
