#include "bench/routing/trace.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

namespace corral::bench {
namespace {

// SplitMix64 (Steele, Lea and Flood 2014): small, fast and fully specified, so a seed means the
// same sequence on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1), 53 bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

bool ParseInt64(std::string_view text, int64_t* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

bool ParseTraceModels(std::string_view list, std::vector<TraceModel>* models, std::string* error) {
  models->clear();
  std::set<std::string, std::less<>> seen;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    const size_t eq = entry.find('=');
    TraceModel m;
    if (eq == std::string_view::npos || eq == 0 ||
        !ParseInt64(entry.substr(eq + 1), &m.size_bytes) || m.size_bytes <= 0) {
      *error = "model entry '" + std::string(entry) + "' is not name=size_bytes";
      return false;
    }
    m.name = std::string(entry.substr(0, eq));
    if (!seen.insert(m.name).second) {
      *error = "model '" + m.name + "' is listed twice";
      return false;
    }
    models->push_back(std::move(m));
  }
  if (models->empty()) {
    *error = "no models listed";
    return false;
  }
  return true;
}

std::vector<TraceRequest> GenerateTrace(const TraceSpec& spec) {
  // Cumulative Zipf weights: model k (1-based) has weight 1 / k^s.
  std::vector<double> cumulative;
  double total = 0;
  for (size_t k = 1; k <= spec.models.size(); ++k) {
    total += 1.0 / std::pow(static_cast<double>(k), spec.zipf_exponent);
    cumulative.push_back(total);
  }
  // One stream per decision, so changing the model mix does not move the arrival times.
  SplitMix64 arrivals(spec.seed);
  SplitMix64 picks(spec.seed ^ 0x5851f42d4c957f2dULL);
  std::vector<TraceRequest> out;
  const double end_us = spec.duration_s * 1e6;
  double t_us = 0;
  while (true) {
    // Exponential gaps: -ln(1 - U) / rate; 1 - U is in (0, 1], so the log is finite.
    t_us += -std::log(1.0 - arrivals.Uniform()) / spec.rate_per_s * 1e6;
    if (t_us >= end_us) break;
    TraceRequest r;
    r.due_us = static_cast<int64_t>(t_us);
    const double x = picks.Uniform() * total;
    size_t k = 0;
    while (k + 1 < cumulative.size() && x >= cumulative[k]) ++k;
    r.model = spec.models[k].name;
    r.route = picks.Uniform() < spec.chat_fraction ? TraceRoute::kChat : TraceRoute::kGenerate;
    out.push_back(std::move(r));
  }
  return out;
}

std::string FormatTrace(const TraceSpec& spec, const std::vector<TraceRequest>& requests) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "# corral routing trace: seed=%llu rate_per_s=%g duration_s=%g zipf=%g "
                "chat_fraction=%g requests=%zu\n",
                static_cast<unsigned long long>(spec.seed), spec.rate_per_s, spec.duration_s,
                spec.zipf_exponent, spec.chat_fraction, requests.size());
  out += line;
  out += "# models (most popular first):";
  for (const TraceModel& m : spec.models) {
    out += ' ' + m.name + '=' + std::to_string(m.size_bytes);
  }
  out += '\n';
  for (const TraceRequest& r : requests) {
    out += std::to_string(r.due_us);
    out += r.route == TraceRoute::kChat ? " chat " : " generate ";
    out += r.model;
    out += '\n';
  }
  return out;
}

bool ParseTrace(std::string_view text, std::vector<TraceRequest>* requests, std::string* error) {
  requests->clear();
  int line_no = 0;
  int64_t last_due = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const size_t s1 = line.find(' ');
    const size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
    TraceRequest r;
    const auto bad = [&](const char* why) {
      *error = "trace line " + std::to_string(line_no) + ": " + why;
      return false;
    };
    if (s2 == std::string_view::npos) return bad("want '<due_us> <generate|chat> <model>'");
    if (!ParseInt64(line.substr(0, s1), &r.due_us) || r.due_us < 0) {
      return bad("due time is not a non-negative integer");
    }
    if (r.due_us < last_due) return bad("due times out of order");
    last_due = r.due_us;
    const std::string_view route = line.substr(s1 + 1, s2 - s1 - 1);
    if (route == "generate") {
      r.route = TraceRoute::kGenerate;
    } else if (route == "chat") {
      r.route = TraceRoute::kChat;
    } else {
      return bad("route is neither generate nor chat");
    }
    r.model = std::string(line.substr(s2 + 1));
    if (r.model.empty() || r.model.find(' ') != std::string::npos) return bad("bad model name");
    requests->push_back(std::move(r));
  }
  return true;
}

}  // namespace corral::bench
