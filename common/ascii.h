// Case-insensitive comparison and lower-casing of ASCII text: HTTP header names, JSON keys
// matched the way Go's decoder does, and model-name parts.
//
// These are byte-wise and leave non-ASCII bytes as they are, which is what those protocols ask
// for; they are header-only because they are small enough to inline at every use.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace corral {

// Plain arithmetic rather than std::tolower: no call into the C library and no locale lookup
// per byte, which matters on the proxy's request path (every header name is compared).
inline char AsciiToLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline std::string AsciiToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiToLower(c);
  return out;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiToLower(a[i]) != AsciiToLower(b[i])) return false;
  }
  return true;
}

inline bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace corral
