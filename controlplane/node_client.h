// NodeClient: the control plane's HTTP/1.1 calls to one Ollama node — liveness and version,
// the installed models (/api/tags), the models resident in memory (/api/ps), pulls and deletes.
//
// Every call has explicit timeouts (never the HTTP library's 300 s default) and opens its own
// connection, which closes when the call returns: a probe therefore measures what a fresh proxy
// connection would meet, and calls from different threads never share a socket. `/api/ps` gets
// its own short read timeout because recent Ollama releases hold it until an in-progress model
// load finishes.
//
// A node is outside input. Each probe call's timeout bounds the whole exchange (connect, head and
// body), not one read, so a node that trickles bytes cannot hold a probe worker; answers are read
// through a size cap and reading stops past it, so a node cannot make corral-control hold more than
// the cap; numbers are range-checked and model lists capped (docs/probing.md, "Limits").
//
// Thread safety: a NodeClient is immutable after construction; any thread may call any method,
// concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/v1/control.pb.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::control {

// Limits on what one node may answer (docs/probing.md, "Limits").
// The most bytes read of a /api/tags or /api/ps answer: a real node's list of hundreds of models
// is well under 1 MiB.
inline constexpr size_t kMaxListAnswerBytes = size_t{8} << 20;
// The most bytes read of a GET / or /api/version answer (a few dozen bytes from a real node).
inline constexpr size_t kMaxSmallAnswerBytes = size_t{64} << 10;
// Models kept per node and per list; entries past it are dropped (ListStats::dropped).
inline constexpr size_t kMaxModelsPerNode = 4096;
// Longest model name kept. Ollama's own longest valid name (a 350-byte host and three 80-byte
// parts) is 593 bytes; an entry with a longer name is skipped.
inline constexpr size_t kMaxModelNameBytes = 1024;
// Longest digest, modified_at, expires_at or version string kept; a longer one reads as empty.
inline constexpr size_t kMaxFieldBytes = 256;
// Deepest JSON nesting accepted in a list answer (Ollama's is 4): deeper documents are refused
// before parsing, since each level costs the parser memory and the printer stack.
inline constexpr int kMaxJsonDepth = 64;
// Longest pull progress line (a real one is under 300 bytes).
inline constexpr size_t kMaxPullLineBytes = size_t{64} << 10;

struct NodeClientOptions {
  // TCP connect. Loopback and LAN nodes connect in well under a millisecond; a longer wait means
  // the host is gone or black-holed.
  std::chrono::milliseconds connect_timeout{1000};
  // Total deadline of `/` and `/api/version` (the liveness probe): connect, head and body.
  std::chrono::milliseconds liveness_timeout{2000};
  // `/api/tags` reads every manifest on the node's disk: allow more than liveness. A total
  // deadline, like the others.
  std::chrono::milliseconds tags_timeout{5000};
  // `/api/ps` may block for the length of a model load on recent Ollama: keep it short and keep
  // the last known list instead of waiting.
  std::chrono::milliseconds ps_timeout{1000};
  // Answer size caps (see the constants above); tests lower them.
  size_t list_answer_max_bytes = kMaxListAnswerBytes;
  size_t small_answer_max_bytes = kMaxSmallAnswerBytes;
  // Longest silence between two progress lines of a pull. Verifying a large blob's digest can
  // keep a node quiet for minutes.
  std::chrono::milliseconds pull_idle_timeout{std::chrono::minutes(10)};
  // Total deadline of `DELETE /api/delete`: the node removes a manifest and unreferenced blobs,
  // which takes well under a second even for a large model.
  std::chrono::milliseconds delete_timeout{30000};
};

// What the limits did to one /api/tags or /api/ps answer.
struct ListStats {
  size_t listed = 0;   // entries in the answer's "models" array
  size_t skipped = 0;  // entries without a usable name: not an object, no name, name too long
  size_t dropped = 0;  // valid entries past kMaxModelsPerNode
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
  // answer, DeadlineExceeded when the whole answer is not in within the timeout,
  // ResourceExhausted when the answer is larger than its cap, Internal on a non-200 or malformed
  // answer (or a version longer than kMaxFieldBytes).
  absl::StatusOr<std::string> Version() const;

  // GET /api/tags — the installed models; raw_json holds each entry's JSON text verbatim. Errors
  // as Version's; `stats` (may be null) says what the limits skipped and dropped.
  absl::StatusOr<std::vector<corral::v1::Model>> Tags(ListStats* stats = nullptr) const;

  // GET /api/ps — the models resident in memory; raw_json holds each entry's JSON text.
  absl::StatusOr<std::vector<corral::v1::LoadedModel>> Ps(ListStats* stats = nullptr) const;

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

  // DELETE /api/delete with {"model": model}. OK on the node's 200; NotFound with the node's text
  // when it does not have the model (404); Internal with the node's text on any other answer;
  // transport failures as Version's. The whole exchange is bounded by delete_timeout, and at most
  // small_answer_max_bytes of an error answer is read.
  absl::Status Delete(const std::string& model) const;

 private:
  std::string base_url_;
  NodeClientOptions options_;
};

// Parses one /api/tags or /api/ps body (exposed for tests and for the fleet-wide views). Entries
// without a usable name are skipped, at most kMaxModelsPerNode are kept, numbers that are not
// non-negative integers within int64 (a string, a negative, 1e300, 2^70) read as 0, and strings
// longer than their limit read as empty. Internal for a body that is not a JSON object, nests
// deeper than kMaxJsonDepth, or whose "models" is not an array.
absl::StatusOr<std::vector<corral::v1::Model>> ParseTags(const std::string& body,
                                                         ListStats* stats = nullptr);
absl::StatusOr<std::vector<corral::v1::LoadedModel>> ParsePs(const std::string& body,
                                                             ListStats* stats = nullptr);

// True when no array or object in `json` nests deeper than `max_depth` (brackets inside strings
// do not count). Exposed for tests.
bool JsonDepthAtMost(std::string_view json, int max_depth);

}  // namespace corral::control
