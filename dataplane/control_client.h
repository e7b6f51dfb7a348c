// ControlClient: the proxy's link to corral-control. It keeps a Discovery.Watch stream open,
// hands every snapshot received to the proxy (ApplyFn: validate, swap the routing table, write
// the on-disk copy), acknowledges or rejects it at once with a Report, and reports the proxy's
// per-node load every `report_interval`. With a UsageLedger, Reports also carry the ledger's
// pending usage batch (a new batch at most every `usage_interval`), and the batch is
// acknowledged to the ledger only when the control plane's answer names its sequence; a failed
// Report leaves it pending, so the next Report sends the same batch again.
//
// Slot grants (docs/limits.md): each answer carries this proxy's share of every node's limits,
// applied to `grants` (SlotGrants) unless the answer took longer than `max_grant_delay` to come
// (the control plane counts a lease from when it answered, plus that margin). Reports are
// numbered and name the one whose answer was applied last (ReportRequest.report_seq,
// grants_applied), which is how the control plane learns that a lowered grant is in
// force. The cadence follows demand: a Report at once when requests start waiting (`waiting`
// turns non-zero) or an answer lowered a grant (the acknowledgement frees the slots for others),
// every `busy_report_interval` while anything waits, every `report_interval` otherwise.
//
// Nothing on the request path waits for it. When the control plane is away the proxy keeps
// serving the last snapshot it applied; this client reconnects with jittered exponential backoff
// (backoff_initial doubling to backoff_max, reset once a stream delivered a snapshot) and picks
// up the current snapshot when the stream returns. The channel sends keepalive pings on the idle
// stream so a dead control plane is noticed within ~40 s even when no snapshot is due.
//
// The channel is plaintext unless a CA is given (tls_ca_file): then it is TLS and the control
// plane's certificate must chain to that CA and name the host in `address`; a client
// certificate and key make it mutual TLS. The files are read once, at construction; a problem
// with them is init_status(), and such a client never connects. Messages up to
// kMaxGrpcMessageBytes are accepted, the same limit the control plane publishes under.
//
// Threads: one thread reads the Watch stream (a blocking ClientReader, cancelled with TryCancel);
// one thread sends Reports (unary, per-call deadline). ApplyFn runs on the Watch thread, LoadFn,
// `waiting` and `on_grants` on the Report thread; none is called after Stop returns.
//
// Thread safety: Start and Stop from one owning thread; connected(), applied_version() and
// rejected_version() from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "corral/v1/control.grpc.pb.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/slot_grants.h"
#include "dataplane/usage_ledger.h"

namespace corral::dataplane {

struct ControlClientOptions {
  std::string address = "127.0.0.1:11400";  // corral-control's gRPC address
  std::string proxy_id;                     // how this proxy appears in `corralctl proxies`
  std::string token;  // sent as `authorization: Bearer <token>` when not empty
  // Often enough that slots an idle proxy holds reach a busy one within a second.
  std::chrono::milliseconds report_interval{500};
  std::chrono::milliseconds busy_report_interval{200};  // while requests wait for a slot
  std::chrono::milliseconds usage_interval{2000};       // a new usage batch at most this often
  // Answers slower than this do not change the grants (see above).
  std::chrono::milliseconds max_grant_delay{1000};
  std::chrono::milliseconds report_timeout{5000};  // deadline of one Report call
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{15000};
  // PEM files; all empty = plaintext (the default, for a control plane on loopback). With a CA
  // the channel is TLS; with a certificate and key too, mutual TLS.
  std::string tls_ca_file;    // the CA that signed the control plane's certificate
  std::string tls_cert_file;  // this proxy's client certificate (needs tls_key_file)
  std::string tls_key_file;
  // Drained into Reports when set (not owned; must outlive the client).
  UsageLedger* usage = nullptr;
  // Where each answer's grants go (not owned; must outlive the client); null = not applied.
  SlotGrants* grants = nullptr;
  // Called after grants were applied (the proxy wakes its waiting requests: a limit may have
  // grown). May be empty.
  std::function<void()> on_grants;
  // Requests waiting for a slot now, polled every `waiting_poll` to report as soon as some
  // start waiting. Empty = not polled.
  std::function<int64_t()> waiting;
  std::chrono::milliseconds waiting_poll{20};
};

// Validates and serves a snapshot; an error rejects it (the proxy keeps what it served) and its
// message is sent back as the rejection reason.
using ApplyFn = std::function<absl::Status(const corral::v1::Snapshot&)>;
// The proxy's runtime view of each node, for Reports. May be empty.
using LoadFn = std::function<std::vector<corral::v1::NodeLoad>()>;

class ControlClient {
 public:
  ControlClient(ControlClientOptions options, ApplyFn apply, LoadFn load);
  ~ControlClient();  // Stop()
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Not OK when the options cannot be used (a TLS file unreadable, not PEM, a certificate
  // without its key): the message names the flag and file. Start does nothing then.
  const absl::Status& init_status() const { return init_status_; }

  // Starts both threads. `served_version` is the version the proxy already serves (from its
  // on-disk copy; 0 = none): it is sent in WatchRequest.have_version and reported as applied
  // until a newer snapshot is applied.
  void Start(uint64_t served_version = 0);
  // Cancels the stream and any Report in flight and joins the threads. Prompt: it never waits
  // out a backoff or a deadline.
  void Stop();

  // A Watch stream is open and has delivered at least one snapshot.
  bool connected() const { return connected_.load(); }
  // The snapshot version the proxy serves as far as this client knows (0 = none).
  uint64_t applied_version() const { return applied_version_.load(); }
  // The last snapshot version ApplyFn rejected (0 = none).
  uint64_t rejected_version() const { return rejected_version_.load(); }

  // Sends a Report as soon as the Report thread is free (coalesced with one already due).
  void ReportSoon();
  // Answers whose grants were applied (tests, the state view).
  uint64_t grants_applied() const { return grants_applied_.load(); }

 private:
  void WatchLoop();
  void ReportLoop();
  // Reads one Watch stream to its end. Returns true if it delivered at least one snapshot.
  bool WatchOnce();
  void HandleSnapshot(const corral::v1::Snapshot& snapshot);
  // Sends one Report; returns whether requests were waiting when it was made.
  bool SendReport();
  // Applies the answer's grants. Returns whether any grant is lower than the last applied one.
  bool ApplyGrants(const corral::v1::ReportResponse& response);
  // Waits up to `d` or until Stop. Returns false when stopping.
  bool SleepUnlessStopping(std::chrono::milliseconds d);
  void AddAuth(grpc::ClientContext* ctx) const;

  const ControlClientOptions options_;
  const ApplyFn apply_;
  const LoadFn load_;
  absl::Status init_status_;
  const char* security_ = "plaintext";  // for logs: "plaintext", "TLS" or "mTLS"
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<corral::v1::Discovery::Stub> stub_;

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> applied_version_{0};
  std::atomic<uint64_t> rejected_version_{0};
  std::atomic<uint64_t> grants_applied_{0};

  // Report thread only.
  uint64_t report_seq_ = 0;     // the last Report's number
  uint64_t applied_seq_ = 0;    // the Report whose answer's grants are applied
  uint64_t usage_pending_ = 0;  // the usage batch sent and not yet acknowledged
  std::chrono::steady_clock::time_point last_usage_{};
  // The grants applied last, by node.
  struct AppliedGrant {
    int64_t max_parallel = 0;
    int64_t default_model_slots = 0;
    std::map<std::string, int64_t> models;
  };
  std::map<std::string, AppliedGrant> applied_grants_;

  std::mutex mu_;
  std::condition_variable cv_;                 // stop, report due
  bool stopping_ = false;                      // guarded by mu_
  bool report_due_ = false;                    // an ack/nack waits to be sent; guarded by mu_
  std::string rejected_reason_;                // guarded by mu_
  grpc::ClientContext* watch_ctx_ = nullptr;   // the open Watch call; guarded by mu_
  grpc::ClientContext* report_ctx_ = nullptr;  // the Report in flight; guarded by mu_
  std::thread watch_thread_;
  std::thread report_thread_;
};

}  // namespace corral::dataplane
