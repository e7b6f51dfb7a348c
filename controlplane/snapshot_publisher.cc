#include "controlplane/snapshot_publisher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace corral::control {

absl::Status CheckSnapshotSize(const corral::v1::Snapshot& snapshot, size_t limit) {
  const size_t size = snapshot.ByteSizeLong();
  if (size <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "snapshot version ", snapshot.version(), " is ", size, " bytes serialised (",
      snapshot.nodes_size(), " nodes, ", snapshot.tokens_size(),
      " tokens), over the gRPC message limit of ", limit,
      " bytes: it is not sent to any proxy, which keep serving the last snapshot that fit. "
      "Make it smaller: remove nodes or split the fleet across control planes, remove models "
      "from nodes that do not need them, or revoke unused tokens"));
}

SnapshotPublisher::SnapshotPublisher(Registry* registry, SnapshotPublisherOptions options)
    : registry_(registry), options_(options) {
  if (options_.metrics != nullptr) gauges_ = std::make_unique<SnapshotGauges>(options_.metrics);
}

SnapshotPublisher::~SnapshotPublisher() {
  Stop();
  // Drop the references held for still-registered subscribers. Normally FinishAll plus the
  // server's shutdown have emptied the set already.
  std::set<SnapshotSubscriber*> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(subscribers_);
  }
  for (SnapshotSubscriber* s : left) s->Unref();
}

absl::Status SnapshotPublisher::Start() {
  // Listen before the first build so a change committed in between is not missed.
  std::shared_ptr<Signal> signal = signal_;
  registry_->AddChangeListener([signal](uint64_t) {
    std::lock_guard<std::mutex> lock(signal->mu);
    signal->dirty = true;
    signal->cv.notify_one();
  });
  absl::StatusOr<corral::v1::Snapshot> first = registry_->BuildSnapshot();
  if (!first.ok()) return first.status();
  // Too large a first snapshot does not stop the control plane: the admin API must stay up so the
  // operator can shrink the fleet. Proxies serve their on-disk copies meanwhile.
  if (absl::Status size = CheckSnapshotSize(*first, options_.max_snapshot_bytes); !size.ok()) {
    CORRAL_LOG(kError, "publisher") << size.message();
    RecordBuilt(*first, false);
    std::lock_guard<std::mutex> lock(mu_);
    refused_version_ = first->version();
  } else {
    RecordBuilt(*first, true);
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::make_shared<const corral::v1::Snapshot>(*std::move(first));
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void SnapshotPublisher::Stop() {
  {
    std::lock_guard<std::mutex> lock(signal_->mu);
    signal_->stopped = true;
    signal_->cv.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void SnapshotPublisher::Loop() {
  Signal& signal = *signal_;
  std::unique_lock<std::mutex> lock(signal.mu);
  for (;;) {
    signal.cv.wait(lock, [&] { return signal.dirty || signal.stopped; });
    if (signal.stopped) return;
    // Coalesce: whatever else changes during the debounce window rides in the same snapshot.
    signal.cv.wait_for(lock, options_.debounce, [&] { return signal.stopped; });
    if (signal.stopped) return;
    signal.dirty = false;
    lock.unlock();
    const bool built = Rebuild();
    lock.lock();
    if (!built) {
      // The registry failed (disk, lock): try again shortly rather than lose the change.
      signal.dirty = true;
      signal.cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return signal.stopped; });
    }
  }
}

bool SnapshotPublisher::Rebuild() {
  absl::StatusOr<corral::v1::Snapshot> built = registry_->BuildSnapshot();
  if (!built.ok()) {
    CORRAL_LOG(kError, "publisher") << "cannot build a snapshot: " << built.status();
    return false;
  }
  auto snapshot = std::make_shared<const corral::v1::Snapshot>(*std::move(built));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr && snapshot->version() <= current_->version()) return true;
    if (snapshot->version() <= refused_version_) return true;  // refused already, said so
  }
  // Sized outside the lock: a snapshot of a large fleet takes a while to measure.
  if (absl::Status size = CheckSnapshotSize(*snapshot, options_.max_snapshot_bytes); !size.ok()) {
    CORRAL_LOG(kError, "publisher") << size.message();
    RecordBuilt(*snapshot, false);
    std::lock_guard<std::mutex> lock(mu_);
    refused_version_ = snapshot->version();
    // Not an error of the registry: retrying would build the same snapshot again.
    return true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr && snapshot->version() <= current_->version()) return true;
    current_ = snapshot;
  }
  RecordBuilt(*snapshot, true);
  CORRAL_LOG(kDebug, "publisher") << "publishing snapshot version " << snapshot->version() << " ("
                                  << snapshot->nodes_size() << " nodes)";
  Publish(std::move(snapshot));
  return true;
}

void SnapshotPublisher::Publish(std::shared_ptr<const corral::v1::Snapshot> snapshot) {
  for (SnapshotSubscriber* s : Referenced()) {
    s->Push(snapshot);
    s->Unref();
    if (options_.metrics != nullptr) options_.metrics->snapshot_pushes.Inc();
  }
}

void SnapshotPublisher::RecordBuilt(const corral::v1::Snapshot& snapshot, bool published) {
  if (options_.metrics == nullptr) return;
  options_.metrics->snapshot_builds.Inc();
  if (published) gauges_->Record(snapshot);
}

std::vector<SnapshotSubscriber*> SnapshotPublisher::Referenced() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SnapshotSubscriber*> out(subscribers_.begin(), subscribers_.end());
  for (SnapshotSubscriber* s : out) s->Ref();
  return out;
}

std::shared_ptr<const corral::v1::Snapshot> SnapshotPublisher::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

uint64_t SnapshotPublisher::refused_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_version_;
}

void SnapshotPublisher::Subscribe(SnapshotSubscriber* subscriber) {
  std::shared_ptr<const corral::v1::Snapshot> snapshot;
  grpc::Status finished;
  bool closed = false;
  subscriber->Ref();  // for the duration of this call
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) {
      closed = true;
      finished = finish_status_;
    } else if (subscribers_.insert(subscriber).second) {
      subscriber->Ref();  // the set's reference
      snapshot = current_;
    }
  }
  if (closed) {
    subscriber->Close(finished);
  } else if (snapshot != nullptr) {
    // If the publisher thread pushed something newer meanwhile, the subscriber ignores this one.
    subscriber->Push(std::move(snapshot));
    if (options_.metrics != nullptr) options_.metrics->snapshot_pushes.Inc();
  }
  subscriber->Unref();
}

void SnapshotPublisher::Unsubscribe(SnapshotSubscriber* subscriber) {
  bool erased;
  {
    std::lock_guard<std::mutex> lock(mu_);
    erased = subscribers_.erase(subscriber) > 0;
  }
  if (erased) subscriber->Unref();
}

void SnapshotPublisher::FinishAll(const grpc::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    finish_status_ = status;
  }
  for (SnapshotSubscriber* s : Referenced()) {
    s->Close(status);
    s->Unref();
  }
}

std::vector<SubscriberStats> SnapshotPublisher::Stats() const {
  std::vector<SubscriberStats> out;
  for (SnapshotSubscriber* s : Referenced()) {
    out.push_back(s->Stats());
    s->Unref();
  }
  return out;
}

size_t SnapshotPublisher::subscriber_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

}  // namespace corral::control
