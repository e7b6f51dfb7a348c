// corral-sim's settings: every value a flag or POST /_sim/config can change, the failure modes
// it can inject, and how the settings become the scheduler's limits.
//
// Thread safety: plain values and pure functions; the server keeps the live SimConfig under its
// own mutex and hands each request a copy.
#pragma once

#include <string>
#include <string_view>

#include "sim/scheduler.h"
#include "sim/wire.h"

namespace corral::sim {

enum class FailMode {
  kNone,
  kError500,        // 500 JSON before the first token
  kBusy503,         // Ollama's exact 503 queue-full answer
  kHang,            // read the request, never answer (until the client leaves)
  kDieMidStream,    // after K tokens the process _exits
  kDropMidStream,   // after K tokens the connection closes without the last chunk
  kErrorMidStream,  // after K tokens an {"error":...} line on the 200 stream, then the end
  kGarbage,         // 200 status line, then bytes that are not valid chunked framing
  kSlowHeaders,     // headers delayed by slow_headers_ms, then a normal answer
  kNotHttp,         // bytes that are not an HTTP response at all, then the connection closes
  kStallMidStream,  // after K tokens nothing more is sent; the connection stays open
};
bool ParseFailMode(std::string_view text, FailMode* mode);
std::string_view FailModeName(FailMode mode);
// The modes that strike after some tokens (and so need a generation that has tokens).
bool IsMidStream(FailMode mode);

// Everything a flag or POST /_sim/config can change. Values are read per request (a request
// keeps the settings it started with).
struct SimConfig {
  std::string version = "0.12.3";
  int tokens = 8;              // content tokens per answer (thinking models add tokens/2)
  int token_interval_ms = 20;  // between tokens; the first token also waits this long
  int jitter_ms = 0;           // +/- uniform jitter on each interval
  int load_delay_ms = 500;     // cold load, before headers
  double load_ms_per_gb = 0;   // added to a cold load per GiB of the model's size
  int num_parallel = 1;        // generations per loaded model
  int max_queue = 512;         // waiting requests before 503; 0: no limit
  bool fast = false;           // no delays at all (benchmarks)
  double vram_gb = 0;          // 0: unlimited
  FailMode fail = FailMode::kNone;
  int fail_after = 2;            // K for the *-mid-stream modes
  int fail_times = 0;            // failures to inject before reverting to none; 0: unlimited
  bool fail_all_routes = false;  // false: only inference routes fail
  int slow_headers_ms = 90000;
  int pull_interval_ms = 60;  // between pull progress lines
  bool final_text = false;    // put the last token's text in the final chunk
  int keep_requests = 50;     // how many recent requests /_sim/stats shows
};

// Applies the settings in a /_sim/config object. Unknown keys and wrong types are errors.
// Model and gate keys are handled by the control routes, not here.
bool ApplyConfigJson(const Json& patch, SimConfig* config, std::string* error);
Json ConfigJson(const SimConfig& config);

// The scheduler's limits under `config` (--fast removes the load delay).
SchedulerLimits LimitsOf(const SimConfig& config);

}  // namespace corral::sim
