// ControlServer: corral-control assembled — the Registry on `<data-dir>/corral.db`, the snapshot
// publisher, the proxy tracker, the tokens, the prober and port scanner, and one gRPC server with
// the Admin and Discovery services, the standard health service and reflection.
//
// Start order: read and check the TLS files (a bad one fails before anything else happens), make
// the data dir owner-only (0700; the database and token files 0600), lock the data dir (a second
// control plane on the same data dir fails loudly), open the registry, load or create the
// tokens, start the publisher, build and start the gRPC server (keepalive tuned for long idle
// Watch streams, message size limit kMaxGrpcMessageBytes, SO_REUSEPORT off unless asked), bind
// the metrics endpoint when --metrics-listen asks for one (ControlMetrics are recorded either
// way), write the port files, then start the prober and scanner. The log says whether the port is
// TLS, mTLS or plaintext (a WARN when plaintext listens beyond loopback: tokens would cross the
// network in clear).
//
// Shutdown (Shutdown(), idempotent): health NOT_SERVING; every Watch finished with UNAVAILABLE
// "control plane shutting down" (proxies reconnect with backoff and keep serving meanwhile); the
// prober and scanner stopped; the server shut down with a grace deadline and waited for; then the
// publisher and the registry are destroyed, in that order (reactors point at the publisher).
//
// RunControlServer is the process's main loop: it blocks SIGINT/SIGTERM in every thread before
// any is created, runs the server, and shuts it down when a dedicated thread's sigwait returns.
//
// Thread safety: Start once; Shutdown and the accessors from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/grpc_tls.h"
#include "controlplane/admin_service.h"
#include "controlplane/auth.h"
#include "controlplane/control_metrics.h"
#include "controlplane/discovery_service.h"
#include "controlplane/fleet_admin.h"
#include "controlplane/http_admin.h"
#include "controlplane/metrics_endpoint.h"
#include "controlplane/port_scanner.h"
#include "controlplane/prober.h"
#include "controlplane/proxy_tracker.h"
#include "controlplane/registry.h"
#include "controlplane/snapshot_publisher.h"

namespace corral::control {

inline constexpr char kDefaultHttpListen[] = "127.0.0.1:11401";

struct ControlServerOptions {
  std::string listen = "127.0.0.1:11400";  // host:port; port 0 picks a free one
  // The gRPC port's certificate, key and optional client CA (mTLS); all empty = plaintext.
  ServerTlsFiles tls;
  std::string data_dir = "./var";
  std::string port_file;  // written after binding when not empty
  // Off: a second control plane on the same port fails to bind instead of splitting the proxies.
  bool reuse_port = false;
  bool enable_prober = true;
  bool enable_scanner = true;
  ProberOptions prober;
  PortScannerOptions scanner;
  SnapshotPublisherOptions publisher;
  std::chrono::milliseconds shutdown_grace{5000};  // in-flight RPCs get this long to finish
  // Prometheus `GET /metrics` of the control plane (MetricsEndpoint); empty = not served.
  std::string metrics_listen;
  std::string metrics_port_file;  // the metrics port is written here once bound, when not empty
  // The HTTP admin API, /openapi.json, /docs and the web console (HttpAdmin); empty or "off" =
  // not served (corral-control's own default is kDefaultHttpListen).
  std::string http_listen;
  // False for the default address: a busy default port is a WARN, not a failed start (a second
  // control plane on one machine). An address given on the command line must bind.
  bool http_required = false;
  std::string http_port_file;  // the HTTP port is written here once bound, when not empty
};

class ControlServer {
 public:
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(ControlServerOptions options);
  ~ControlServer();  // Shutdown()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int port() const { return port_; }
  const std::string& admin_token() const { return admin_token_; }
  const std::string& proxy_token() const { return proxy_token_; }
  Registry& registry() { return *registry_; }
  SnapshotPublisher& publisher() { return *publisher_; }
  ProxyTracker& tracker() { return tracker_; }
  ControlMetrics& metrics() { return metrics_; }
  int metrics_port() const { return metrics_endpoint_ ? metrics_endpoint_->port() : 0; }
  int http_port() const { return http_admin_ ? http_admin_->port() : 0; }

  // The graceful sequence described above. Idempotent; returns when everything has stopped
  // except the registry, publisher and tracker objects (destroyed with the ControlServer).
  void Shutdown();

 private:
  explicit ControlServer(ControlServerOptions options) : options_(std::move(options)) {}
  absl::Status Init();

  const ControlServerOptions options_;
  int lock_fd_ = -1;
  std::string admin_token_;
  std::string proxy_token_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<SnapshotPublisher> publisher_;
  ControlMetrics metrics_;  // recorded always, served only with --metrics-listen
  ProxyTracker tracker_{std::chrono::hours(1), &metrics_};
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<Prober> prober_;
  std::unique_ptr<PortScanner> scanner_;
  // The fleet's administration, which the gRPC Admin service and the HTTP API both adapt.
  std::unique_ptr<FleetAdmin> fleet_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<HttpAdmin> http_admin_;
  std::unique_ptr<DiscoveryService> discovery_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  int port_ = 0;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;  // guarded by shutdown_mu_
};

// Runs corral-control until SIGINT or SIGTERM, then shuts down gracefully. Returns the process
// exit code (0 after a clean shutdown, 1 when start-up failed, with the reason logged).
int RunControlServer(ControlServerOptions options);

}  // namespace corral::control
