#include "dataplane/front_door.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/ascii.h"
#include "common/token_hash.h"
#include "dataplane/replies.h"
#include "dataplane/request_id.h"

namespace corral::dataplane {
namespace {

// The message of a refusal's error body, for its record; the status alone when it has none.
std::string RefusalReason(const HeadVerdict& verdict) {
  if (!verdict.body.empty()) {
    const auto body = nlohmann::json::parse(verdict.body, nullptr, false);
    if (body.is_object() && body.contains("error")) {
      const auto& error = body["error"];
      if (error.is_string()) return error.get<std::string>();
      if (error.is_object() && error.value("message", nlohmann::json()).is_string()) {
        return error["message"].get<std::string>();
      }
    }
  }
  return verdict.status == 403 ? "origin not allowed" : "refused";
}

// A refusal in the route's error format.
HeadVerdict Refuse(int status, std::string_view message, bool openai) {
  HeadVerdict verdict;
  verdict.status = status;
  verdict.content_type = kJsonContentType;
  verdict.body = ErrorBody(status, message, openai);
  if (status == 503) verdict.headers.emplace_back("Retry-After", "1");
  return verdict;
}

}  // namespace

std::string AtLimitMessage(int64_t max_streams) {
  return "corral-proxy is at its limit of " + std::to_string(max_streams) +
         " concurrent requests, please try again";
}

BodyBudget::Reservation::Reservation(Reservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

BodyBudget::Reservation& BodyBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

bool BodyBudget::Reservation::Grow(uint64_t bytes) {
  if (budget_ == nullptr || bytes == 0) return budget_ != nullptr;
  if (!budget_->TryTake(bytes)) return false;
  bytes_ += bytes;
  return true;
}

void BodyBudget::Reservation::Release() {
  if (budget_ != nullptr && bytes_ > 0) budget_->Give(bytes_);
  bytes_ = 0;
}

bool BodyBudget::TryTake(uint64_t bytes) {
  uint64_t used = used_.load();
  do {
    if (bytes > limit_ || used > limit_ - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

std::vector<std::string> DefaultAllowedOrigins() {
  std::vector<std::string> origins;
  for (const char* host : {"localhost", "127.0.0.1", "0.0.0.0"}) {
    for (const char* scheme : {"http://", "https://"}) {
      origins.push_back(std::string(scheme) + host);
      origins.push_back(std::string(scheme) + host + ":*");
    }
  }
  for (const char* scheme :
       {"app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"}) {
    origins.emplace_back(scheme);
  }
  return origins;
}

bool FleetClosed(const corral::v1::Snapshot& snapshot) {
  return snapshot.require_tokens() || !snapshot.tokens().empty();
}

FrontDoor::FrontDoor(FrontDoorOptions options, SnapshotStore& store, BodyBudget& budget)
    : options_(std::move(options)), store_(store), budget_(budget) {
  origins_ = options_.allow_origins.empty() ? DefaultAllowedOrigins() : options_.allow_origins;
  any_origin_ = std::find(origins_.begin(), origins_.end(), "*") != origins_.end();
}

bool FrontDoor::OriginAllowed(const std::string& origin) const {
  if (any_origin_) return true;
  for (const std::string& allowed : origins_) {
    if (allowed == origin) return true;
    if (!allowed.empty() && allowed.back() == '*' &&
        origin.compare(0, allowed.size() - 1, allowed, 0, allowed.size() - 1) == 0) {
      return true;
    }
  }
  return false;
}

bool FrontDoor::Authorize(const RequestHead& head, Admitted& admitted, HeadVerdict* refusal) const {
  if (admitted.table == nullptr || !FleetClosed(admitted.table->snapshot())) return true;
  const Route& route = admitted.route;
  // Liveness stays open, as it is for clients and load balancers that only check the endpoint:
  // `GET/HEAD /` (the Ollama CLI's heartbeat), `GET /api/proxy` (readiness) and the health
  // checks of the proxies Corral replaces, which their users' monitors call without a token
  // (/api/health, /__proxy/health, /health; docs/migrating.md).
  switch (route.endpoint) {
    case Endpoint::kRoot:
    case Endpoint::kProxyHealth:
    case Endpoint::kApiHealth:
    case Endpoint::kBackendsHealth:
    case Endpoint::kHealth:
      return true;
    default:
      break;
  }
  const std::string* header = head.Find("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (header != nullptr && header->size() > kBearer.size() &&
      StartsWithIgnoreCase(*header, kBearer)) {
    const std::string hex = TokenSha256Hex(std::string_view(*header).substr(kBearer.size()));
    // Every stored hash is compared, each in constant time, so timing tells nothing about which
    // token came close.
    for (const auto& token : admitted.table->snapshot().tokens()) {
      if (token.sha256_hex().size() == hex.size() &&
          CRYPTO_memcmp(hex.data(), token.sha256_hex().data(), hex.size()) == 0 &&
          admitted.token == nullptr) {
        admitted.token = &token;
      }
    }
  }
  if (admitted.token == nullptr) {
    *refusal = Refuse(401,
                      admitted.table->snapshot().tokens().empty()
                          ? "unauthorized: this fleet requires inference tokens and has none "
                            "defined (corralctl token create)"
                          : "unauthorized: this endpoint needs an inference token "
                            "(Authorization: Bearer <token>)",
                      route.openai);
    refusal->headers.emplace_back("WWW-Authenticate", "Bearer");
    return false;
  }
  // A token limited to some models runs inference on them and reads fleet lists and model
  // metadata; it does not manage models on nodes (pull, push, create, copy, delete, blobs).
  if (admitted.token->models_size() > 0 && route.route_class == RouteClass::kNodeLocal &&
      route.endpoint != Endpoint::kShow && route.endpoint != Endpoint::kOpenAIModel) {
    *refusal = Refuse(403,
                      "token '" + admitted.token->name() +
                          "' is limited to some models and may not " + EndpointName(route.endpoint),
                      route.openai);
    return false;
  }
  return true;
}

bool FrontDoor::TakeSlot(Admitted& admitted) {
  if (admitted.slot != nullptr) return true;
  // Never counted past the limit, even for an instant: a head checked meanwhile must not see a
  // full proxy that is not.
  int64_t active = active_.load();
  do {
    if (active >= options_.max_streams) return false;
  } while (!active_.compare_exchange_weak(active, active + 1));
  admitted.slot = std::make_shared<AdmissionSlot>(&active_);
  return true;
}

HeadVerdict FrontDoor::Check(const RequestHead& head, const std::string& client_address) {
  auto admitted = std::make_shared<Admitted>();
  // Decide may hand `admitted` on to the verdict's ticket, which keeps it alive.
  Admitted& ticket = *admitted;
  RecordHandle& handle = admitted->record.emplace(sinks_, RequestRecord::Clock::now());
  RequestRecord& record = handle.record();
  record.request_id = RequestIdFor(head.Find(kRequestIdHeader));
  record.method = head.method;
  record.client_address = client_address;
  ticket.route = ClassifyRoute(head.method, head.path());
  record.endpoint = ticket.route.endpoint;
  record.route = EndpointName(ticket.route.endpoint);
  HeadVerdict verdict = Decide(head, admitted);
  if (ticket.token != nullptr) record.token_name = ticket.token->name();
  verdict.headers.emplace_back(kRequestIdHeader, record.request_id);
  if (verdict.status != 0) {
    // The refusal is the whole answer: its record ends here.
    handle.Finish(verdict.status, RequestOutcome::kRefused, RefusalReason(verdict));
  } else if (ticket.route.route_class == RouteClass::kInference ||
             ticket.route.route_class == RouteClass::kNodeLocal) {
    // Every field the live view reads of the record is set by now.
    live_.Add(ticket.live, handle, record);
  }
  return verdict;
}

HeadVerdict FrontDoor::Decide(const RequestHead& head, std::shared_ptr<Admitted>& admitted) {
  admitted->table = store_.Current();
  const Route& route = admitted->route;
  HeadVerdict verdict;

  // A browser origin the fleet does not allow gets what a node answers it: 403, empty body.
  if (const std::string* origin = head.Find("Origin");
      origin != nullptr && !origin->empty() && !OriginAllowed(*origin)) {
    verdict.status = 403;
    return verdict;
  }
  // CORS preflights and the errors Ollama answers in text (unknown path, wrong method) need
  // neither a token nor a slot.
  if (head.method == "OPTIONS" || route.route_class == RouteClass::kError) {
    verdict.ticket = std::move(admitted);
    return verdict;
  }
  if (!Authorize(head, *admitted, &verdict)) return verdict;
  if (route.route_class == RouteClass::kInference || route.route_class == RouteClass::kNodeLocal) {
    if (admitted->table == nullptr) {
      return Refuse(503, "corral-proxy has no routing snapshot yet", route.openai);
    }
    const bool buffered = head.has_body() && route.endpoint != Endpoint::kBlobUpload;
    if (buffered ? active_.load() >= options_.max_streams : !TakeSlot(*admitted)) {
      return Refuse(503, AtLimitMessage(options_.max_streams), route.openai);
    }
  }
  // A body the proxy buffers (everything but a blob upload, which is streamed to the node) is
  // held to the size limit and takes its room in the budget now, while nothing is read yet.
  admitted->body = budget_.Start();
  if (head.has_body() && route.endpoint != Endpoint::kBlobUpload) {
    if (head.framing == BodyFraming::kLength) {
      if (head.content_length > options_.max_body_bytes) {
        if (!head.expect_continue &&
            head.content_length - options_.max_body_bytes <= kMaxDrainBytes) {
          admitted->drain_body = true;
          verdict.ticket = std::move(admitted);
          return verdict;
        }
        return Refuse(413,
                      "request body is larger than the proxy's limit of " +
                          std::to_string(options_.max_body_bytes >> 20) + " MiB",
                      route.openai);
      }
      if (head.content_length > budget_.limit()) {
        // No retry could ever find room for it.
        return Refuse(413,
                      "request body is larger than the proxy's whole budget for request bodies (" +
                          std::to_string(budget_.limit() >> 20) + " MiB)",
                      route.openai);
      }
      if (!admitted->body.Grow(head.content_length)) {
        return Refuse(503,
                      "corral-proxy is holding as many request bodies as its memory budget "
                      "allows (" +
                          std::to_string(budget_.limit() >> 20) + " MiB), please try again",
                      route.openai);
      }
    }
  }
  verdict.ticket = std::move(admitted);
  return verdict;
}

}  // namespace corral::dataplane
