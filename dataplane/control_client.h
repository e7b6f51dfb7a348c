// ControlClient: the proxy's link to corral-control. It keeps a Discovery.Watch stream open,
// hands every snapshot received to the proxy (ApplyFn: validate, swap the routing table, write
// the on-disk copy), acknowledges or rejects it at once with a Report, and reports the proxy's
// per-node load every `report_interval`. With a UsageLedger, each Report also carries the
// ledger's pending usage batch, and the batch is acknowledged to the ledger only when the control
// plane's answer names its sequence; a failed Report leaves it pending, so the next Report sends
// the same batch again.
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
// one thread sends Reports (unary, per-call deadline). ApplyFn runs on the Watch thread, LoadFn on
// the Report thread; neither is called after Stop returns.
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
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "corral/v1/control.grpc.pb.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/usage_ledger.h"

namespace corral::dataplane {

struct ControlClientOptions {
  std::string address = "127.0.0.1:11400";  // corral-control's gRPC address
  std::string proxy_id;                     // how this proxy appears in `corralctl proxies`
  std::string token;  // sent as `authorization: Bearer <token>` when not empty
  std::chrono::milliseconds report_interval{2000};
  std::chrono::milliseconds report_timeout{5000};  // deadline of one Report call
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{15000};
  // PEM files; all empty = plaintext (the default, for a control plane on loopback). With a CA
  // the channel is TLS; with a certificate and key too, mutual TLS.
  std::string tls_ca_file;    // the CA that signed the control plane's certificate
  std::string tls_cert_file;  // this proxy's client certificate (needs tls_key_file)
  std::string tls_key_file;
  // Drained into every Report when set (not owned; must outlive the client).
  UsageLedger* usage = nullptr;
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

 private:
  void WatchLoop();
  void ReportLoop();
  // Reads one Watch stream to its end. Returns true if it delivered at least one snapshot.
  bool WatchOnce();
  void HandleSnapshot(const corral::v1::Snapshot& snapshot);
  void SendReport();
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
