#include "controlplane/metrics_endpoint.h"

#include <sys/socket.h>

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace corral::control {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, const metrics::Registry* registry) {
  absl::StatusOr<ListenAddress> address = ParseListenAddress(listen);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen ", listen, ": ", address.status().message()));
  }
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  HttpListener& server = endpoint->listener_;
  // HttpListener binds without SO_REUSEPORT: a second control plane cannot take the same port
  // and answer every other scrape with its own numbers.
  // A scraper keeps its connection between scrapes; an idle one gives its worker back soon.
  server.set_keep_alive_timeout(30);
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);
  server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->RenderPrometheus(), std::string(metrics::kPrometheusContentType));
  });
  // Anything else, another path or another method, is httplib's 404, given a body that says why.
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: this port serves only GET /metrics\n",
                      "text/plain; charset=utf-8");
    }
  });

  absl::StatusOr<int> port = server.Bind(*address);
  if (!port.ok()) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": ", port.status().message()));
  }
  endpoint->port_ = *port;
  // httplib's stop() does nothing until the accept loop has begun, so Start returns only once it
  // has: a Stop right after Start must not leave the thread serving forever.
  auto ended = std::make_shared<std::atomic<bool>>(false);
  endpoint->thread_ = std::thread([&server, ended] {
    server.Run();
    ended->store(true);
  });
  while (!server.is_running() && !ended->load()) std::this_thread::yield();
  if (!server.is_running()) {
    endpoint->thread_.join();
    return absl::InternalError(absl::StrCat("--metrics-listen ", listen, ": cannot serve"));
  }
  CORRAL_LOG(kInfo, "control") << "metrics on " << address->host << ":" << *port
                               << " (GET /metrics)";
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() { Stop(); }

void MetricsEndpoint::Stop() {
  if (thread_.joinable()) {
    listener_.stop();
    thread_.join();
  }
}

}  // namespace corral::control
