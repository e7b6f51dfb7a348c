// The operator's routing rules (issue 11): the wait queue's policy, placement rules, model aliases
// and model memory rules, and a node's per-model parallel slots. One definition of what is valid
// and of how a model pattern matches, read by the control plane's registry (which refuses bad
// rules before storing them) and by the proxy (which matches requests against them).
//
// Patterns are globs over canonical model keys (common/model_name.h: lower-case
// "host/namespace/model:tag"): `*` matches any run of characters, `?` exactly one, everything
// else itself. ModelPatternMatches also tries the key's short form, so "llama3*" matches
// "registry.ollama.ai/library/llama3:8b" as an operator expects.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "corral/v1/snapshot.pb.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace corral {

// Highest max_parallel and num_parallel a node may be given.
inline constexpr int kMaxNodeParallel = 1000000;
inline constexpr size_t kMaxPatternLength = 256;
// Entries per list (placement rules, aliases, memory rules); also nodes and labels per rule.
inline constexpr int kMaxRoutingRules = 1000;
inline constexpr double kMaxModelMemoryGb = 4096;
inline constexpr int kMaxQueueLength = 100000;
inline constexpr int64_t kMaxQueueWaitMs = 3600000;
// What a QueuePolicy's zero fields mean.
inline constexpr int kDefaultQueueLength = 1024;
inline constexpr int64_t kDefaultQueueWaitMs = 30000;

// `*` any run (empty included), `?` one character, anything else literally. Linear in
// pattern.size() * text.size() at worst (no backtracking blow-up on "*a*a*a...").
bool GlobMatch(std::string_view pattern, std::string_view text);

// The short form of a canonical key: the default host and "library/" namespace dropped
// ("registry.ollama.ai/library/llama3:8b" -> "llama3:8b",
// "registry.ollama.ai/jmorganca/m:v1" -> "jmorganca/m:v1"); other keys unchanged.
std::string_view ShortModelKey(std::string_view canonical_key);

// Whether `pattern` (a placement or memory rule's) matches a model: against its canonical key,
// and for the default registry also against the key without the host ("library/llama3:8b") and
// against ShortModelKey of it ("llama3:8b").
bool ModelPatternMatches(std::string_view pattern, std::string_view canonical_key);

// A node label, as the registry accepts it: key [A-Za-z0-9_./-]{1,63}, value at most 255
// characters without control characters.
absl::Status ValidateLabel(std::string_view key, std::string_view value);

// A model pattern: non-empty, at most kMaxPatternLength characters, only characters a canonical
// key holds (a-z 0-9 _ . - : /) plus `*` and `?`. `what` names it in the message.
absl::Status ValidateModelPattern(std::string_view pattern, std::string_view what);

// 0 (the default, 1) to kMaxNodeParallel.
absl::Status ValidateNumParallel(int num_parallel);

absl::Status ValidateQueuePolicy(const corral::v1::QueuePolicy& queue);

// Every rule the snapshot carries beside the nodes, as one set (an alias is checked against the
// others). InvalidArgument naming the offending entry.
absl::Status ValidateRoutingRules(
    const corral::v1::QueuePolicy& queue,
    const google::protobuf::RepeatedPtrField<corral::v1::PlacementRule>& placement,
    const google::protobuf::RepeatedPtrField<corral::v1::ModelAlias>& aliases,
    const google::protobuf::RepeatedPtrField<corral::v1::ModelMemoryRule>& model_memory);

}  // namespace corral
