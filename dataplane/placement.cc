#include "dataplane/placement.h"

#include <algorithm>
#include <cstdio>

#include "common/placement_rules.h"

namespace corral::dataplane {
namespace {

using corral::v1::Node;
using corral::v1::PlacementRule;

constexpr double kBytesPerGb = 1024.0 * 1024.0 * 1024.0;

// A rule takes a node it names, or one carrying every label it lists.
bool RuleTakes(const PlacementRule& rule, const Node& node) {
  if (std::find(rule.nodes().begin(), rule.nodes().end(), node.name()) != rule.nodes().end()) {
    return true;
  }
  if (rule.labels().empty()) return false;
  for (const auto& [key, value] : rule.labels()) {
    auto it = node.labels().find(key);
    if (it == node.labels().end() || it->second != value) return false;
  }
  return true;
}

std::string Gb(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GB", bytes / kBytesPerGb);
  return text;
}

}  // namespace

int64_t ModelMemoryBytes(const corral::v1::Snapshot& snapshot, std::string_view key,
                         const ModelSizes& sizes) {
  if (sizes.vram > 0) return sizes.vram;
  for (const auto& rule : snapshot.model_memory()) {
    if (ModelPatternMatches(rule.pattern(), key)) {
      return static_cast<int64_t>(rule.memory_gb() * kBytesPerGb);
    }
  }
  return std::max<int64_t>(0, sizes.disk);
}

ModelPlacement PlaceModel(const corral::v1::Snapshot& snapshot, std::string_view key,
                          const std::vector<size_t>& listed, const std::vector<bool>& loaded,
                          const ModelSizes& sizes) {
  ModelPlacement out;
  out.memory_bytes = ModelMemoryBytes(snapshot, key, sizes);

  const PlacementRule* hard = nullptr;
  std::vector<const PlacementRule*> soft;
  for (const PlacementRule& rule : snapshot.placement()) {
    if (!ModelPatternMatches(rule.pattern(), key)) continue;
    if (rule.hard()) {
      if (hard == nullptr) hard = &rule;
    } else {
      soft.push_back(&rule);
    }
  }

  std::vector<size_t> others;
  bool any_fits = false;
  for (size_t i = 0; i < listed.size(); ++i) {
    const Node& node = snapshot.nodes(static_cast<int>(listed[i]));
    const double budget = node.max_memory_gb();
    const bool fits = loaded[i] || budget <= 0 || out.memory_bytes <= 0 ||
                      static_cast<double>(out.memory_bytes) <= budget * kBytesPerGb;
    if (!fits) continue;
    any_fits = true;
    if (hard != nullptr && !RuleTakes(*hard, node)) continue;
    const bool preferred = std::any_of(soft.begin(), soft.end(),
                                       [&](const PlacementRule* r) { return RuleTakes(*r, node); });
    (preferred ? out.nodes : others).push_back(listed[i]);
  }
  out.preferred = out.nodes.size();
  out.nodes.insert(out.nodes.end(), others.begin(), others.end());
  if (out.nodes.empty() && !listed.empty()) {
    if (!any_fits) {
      out.refusal = "it needs " + Gb(static_cast<double>(out.memory_bytes)) +
                    ", more than the max_memory_gb of every node that has it";
    } else {
      out.refusal = "placement rule '" + hard->pattern() +
                    "' allows it only on nodes that do not have it (or lack the memory)";
    }
  }
  return out;
}

}  // namespace corral::dataplane
