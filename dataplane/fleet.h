// Fleet-wide answers: what one Ollama node would say about itself, said about the whole fleet,
// built from the routing snapshot (the control plane's prober keeps models, loaded models and
// versions fresh in it), so these requests never fan out to nodes.
//
//   /api/tags   union over routable nodes, one entry per model (canonical key), display form in
//               both `name` and `model`, the node's own entry otherwise preserved field for
//               field, newest `modified_at` wins when nodes disagree, plus `nodes`: where it is;
//               newest first.
//   /api/ps     every routable node's loaded models with a `node` field, latest `expires_at` first.
//   /v1/models  the same union as an OpenAI list (`owned_by` = namespace).
//   /api/version the lowest version any routable node reports.
//
// Pure functions of an immutable table, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/routing_table.h"

namespace corral::dataplane {

// Reported when no routable node says which version it runs.
inline constexpr const char* kFallbackOllamaVersion = "0.12.3";

std::string FleetTagsBody(const RoutingTable& table);
std::string FleetPsBody(const RoutingTable& table);
std::string FleetOpenAIModelsBody(const RoutingTable& table);
std::string FleetVersionBody(const RoutingTable& table);

// RFC 3339 ("2025-05-04T17:37:44.706015396-07:00", "...Z") to nanoseconds since the epoch.
std::optional<int64_t> ParseRfc3339Nanos(std::string_view text);

// Orders dotted numeric versions ("0.12.3" < "0.13.0"; a leading "v" and any "-suffix" are
// ignored; missing parts count as 0). Returns <0, 0, >0.
int CompareVersions(std::string_view a, std::string_view b);

}  // namespace corral::dataplane
