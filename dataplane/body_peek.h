// Reads the few fields routing needs from a JSON request body without building a document.
//
// The body is forwarded untouched; this only peeks. Key matching follows Go's encoding/json as
// Ollama's server does: top-level keys only, case-insensitive, the last duplicate wins, unknown
// keys ignored (including Go's folding of U+212A to 'k' and U+017F to 's'), null leaves a
// string as it was and resets stream / keep_alive / messages, a value of the wrong type makes the
// field unusable (the node will answer 400), and only the first JSON value is read (bytes after
// it are ignored, as Go's json.Decoder does). Nested keys ("model" inside messages, options or a
// format schema) are never read. One difference from Go: strings must be valid UTF-8 (the parser
// rejects ill-formed bytes with 400 where Go would substitute U+FFFD).
// Pure, safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral::dataplane {

struct BodyFields {
  std::optional<std::string> model;  // "model" when a string
  // The JSON type of the first "model" that was not a string or null, in Go's words ("number",
  // "array", "object", "bool"): Ollama's decoder fails on it with 400 whatever follows.
  std::optional<std::string> model_type_error;
  std::optional<std::string> name;         // "name" when a string (pull/push/delete/show)
  std::optional<std::string> source;       // "source" (copy)
  std::optional<std::string> destination;  // "destination" (copy)
  std::optional<bool> stream;              // "stream" when a boolean
  // "keep_alive" is 0 (number 0, or the string "0" / "0s" / any zero duration).
  bool keep_alive_zero = false;
  // generate without "prompt" or with "" / chat without "messages" or with []: Ollama's
  // load/unload shortcuts (ollama-api.md §3.4).
  bool prompt_empty = true;
  bool messages_empty = true;

  // First non-empty of model, name: Go's cmp.Or, what every endpoint routes by.
  std::string ModelOrName() const;
};

// InvalidArgument with Ollama's wording for a body that is empty or only whitespace
// ("missing request body"); "invalid JSON: <parser message>" (one printable line, at most ~200
// characters) for a body that is not JSON; "invalid request body: expected a JSON object, got
// an array" (a string, a number, ...) for JSON that is not an object. All are 400s.
absl::StatusOr<BodyFields> PeekBody(std::string_view body);

}  // namespace corral::dataplane
