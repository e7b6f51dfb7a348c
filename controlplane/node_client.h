// NodeClient: the control plane's HTTP/1.1 calls to one Ollama node — liveness and version,
// the installed models (/api/tags), the models resident in memory (/api/ps), and pulls.
//
// Every call has explicit timeouts (never the HTTP library's 300 s default) and opens its own
// connection, which closes when the call returns: a probe therefore measures what a fresh proxy
// connection would meet, and calls from different threads never share a socket. `/api/ps` gets
// its own short read timeout because recent Ollama releases hold it until an in-progress model
// load finishes.
//
// Thread safety: a NodeClient is immutable after construction; any thread may call any method,
// concurrently.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/v1/control.pb.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::control {

struct NodeClientOptions {
  // TCP connect. Loopback and LAN nodes connect in well under a millisecond; a longer wait means
  // the host is gone or black-holed.
  std::chrono::milliseconds connect_timeout{1000};
  // Whole-answer read/write timeout of `/` and `/api/version` (the liveness probe).
  std::chrono::milliseconds liveness_timeout{2000};
  // `/api/tags` reads every manifest on the node's disk: allow more than liveness.
  std::chrono::milliseconds tags_timeout{5000};
  // `/api/ps` may block for the length of a model load on recent Ollama: keep it short and keep
  // the last known list instead of waiting.
  std::chrono::milliseconds ps_timeout{1000};
  // Longest silence between two progress lines of a pull. Verifying a large blob's digest can
  // keep a node quiet for minutes.
  std::chrono::milliseconds pull_idle_timeout{std::chrono::minutes(10)};
};

class NodeClient {
 public:
  // `base_url` is a node URL as common/node_url.h accepts it ("http://host:port").
  // Calls on a URL that does not parse fail with InvalidArgument.
  explicit NodeClient(std::string base_url, NodeClientOptions options = {});

  const std::string& base_url() const { return base_url_; }

  // GET / — OK when the node answers 200 with exactly "Ollama is running" (what every Ollama
  // release says); FailedPrecondition when something else answers on that port.
  absl::Status Root() const;

  // GET /api/version — the version string, e.g. "0.12.3". Unavailable when the node does not
  // answer, DeadlineExceeded on a timeout, Internal on a non-200 or malformed answer.
  absl::StatusOr<std::string> Version() const;

  // GET /api/tags — the installed models; raw_json holds each entry's JSON text verbatim.
  absl::StatusOr<std::vector<corral::v1::Model>> Tags() const;

  // GET /api/ps — the models resident in memory; raw_json holds each entry's JSON text.
  absl::StatusOr<std::vector<corral::v1::LoadedModel>> Ps() const;

  // POST /api/pull, streaming. `on_progress` (may be empty) sees each progress line as it
  // arrives (status, digest, total, completed; `node` is left for the caller to fill). The
  // result is OK when the node reports "success", the node's own error text otherwise (Ollama
  // reports most failures as an `{"error": ...}` line inside a 200 stream). `cancel` (may be
  // empty) is checked as data arrives and every 100 ms while the node is silent; when it returns
  // true the connection is closed and Cancelled is returned (Ollama resumes an abandoned pull
  // later). `cancel` may be called from a second thread; `on_progress` runs on the caller's.
  absl::Status Pull(const std::string& model, bool insecure,
                    const std::function<void(const corral::v1::PullProgress&)>& on_progress,
                    const std::function<bool()>& cancel) const;

 private:
  std::string base_url_;
  NodeClientOptions options_;
};

// Parses one /api/tags or /api/ps body (exposed for tests and for the fleet-wide views).
absl::StatusOr<std::vector<corral::v1::Model>> ParseTags(const std::string& body);
absl::StatusOr<std::vector<corral::v1::LoadedModel>> ParsePs(const std::string& body);

}  // namespace corral::control
