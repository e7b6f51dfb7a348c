// RetryLoop as a specification: candidates from a scripted source, tries scripted per node, the
// real Router keeping the slots and the passive failure counts.
#include "dataplane/retry_loop.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "corral/v1/snapshot.pb.h"

namespace corral::dataplane {
namespace {

// Offers `order` in turn, each through the Router's lease; records what the loop said it tried.
class ScriptedCandidates : public CandidateSource {
 public:
  ScriptedCandidates(Router& router, std::shared_ptr<const RoutingTable> table,
                     std::vector<std::string> order)
      : router_(router), table_(std::move(table)), order_(std::move(order)) {}

  // CandidateSource
  Lease Next(const TriedNodes& tried, std::string* last_error) override {
    tried_seen.push_back(tried);
    while (next_ < order_.size()) {
      const std::string& name = order_[next_++];
      if (tried.count(name) != 0) continue;
      Lease lease = router_.Acquire(table_, name);
      if (lease) return lease;
      *last_error = "node '" + name + "' is not available";
    }
    return Lease();
  }

  std::vector<TriedNodes> tried_seen;  // `tried` at each call of Next

 private:
  Router& router_;
  std::shared_ptr<const RoutingTable> table_;
  std::vector<std::string> order_;
  size_t next_ = 0;
};

// Answers each node as scripted (a node without a script answers); records the nodes tried and
// each node's in-flight count while it was being tried.
class ScriptedAttempt : public NodeAttempt {
 public:
  explicit ScriptedAttempt(Router& router) : router_(router) {}

  // NodeAttempt
  TryResult Try(Lease& lease) override {
    const std::string& name = lease.node().name;
    tried.push_back(name);
    in_flight_while_tried[name] = router_.Runtime(name)->in_flight.load();
    auto it = script.find(name);
    if (it == script.end()) return Answer();
    return it->second;
  }

  static TryResult Answer() {
    TryResult r;
    r.kind = TryResult::kAnswered;
    r.latency_ms = 5;
    return r;
  }
  static TryResult Failure(const std::string& error) {
    TryResult r;
    r.error = error;
    return r;
  }
  static TryResult ServerError(int status, const std::string& body) {
    TryResult r;
    r.kind = TryResult::kServerError;
    r.status = status;
    if (!body.empty()) {
      r.saved.emplace();
      r.saved->status = status;
      r.saved->body = body;
    }
    return r;
  }

  std::map<std::string, TryResult> script;
  std::vector<std::string> tried;
  std::map<std::string, int64_t> in_flight_while_tried;

 private:
  Router& router_;
};

class RetryLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b", "c", "d"}) {
      v1::Node* node = snapshot_.add_nodes();
      node->set_name(name);
      node->set_url("http://127.0.0.1:" + std::to_string(10000 + snapshot_.nodes_size()));
      node->set_admin_state(v1::ADMIN_STATE_ENABLED);
      node->set_health(v1::HEALTH_HEALTHY);
      node->set_max_parallel(1);
    }
    auto table = RoutingTable::Build(snapshot_);
    ASSERT_TRUE(table.ok()) << table.status();
    table_ = *table;
    policy_ = table_->policy();
    policy_.eject_after_failures = 100;  // no ejection gets in the way of the counts
  }

  RetryOutcome Run(ScriptedCandidates& candidates) {
    return loop_.Run(policy_, candidates, attempt_, "POST", "/api/chat");
  }
  int64_t Failures(const std::string& node) { return router_.Runtime(node)->failures_total; }
  int64_t Requests(const std::string& node) { return router_.Runtime(node)->requests_total; }

  v1::Snapshot snapshot_;
  std::shared_ptr<const RoutingTable> table_;
  EffectivePolicy policy_;
  Router router_;
  std::atomic<bool> aborting_{false};
  RetryLoop loop_{router_, aborting_};
  ScriptedAttempt attempt_{router_};
};

TEST_F(RetryLoopTest, FirstAnswerEndsTheLoopAndCountsAsTheNodesSuccess) {
  ScriptedCandidates candidates(router_, table_, {"a", "b"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kAnswered);
  EXPECT_EQ(out.attempts, 1);
  EXPECT_EQ(attempt_.tried, std::vector<std::string>{"a"});
  EXPECT_EQ(Requests("a"), 1);
  EXPECT_EQ(Failures("a"), 0);
  EXPECT_DOUBLE_EQ(router_.Runtime("a")->latency_ms.load(), 5);
}

TEST_F(RetryLoopTest, FailuresMoveTheRequestOnAndCountAgainstTheirNodes) {
  attempt_.script["a"] = ScriptedAttempt::Failure("connection refused");
  attempt_.script["b"] = ScriptedAttempt::ServerError(500, "{\"error\":\"boom\"}");
  ScriptedCandidates candidates(router_, table_, {"a", "b", "c"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kAnswered);
  EXPECT_EQ(out.attempts, 3);
  EXPECT_EQ(attempt_.tried, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Failures("a"), 1);
  EXPECT_EQ(Failures("b"), 1);
  EXPECT_EQ(Failures("c"), 0);
  EXPECT_EQ(Requests("c"), 1);
}

TEST_F(RetryLoopTest, AtMostMaxAttemptsNodes) {
  for (const char* n : {"a", "b", "c", "d"}) attempt_.script[n] = ScriptedAttempt::Failure("down");
  policy_.max_attempts = 2;
  ScriptedCandidates candidates(router_, table_, {"a", "b", "c", "d"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kNoAnswer);
  EXPECT_EQ(out.attempts, 2);
  EXPECT_EQ(attempt_.tried, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(out.last_error, "node 'b': down");
  EXPECT_FALSE(out.last_server_error.has_value());
}

TEST_F(RetryLoopTest, ZeroMaxAttemptsStillTriesOneNode) {
  policy_.max_attempts = 0;
  attempt_.script["a"] = ScriptedAttempt::Failure("down");
  ScriptedCandidates candidates(router_, table_, {"a", "b"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.attempts, 1);
  EXPECT_EQ(out.end, RetryOutcome::kNoAnswer);
}

TEST_F(RetryLoopTest, TheSourceIsToldEveryNodeTriedSoNoneIsTriedTwice) {
  attempt_.script["a"] = ScriptedAttempt::Failure("down");
  attempt_.script["b"] = ScriptedAttempt::Failure("down");
  // The source offers "a" again after "b": the loop's `tried` keeps it from a second try.
  ScriptedCandidates candidates(router_, table_, {"a", "b", "a", "c"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kAnswered);
  EXPECT_EQ(attempt_.tried, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(candidates.tried_seen.size(), 3u);
  EXPECT_TRUE(candidates.tried_seen[0].empty());
  EXPECT_EQ(candidates.tried_seen[1], (TriedNodes{"a"}));
  EXPECT_EQ(candidates.tried_seen[2], (TriedNodes{"a", "b"}));
}

TEST_F(RetryLoopTest, TheLast5xxIsKeptThroughLaterFailures) {
  attempt_.script["a"] = ScriptedAttempt::ServerError(500, "first");
  attempt_.script["b"] = ScriptedAttempt::ServerError(503, "second");
  attempt_.script["c"] = ScriptedAttempt::Failure("timeout");
  ScriptedCandidates candidates(router_, table_, {"a", "b", "c"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kNoAnswer);
  ASSERT_TRUE(out.last_server_error.has_value());
  EXPECT_EQ(out.last_server_error->status, 503);
  EXPECT_EQ(out.last_server_error->body, "second");
  EXPECT_EQ(out.last_error, "node 'c': timeout");
}

TEST_F(RetryLoopTest, A5xxWhoseBodyCouldNotBeReadKeepsTheEarlierOne) {
  attempt_.script["a"] = ScriptedAttempt::ServerError(500, "kept");
  attempt_.script["b"] = ScriptedAttempt::ServerError(502, "");
  ScriptedCandidates candidates(router_, table_, {"a", "b"});
  const RetryOutcome out = Run(candidates);
  ASSERT_TRUE(out.last_server_error.has_value());
  EXPECT_EQ(out.last_server_error->body, "kept");
  EXPECT_EQ(out.last_error, "node 'b' answered 502");
}

TEST_F(RetryLoopTest, AClientGoneEndsTheLoopAtOnceWithoutBlamingTheNode) {
  TryResult gone;
  gone.kind = TryResult::kClientGone;
  attempt_.script["a"] = gone;
  ScriptedCandidates candidates(router_, table_, {"a", "b"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kClientGone);
  EXPECT_EQ(attempt_.tried, std::vector<std::string>{"a"});
  EXPECT_EQ(Failures("a"), 0);
}

TEST_F(RetryLoopTest, AStoppingProxyTriesNoNode) {
  aborting_ = true;
  ScriptedCandidates candidates(router_, table_, {"a"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.end, RetryOutcome::kNoAnswer);
  EXPECT_EQ(out.attempts, 0);
  EXPECT_TRUE(attempt_.tried.empty());
}

TEST_F(RetryLoopTest, ABusyCandidateIsPassedOverAndSaysSo) {
  Lease held = router_.Acquire(table_, "a");  // "a" is at its max_parallel of 1
  ASSERT_TRUE(held);
  attempt_.script["b"] = ScriptedAttempt::Failure("down");
  ScriptedCandidates candidates(router_, table_, {"b", "a"});
  const RetryOutcome out = Run(candidates);
  EXPECT_EQ(out.attempts, 1);
  EXPECT_EQ(out.last_error, "node 'a' is not available");
}

TEST_F(RetryLoopTest, EachNodesSlotIsHeldWhileTriedAndFreedBeforeTheNext) {
  attempt_.script["a"] = ScriptedAttempt::Failure("down");
  ScriptedCandidates candidates(router_, table_, {"a", "b"});
  Run(candidates);
  EXPECT_EQ(attempt_.in_flight_while_tried["a"], 1);
  EXPECT_EQ(attempt_.in_flight_while_tried["b"], 1);
  EXPECT_EQ(router_.Runtime("a")->in_flight.load(), 0);
  EXPECT_EQ(router_.Runtime("b")->in_flight.load(), 0);
}

}  // namespace
}  // namespace corral::dataplane
