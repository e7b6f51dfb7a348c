// SnapshotPublisher: turns registry changes into immutable routing snapshots and hands the newest
// one to every subscriber (one per open Discovery.Watch stream).
//
// The registry calls the publisher's change listener after every commit that bumped the version.
// The publisher's own thread then waits `debounce` more so a burst of changes (a fleet added by a
// script, a probe round flipping many nodes) becomes one snapshot, reads the registry in one
// transaction, and pushes the result to every subscriber. A snapshot is published only when its
// version is newer than the last one published, so unchanged content never goes out twice.
//
// A snapshot whose serialised size is over the gRPC message limit (kMaxSnapshotMessageBytes) is
// never published: every proxy would fail to receive it and drop its Watch. The publisher logs
// an ERROR saying how big it is, the limit, and what to do, and keeps offering the last snapshot
// that fit; the next change that brings the size back under the limit is published as usual.
//
// Subscribers must never block the publisher: Push only records "this is the newest" and starts a
// write when none is in flight (see WatchReactor in discovery_service.cc). A slow or stalled proxy
// therefore holds at most two snapshots (the one being written and the newest) and never delays
// the others.
//
// Subscribers are reference counted (SnapshotSubscriber::Ref/Unref): the publisher holds a
// reference while it calls into one, so a subscriber whose stream ends concurrently (gRPC may run
// its OnDone inline inside a write call) is never destroyed under the publisher's feet, and no
// publisher lock is held while calling a subscriber.
//
// Thread safety: all public methods are safe from any thread. Start and Stop once each.
#pragma once

#include <grpcpp/support/status.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/grpc_limits.h"
#include "controlplane/registry.h"
#include "controlplane/snapshot_gauges.h"
#include "corral/v1/snapshot.pb.h"

namespace corral::control {

// What one subscriber holds right now: for ListProxies-style introspection and tests.
struct SubscriberStats {
  std::string proxy_id;
  std::string peer;
  uint64_t delivered_version = 0;  // last snapshot whose write completed
  uint64_t inflight_version = 0;   // being written now; 0 = idle
  uint64_t pending_version = 0;    // newest waiting behind the write; 0 = none
  uint64_t writes_started = 0;
  uint64_t superseded = 0;  // snapshots replaced by a newer one before they were written
};

class SnapshotSubscriber {
 public:
  // Offers a snapshot newer than any offered before (older or equal ones are ignored). Must not
  // block: it is called from the publisher's thread for every subscriber in turn.
  virtual void Push(std::shared_ptr<const corral::v1::Snapshot> snapshot) = 0;
  // Ends the subscription with `status` once any write in flight is done. Must not block.
  virtual void Close(const grpc::Status& status) = 0;
  virtual SubscriberStats Stats() const = 0;

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 protected:
  // Starts with one reference, owned by whoever created the subscriber.
  SnapshotSubscriber() = default;
  virtual ~SnapshotSubscriber() = default;

 private:
  std::atomic<int> refs_{1};
};

struct SnapshotPublisherOptions {
  // How long after the first change of a burst the snapshot is built. Changes arriving meanwhile
  // ride along. Small: propagation to proxies must stay far under 100 ms.
  std::chrono::milliseconds debounce{5};
  // The largest serialised snapshot offered to proxies. Tests lower it; in production it is the
  // gRPC message limit both sides set.
  size_t max_snapshot_bytes = kMaxSnapshotMessageBytes;
  // Where builds, pushes and each published snapshot's fleet gauges are recorded
  // (SnapshotGauges); null = not recorded. Not owned; must outlive the publisher.
  ControlMetrics* metrics = nullptr;
};

// OK when `snapshot` serialises to at most `limit` bytes; otherwise ResourceExhausted with the
// message an operator needs (its size, the limit, how to shrink it).
absl::Status CheckSnapshotSize(const corral::v1::Snapshot& snapshot, size_t limit);

class SnapshotPublisher {
 public:
  // `registry` must outlive the publisher.
  explicit SnapshotPublisher(Registry* registry, SnapshotPublisherOptions options = {});
  ~SnapshotPublisher();  // Stop()
  SnapshotPublisher(const SnapshotPublisher&) = delete;
  SnapshotPublisher& operator=(const SnapshotPublisher&) = delete;

  // Builds the first snapshot (an error here means the registry cannot be read) and starts the
  // publishing thread.
  absl::Status Start();
  // Stops the thread. Subscribers stay registered; FinishAll ends them.
  void Stop();

  // The newest published snapshot; null before Start, and after it while every snapshot built so
  // far was over the size limit.
  std::shared_ptr<const corral::v1::Snapshot> current() const;
  // The newest version refused for its size (0 = none).
  uint64_t refused_version() const;

  // Registers `subscriber` and pushes the current snapshot to it at once. After FinishAll, the
  // subscriber is closed at once with the shutdown status instead.
  void Subscribe(SnapshotSubscriber* subscriber);
  // Idempotent. Called by the subscriber itself when its stream ends.
  void Unsubscribe(SnapshotSubscriber* subscriber);

  // Closes every subscriber with `status` and every later one at once (shutdown).
  void FinishAll(const grpc::Status& status);

  std::vector<SubscriberStats> Stats() const;
  size_t subscriber_count() const;

 private:
  // Shared with the registry's change listener, which may outlive the publisher (the registry
  // has no way to remove a listener).
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool dirty = false;    // guarded by mu
    bool stopped = false;  // guarded by mu
  };

  void Loop();
  // Builds from the registry and publishes if newer. Returns false if the registry failed.
  bool Rebuild();
  void Publish(std::shared_ptr<const corral::v1::Snapshot> snapshot);
  // Counts a new version built and, when `published`, records its fleet gauges.
  void RecordBuilt(const corral::v1::Snapshot& snapshot, bool published);
  // Copies the subscriber set with a reference on each. REQUIRES: mu_ not held.
  std::vector<SnapshotSubscriber*> Referenced() const;

  Registry* const registry_;
  const SnapshotPublisherOptions options_;
  std::unique_ptr<SnapshotGauges> gauges_;  // null without options_.metrics
  std::shared_ptr<Signal> signal_ = std::make_shared<Signal>();
  std::thread thread_;

  mutable std::mutex mu_;
  std::shared_ptr<const corral::v1::Snapshot> current_;  // guarded by mu_
  uint64_t refused_version_ = 0;                         // guarded by mu_
  std::set<SnapshotSubscriber*> subscribers_;            // guarded by mu_; one Ref each
  bool finished_ = false;                                // guarded by mu_
  grpc::Status finish_status_;                           // guarded by mu_
};

}  // namespace corral::control
