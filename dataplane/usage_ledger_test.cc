// UsageLedger as a specification: what a batch holds, that an unacknowledged batch is re-sent
// unchanged while new counts wait for the next one, hour buckets, the key cap, and totals kept
// exact under concurrent Adds racing Drain/Ack.
#include "dataplane/usage_ledger.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace corral::dataplane {
namespace {

constexpr int64_t kT0 = 1700000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kT0Hour = kT0 - kT0 % 3600;

UsageLedgerOptions AtTime(std::atomic<int64_t>* clock, size_t max_keys = 10000) {
  UsageLedgerOptions options;
  options.max_keys = max_keys;
  options.now = [clock] { return clock->load(); };
  return options;
}

UsageCounts Total(const UsageBatch& batch) {
  UsageCounts total;
  for (const UsageEntry& e : batch.entries) {
    total.requests += e.counts.requests;
    total.errors += e.counts.errors;
    total.input_tokens += e.counts.input_tokens;
    total.output_tokens += e.counts.output_tokens;
  }
  return total;
}

TEST(UsageLedgerTest, DrainReturnsCountsPerKeyInTheHour) {
  std::atomic<int64_t> clock{kT0};
  UsageLedger ledger(AtTime(&clock));
  ledger.Add("alice", "llama3:latest", "gpu1", 10, 20, false);
  ledger.Add("alice", "llama3:latest", "gpu1", 1, 2, true);
  ledger.Add("", "qwen3:8b", "gpu2", 5, 0, false);

  const UsageBatch batch = ledger.Drain();
  EXPECT_EQ(batch.sequence, 1u);
  EXPECT_EQ(batch.instance_id, ledger.instance_id());
  ASSERT_EQ(batch.entries.size(), 2u);
  // Sorted by (hour, token, model, node): the open-fleet entry (empty token) first.
  EXPECT_EQ(batch.entries[0], (UsageEntry{kT0Hour, "", "qwen3:8b", "gpu2", {1, 0, 5, 0}}));
  EXPECT_EQ(batch.entries[1],
            (UsageEntry{kT0Hour, "alice", "llama3:latest", "gpu1", {2, 1, 11, 22}}));
}

TEST(UsageLedgerTest, NothingCountedIsAnEmptyBatchWithoutSequence) {
  UsageLedger ledger;
  UsageBatch batch = ledger.Drain();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.sequence, 0u);
  ledger.Add("t", "m", "n", 1, 1, false);
  batch = ledger.Drain();
  EXPECT_EQ(batch.sequence, 1u) << "an empty drain must not use a sequence number";
}

TEST(UsageLedgerTest, UnackedBatchIsResentUnchangedAndNewCountsWait) {
  std::atomic<int64_t> clock{kT0};
  UsageLedger ledger(AtTime(&clock));
  ledger.Add("a", "m", "n", 1, 1, false);
  const UsageBatch first = ledger.Drain();
  ASSERT_EQ(first.sequence, 1u);

  // The Report failed: counts keep arriving, and the retry carries exactly the first batch.
  ledger.Add("a", "m", "n", 100, 100, false);
  ledger.Add("b", "m", "n", 7, 7, false);
  const UsageBatch retry = ledger.Drain();
  EXPECT_EQ(retry.sequence, first.sequence);
  EXPECT_EQ(retry.entries, first.entries);

  EXPECT_FALSE(ledger.Ack(2)) << "an ack of another sequence must not release the batch";
  EXPECT_EQ(ledger.Drain().sequence, 1u);

  EXPECT_TRUE(ledger.Ack(1));
  EXPECT_FALSE(ledger.Ack(1)) << "a second ack of the same batch is ignored";
  const UsageBatch second = ledger.Drain();
  EXPECT_EQ(second.sequence, 2u);
  EXPECT_EQ(Total(second), (UsageCounts{2, 0, 107, 107}));
  EXPECT_TRUE(ledger.Ack(2));
  EXPECT_TRUE(ledger.Drain().empty());
}

TEST(UsageLedgerTest, InstancesDifferSoARestartedProxyNeverCollides) {
  UsageLedger a;
  UsageLedger b;
  EXPECT_EQ(a.instance_id().size(), 32u);
  EXPECT_NE(a.instance_id(), b.instance_id());
  UsageLedgerOptions named;
  named.instance_id = "fixed";
  EXPECT_EQ(UsageLedger(named).instance_id(), "fixed");
}

TEST(UsageLedgerTest, RequestsFallIntoTheHourTheyFinishedIn) {
  std::atomic<int64_t> clock{kT0Hour + 3599};
  UsageLedger ledger(AtTime(&clock));
  ledger.Add("a", "m", "n", 1, 0, false);
  clock = kT0Hour + 3600;
  ledger.Add("a", "m", "n", 2, 0, false);
  ledger.Add("a", "m", "n", 3, 0, false);
  const UsageBatch batch = ledger.Drain();
  ASSERT_EQ(batch.entries.size(), 2u);
  EXPECT_EQ(batch.entries[0].hour_start, kT0Hour);
  EXPECT_EQ(batch.entries[0].counts.input_tokens, 1u);
  EXPECT_EQ(batch.entries[1].hour_start, kT0Hour + 3600);
  EXPECT_EQ(batch.entries[1].counts.input_tokens, 5u);
}

TEST(UsageLedgerTest, KeysPastTheCapFoldIntoOther) {
  std::atomic<int64_t> clock{kT0};
  UsageLedger ledger(AtTime(&clock, /*max_keys=*/3));
  for (int i = 0; i < 5; ++i) ledger.Add("t" + std::to_string(i), "m", "n", 1, 1, false);
  ledger.Add("t0", "m", "n", 1, 1, false);  // a key already kept still counts under its name
  EXPECT_EQ(ledger.folded(), 2u);
  UsageBatch batch = ledger.Drain();
  ASSERT_EQ(batch.entries.size(), 4u);
  EXPECT_EQ(batch.entries[0],
            (UsageEntry{kT0Hour, kUsageOtherName, kUsageOtherName, kUsageOtherName, {2, 0, 2, 2}}));
  EXPECT_EQ(batch.entries[1].token, "t0");
  EXPECT_EQ(batch.entries[1].counts.requests, 2u);
  EXPECT_EQ(Total(batch).requests, 6u) << "folding keeps every request counted";

  // Drained keys free their room: the next batch has the cap again.
  ASSERT_TRUE(ledger.Ack(batch.sequence));
  EXPECT_EQ(ledger.keys(), 0u);
  for (int i = 3; i < 6; ++i) ledger.Add("t" + std::to_string(i), "m", "n", 1, 1, false);
  batch = ledger.Drain();
  EXPECT_EQ(batch.entries.size(), 3u);
  EXPECT_EQ(ledger.folded(), 2u);
}

TEST(UsageLedgerTest, OverlongNamesFoldIntoOther) {
  UsageLedger ledger;
  ledger.Add(std::string(UsageLedger::kMaxNameBytes + 1, 'x'), "m", "n", 1, 1, false);
  ledger.Add("t", std::string(UsageLedger::kMaxNameBytes, 'm'), "n", 1, 1, false);
  const UsageBatch batch = ledger.Drain();
  ASSERT_EQ(batch.entries.size(), 2u);
  EXPECT_EQ(batch.entries[0].token, kUsageOtherName);
  EXPECT_EQ(batch.entries[1].model.size(), UsageLedger::kMaxNameBytes);
  EXPECT_EQ(ledger.folded(), 1u);
}

// Eight request threads race a reporter that drains, sometimes "fails" (drains again without an
// ack, as a retry does) and acks. Summing each sequence once must give exactly what was added.
TEST(UsageLedgerTest, ConcurrentAddsAndDrainsLoseAndDoubleNothing) {
  UsageLedger ledger;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ledger.Add("tok" + std::to_string(i % 4), "model" + std::to_string(t % 3), "node", 3, 5,
                   i % 10 == 0);
      }
      running.fetch_sub(1);
    });
  }
  UsageCounts seen;
  uint64_t last_sequence = 0;
  int round = 0;
  auto report_once = [&] {
    UsageBatch batch = ledger.Drain();
    if (batch.empty()) return;
    if (++round % 3 == 0) {  // the Report failed: the retry must be the same batch
      UsageBatch retry = ledger.Drain();
      ASSERT_EQ(retry.sequence, batch.sequence);
      ASSERT_EQ(retry.entries, batch.entries);
    }
    ASSERT_EQ(batch.sequence, last_sequence + 1);
    last_sequence = batch.sequence;
    const UsageCounts total = Total(batch);
    seen.requests += total.requests;
    seen.errors += total.errors;
    seen.input_tokens += total.input_tokens;
    seen.output_tokens += total.output_tokens;
    ASSERT_TRUE(ledger.Ack(batch.sequence));
  };
  while (running.load() > 0) report_once();
  for (auto& t : threads) t.join();
  report_once();
  EXPECT_TRUE(ledger.Drain().empty());

  const uint64_t n = kThreads * kPerThread;
  EXPECT_EQ(seen.requests, n);
  EXPECT_EQ(seen.errors, n / 10);
  EXPECT_EQ(seen.input_tokens, 3 * n);
  EXPECT_EQ(seen.output_tokens, 5 * n);
  EXPECT_GT(round, 1) << "the reporter should have drained while requests were counted";
}

// Adds from one thread, then from eight at once on the same keys (as a busy fleet has), are all
// counted. (What an Add costs is measured by hand with callgrind, never asserted in a test.)
TEST(UsageLedgerTest, AddsFromOneAndFromEightThreadsAreAllCounted) {
  UsageLedger ledger;
  constexpr int kAdds = 200000;
  auto run = [&](int threads) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (int i = 0; i < kAdds; ++i) {
          ledger.Add("team-a", "llama3.1:8b", i % 2 ? "gpu1" : "gpu2", 100, 200, false);
        }
      });
    }
    for (auto& t : pool) t.join();
  };
  run(1);
  run(8);
  EXPECT_EQ(Total(ledger.Drain()).requests, 9u * kAdds);
}

}  // namespace
}  // namespace corral::dataplane
