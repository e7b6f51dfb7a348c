// Request ids: the X-Request-Id a request is known by in the proxy's record, at its node and in
// its answer. A client's own id is kept when it is usable (printable ASCII, at most
// kMaxRequestIdBytes); otherwise the proxy makes one: 128 random bits in hex.
//
// Making an id costs no system call: each thread seeds its own generator from getrandom once,
// then draws from it (xoshiro256**). Ids are unique, not secret.
//
// Thread safety: every function is safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace corral::dataplane {

inline constexpr const char* kRequestIdHeader = "X-Request-Id";
inline constexpr size_t kMaxRequestIdBytes = 128;

// True for an id the proxy passes on as the client sent it: 1 to kMaxRequestIdBytes bytes of
// visible ASCII (0x21-0x7e), so it is one token in a header, a log line and a label.
bool IsUsableRequestId(std::string_view id);

// A new id: 32 lower-case hex digits.
std::string NewRequestId();

// The client's id when usable, else a new one.
std::string RequestIdFor(const std::string* from_client);

}  // namespace corral::dataplane
