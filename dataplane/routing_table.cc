#include "dataplane/routing_table.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/model_name.h"
#include "common/node_name.h"
#include "common/node_url.h"
#include "common/placement_rules.h"

namespace corral::dataplane {
namespace {

using corral::v1::Node;
using corral::v1::Snapshot;

constexpr int kMaxAttemptsLimit = 10;

// Lower case only: the front door compares the presented token's hash byte for byte, as the
// registry stores it; an upper-case hash would be applied and then match no token.
bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!hex) return false;
  }
  return true;
}

// A name that failed validation may be anything: quote it escaped and short so the message
// stays one readable line.
std::string QuoteUntrusted(absl::string_view text) {
  constexpr size_t kShown = 80;
  std::string shown = absl::CEscape(text.substr(0, kShown));
  return absl::StrCat("\"", shown, text.size() > kShown ? "...\"" : "\"");
}

absl::Status Invalid(absl::string_view where, absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(where, field, ": ", problem));
}

template <typename Int>
absl::Status CheckNonNegative(absl::string_view where, absl::string_view field, Int value) {
  if (value >= 0) return absl::OkStatus();
  return Invalid(where, field, absl::StrCat("must not be negative, got ", value));
}

// NaN and infinities are as meaningless as negatives for a budget or a latency.
absl::Status CheckNonNegativeFinite(absl::string_view where, absl::string_view field,
                                    double value) {
  if (std::isfinite(value) && value >= 0) return absl::OkStatus();
  return Invalid(where, field, absl::StrCat("must be a finite number >= 0, got ", value));
}

absl::Status ValidateNode(const Node& node) {
  const std::string where = absl::StrCat("node \"", node.name(), "\": ");
  if (auto url = ParseNodeUrl(node.url()); !url.ok()) {
    return Invalid(where, "url", url.status().message());
  }
  if (node.admin_state() == corral::v1::ADMIN_STATE_UNSPECIFIED ||
      !corral::v1::AdminState_IsValid(node.admin_state())) {
    return Invalid(where, "admin_state",
                   absl::StrCat("must be ENABLED, DRAINING or DISABLED, got ",
                                static_cast<int>(node.admin_state())));
  }
  if (!corral::v1::Health_IsValid(node.health())) {
    return Invalid(where, "health",
                   absl::StrCat("unknown value ", static_cast<int>(node.health())));
  }
  if (auto s = CheckNonNegative(where, "priority", node.priority()); !s.ok()) return s;
  if (auto s = CheckNonNegative(where, "weight", node.weight()); !s.ok()) return s;
  if (auto s = CheckNonNegative(where, "max_parallel", node.max_parallel()); !s.ok()) return s;
  if (auto s = ValidateNumParallel(node.num_parallel()); !s.ok()) {
    return Invalid(where, "num_parallel", s.message());
  }
  if (auto s = CheckNonNegativeFinite(where, "max_memory_gb", node.max_memory_gb()); !s.ok()) {
    return s;
  }
  return CheckNonNegativeFinite(where, "latency_ms", node.latency_ms());
}

absl::Status ValidatePolicies(const Snapshot& snapshot) {
  if (!corral::v1::Strategy_IsValid(snapshot.strategy())) {
    return Invalid("", "strategy",
                   absl::StrCat("unknown value ", static_cast<int>(snapshot.strategy())));
  }
  const auto& retry = snapshot.retry();
  if (retry.max_attempts() < 0 || retry.max_attempts() > kMaxAttemptsLimit) {
    return Invalid(
        "", "retry.max_attempts",
        absl::StrCat("must be between 0 and ", kMaxAttemptsLimit, ", got ", retry.max_attempts()));
  }
  const std::pair<absl::string_view, int64_t> limits[] = {
      {"retry.eject_after_failures", retry.eject_after_failures()},
      {"retry.eject_base_ms", retry.eject_base_ms()},
      {"retry.eject_max_ms", retry.eject_max_ms()},
      {"timeouts.connect_ms", snapshot.timeouts().connect_ms()},
      {"timeouts.first_byte_ms", snapshot.timeouts().first_byte_ms()},
      {"timeouts.idle_ms", snapshot.timeouts().idle_ms()},
  };
  for (const auto& [field, value] : limits) {
    if (auto s = CheckNonNegative("", field, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateTokens(const Snapshot& snapshot) {
  for (int i = 0; i < snapshot.tokens_size(); ++i) {
    const auto& token = snapshot.tokens(i);
    if (!IsSha256Hex(token.sha256_hex())) {
      return Invalid(absl::StrCat("tokens[", i, "] ", QuoteUntrusted(token.name()), ": "),
                     "sha256_hex",
                     absl::StrCat("must be 64 lower-case hex digits (a SHA-256), got ",
                                  token.sha256_hex().size(), " characters"));
    }
  }
  return absl::OkStatus();
}

EffectivePolicy ResolvePolicy(const Snapshot& snapshot) {
  EffectivePolicy policy;  // the member initialisers are the documented defaults
  if (snapshot.strategy() != corral::v1::STRATEGY_UNSPECIFIED)
    policy.strategy = snapshot.strategy();
  const auto& retry = snapshot.retry();
  if (retry.max_attempts() > 0) policy.max_attempts = retry.max_attempts();
  if (retry.eject_after_failures() > 0) policy.eject_after_failures = retry.eject_after_failures();
  if (retry.eject_base_ms() > 0) policy.eject_base_ms = retry.eject_base_ms();
  if (retry.eject_max_ms() > 0) policy.eject_max_ms = retry.eject_max_ms();
  const auto& timeouts = snapshot.timeouts();
  if (timeouts.connect_ms() > 0) policy.connect_ms = timeouts.connect_ms();
  if (timeouts.first_byte_ms() > 0) policy.first_byte_ms = timeouts.first_byte_ms();
  if (timeouts.idle_ms() > 0) policy.idle_ms = timeouts.idle_ms();
  const auto& queue = snapshot.queue();
  policy.queue_enabled = !queue.disabled();
  policy.queue_max_length = queue.max_length() > 0 ? queue.max_length() : kDefaultQueueLength;
  policy.queue_max_wait_ms = queue.max_wait_ms() > 0 ? queue.max_wait_ms() : kDefaultQueueWaitMs;
  return policy;
}

bool IsRoutable(const Node& node) {
  return node.admin_state() == corral::v1::ADMIN_STATE_ENABLED &&
         node.health() != corral::v1::HEALTH_UNHEALTHY;
}

}  // namespace

absl::Status ValidateSnapshot(const Snapshot& snapshot) {
  std::unordered_map<std::string_view, int> first_use;  // name -> index in nodes
  for (int i = 0; i < snapshot.nodes_size(); ++i) {
    const Node& node = snapshot.nodes(i);
    const std::string where = absl::StrCat("nodes[", i, "]: ");
    if (!IsValidNodeName(node.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "name ", QuoteUntrusted(node.name()),
                       " must be 1 to 64 characters of A-Z a-z 0-9 _ . -"));
    }
    if (auto [it, inserted] = first_use.emplace(node.name(), i); !inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "name \"", node.name(), "\" is already used by nodes[", it->second, "]"));
    }
    if (auto s = ValidateNode(node); !s.ok()) return s;
  }
  if (auto s = ValidatePolicies(snapshot); !s.ok()) return s;
  if (auto s = ValidateRoutingRules(snapshot.queue(), snapshot.placement(), snapshot.aliases(),
                                    snapshot.model_memory());
      !s.ok()) {
    return s;
  }
  return ValidateTokens(snapshot);
}

absl::StatusOr<std::shared_ptr<const RoutingTable>> RoutingTable::Build(Snapshot snapshot) {
  if (auto s = ValidateSnapshot(snapshot); !s.ok()) return s;

  // make_shared cannot reach the private constructor.
  std::shared_ptr<RoutingTable> table(new RoutingTable());
  table->snapshot_ = std::move(snapshot);
  table->policy_ = ResolvePolicy(table->snapshot_);
  table->nodes_.reserve(table->snapshot_.nodes_size());

  std::unordered_map<std::string, ModelSizes> sizes;  // canonical key -> what nodes report
  for (const Node& node : table->snapshot_.nodes()) {
    NodeEntry entry;
    entry.proto = &node;
    entry.name = node.name();
    auto url = ParseNodeUrl(node.url());  // cannot fail: validated above
    entry.host = url->host;
    entry.port = url->port;
    entry.endpoint = NodeEndpoint(entry.host, entry.port);
    entry.authority = entry.host.find(':') != std::string::npos
                          ? "[" + entry.host + "]:" + std::to_string(entry.port)
                          : entry.endpoint;
    entry.routable = IsRoutable(node);
    // A name the node reports that Ollama itself would reject cannot be asked for either.
    for (const auto& model : node.models()) {
      if (auto key = CanonicalModelKey(model.name())) {
        int64_t& disk = sizes[*key].disk;
        disk = std::max(disk, model.size());
        entry.model_keys.insert(*std::move(key));
      }
    }
    for (const auto& loaded : node.loaded_models()) {
      if (auto key = CanonicalModelKey(loaded.name())) {
        int64_t& vram = sizes[*key].vram;
        vram = std::max(vram, loaded.size_vram());
        // A resident model is servable even when the tag list was read before it finished
        // pulling: the prober reads /api/tags and /api/ps at different instants.
        entry.model_keys.insert(*key);
        entry.loaded_keys.insert(*std::move(key));
      }
    }
    const size_t index = table->nodes_.size();
    table->by_name_.emplace(entry.name, index);
    for (const auto& key : entry.model_keys) table->by_model_[key].listed.push_back(index);
    table->nodes_.push_back(std::move(entry));
  }
  for (auto& [key, model] : table->by_model_) {
    // Build pushed indexes node by node, so each list is in snapshot order.
    std::vector<bool> loaded;
    loaded.reserve(model.listed.size());
    for (size_t i : model.listed) loaded.push_back(table->nodes_[i].loaded_keys.contains(key));
    model.placement = PlaceModel(table->snapshot_, key, model.listed, loaded, sizes[key]);
  }
  for (const auto& alias : table->snapshot_.aliases()) {
    // Validated above: both names parse.
    auto alias_key = CanonicalModelKey(alias.alias());
    auto target_key = CanonicalModelKey(alias.target());
    if (!alias_key || !target_key) continue;
    table->aliases_.try_emplace(*alias_key, AliasEntry{alias.target(), *target_key});
  }
  return std::shared_ptr<const RoutingTable>(std::move(table));
}

const NodeEntry* RoutingTable::FindNode(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &nodes_[it->second];
}

const std::vector<size_t>& RoutingTable::NodesWithModel(const std::string& canonical_key) const {
  static const std::vector<size_t> kNone;
  auto it = by_model_.find(canonical_key);
  return it == by_model_.end() ? kNone : it->second.listed;
}

const ModelPlacement* RoutingTable::Placement(const std::string& canonical_key) const {
  auto it = by_model_.find(canonical_key);
  return it == by_model_.end() ? nullptr : &it->second.placement;
}

const AliasEntry* RoutingTable::Alias(const std::string& canonical_key) const {
  auto it = aliases_.find(canonical_key);
  return it == aliases_.end() ? nullptr : &it->second;
}

}  // namespace corral::dataplane
