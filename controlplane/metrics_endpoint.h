// MetricsEndpoint: corral-control's Prometheus port (--metrics-listen). It serves exactly one
// thing, `GET /metrics` (and HEAD), the registry rendered as Prometheus text 0.0.4; any other
// path or method is 404.
//
// It runs on common/http_listener.h's HttpListener rather than a bare httplib::Server: the port is
// commonly opened beyond loopback for a Prometheus server or a Kubernetes scrape, so it gets the
// same front door as the proxy's port (head size limits and deadlines, a real listen backlog) for
// free, and a slow or hostile client cannot hold it any longer than it could hold a proxy. A
// few workers are plenty: a scrape is one request every few seconds from each Prometheus.
//
// Thread safety: Start once; port() and Stop from any thread; the destructor stops.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/http_listener.h"
#include "common/metrics.h"

namespace corral::control {

class MetricsEndpoint {
 public:
  // Binds `listen` ("host:port", port 0 = any free port) and starts serving `registry`, which
  // must outlive the endpoint. InvalidArgument for a bad address, Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen,
                                                                const metrics::Registry* registry);
  ~MetricsEndpoint();  // Stop()
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }
  // Stops listening and waits for the serving thread. Idempotent.
  void Stop();

 private:
  MetricsEndpoint() = default;

  static constexpr size_t kWorkers = 4;
  static constexpr int kBacklog = 64;

  HttpListener listener_{kWorkers, kBacklog};
  int port_ = 0;
  std::thread thread_;
};

}  // namespace corral::control
