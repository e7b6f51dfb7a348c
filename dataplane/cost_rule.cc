#include "dataplane/cost_rule.h"

#include <algorithm>
#include <cmath>

namespace corral::dataplane {

double WarmWaitMs(int64_t ahead, int64_t slots, double mean_duration_ms) {
  if (!(mean_duration_ms > 0) || !std::isfinite(mean_duration_ms)) return 0;
  slots = std::max<int64_t>(1, slots);
  const int64_t to_finish = ahead - slots + 1;
  if (to_finish <= 0) return 0;
  // Slots run in parallel: the n-th request to finish does so after about n / slots durations.
  return static_cast<double>(to_finish) / static_cast<double>(slots) * mean_duration_ms;
}

double ColdLoadMs(double observed_load_ms, int64_t memory_bytes) {
  if (observed_load_ms > 0 && std::isfinite(observed_load_ms)) return observed_load_ms;
  if (memory_bytes <= 0) return kUnknownSizeLoadMs;
  return kLoadStartMs + static_cast<double>(memory_bytes) / kLoadBytesPerSecond * 1000.0;
}

}  // namespace corral::dataplane
