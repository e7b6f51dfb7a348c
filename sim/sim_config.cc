#include "sim/sim_config.h"

#include <algorithm>
#include <map>
#include <utility>

namespace corral::sim {
namespace {

// Each failure mode with its name in flags, /_sim/config and docs/sim.md.
constexpr std::pair<std::string_view, FailMode> kFailModes[] = {
    {"none", FailMode::kNone},
    {"error-500", FailMode::kError500},
    {"busy-503", FailMode::kBusy503},
    {"hang", FailMode::kHang},
    {"die-mid-stream", FailMode::kDieMidStream},
    {"drop-mid-stream", FailMode::kDropMidStream},
    {"error-mid-stream", FailMode::kErrorMidStream},
    {"garbage", FailMode::kGarbage},
    {"slow-headers", FailMode::kSlowHeaders},
    {"not-http", FailMode::kNotHttp},
    {"stall-mid-stream", FailMode::kStallMidStream}};

}  // namespace

bool ParseFailMode(std::string_view text, FailMode* mode) {
  for (const auto& [name, value] : kFailModes) {
    if (name == text) {
      *mode = value;
      return true;
    }
  }
  return false;
}

std::string_view FailModeName(FailMode mode) {
  for (const auto& [name, value] : kFailModes) {
    if (value == mode) return name;
  }
  return "none";
}

bool IsMidStream(FailMode mode) {
  return mode == FailMode::kDieMidStream || mode == FailMode::kDropMidStream ||
         mode == FailMode::kErrorMidStream || mode == FailMode::kStallMidStream;
}

bool ApplyConfigJson(const Json& patch, SimConfig* config, std::string* error) {
  if (!patch.is_object()) {
    *error = "config must be a JSON object";
    return false;
  }
  SimConfig c = *config;
  const std::map<std::string, int*> ints = {{"tokens", &c.tokens},
                                            {"token_interval_ms", &c.token_interval_ms},
                                            {"jitter_ms", &c.jitter_ms},
                                            {"load_delay_ms", &c.load_delay_ms},
                                            {"num_parallel", &c.num_parallel},
                                            {"max_queue", &c.max_queue},
                                            {"fail_after", &c.fail_after},
                                            {"fail_times", &c.fail_times},
                                            {"slow_headers_ms", &c.slow_headers_ms},
                                            {"pull_interval_ms", &c.pull_interval_ms},
                                            {"keep_requests", &c.keep_requests}};
  const std::map<std::string, bool*> bools = {
      {"fast", &c.fast}, {"fail_all_routes", &c.fail_all_routes}, {"final_text", &c.final_text}};
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (auto i = ints.find(key); i != ints.end()) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) {
        *error = key + " must be a non-negative integer";
        return false;
      }
      *i->second = v.get<int>();
    } else if (auto b = bools.find(key); b != bools.end()) {
      if (!v.is_boolean()) {
        *error = key + " must be true or false";
        return false;
      }
      *b->second = v.get<bool>();
    } else if (key == "version") {
      if (!v.is_string()) {
        *error = "version must be a string";
        return false;
      }
      c.version = v.get<std::string>();
    } else if (key == "vram_gb" || key == "load_ms_per_gb") {
      if (!v.is_number() || v.get<double>() < 0) {
        *error = key + " must be a non-negative number";
        return false;
      }
      (key == "vram_gb" ? c.vram_gb : c.load_ms_per_gb) = v.get<double>();
    } else if (key == "fail") {
      if (!v.is_string() || !ParseFailMode(v.get<std::string>(), &c.fail)) {
        *error = "fail must be one of";
        const char* separator = " ";
        for (const auto& mode_name : kFailModes) {
          *error += separator;
          *error += mode_name.first;
          separator = ", ";
        }
        return false;
      }
    } else if (key == "gated" || key == "models" || key == "add_models" || key == "remove_models" ||
               key == "pullable") {
      continue;  // handled by the control routes
    } else {
      *error = "unknown config key \"" + key + "\"";
      return false;
    }
  }
  *config = c;
  return true;
}

Json ConfigJson(const SimConfig& c) {
  return Json{{"version", c.version},
              {"tokens", c.tokens},
              {"token_interval_ms", c.token_interval_ms},
              {"jitter_ms", c.jitter_ms},
              {"load_delay_ms", c.load_delay_ms},
              {"load_ms_per_gb", c.load_ms_per_gb},
              {"num_parallel", c.num_parallel},
              {"max_queue", c.max_queue},
              {"fast", c.fast},
              {"vram_gb", c.vram_gb},
              {"fail", FailModeName(c.fail)},
              {"fail_after", c.fail_after},
              {"fail_times", c.fail_times},
              {"fail_all_routes", c.fail_all_routes},
              {"slow_headers_ms", c.slow_headers_ms},
              {"pull_interval_ms", c.pull_interval_ms},
              {"final_text", c.final_text},
              {"keep_requests", c.keep_requests}};
}

SchedulerLimits LimitsOf(const SimConfig& c) {
  SchedulerLimits limits;
  limits.load_delay = std::chrono::milliseconds(c.fast ? 0 : std::max(0, c.load_delay_ms));
  limits.load_ms_per_gib = c.fast ? 0 : std::max(0.0, c.load_ms_per_gb);
  limits.num_parallel = std::max(1, c.num_parallel);
  limits.max_queue = std::max(0, c.max_queue);
  limits.vram_bytes = static_cast<int64_t>(c.vram_gb * kBytesPerGib);
  return limits;
}

}  // namespace corral::sim
