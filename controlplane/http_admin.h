// HttpAdmin: corral-control's HTTP port (--http-listen, default 127.0.0.1:11401). It serves the
// admin API as JSON over HTTP, an adapter over FleetAdmin (fleet_admin.h) exactly as the gRPC
// Admin service is one, with paths after the usual gRPC-to-HTTP mapping (GET /v1/nodes,
// POST /v1/nodes/{name}:drain, ...; docs/http-api.md lists them), the OpenAPI document of this
// API and of the proxy's own routes at /openapi.json, and the interactive page at /docs, and
// the web console's files at / (docs/console.md). ControlServer owns it.
//
// Bodies in and out are the proto messages' JSON form with the .proto field names
// (snake_case; 64-bit integers as strings, enums as names, every field printed); an unknown
// field, a wrong type or bad JSON is a 400 and changes nothing. Bodies are bounded by
// kMaxBody. /v1 needs the admin token as `Authorization: Bearer <token>`, as gRPC does;
// /openapi.json and /docs are open. Errors are {"code": <gRPC code number>, "status": "<gRPC code
// name>", "message": "..."} with the matching HTTP status (HttpStatusFor). POST /v1/models:pull
// streams each node's progress as NDJSON, one PullProgress per line, and a last error line when
// any node failed.
//
// It runs on common/http_listener.h's HttpListener, so the front door (head limits, deadlines,
// backlog) is the proxy's.
//
// Thread safety: Start once; port() and Stop from any thread; the destructor stops.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/http_listener.h"
#include "controlplane/auth.h"
#include "controlplane/fleet_admin.h"

namespace corral::control {

// The HTTP status that carries a gRPC status code: 400 for INVALID_ARGUMENT, FAILED_PRECONDITION
// and OUT_OF_RANGE, 401, 403, 404, 409 for ALREADY_EXISTS and ABORTED, 429, 499 for CANCELLED,
// 501, 503, 504, 500 otherwise.
int HttpStatusFor(absl::StatusCode code);

// The JSON error body of `status`.
std::string HttpErrorBody(const absl::Status& status);

// Parses a duration for ?since=: a whole number of seconds, or one with a unit suffix s, m, h or
// d ("90", "30m", "24h", "7d"). InvalidArgument otherwise.
absl::StatusOr<int64_t> ParseSinceSeconds(const std::string& text);

class HttpAdmin {
 public:
  static constexpr size_t kMaxBody = 1 << 20;

  // Binds `listen` ("host:port", port 0 = any free port) and serves `fleet`, which must outlive
  // this object. `admin_token` opens /v1; `admin_hint` (where the token is) is named in 401s.
  // InvalidArgument for a bad address, Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpAdmin>> Start(const std::string& listen,
                                                          FleetAdmin* fleet,
                                                          const std::string& admin_token,
                                                          std::string admin_hint);
  ~HttpAdmin();  // Stop()
  HttpAdmin(const HttpAdmin&) = delete;
  HttpAdmin& operator=(const HttpAdmin&) = delete;

  int port() const { return port_; }
  // Stops listening and waits for the serving thread. Idempotent.
  void Stop();

 private:
  HttpAdmin(FleetAdmin* fleet, const std::string& admin_token, std::string admin_hint);
  void Handle(const httplib::Request& req, httplib::Response& res);
  // OK when the request carries the admin token; UNAUTHENTICATED saying what to send otherwise.
  absl::Status CheckToken(const httplib::Request& req) const;

  static constexpr size_t kWorkers = 16;
  static constexpr int kBacklog = 128;

  FleetAdmin* const fleet_;
  const TokenHash admin_;
  const std::string admin_hint_;
  HttpListener listener_{kWorkers, kBacklog};
  int port_ = 0;
  std::thread thread_;
};

}  // namespace corral::control
