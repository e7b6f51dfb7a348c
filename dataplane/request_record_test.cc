// RequestRecord: finished exactly once, whatever ends the request, and the access log's line.
#include "dataplane/request_record.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "dataplane/request_id.h"

namespace corral::dataplane {
namespace {

using Clock = RequestRecord::Clock;

class CountingSink : public RecordSink {
 public:
  void OnFinished(const RequestRecord& record) override {
    calls.fetch_add(1);
    last_outcome = record.outcome;
    last_status = record.status;
  }
  std::atomic<int> calls{0};
  RequestOutcome last_outcome = RequestOutcome::kAbandoned;
  int last_status = 0;
};

TEST(RecordHandleTest, FinishRunsEverySinkOnceWithTheOutcome) {
  CountingSink a, b;
  {
    RecordHandle handle({&a, &b}, Clock::now());
    EXPECT_TRUE(handle.Finish(200, RequestOutcome::kAnswered));
    EXPECT_TRUE(handle.finished());
  }
  EXPECT_EQ(a.calls.load(), 1);
  EXPECT_EQ(b.calls.load(), 1);
  EXPECT_EQ(a.last_outcome, RequestOutcome::kAnswered);
  EXPECT_EQ(a.last_status, 200);
}

TEST(RecordHandleTest, ASecondFinishIsIgnoredAndTheFirstOutcomeStands) {
  CountingSink sink;
  RecordHandle handle({&sink}, Clock::now());
  EXPECT_TRUE(handle.Finish(200, RequestOutcome::kAnswered));
  EXPECT_FALSE(handle.Finish(499, RequestOutcome::kClientGone));
  EXPECT_EQ(sink.calls.load(), 1);
  EXPECT_EQ(sink.last_outcome, RequestOutcome::kAnswered);
}

TEST(RecordHandleTest, AHandleDroppedWithoutFinishIsFinishedAsAbandoned) {
  CountingSink sink;
  { RecordHandle handle({&sink}, Clock::now()); }
  EXPECT_EQ(sink.calls.load(), 1);
  EXPECT_EQ(sink.last_outcome, RequestOutcome::kAbandoned);
}

TEST(RecordHandleTest, RacingFinishesFromTwoThreadsCountOnce) {
  for (int round = 0; round < 200; ++round) {
    CountingSink sink;
    RecordHandle handle({&sink}, Clock::now());
    std::atomic<int> won{0};
    std::thread worker([&] { won += handle.Finish(200, RequestOutcome::kAnswered) ? 1 : 0; });
    std::thread relay([&] { won += handle.Finish(502, RequestOutcome::kNodeFailed) ? 1 : 0; });
    worker.join();
    relay.join();
    ASSERT_EQ(won.load(), 1);
    ASSERT_EQ(sink.calls.load(), 1);
  }
}

TEST(RequestRecordTest, ServedByIsTheLastAttemptWhenItAnswered) {
  RequestRecord record;
  EXPECT_EQ(record.served_by(), nullptr);
  record.attempts.push_back({"gpu-1", 0, "connection refused", -1});
  EXPECT_EQ(record.served_by(), nullptr);
  record.attempts.push_back({"gpu-2", 200, "", 12.5});
  ASSERT_NE(record.served_by(), nullptr);
  EXPECT_EQ(record.served_by()->node, "gpu-2");
}

TEST(AccessLogLineTest, HoldsTheFieldsInAFixedOrderAndNoText) {
  CountingSink sink;
  RecordHandle handle({&sink}, Clock::now());
  RequestRecord& r = handle.record();
  r.request_id = "req-1";
  r.client_address = "10.0.0.9";
  r.method = "POST";
  r.route = "chat";
  r.model = "llama3.2";
  r.token_name = "team-a";
  r.attempts = {{"gpu-1", 503, "server busy", 3.0}, {"gpu-2", 200, "", 4.0}};
  r.sent = r.start + std::chrono::microseconds(40);
  r.node_first_byte = r.start + std::chrono::milliseconds(5);
  r.first_token = r.start + std::chrono::milliseconds(6);
  r.streamed = true;
  r.bytes_in = 120;
  r.bytes_out = 4096;
  r.input_tokens = 11;
  r.output_tokens = 42;
  handle.Finish(200, RequestOutcome::kAnswered);
  const std::string line = AccessLogLine(r, std::chrono::system_clock::time_point());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto json = nlohmann::ordered_json::parse(line);
  std::vector<std::string> keys;
  for (const auto& [key, value] : json.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "time",           "request_id",   "client",   "method",
                      "route",          "model",        "token",    "status",
                      "outcome",        "error",        "node",     "attempts",
                      "nodes_tried",    "duration_ms",  "proxy_ms", "node_first_byte_ms",
                      "first_token_ms", "queued_ms",    "streamed", "bytes_in",
                      "bytes_out",      "input_tokens", "output_tokens"}));
  EXPECT_EQ(json["time"], "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(json["node"], "gpu-2");
  EXPECT_EQ(json["attempts"], 2);
  EXPECT_EQ(json["nodes_tried"][0]["error"], "server busy");
  EXPECT_DOUBLE_EQ(json["proxy_ms"].get<double>(), 0.04);
  EXPECT_DOUBLE_EQ(json["first_token_ms"].get<double>(), 6.0);
  EXPECT_EQ(json["input_tokens"], 11);
  EXPECT_EQ(json["outcome"], "answered");
}

TEST(AccessLogLineTest, MissingTimesAndCountsAreMarkedNotInvented) {
  RecordHandle handle({}, Clock::now());
  handle.Finish(401, RequestOutcome::kRefused, "unauthorized");
  const auto json = nlohmann::json::parse(AccessLogLine(handle.record(), {}));
  EXPECT_EQ(json["proxy_ms"], -1.0);
  EXPECT_EQ(json["first_token_ms"], -1.0);
  EXPECT_TRUE(json["input_tokens"].is_null());
  EXPECT_EQ(json["node"], "");
  EXPECT_EQ(json["outcome"], "refused");
}

TEST(AccessLogLineTest, InvalidUtf8FromAClientIsReplacedNotThrown) {
  RecordHandle handle({}, Clock::now());
  handle.record().model = std::string("llama\xff\xfe", 7);
  handle.Finish(404, RequestOutcome::kNoNode, "model not found");
  const std::string line = AccessLogLine(handle.record(), {});
  EXPECT_TRUE(nlohmann::json::accept(line)) << line;
}

// ---- request ids (request_id.h) ----

TEST(RequestIdTest, AClientIdIsKeptWhenPrintableAndShortEnough) {
  const std::string id = "abc-123_XYZ.~";
  EXPECT_EQ(RequestIdFor(&id), id);
  const std::string longest(kMaxRequestIdBytes, 'a');
  EXPECT_EQ(RequestIdFor(&longest), longest);
}

TEST(RequestIdTest, AnUnusableClientIdIsReplaced) {
  for (const std::string& bad :
       {std::string(), std::string(kMaxRequestIdBytes + 1, 'a'), std::string("has space"),
        std::string("tab\there"), std::string("\x7f"), std::string("caf\xc3\xa9")}) {
    const std::string id = RequestIdFor(&bad);
    EXPECT_EQ(id.size(), 32u) << bad;
    EXPECT_NE(id, bad);
  }
  EXPECT_EQ(RequestIdFor(nullptr).size(), 32u);
}

TEST(RequestIdTest, NewIdsAreHexAndDistinctAcrossThreads) {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& ids : per_thread) {
    threads.emplace_back([&ids] {
      for (int i = 0; i < 1000; ++i) ids.push_back(NewRequestId());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : per_thread) {
    for (const std::string& id : ids) {
      EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
      all.insert(id);
    }
  }
  EXPECT_EQ(all.size(), 4000u);
}

}  // namespace
}  // namespace corral::dataplane
