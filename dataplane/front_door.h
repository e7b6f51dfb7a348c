// FrontDoor: what corral-proxy decides on a request's head alone, for every route, before any
// body byte is read (docs/security.md "The front door"): the browser origin, the inference
// token and its scope, admission against --max-streams, and room in the budget of buffered
// request bodies. A proxy at --max-streams refuses on the head; a request with a buffered body
// takes its slot only once the body has arrived, because a slot stands for a node's work and a
// body in transit costs memory (the budget), not a node: a client trickling its body must not
// hold a slot the fleet could be using. The listener (common/http_listener.h) calls Check for each
// head it accepted; a refusal goes out at once, in the route's error format; an admitted request
// carries its Admitted ticket to the handler, which holds the admission slot and the body
// reservation for the request's whole life (streams included).
//
// Thread safety: Check and every method are safe from any thread. An Admitted ticket belongs to
// its request; BodyBudget reservations may be released from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/http_listener.h"
#include "common/request_head.h"
#include "corral/v1/snapshot.pb.h"
#include "dataplane/live_requests.h"
#include "dataplane/request_record.h"
#include "dataplane/route.h"
#include "dataplane/routing_table.h"
#include "dataplane/snapshot_store.h"

namespace corral::dataplane {

// The bytes of request bodies the proxy holds in memory at once, across all connections.
class BodyBudget {
 public:
  explicit BodyBudget(uint64_t limit) : limit_(limit) {}

  // Bytes reserved by one request; released when it ends.
  class Reservation {
   public:
    Reservation() = default;
    explicit Reservation(BodyBudget* budget) : budget_(budget) {}
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation() { Release(); }

    // Reserves `bytes` more; false (and nothing reserved) past the budget.
    bool Grow(uint64_t bytes);
    uint64_t bytes() const { return bytes_; }
    void Release();

   private:
    BodyBudget* budget_ = nullptr;
    uint64_t bytes_ = 0;
  };

  Reservation Start() { return Reservation(this); }
  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_.load(); }

 private:
  bool TryTake(uint64_t bytes);
  void Give(uint64_t bytes) { used_.fetch_sub(bytes); }

  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// Counts a request against --max-streams for as long as it lives.
class AdmissionSlot {
 public:
  explicit AdmissionSlot(std::atomic<int64_t>* active) : active_(active) {}
  ~AdmissionSlot() { active_->fetch_sub(1); }
  AdmissionSlot(const AdmissionSlot&) = delete;
  AdmissionSlot& operator=(const AdmissionSlot&) = delete;

 private:
  std::atomic<int64_t>* active_;
};

// What the front door decided for an admitted request.
struct Admitted {
  Route route;
  std::shared_ptr<const RoutingTable> table;  // the snapshot the decision was made on
  // The token presented, when the snapshot's fleet is closed; points into `table`.
  const corral::v1::InferenceToken* token = nullptr;
  // Held by requests that go to nodes (inference, node-local, blobs): counts against
  // --max-streams. Taken on the head for a request without a buffered body; for one with, once
  // the body has arrived (FrontDoor::TakeSlot). Shared with a stream relay that outlives the
  // handler.
  std::shared_ptr<AdmissionSlot> slot;
  // Bytes reserved in the body budget for a buffered body (grown as a chunked one arrives).
  BodyBudget::Reservation body;
  // The body announced is over --max-body-mb by a little (kMaxDrainBytes): the handler reads
  // and drops it, then answers 413 on a connection that goes on.
  bool drain_body = false;
  // The request's record (request_record.h), begun when its head was checked. The handler and
  // the units it calls fill it; it is finished once the answer is known (or, for a stream or a
  // long answer, once the relay ends: the relay keeps this ticket alive until then).
  std::optional<RecordHandle> record;
  // The request's place among the requests in flight (requests that go to nodes only); declared
  // after `record` so that it leaves before the record goes.
  LiveRequests::Entry live;
};

// A body announced over the limit by at most this much is read and dropped before its 413, so
// that a client that writes its whole body before reading (most do) sees the answer; a larger
// one is refused on its head and the connection closed.
inline constexpr uint64_t kMaxDrainBytes = uint64_t{64} << 20;

struct FrontDoorOptions {
  int64_t max_streams = 2048;
  // The largest request body buffered to read the model (blob uploads are streamed).
  uint64_t max_body_bytes = uint64_t{256} << 20;
  // Browser origins allowed (an entry ending in '*' is a prefix; "*" allows any). Empty:
  // Ollama's own defaults (DefaultAllowedOrigins).
  std::vector<std::string> allow_origins;
};

// The origins an Ollama node allows when OLLAMA_ORIGINS is not set: localhost, 127.0.0.1 and
// 0.0.0.0 on any port over http and https, and the app://, file://, tauri://, vscode-webview://
// and vscode-file:// schemes.
std::vector<std::string> DefaultAllowedOrigins();

// The 503 message of a proxy at its --max-streams.
std::string AtLimitMessage(int64_t max_streams);

// True when the snapshot asks for an inference token: it defines tokens, or it requires them
// (require_tokens: revoking the last token then leaves the fleet closed, docs/security.md).
bool FleetClosed(const corral::v1::Snapshot& snapshot);

class FrontDoor {
 public:
  FrontDoor(FrontDoorOptions options, SnapshotStore& store, BodyBudget& budget);

  // The listener's head check (HttpListener::set_head_check). Every head checked begins a
  // request record with its id (X-Request-Id: the client's when usable, else a new one; sent
  // back on every answer, refusals included); a refusal finishes it here, so a request the
  // listener answers on its head is accounted for like any other.
  HeadVerdict Check(const RequestHead& head, const std::string& client_address);

  // Where finished records go (the proxy's sinks, kept alive by the caller). Set before the
  // listener runs; null (the default) keeps records to no one.
  void set_record_sinks(const std::vector<RecordSink*>* sinks) { sinks_ = sinks; }

  // Takes the admission slot of a request whose buffered body has arrived; false when the
  // proxy filled up meanwhile (the request then gets the same 503 as on its head).
  bool TakeSlot(Admitted& admitted);

  // True when `origin` may call from a browser.
  bool OriginAllowed(const std::string& origin) const;
  // True when any origin is allowed (`--allow-origins '*'`): answers say `*`.
  bool AnyOrigin() const { return any_origin_; }

  // Requests holding an admission slot now.
  int64_t active() const { return active_.load(); }
  std::atomic<int64_t>* active_counter() { return &active_; }
  const FrontDoorOptions& options() const { return options_; }
  BodyBudget& budget() { return budget_; }
  // The requests that go to nodes and are in flight now (GET /api/proxy/active-requests).
  const LiveRequests& live() const { return live_; }

 private:
  // The token presented by `head` when the fleet is closed: null (and *refusal set) when it is
  // missing, unknown, or not allowed on the route.
  bool Authorize(const RequestHead& head, Admitted& admitted, HeadVerdict* refusal) const;
  // Check's decision, without the record.
  HeadVerdict Decide(const RequestHead& head, std::shared_ptr<Admitted>& admitted);

  const FrontDoorOptions options_;
  std::vector<std::string> origins_;
  bool any_origin_ = false;
  SnapshotStore& store_;
  BodyBudget& budget_;
  std::atomic<int64_t> active_{0};
  const std::vector<RecordSink*>* sinks_ = nullptr;
  LiveRequests live_;
};

}  // namespace corral::dataplane
