#include "dataplane/request_record.h"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <utility>

namespace corral::dataplane {
namespace {

double MillisBetween(RequestRecord::Clock::time_point from, RequestRecord::Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// RFC 3339 in UTC with milliseconds: 2026-12-05T23:40:01.123Z.
std::string WallTime(std::chrono::system_clock::time_point t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char out[64];  // room for any int the fields could hold, so the format is never cut
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(ms % 1000));
  return out;
}

// Milliseconds rounded to microseconds, so a log line stays short and readable.
double Rounded(double ms) { return static_cast<double>(static_cast<int64_t>(ms * 1000)) / 1000; }

}  // namespace

const char* OutcomeName(RequestOutcome outcome) {
  switch (outcome) {
    case RequestOutcome::kAnswered:
      return "answered";
    case RequestOutcome::kRefused:
      return "refused";
    case RequestOutcome::kNoNode:
      return "no_node";
    case RequestOutcome::kNodeFailed:
      return "node_failed";
    case RequestOutcome::kClientGone:
      return "client_gone";
    case RequestOutcome::kIdleTimeout:
      return "idle_timeout";
    case RequestOutcome::kProxyStopping:
      return "proxy_stopping";
    case RequestOutcome::kAbandoned:
      break;
  }
  return "abandoned";
}

const TriedNode* RequestRecord::served_by() const {
  if (attempts.empty() || !attempts.back().error.empty() || attempts.back().status == 0) {
    return nullptr;
  }
  return &attempts.back();
}

RecordHandle::RecordHandle(std::vector<RecordSink*> sinks, RequestRecord::Clock::time_point start)
    : own_sinks_(std::move(sinks)), sinks_(&own_sinks_) {
  record_.start = start;
}

RecordHandle::RecordHandle(const std::vector<RecordSink*>* sinks,
                           RequestRecord::Clock::time_point start)
    : sinks_(sinks) {
  record_.start = start;
}

RecordHandle::~RecordHandle() {
  Finish(record_.status, RequestOutcome::kAbandoned, "the request ended without an account");
}

bool RecordHandle::Finish(int status, RequestOutcome outcome, std::string error) {
  if (finished_.exchange(true, std::memory_order_acq_rel)) return false;
  record_.status = status;
  record_.outcome = outcome;
  record_.error = std::move(error);
  record_.end = RequestRecord::Clock::now();
  if (sinks_ != nullptr) {
    for (RecordSink* sink : *sinks_) sink->OnFinished(record_);
  }
  return true;
}

std::string AccessLogLine(const RequestRecord& r, std::chrono::system_clock::time_point wall_end) {
  nlohmann::ordered_json line;
  line["time"] = WallTime(wall_end);
  line["request_id"] = r.request_id;
  line["client"] = r.client_address;
  line["method"] = r.method;
  line["route"] = r.route;
  line["model"] = r.model;
  line["token"] = r.token_name;
  line["status"] = r.status;
  line["outcome"] = OutcomeName(r.outcome);
  line["error"] = r.error;
  const TriedNode* served = r.served_by();
  line["node"] = served != nullptr ? served->node : "";
  line["attempts"] = r.attempts.size();
  nlohmann::ordered_json tried = nlohmann::ordered_json::array();
  for (const TriedNode& attempt : r.attempts) {
    tried.push_back({{"node", attempt.node}, {"status", attempt.status}, {"error", attempt.error}});
  }
  line["nodes_tried"] = std::move(tried);
  line["duration_ms"] = Rounded(MillisBetween(r.start, r.end));
  // The proxy's own time: a wait in the queue is the fleet's, not the proxy's.
  line["proxy_ms"] = r.sent ? Rounded(MillisBetween(r.start, *r.sent - r.queued)) : -1.0;
  line["node_first_byte_ms"] =
      r.node_first_byte ? Rounded(MillisBetween(r.start, *r.node_first_byte)) : -1.0;
  line["first_token_ms"] = r.first_token ? Rounded(MillisBetween(r.start, *r.first_token)) : -1.0;
  line["queued_ms"] = Rounded(std::chrono::duration<double, std::milli>(r.queued).count());
  line["streamed"] = r.streamed;
  line["bytes_in"] = r.bytes_in;
  line["bytes_out"] = r.bytes_out;
  line["input_tokens"] = r.input_tokens ? nlohmann::ordered_json(*r.input_tokens) : nullptr;
  line["output_tokens"] = r.output_tokens ? nlohmann::ordered_json(*r.output_tokens) : nullptr;
  // Text from clients and nodes (a model name, an error) may be any bytes: replaced, not thrown.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace corral::dataplane
