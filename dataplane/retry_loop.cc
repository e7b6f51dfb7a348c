#include "dataplane/retry_loop.h"

#include <algorithm>
#include <utility>

#include "common/log.h"

namespace corral::dataplane {

RetryLoop::RetryLoop(Router& router, const std::atomic<bool>& aborting)
    : router_(router), aborting_(aborting) {}

RetryOutcome RetryLoop::Run(const EffectivePolicy& policy, CandidateSource& candidates,
                            NodeAttempt& attempt, std::string_view method, std::string_view path) {
  RetryOutcome out;
  TriedNodes tried;
  while (out.attempts < std::max(1, policy.max_attempts) && !aborting_.load()) {
    Lease lease = candidates.Next(tried, &out.last_error);
    if (!lease) break;
    const std::string name = lease.node().name;
    tried.insert(name);
    ++out.attempts;
    TryResult result = attempt.Try(lease);
    switch (result.kind) {
      case TryResult::kAnswered:
        router_.RecordSuccess(name, result.latency_ms);
        out.end = RetryOutcome::kAnswered;
        return out;
      case TryResult::kClientGone:
        out.end = RetryOutcome::kClientGone;
        return out;
      case TryResult::kFailed:
        CORRAL_LOG(kWarn, "proxy")
            << method << " " << path << " on node " << name << " failed: " << result.error;
        router_.RecordFailure(name, policy);
        out.last_error = "node '" + name + "': " + result.error;
        break;
      case TryResult::kServerError:
        CORRAL_LOG(kWarn, "proxy") << method << " " << path << " on node " << name << " answered "
                                   << result.status << ", trying another node";
        if (result.saved) out.last_server_error = std::move(result.saved);
        router_.RecordFailure(name, policy);
        out.last_error = "node '" + name + "' answered " + std::to_string(result.status);
        break;
    }
  }
  return out;
}

}  // namespace corral::dataplane
