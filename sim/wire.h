// Small wire-level helpers for the simulated Ollama node: Go-style JSON text, Ollama's time
// formats, Go duration parsing (keep_alive), SHA-256, and watching a request's connection.
//
// Ollama is a Go program; clients see Go's encoding/json and time formatting. The simulator
// reproduces those details so that a proxy under test meets the same bytes it meets in production.
//
// Thread safety: the free functions are pure. A ConnectionWatch belongs to the request thread
// that created it.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace corral::sim {

// Insertion-ordered, so answers list their fields in the order Ollama writes them.
using Json = nlohmann::ordered_json;
using WallTime = std::chrono::system_clock::time_point;

// Serialises like Go's encoding/json: compact, with <, >, & and U+2028/U+2029 escaped as \uXXXX.
// Invalid UTF-8 is replaced rather than thrown on.
std::string GoJson(const Json& value);

// RFC 3339 in UTC with up to 9 fractional digits, trailing zeros trimmed ("...22.5Z"): the
// `created_at` of inference chunks.
std::string FormatUtc(int64_t unix_ns);
std::string FormatUtc(WallTime t);
// RFC 3339 in the node's "local" zone (fixed at -07:00) with nanoseconds trimmed: `modified_at`
// and `expires_at`. Takes seconds and nanoseconds apart so far-future times (keep_alive < 0 is
// about 292 years ahead) do not overflow.
std::string FormatLocal(int64_t unix_seconds, int nanos);
int64_t UnixNanos(WallTime t);

// keep_alive as Ollama reads it: a number of seconds, or a Go duration string ("5m", "1h30m",
// "300ms", "0"). Negative means forever. Returns the error text Ollama answers 400 with.
struct KeepAlive {
  bool forever = false;
  std::chrono::nanoseconds duration{0};
};
bool ParseKeepAlive(const Json& value, KeepAlive* out, std::string* error);
// Go's time.ParseDuration, with its error texts.
bool ParseGoDuration(std::string_view text, std::chrono::nanoseconds* out, std::string* error);

// Standard base64 with padding (a request body that is not UTF-8, OpenAI base64 embeddings).
std::string Base64(const std::string& bytes);

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// Field lookup with Go's decoding rule: exact key first, else a case-insensitive match.
const Json* FindField(const Json& object, std::string_view key);
// First non-empty string of the given keys ("model", then "name"), "" when none.
std::string FirstNonEmptyString(const Json& object, std::initializer_list<std::string_view> keys);

// Parses a request body the way Ollama does: empty → "missing request body"; otherwise a JSON
// object or a Go-like syntax error text. Returns nullopt and sets `error` on failure.
std::optional<Json> ParseRequestBody(const std::string& body, std::string* error);

// The accepted socket behind an httplib request. httplib 0.11.4 does not expose it, so it is
// found by matching both ends' addresses among the process's sockets (common/client_socket.h);
// the worker thread holds the connection open while the handler runs, so the match cannot go
// stale.
class ConnectionWatch {
 public:
  explicit ConnectionWatch(const httplib::Request& req);
  // True once the client closed or reset the connection (a FIN is visible without reading).
  bool ClientGone();
  // The socket, or -1 when it could not be found.
  int Fd();

 private:
  std::string remote_addr_;
  int remote_port_;
  std::string local_addr_;
  int local_port_;
  int fd_ = -2;  // -2: not looked up yet
};

}  // namespace corral::sim
