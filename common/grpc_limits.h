// The largest gRPC message Corral's processes send or accept, set explicitly on every server and
// channel (corral-control's ServerBuilder, the proxy's Watch channel, corralctl's channel).
//
// Why it is set at all: gRPC's default receive limit is 4 MiB, and a routing snapshot grows with
// the fleet (nodes x models x loaded models, plus token hashes). A fleet of a thousand nodes with
// a few dozen models each is several MiB, so under the default a growing fleet would one day see
// every Watch fail with RESOURCE_EXHAUSTED at once. Why 64 MiB: ten times the largest fleet we
// measured, yet small enough that one message cannot exhaust a proxy (it holds at most two
// snapshots per stream, see SnapshotPublisher). The control plane refuses to publish a snapshot
// past this size (it keeps serving the last good one and logs why), so both sides agree on it.
//
// Thread safety: constants only.
#pragma once

#include <cstddef>

namespace corral {

inline constexpr size_t kMaxSnapshotMessageBytes = size_t{64} << 20;

// The same, as the int gRPC's setters take.
inline constexpr int kMaxGrpcMessageBytes = static_cast<int>(kMaxSnapshotMessageBytes);

}  // namespace corral
