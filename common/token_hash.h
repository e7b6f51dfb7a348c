// The one form of an inference token's hash: lower-case hex SHA-256 of the token's text. The
// control plane stores and ships it in snapshots (never the text), and the proxy's front door
// hashes a presented token the same way before comparing it in constant time.
//
// Thread safety: a pure function, safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace corral {

// 64 lower-case hex digits.
std::string TokenSha256Hex(std::string_view token);

}  // namespace corral
