// The rule for node names, which the control plane enforces when a node is added or renamed and
// the proxy enforces again on every snapshot it loads: 1 to 64 characters of A-Z a-z 0-9 _ . -.
// Both must agree, or the proxy would refuse snapshots the control plane publishes.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <string_view>

namespace corral {

inline constexpr size_t kMaxNodeNameLength = 64;

inline bool IsNodeNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

inline bool IsValidNodeName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNodeNameLength) return false;
  for (char c : name) {
    if (!IsNodeNameChar(c)) return false;
  }
  return true;
}

}  // namespace corral
