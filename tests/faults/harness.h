// Fault-suite harness: sustained client traffic against corral-proxy, with every answer judged
// the way an Ollama client would judge it, and corral-sim nodes that can be killed, frozen and
// restarted on the port they had.
//
// The suite's promises (docs/reliability.md) are about what clients see while parts of the fleet
// fail, so Traffic classifies each answer instead of counting status codes: a complete answer, a
// stream that started and was then cut with a clear error line, or anything else (a lost
// request, a silent truncation, a broken frame), which is always a failure.
//
// Every run lasts SoakDuration(): CORRAL_SOAK_SECONDS, a few seconds when unset (`make test`),
// five minutes under `make soak`.
//
// Thread safety: Traffic runs its own client threads; its counters may be read from any thread
// while it runs. SimNode and ProxyView belong to the test thread.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace corral::faults {

// How long a fault test keeps its load and its faults going: CORRAL_SOAK_SECONDS, or
// kDefaultSoakSeconds when the variable is unset or not a positive number.
inline constexpr int kDefaultSoakSeconds = 4;
std::chrono::seconds SoakDuration();

// One kind of request a client sends.
struct RequestKind {
  std::string name;  // for messages: "generate/stream"
  std::string path;
  std::string body;
  bool stream = false;  // the answer is NDJSON or SSE
  bool sse = false;     // an OpenAI (/v1) answer
  bool embed = false;   // an embedding answer (no done flag)
};

// Native and OpenAI inference, streamed and not, and embeddings, all for `model`.
std::vector<RequestKind> StandardMix(const std::string& model);

enum class Outcome {
  kComplete,  // the whole answer: done:true / [DONE] / a full JSON object, no error
  kCut,       // a 200 whose body ends with an error line ({"error":...} or an SSE error event)
  kFailed,    // anything else
};

void PrintTo(Outcome outcome, std::ostream* os);

// Judges one answer. `why` says what was wrong (kFailed) or which error line ended it (kCut).
Outcome Classify(const RequestKind& kind, int status, const std::string& body, std::string* why);

struct TrafficOptions {
  std::vector<int> ports;  // proxies; requests go round-robin over them
  int threads = 6;
  std::vector<RequestKind> kinds;
  // A cut is legitimate for a stream only (its node failed after the first byte). With this
  // set, a cut answer to a non-streamed request is legitimate too (the node sent a 200 head
  // and then broke, which the proxy can only report in the body).
  bool cut_allowed_without_stream = false;
  std::chrono::seconds client_timeout{120};
};

struct TrafficCounts {
  int64_t sent = 0;
  int64_t streamed = 0;  // of `sent`
  int64_t complete = 0;
  int64_t cut = 0;
  int64_t failed = 0;
  double slowest_s = 0;                        // the longest any one request took
  std::vector<std::string> failures;           // the first few, with their reasons
  std::map<std::string, int64_t> cut_reasons;  // error text (node name removed) → count
};

// Client threads sending TrafficOptions::kinds in turn until Stop().
class Traffic {
 public:
  explicit Traffic(TrafficOptions options);
  ~Traffic();  // stops
  Traffic(const Traffic&) = delete;
  Traffic& operator=(const Traffic&) = delete;

  void Stop();               // joins the threads; their requests in progress finish first
  int64_t finished() const;  // answers received so far
  TrafficCounts counts() const;

 private:
  void Run(int thread_index);
  void Record(const RequestKind& kind, Outcome outcome, const std::string& why, double seconds);

  const TrafficOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> finished_{0};
  mutable std::mutex mu_;
  TrafficCounts counts_;  // guarded by mu_
  std::vector<std::thread> threads_;
};

// A corral-sim node that can be killed and brought back on the same port, as a node restarts.
class SimNode {
 public:
  // Starts corral-sim with `args` (after --listen) on a free port.
  SimNode(std::string dir, std::vector<std::string> args);
  SimNode(const SimNode&) = delete;
  SimNode& operator=(const SimNode&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  bool running() { return process_ && process_->Running(); }
  ::testing::AssertionResult Kill();  // SIGKILL, reaped
  // Starts it again on its port. The port may be briefly taken by someone's outgoing
  // connection once the node is gone, so a failed bind is retried until `timeout`.
  ::testing::AssertionResult Restart(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ::testing::AssertionResult Freeze();  // SIGSTOP: the kernel still accepts connections
  ::testing::AssertionResult Thaw();    // SIGCONT
  // GET /_sim/stats, parsed; null when it does not answer.
  nlohmann::json Stats() const;
  void DumpLogs() const;

 private:
  std::string dir_;
  std::vector<std::string> args_;
  int port_ = 0;
  std::unique_ptr<corral::testing::ChildProcess> process_;
  std::vector<std::unique_ptr<corral::testing::ChildProcess>> retired_;  // for their logs
};

// A snapshot node entry for `node` listing `models`.
nlohmann::json SnapshotNode(const std::string& name, const std::string& url,
                            const std::vector<std::string>& models);

// A corral-proxy serving a snapshot file the test writes (what the control plane would push).
class FileProxy {
 public:
  // Writes `snapshot` to <dir>/snapshot.json and starts the proxy on a free port.
  FileProxy(const std::string& dir, const nlohmann::json& snapshot);
  FileProxy(const FileProxy&) = delete;
  FileProxy& operator=(const FileProxy&) = delete;

  int port() const { return port_; }
  corral::testing::ChildProcess& process() { return *process_; }
  // GET /api/proxy/state, parsed; null when the proxy does not answer.
  nlohmann::json State() const;

 private:
  int port_ = 0;
  std::unique_ptr<corral::testing::ChildProcess> process_;
};

// What /api/proxy/state says about requests in progress.
struct InFlight {
  int64_t active = -1;   // proxy.active_requests
  int64_t nodes = 0;     // the sum of nodes[].in_flight
  int64_t ejected = 0;   // nodes ejected now
  int64_t failures = 0;  // the sum of nodes[].failures_total
  bool Idle() const { return active == 0 && nodes == 0; }
};
InFlight ReadInFlight(const nlohmann::json& proxy_state);

// Waits until the proxy on `port` has nothing in flight, and says what it still held if not.
::testing::AssertionResult WaitProxyIdle(
    int port, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// One POST to the proxy on `port`, judged like Traffic judges it.
Outcome SendOne(int port, const RequestKind& kind, std::string* why,
                std::chrono::seconds timeout = std::chrono::seconds(120));

// Waits until `count()` has grown by `more` from what it is now: load generators pace faults by
// the work done in between, never by the clock.
::testing::AssertionResult WaitForMore(
    const std::function<int64_t()>& count, int64_t more, const std::string& what,
    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A uniformly random integer in [lo, hi], for choosing victims and gaps.
int RandomIn(int lo, int hi);

// GET `path` from the server on 127.0.0.1:`port`, parsed; null unless it answers 200 with JSON.
nlohmann::json GetJson(int port, const std::string& path);

// How often `needle` occurs in `text`.
size_t CountOf(const std::string& text, const std::string& needle);

// Prints a measurement line (what docs/reliability.md quotes) and records it as a test property.
void ReportMeasured(const std::string& what, const std::string& line);

}  // namespace corral::faults
