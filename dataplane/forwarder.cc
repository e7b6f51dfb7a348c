#include "dataplane/forwarder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>

#include "dataplane/replies.h"

namespace corral::dataplane {

namespace {

// What a client that met the queue's bounds is told to wait before trying again.
constexpr const char* kQueueRetryAfter = "5";

// "30 s", "0.25 s".
std::string SecondsText(int64_t ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(ms) / 1000.0);
  return text;
}

// Why a request found no slot in the end, beyond the Router's own PickError.
enum class Waited { kNo, kTimedOut, kFull, kClientGone, kStopping };

Waited FromQueue(WaitQueue::End end) {
  switch (end) {
    case WaitQueue::End::kTimedOut:
      return Waited::kTimedOut;
    case WaitQueue::End::kFull:
      return Waited::kFull;
    case WaitQueue::End::kClientGone:
      return Waited::kClientGone;
    case WaitQueue::End::kStopping:
      return Waited::kStopping;
    case WaitQueue::End::kGot:
      break;
  }
  return Waited::kNo;
}

WaitQueue::Limits QueueLimits(const EffectivePolicy& policy) {
  WaitQueue::Limits limits;
  limits.max_length = policy.queue_max_length;
  limits.max_wait = std::chrono::milliseconds(policy.queue_max_wait_ms);
  return limits;
}

// NodeAttempt over a real node: the exchange up to the head, then the relay.
class NodeAttemptImpl final : public NodeAttempt {
 public:
  NodeAttemptImpl(ProxyCall& call, NodeExchange& exchange, AnswerRelay& relay, Router& router)
      : call_(call), exchange_(exchange), relay_(relay), router_(router) {}

  // NodeAttempt
  TryResult Try(Lease& lease) override {
    TryResult result;
    const NodeEntry& node = lease.node();
    RequestRecord& record = call_.record();
    const size_t index = record.attempts.size();
    record.attempts.push_back(TriedNode{node.name, 0, "", -1});
    LiveRequests::Update(call_.admitted.live);  // the active-requests view names the node now
    NodeAnswer answer = exchange_.Send(call_, node);
    if (answer.kind == NodeAnswer::kClientGone) {
      record.attempts[index].error = "the client left";
      result.kind = TryResult::kClientGone;
      return result;
    }
    if (answer.kind == NodeAnswer::kFailed) {
      record.attempts[index].error = answer.error;
      result.error = std::move(answer.error);
      return result;
    }
    const int status = answer.conn->status();
    record.attempts[index].status = status;
    record.attempts[index].first_byte_ms = answer.latency_ms;
    if (status >= 500) {
      record.attempts[index].error = "answered " + std::to_string(status);
      result.kind = TryResult::kServerError;
      result.status = status;
      result.saved =
          exchange_.ReadAnswer(call_, *answer.conn, node.name, kMaxSavedErrorBody, &result.error);
      return result;
    }
    // A model that answers was loaded by the time it did (residency between probes).
    if (status < 300 && call_.route.route_class == RouteClass::kInference) {
      router_.RecordFirstByte(lease, answer.latency_ms);
    }
    record.sent = answer.sent;
    record.node_first_byte =
        answer.sent + std::chrono::duration_cast<RequestRecord::Clock::duration>(
                          std::chrono::duration<double, std::milli>(answer.latency_ms));
    result.latency_ms = answer.latency_ms;
    if (relay_.Relay(call_, std::move(lease), std::move(answer.conn), &result.error)) {
      result.kind = TryResult::kAnswered;
    } else {
      record.attempts[index].error = result.error;
    }
    return result;
  }

 private:
  ProxyCall& call_;
  NodeExchange& exchange_;
  AnswerRelay& relay_;
  Router& router_;
};

// The strategy's pick among the nodes that have a model. When every candidate is full on the
// first pick, the request waits in the Router's queue for a slot (docs/routing.md "The queue").
class ModelCandidates final : public CandidateSource {
 public:
  ModelCandidates(Router& router, ProxyCall& call, const std::string& model_key,
                  const std::atomic<bool>& aborting)
      : router_(router),
        call_(call),
        table_(call.table),
        model_key_(model_key),
        aborting_(aborting) {}

  // CandidateSource
  Lease Next(const TriedNodes& tried, std::string*) override {
    const EffectivePolicy& policy = table_->policy();
    // A retry waits too (for a node it has not tried): the node that failed is no reason to
    // fail the request while healthy nodes are only busy.
    const bool may_wait = policy.queue_enabled;
    PickResult pick = router_.Pick(table_, model_key_, tried, {.may_wait = may_wait});
    if (pick.lease) return std::move(pick.lease);
    if (may_wait && pick.error == PickError::kAllBusy) {
      Lease lease = Wait(tried, pick.cold_free);
      if (lease || waited_ != Waited::kTimedOut) return lease;
    }
    if (tried.empty() && pick.error != PickError::kExhausted) refusal_ = pick.error;
    return Lease();
  }

  PickError refusal() const { return refusal_; }
  Waited waited() const { return waited_; }

 private:
  // Waits for a slot on a node that can serve the model.
  Lease Wait(const TriedNodes& tried, bool cold_free) {
    const EffectivePolicy& policy = table_->policy();
    // A cold node is free but the cost rule chose to wait for a warm one: with the queue full,
    // take the cold node rather than answer 503.
    if (cold_free && router_.queue().depth() >= policy.queue_max_length) {
      return std::move(router_.Pick(table_, model_key_, tried).lease);
    }
    const RoutingTable& table = *table_;
    const ModelPlacement* placement = table.Placement(model_key_);
    Lease got;
    auto can_use = [&](std::string_view node) {
      for (size_t i : placement->nodes) {
        const std::string& name = table.nodes()[i].name;
        if (name == node) return !tried.contains(name);
      }
      return false;
    };
    auto take = [&]() -> const std::string* {
      PickResult pick = router_.Pick(table_, model_key_, tried, {.may_wait = true});
      if (!pick.lease) return nullptr;
      got = std::move(pick.lease);
      return &got.node().name;
    };
    // One time limit for the request, however many times it waits.
    WaitQueue::Limits limits = QueueLimits(policy);
    limits.max_wait = std::max<Duration>(Duration::zero(), limits.max_wait - waited_for_);
    const WaitQueue::Outcome outcome =
        router_.queue().Wait(limits, model_key_, can_use, take, call_.ClientFd(), &aborting_);
    waited_for_ += outcome.waited;
    call_.record().queued +=
        std::chrono::duration_cast<RequestRecord::Clock::duration>(outcome.waited);
    waited_ = FromQueue(outcome.end);
    if (outcome.end == WaitQueue::End::kGot) return got;
    if (outcome.end == WaitQueue::End::kTimedOut) {
      // The last chance: a cold node the cost rule kept in reserve.
      PickResult last = router_.Pick(table_, model_key_, tried);
      if (last.lease) {
        waited_ = Waited::kNo;
        return std::move(last.lease);
      }
    }
    return Lease();
  }

  Router& router_;
  ProxyCall& call_;
  const std::shared_ptr<const RoutingTable>& table_;
  const std::string& model_key_;
  const std::atomic<bool>& aborting_;
  PickError refusal_ = PickError::kNone;
  Waited waited_ = Waited::kNo;
  Duration waited_for_{};  // in the queue so far
};

// Named nodes in a fixed order.
class OrderedCandidates final : public CandidateSource {
 public:
  OrderedCandidates(Router& router, const std::shared_ptr<const RoutingTable>& table,
                    const std::vector<std::string>& order, const std::string& model_key,
                    bool model_limited)
      : router_(router),
        table_(table),
        order_(order),
        model_key_(model_key),
        model_limited_(model_limited) {}

  // CandidateSource
  Lease Next(const TriedNodes& tried, std::string* last_error) override {
    while (next_ < order_.size()) {
      const std::string& name = order_[next_++];
      if (table_->FindNode(name) == nullptr || tried.count(name) != 0) continue;
      Lease lease = router_.Acquire(table_, name, model_key_, model_limited_);
      if (lease) return lease;
      *last_error = "node '" + name + "' is not available";
    }
    return Lease();
  }

 private:
  Router& router_;
  const std::shared_ptr<const RoutingTable>& table_;
  const std::vector<std::string>& order_;
  const std::string& model_key_;
  const bool model_limited_;
  size_t next_ = 0;
};

}  // namespace

std::vector<std::string> OrderByLoad(const RoutingTable& table, Router& router,
                                     const std::vector<std::string>* names) {
  struct Candidate {
    std::string name;
    int64_t in_flight;
  };
  std::vector<Candidate> candidates;
  for (const NodeEntry& node : table.nodes()) {
    if (!node.routable || router.IsEjected(node.name)) continue;
    if (names && std::find(names->begin(), names->end(), node.name) == names->end()) continue;
    candidates.push_back({node.name, router.Runtime(node.name)->in_flight.load()});
  }
  std::stable_sort(
      candidates.begin(), candidates.end(),
      [](const Candidate& a, const Candidate& b) { return a.in_flight < b.in_flight; });
  std::vector<std::string> out;
  for (auto& c : candidates) out.push_back(std::move(c.name));
  return out;
}

Forwarder::Forwarder(NodeExchange& exchange, AnswerRelay& relay, Router& router,
                     const std::atomic<bool>& aborting)
    : exchange_(exchange),
      relay_(relay),
      router_(router),
      aborting_(aborting),
      loop_(router, aborting) {}

void Forwarder::Abort() { router_.queue().Stop(); }

bool Forwarder::Finish(ProxyCall& call, const RetryOutcome& outcome) {
  switch (outcome.end) {
    case RetryOutcome::kAnswered:
      return true;
    case RetryOutcome::kClientGone:
      call.res.status = 499;
      call.outcome = RequestOutcome::kClientGone;
      call.error = "the client left before the answer began";
      return true;
    case RetryOutcome::kNoAnswer:
      break;
  }
  // Whatever the caller answers now, no node served the request.
  call.outcome = RequestOutcome::kNoNode;
  call.error = outcome.last_error;
  if (!outcome.last_server_error) return false;
  AnswerSaved(call, *outcome.last_server_error);
  return true;
}

void Forwarder::ByModel(ProxyCall& call, const std::string& model_key,
                        const std::string& model_as_sent) {
  ModelCandidates candidates(router_, call, model_key, aborting_);
  NodeAttemptImpl attempt(call, exchange_, relay_, router_);
  const RetryOutcome outcome =
      loop_.Run(call.table->policy(), candidates, attempt, call.req.method, call.req.path);
  switch (candidates.waited()) {
    case Waited::kNo:
      break;
    case Waited::kClientGone:
      call.res.status = 499;
      call.outcome = RequestOutcome::kClientGone;
      call.error = "the client left while waiting for a free node";
      return;
    case Waited::kStopping:
      call.outcome = RequestOutcome::kProxyStopping;
      call.error = "the proxy is stopping";
      call.res.set_header("Retry-After", "1");
      SetErrorReply(call.res, 503, "server busy: the proxy is stopping", call.route.openai);
      return;
    case Waited::kTimedOut:
    case Waited::kFull: {
      const bool full = candidates.waited() == Waited::kFull;
      call.outcome = RequestOutcome::kNoNode;
      call.error = full ? "server busy, please try again: every node serving '" + model_as_sent +
                              "' is busy and the wait queue is full"
                        : "server busy, please try again: every node serving '" + model_as_sent +
                              "' is busy; waited " +
                              SecondsText(call.table->policy().queue_max_wait_ms);
      call.res.set_header("Retry-After", kQueueRetryAfter);
      SetErrorReply(call.res, 503, call.error, call.route.openai);
      return;
    }
  }
  if (Finish(call, outcome)) return;
  switch (candidates.refusal()) {
    case PickError::kNone:
    case PickError::kExhausted:
      SetErrorReply(
          call.res, 502,
          outcome.last_error.empty() ? "no node could serve the request" : outcome.last_error,
          call.route.openai);
      return;
    case PickError::kModelNotFound:
      SetErrorReply(call.res, 404, "model '" + model_as_sent + "' not found", call.route.openai);
      return;
    case PickError::kAllBusy:
      call.res.set_header("Retry-After", "1");
      SetErrorReply(call.res, 503,
                    "server busy, please try again.  every node with model '" + model_as_sent +
                        "' is at its parallel limit",
                    call.route.openai);
      return;
    case PickError::kNoHealthyNode:
      call.res.set_header("Retry-After", "1");
      SetErrorReply(call.res, 503, "no healthy node can serve model '" + model_as_sent + "'",
                    call.route.openai);
      return;
    case PickError::kNotPlaceable: {
      // Retrying does not help until the operator changes the rules or the nodes: no
      // Retry-After.
      const ModelPlacement* placement = call.table->Placement(model_key);
      SetErrorReply(call.res, 503,
                    "no node may run model '" + model_as_sent + "': " +
                        (placement != nullptr ? placement->refusal : "placement allows none"),
                    call.route.openai);
      return;
    }
  }
}

void Forwarder::InOrder(ProxyCall& call, const std::vector<std::string>& order,
                        const std::string& model_key, bool model_limited) {
  OrderedCandidates candidates(router_, call.table, order, model_key, model_limited);
  NodeAttemptImpl attempt(call, exchange_, relay_, router_);
  const RetryOutcome outcome =
      loop_.Run(call.table->policy(), candidates, attempt, call.req.method, call.req.path);
  if (Finish(call, outcome)) return;
  call.res.set_header("Retry-After", "1");
  SetErrorReply(call.res, outcome.attempts == 0 ? 503 : 502,
                outcome.last_error.empty() ? "no node could serve the request" : outcome.last_error,
                call.route.openai);
}

void Forwarder::FanOut(ProxyCall& call, const std::vector<std::string>& nodes,
                       const std::string& model_key, bool empty_on_success) {
  std::optional<SavedResponse> first_ok;
  std::optional<SavedResponse> first_error;
  std::string failure;
  RequestRecord& record = call.record();
  for (const std::string& name : nodes) {
    const NodeEntry* node = call.table->FindNode(name);
    if (node == nullptr) continue;
    Lease lease = router_.Acquire(call.table, name, model_key);
    if (!lease) {
      failure = "node '" + name + "' is not available";
      continue;
    }
    const size_t index = record.attempts.size();
    record.attempts.push_back(TriedNode{name, 0, "", -1});
    LiveRequests::Update(call.admitted.live);
    NodeAnswer answer = exchange_.Send(call, *node);
    if (answer.kind == NodeAnswer::kClientGone) {
      record.attempts[index].error = "the client left";
      call.res.status = 499;
      call.outcome = RequestOutcome::kClientGone;
      call.error = "the client left before the answer began";
      return;
    }
    std::string error;
    std::optional<SavedResponse> saved;
    if (answer.kind == NodeAnswer::kHead) {
      record.attempts[index].status = answer.conn->status();
      record.attempts[index].first_byte_ms = answer.latency_ms;
      if (!record.sent) record.sent = answer.sent;
      saved = exchange_.ReadAnswer(call, *answer.conn, name, kMaxBufferedAnswer, &error);
    }
    if (!saved) {
      router_.RecordFailure(name, call.table->policy());
      failure = answer.kind == NodeAnswer::kFailed ? answer.error : error;
      record.attempts[index].error = failure;
      continue;
    }
    router_.RecordSuccess(name, answer.latency_ms);
    exchange_.GiveBack(*node, std::move(answer.conn));
    if (saved->status >= 200 && saved->status < 300) {
      if (!first_ok) first_ok = std::move(saved);
    } else if (!first_error) {
      first_error = std::move(saved);
    }
  }
  if (first_error) {
    AnswerSaved(call, *first_error);
  } else if (first_ok) {
    if (empty_on_success) {
      call.res.status = first_ok->status;
    } else {
      AnswerSaved(call, *first_ok);
    }
  } else {
    call.outcome = RequestOutcome::kNoNode;
    call.error = failure.empty() ? "no node answered" : failure;
    SetErrorReply(call.res, 502, call.error, call.route.openai);
  }
}

}  // namespace corral::dataplane
