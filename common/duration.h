// The one reading of a "since"-style duration that operators type: `corralctl usage --since` and
// the HTTP API's `GET /v1/usage?since=` both take it.
//
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace corral {

// Whole seconds in `text`: a positive count of seconds ("3600"), or of one unit `s`, `m`, `h`, `d`
// or `w` ("90s", "30m", "24h", "7d", "2w"). No sign, fraction, space or second unit; at most nine
// digits. nullopt for anything else, zero included.
std::optional<int64_t> ParseDurationSeconds(std::string_view text);

}  // namespace corral
