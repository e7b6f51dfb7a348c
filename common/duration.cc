#include "common/duration.h"

namespace corral {

std::optional<int64_t> ParseDurationSeconds(std::string_view text) {
  int64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'd':
        unit = 24 * 3600;
        break;
      case 'w':
        unit = 7 * 24 * 3600;
        break;
      default:
        unit = 0;  // no unit: seconds
    }
    if (unit != 0) {
      text.remove_suffix(1);
    } else {
      unit = 1;
    }
  }
  if (text.empty() || text.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n <= 0) return std::nullopt;
  return n * unit;
}

}  // namespace corral
