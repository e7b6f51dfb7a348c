#include "common/placement_rules.h"

#include <cmath>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/model_name.h"
#include "common/node_name.h"

namespace corral {
namespace {

// This platform's Abseil has its own string_view, which StrCat takes; std::string_view converts
// through this.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsPatternChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
         c == ':' || c == '/' || c == '*' || c == '?';
}

// Quoted for messages, cut so a megabyte of junk does not become a megabyte of error.
std::string Quote(std::string_view s) {
  constexpr size_t kShown = 80;
  if (s.size() <= kShown) return absl::StrCat("\"", Sv(s), "\"");
  return absl::StrCat("\"", Sv(s.substr(0, kShown)), "...\"");
}

absl::Status TooMany(std::string_view what, int count) {
  return absl::InvalidArgumentError(
      absl::StrCat("at most ", kMaxRoutingRules, " ", Sv(what), " are allowed, got ", count));
}

absl::Status ValidatePlacement(
    const google::protobuf::RepeatedPtrField<corral::v1::PlacementRule>& placement) {
  if (placement.size() > kMaxRoutingRules) return TooMany("placement rules", placement.size());
  std::set<std::string> seen;
  for (const corral::v1::PlacementRule& rule : placement) {
    if (absl::Status s = ValidateModelPattern(rule.pattern(), "placement pattern"); !s.ok()) {
      return s;
    }
    const std::string at = absl::StrCat("placement rule ", Quote(rule.pattern()));
    if (!seen.insert(rule.pattern()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " appears twice; keep one rule per pattern"));
    }
    if (rule.nodes().empty() && rule.labels().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " names no node and no label; give at least one of either"));
    }
    if (rule.nodes_size() > kMaxRoutingRules || static_cast<int>(rule.labels().size()) > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " names more than ", kMaxRoutingRules, " nodes or 64 labels"));
    }
    for (const std::string& node : rule.nodes()) {
      if (!IsValidNodeName(node)) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ": node name ", Quote(node), " must match [A-Za-z0-9_.-]{1,64}"));
      }
    }
    for (const auto& [key, value] : rule.labels()) {
      if (absl::Status s = ValidateLabel(key, value); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(at, ": ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAliases(
    const google::protobuf::RepeatedPtrField<corral::v1::ModelAlias>& aliases) {
  if (aliases.size() > kMaxRoutingRules) return TooMany("aliases", aliases.size());
  std::set<std::string> alias_keys;
  for (const corral::v1::ModelAlias& a : aliases) {
    const std::string at = absl::StrCat("alias ", Quote(a.alias()));
    std::optional<std::string> alias_key = CanonicalModelKey(a.alias());
    if (!alias_key) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " is not a valid model name ([host/][namespace/]model[:tag])"));
    }
    std::optional<std::string> target_key = CanonicalModelKey(a.target());
    if (!target_key) {
      return absl::InvalidArgumentError(absl::StrCat(at, ": target ", Quote(a.target()),
                                                     " is not a valid model name "
                                                     "([host/][namespace/]model[:tag])"));
    }
    if (*alias_key == *target_key) {
      return absl::InvalidArgumentError(absl::StrCat(at, " names itself as its target"));
    }
    if (!alias_keys.insert(*alias_key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " is defined twice (as ", *alias_key, "); keep one"));
    }
  }
  for (const corral::v1::ModelAlias& a : aliases) {
    const std::string target_key = *CanonicalModelKey(a.target());
    if (alias_keys.count(target_key) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alias ", Quote(a.alias()), " targets ", Quote(a.target()),
          ", which is itself an alias; point it at the final model (aliases do not chain)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModelMemory(
    const google::protobuf::RepeatedPtrField<corral::v1::ModelMemoryRule>& model_memory) {
  if (model_memory.size() > kMaxRoutingRules)
    return TooMany("model memory rules", model_memory.size());
  std::set<std::string> seen;
  for (const corral::v1::ModelMemoryRule& rule : model_memory) {
    if (absl::Status s = ValidateModelPattern(rule.pattern(), "model memory pattern"); !s.ok()) {
      return s;
    }
    const std::string at = absl::StrCat("model memory rule ", Quote(rule.pattern()));
    if (!seen.insert(rule.pattern()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " appears twice; keep one rule per pattern"));
    }
    const double gb = rule.memory_gb();
    if (!std::isfinite(gb) || gb <= 0 || gb > kMaxModelMemoryGb) {
      return absl::InvalidArgumentError(absl::StrCat(at, ": memory_gb must be above 0 and at most ",
                                                     kMaxModelMemoryGb, ", got ", gb));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Greedy scan remembering only the last `*`: on a mismatch the star absorbs one more character
  // and matching resumes after it. An earlier star never needs revisiting (whatever it could
  // absorb, the later star can too), so the work is bounded by pattern.size() * text.size().
  size_t p = 0, t = 0;
  size_t star = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || (pattern[p] != '*' && pattern[p] == text[t]))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string_view ShortModelKey(std::string_view canonical_key) {
  constexpr std::string_view kDefaultHost = "registry.ollama.ai/";
  constexpr std::string_view kLibrary = "library/";
  if (canonical_key.substr(0, kDefaultHost.size()) != kDefaultHost) return canonical_key;
  std::string_view rest = canonical_key.substr(kDefaultHost.size());
  if (rest.substr(0, kLibrary.size()) == kLibrary) rest.remove_prefix(kLibrary.size());
  return rest;
}

bool ModelPatternMatches(std::string_view pattern, std::string_view canonical_key) {
  if (GlobMatch(pattern, canonical_key)) return true;
  constexpr std::string_view kDefaultHost = "registry.ollama.ai/";
  if (canonical_key.substr(0, kDefaultHost.size()) != kDefaultHost) return false;
  // "library/llama3:8b" as well as "llama3:8b": the forms an operator may copy from elsewhere.
  const std::string_view without_host = canonical_key.substr(kDefaultHost.size());
  if (GlobMatch(pattern, without_host)) return true;
  const std::string_view short_key = ShortModelKey(canonical_key);
  return short_key.size() != without_host.size() && GlobMatch(pattern, short_key);
}

absl::Status ValidateLabel(std::string_view key, std::string_view value) {
  bool key_ok = !key.empty() && key.size() <= 63;
  for (char c : key) key_ok = key_ok && (IsNodeNameChar(c) || c == '/');
  if (!key_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("label key ", Quote(key), " must match [A-Za-z0-9_./-]{1,63}"));
  }
  bool value_ok = value.size() <= 255;
  for (char c : value) value_ok = value_ok && static_cast<unsigned char>(c) >= 0x20;
  if (!value_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label ", Quote(key), " value must be at most 255 characters without control characters"));
  }
  return absl::OkStatus();
}

absl::Status ValidateModelPattern(std::string_view pattern, std::string_view what) {
  if (pattern.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(what), " must not be empty"));
  }
  if (pattern.size() > kMaxPatternLength) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(what), " ", Quote(pattern), " is ",
                                                   pattern.size(), " characters; at most ",
                                                   kMaxPatternLength, " are allowed"));
  }
  for (char c : pattern) {
    if (IsPatternChar(c)) continue;
    if (c >= 'A' && c <= 'Z') {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(what), " ", Quote(pattern),
                       " has upper-case letters; model keys are lower-case, so write it in "
                       "lower case"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(what), " ", Quote(pattern),
        " may hold only a-z 0-9 _ . - : / and the wildcards * and ? (it matches model keys "
        "such as llama3:8b or registry.ollama.ai/library/llama3:8b)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateNumParallel(int num_parallel) {
  if (num_parallel < 0 || num_parallel > kMaxNodeParallel) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_parallel must be 0 (the default, 1) or a positive number up to ",
                     kMaxNodeParallel, ", got ", num_parallel));
  }
  return absl::OkStatus();
}

absl::Status ValidateQueuePolicy(const corral::v1::QueuePolicy& queue) {
  if (queue.max_length() < 0 || queue.max_length() > kMaxQueueLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("queue max_length must be between 0 (the default, ", kDefaultQueueLength,
                     ") and ", kMaxQueueLength, ", got ", queue.max_length()));
  }
  if (queue.max_wait_ms() < 0 || queue.max_wait_ms() > kMaxQueueWaitMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("queue max_wait_ms must be between 0 (the default, ", kDefaultQueueWaitMs,
                     ") and ", kMaxQueueWaitMs, " (one hour), got ", queue.max_wait_ms()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRoutingRules(
    const corral::v1::QueuePolicy& queue,
    const google::protobuf::RepeatedPtrField<corral::v1::PlacementRule>& placement,
    const google::protobuf::RepeatedPtrField<corral::v1::ModelAlias>& aliases,
    const google::protobuf::RepeatedPtrField<corral::v1::ModelMemoryRule>& model_memory) {
  if (absl::Status s = ValidateQueuePolicy(queue); !s.ok()) return s;
  if (absl::Status s = ValidatePlacement(placement); !s.ok()) return s;
  if (absl::Status s = ValidateAliases(aliases); !s.ok()) return s;
  return ValidateModelMemory(model_memory);
}

}  // namespace corral
