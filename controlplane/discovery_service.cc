#include "controlplane/discovery_service.h"

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/log.h"

namespace corral::control {

using corral::v1::Snapshot;

std::shared_ptr<const WireSnapshot> WireCache::Get(
    const std::shared_ptr<const Snapshot>& snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  // The source is kept alive beside its wire form, so its address cannot come back as another.
  if (wire_ != nullptr && source_ == snapshot) return wire_;
  auto wire = std::make_shared<WireSnapshot>();
  wire->version = snapshot->version();
  bool own = false;
  const grpc::Status serialised =
      grpc::SerializationTraits<Snapshot>::Serialize(*snapshot, &wire->bytes, &own);
  if (!serialised.ok()) {
    CORRAL_LOG(kError, "discovery") << "cannot serialise snapshot " << snapshot->version() << ": "
                                    << serialised.error_message();
    return nullptr;
  }
  source_ = snapshot;
  wire_ = std::move(wire);
  return wire_;
}

namespace {

// One open Watch stream. Holds the snapshot being written (`inflight_`, which gRPC reads until
// OnWriteDone) and the newest one waiting behind it (`pending_`); a newer push replaces
// `pending_`, so a stalled stream holds at most two snapshots. Finish is only ever called with
// no write in flight: a finish requested during a write waits for its OnWriteDone.
//
// Lifetime: reference counted (SnapshotSubscriber). gRPC's reference is dropped in OnDone, the
// publisher's when it unsubscribes; the last one deletes the reactor. StartWrite and Finish are
// never called with mu_ held, because gRPC may run reactions inline inside them.
class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                           public SnapshotSubscriber {
 public:
  WatchReactor(SnapshotPublisher* publisher, ProxyTracker* tracker,
               std::shared_ptr<WireCache> wire_cache, std::shared_ptr<SlotAllocator> allocator,
               std::string proxy_id, std::string peer)
      : publisher_(publisher),
        tracker_(tracker),
        wire_cache_(std::move(wire_cache)),
        allocator_(std::move(allocator)),
        proxy_id_(std::move(proxy_id)),
        peer_(std::move(peer)) {
    stream_id_ = tracker_->WatchStarted(proxy_id_, peer_);
    allocator_->Connected(proxy_id_);
    CORRAL_LOG(kInfo, "discovery") << "proxy " << proxy_id_ << " (" << peer_ << ") is watching";
  }

  // Called once the reactor is returned to gRPC's hands (writes before that are queued by it).
  void Begin() { publisher_->Subscribe(this); }

  // SnapshotSubscriber
  void Push(std::shared_ptr<const Snapshot> snapshot) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A fresh registry's first snapshot is version 0: it must still go out.
      if (finish_requested_ || (offered_any_ && snapshot->version() <= newest_version_)) return;
    }
    // Serialised once per version for all streams, outside this stream's lock.
    std::shared_ptr<const WireSnapshot> wire = wire_cache_->Get(snapshot);
    if (wire == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_ || (offered_any_ && wire->version <= newest_version_)) return;
      offered_any_ = true;
      newest_version_ = wire->version;
      if (pending_ != nullptr) ++superseded_;
      pending_ = std::move(wire);
      if (writing_) return;
      writing_ = true;
      inflight_ = std::move(pending_);
      ++writes_started_;
    }
    // inflight_ only changes in OnWriteDone, which cannot run before this write starts.
    StartWrite(&inflight_->bytes);
  }

  void Close(const grpc::Status& status) override { RequestFinish(status); }

  SubscriberStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    SubscriberStats s;
    s.proxy_id = proxy_id_;
    s.peer = peer_;
    s.delivered_version = delivered_version_;
    s.inflight_version = inflight_ ? inflight_->version : 0;
    s.pending_version = pending_ ? pending_->version : 0;
    s.writes_started = writes_started_;
    s.superseded = superseded_;
    return s;
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    std::shared_ptr<const WireSnapshot> written;  // released outside the lock
    bool start = false;
    bool finish = false;
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      written = std::move(inflight_);
      if (ok && written) delivered_version_ = written->version;
      if (!ok && !finish_requested_) {
        // The stream broke (peer gone or call cancelled): end it.
        finish_requested_ = true;
        finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "snapshot write failed");
        pending_.reset();
      }
      if (finish_requested_) {
        writing_ = false;
        if (!finish_called_) {
          finish_called_ = true;
          finish = true;
          status = finish_status_;
        }
      } else if (pending_ != nullptr) {
        inflight_ = std::move(pending_);
        ++writes_started_;
        start = true;
      } else {
        writing_ = false;
      }
    }
    if (start) {
      StartWrite(&inflight_->bytes);
    } else if (finish) {
      Finish(status);
    }
  }

  void OnCancel() override {
    RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override {
    CORRAL_LOG(kInfo, "discovery")
        << "proxy " << proxy_id_ << " (" << peer_ << ") stopped watching";
    tracker_->WatchEnded(proxy_id_, stream_id_);
    allocator_->Disconnected(proxy_id_);
    publisher_->Unsubscribe(this);
    Unref();  // gRPC's reference
  }

 private:
  void RequestFinish(const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      finish_status_ = status;
      pending_.reset();
      if (writing_) return;  // OnWriteDone finishes
      finish_called_ = true;
    }
    Finish(status);
  }

  SnapshotPublisher* const publisher_;
  ProxyTracker* const tracker_;
  const std::shared_ptr<WireCache> wire_cache_;
  const std::shared_ptr<SlotAllocator> allocator_;
  const std::string proxy_id_;
  const std::string peer_;
  uint64_t stream_id_ = 0;

  mutable std::mutex mu_;
  bool writing_ = false;                          // guarded by mu_
  std::shared_ptr<const WireSnapshot> inflight_;  // guarded by mu_ (read by gRPC while writing_)
  std::shared_ptr<const WireSnapshot> pending_;   // guarded by mu_
  bool offered_any_ = false;                      // guarded by mu_
  uint64_t newest_version_ = 0;                   // guarded by mu_
  uint64_t delivered_version_ = 0;                // guarded by mu_
  uint64_t writes_started_ = 0;                   // guarded by mu_
  uint64_t superseded_ = 0;                       // guarded by mu_
  bool finish_requested_ = false;                 // guarded by mu_
  bool finish_called_ = false;                    // guarded by mu_
  grpc::Status finish_status_;                    // guarded by mu_
};

// A Watch refused before it started (bad token).
class RejectedWatch final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RejectedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};


}  // namespace

DiscoveryService::DiscoveryService(SnapshotPublisher* publisher, ProxyTracker* tracker,
                                   const Authenticator* auth, Registry* registry, Prober* prober,
                                   SlotAllocatorOptions slots)
    : publisher_(publisher),
      tracker_(tracker),
      auth_(auth),
      registry_(registry),
      prober_(prober),
      wire_cache_(std::make_shared<WireCache>()),
      allocator_(std::make_shared<SlotAllocator>(SteadyClock::Instance(), slots)) {}

std::shared_ptr<const LimitTable> DiscoveryService::CurrentLimits() {
  std::shared_ptr<const corral::v1::Snapshot> snapshot = publisher_->current();
  std::lock_guard<std::mutex> lock(limits_mu_);
  if (limits_ == nullptr || snapshot != limits_source_) {
    limits_source_ = snapshot;
    limits_ = std::make_shared<const LimitTable>(snapshot ? LimitsOf(*snapshot) : LimitTable{});
  }
  return limits_;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* DiscoveryService::Watch(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  if (grpc::Status denied = auth_->CheckProxy(*context); !denied.ok()) {
    CORRAL_LOG(kWarn, "discovery")
        << "refused Watch from " << context->peer() << ": " << denied.error_message();
    return new RejectedWatch(denied);
  }
  corral::v1::WatchRequest request;
  grpc::ByteBuffer copy(*raw_request);
  if (grpc::Status parsed =
          grpc::SerializationTraits<corral::v1::WatchRequest>::Deserialize(&copy, &request);
      !parsed.ok()) {
    return new RejectedWatch(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "Watch: not a WatchRequest: " + parsed.error_message()));
  }
  const std::string id = request.proxy_id().empty() ? context->peer() : request.proxy_id();
  auto* reactor =
      new WatchReactor(publisher_, tracker_, wire_cache_, allocator_, id, context->peer());
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* DiscoveryService::Report(grpc::CallbackServerContext* context,
                                                   const corral::v1::ReportRequest* request,
                                                   corral::v1::ReportResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status denied = auth_->CheckProxy(*context); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  if (request->proxy_id().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "Report needs proxy_id (the id the proxy watches with)"));
    return reactor;
  }
  if (request->rejected_version() != 0) {
    CORRAL_LOG(kWarn, "discovery")
        << "proxy " << request->proxy_id() << " rejected snapshot " << request->rejected_version()
        << ": " << request->rejected_reason();
  }
  tracker_->Report(*request, context->peer());
  allocator_->Report(request->proxy_id(), request->report_seq(), request->grants_applied(),
                     request->nodes(),
                     *CurrentLimits(), response);
  if (prober_ != nullptr) {
    // The prober coalesces: several proxies reporting loads on one node cost one round.
    for (const corral::v1::NodeLoad& load : request->nodes()) {
      if (load.cold_loads_size() > 0) prober_->ProbeSoon(load.node());
    }
  }
  if (request->has_usage() && registry_ != nullptr) {
    // One short SQLite transaction on gRPC's thread: Reports come every few seconds per proxy.
    // Not acknowledged when it fails, so the proxy sends the same batch again.
    const corral::v1::UsageBatch& batch = request->usage();
    int skipped = 0;
    absl::StatusOr<bool> applied = registry_->ApplyUsage(request->proxy_id(), batch, &skipped);
    if (applied.ok()) {
      response->set_usage_acked_sequence(batch.sequence());
      if (skipped > 0) {
        CORRAL_LOG(kWarn, "discovery")
            << "proxy " << request->proxy_id() << " usage batch " << batch.sequence() << ": "
            << skipped << " entries skipped (a name over 512 bytes, a negative hour or a count "
            << "past 2^63)";
      }
    } else {
      CORRAL_LOG(kWarn, "discovery") << "proxy " << request->proxy_id() << " usage batch "
                                     << batch.sequence() << " not applied (the proxy will send "
                                     << "it again): " << applied.status().message();
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace corral::control
