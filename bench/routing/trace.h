// The workload of `make bench-routing` (bench/routing/run.sh): a trace of inference requests
// for a mixed-model fleet, the same file replayed against every target so that Corral and the
// model-blind balancers see exactly the same requests at exactly the same times.
//
// A trace is generated from a seed by a pure function: arrivals are a Poisson process at a fixed
// offered rate (open loop: a request's time does not depend on any answer), each request's model
// is drawn from a Zipf-like popularity over the listed models (the first listed is the most
// popular; model k has weight 1 / k^s), and a fixed share of requests are chats, the rest
// generates. The random numbers come from SplitMix64 and the distributions are computed here, not
// by <random>'s distributions, whose algorithms the standard leaves to each library: the same seed
// gives the same trace, byte for byte, wherever it is built.
//
// Thread safety: the functions are pure; call them from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace corral::bench {

struct TraceModel {
  std::string name;
  int64_t size_bytes = 0;
};

struct TraceSpec {
  uint64_t seed = 1;
  double rate_per_s = 10;  // offered load, requests per second
  double duration_s = 60;  // arrivals in [0, duration_s)
  double zipf_exponent = 1.0;
  double chat_fraction = 0.3;      // share of /api/chat requests; the rest are /api/generate
  std::vector<TraceModel> models;  // by popularity, most popular first
};

enum class TraceRoute { kGenerate, kChat };

struct TraceRequest {
  int64_t due_us = 0;  // from the start of the replay
  TraceRoute route = TraceRoute::kGenerate;
  std::string model;
};

// Parses "name=size_bytes,name=size_bytes,..." (corral-sim's --models form; every entry needs its
// size). False with a message on an empty list, an entry without a size, or a duplicate name.
bool ParseTraceModels(std::string_view list, std::vector<TraceModel>* models, std::string* error);

// REQUIRES: spec.models is not empty, spec.rate_per_s > 0, spec.duration_s > 0.
std::vector<TraceRequest> GenerateTrace(const TraceSpec& spec);

// The trace file: a comment line with the spec, then one line per request,
// `<due_us> <generate|chat> <model>`, in order of due time.
std::string FormatTrace(const TraceSpec& spec, const std::vector<TraceRequest>& requests);

// Reads a trace file back (comment lines skipped). False with a message naming the line on a
// malformed line or due times out of order.
bool ParseTrace(std::string_view text, std::vector<TraceRequest>* requests, std::string* error);

}  // namespace corral::bench
