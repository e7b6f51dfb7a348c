// The cost rule: when every warm node for a model is busy and a cold node is free, which one
// gives the request its first token sooner (docs/routing.md "The cost rule"). Warm: the
// expected wait for a slot on the busiest-but-best warm node; cold: the expected load of the
// model on the free node. Ties go warm: a load also evicts what the cold node held.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstdint>

namespace corral::dataplane {

// A cold load's figures when the proxy has observed none for the model: a fixed start (process
// spawn, weights opened) plus the model's memory read at kLoadBytesPerSecond; a model of unknown
// size costs kUnknownSizeLoadMs.
inline constexpr double kLoadStartMs = 1000;
inline constexpr double kLoadBytesPerSecond = 2e9;
inline constexpr double kUnknownSizeLoadMs = 10000;

// Expected wait for a slot on a warm node: `ahead` requests for the model hold or wait for the
// node's `slots` model slots; the request starts when (ahead - slots + 1) of them finished,
// `slots` at a time, each lasting `mean_duration_ms`. 0 when a slot is free; 0 too when no
// duration was measured yet (nothing says the warm node is slow).
double WarmWaitMs(int64_t ahead, int64_t slots, double mean_duration_ms);

// Expected time to load the model cold: the observed load time when there is one (> 0), else
// the estimate from `memory_bytes` (0 = unknown).
double ColdLoadMs(double observed_load_ms, int64_t memory_bytes);

// True when waiting for the warm node is expected to be no slower than loading cold.
inline bool PreferWarm(double warm_wait_ms, double cold_load_ms) {
  return warm_wait_ms <= cold_load_ms;
}

}  // namespace corral::dataplane
