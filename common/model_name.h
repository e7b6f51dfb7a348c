// Ollama model references: parsing, the canonical key and the display form.
//
// Mirrors Ollama's own rules (shared/ollama-api.md §8): `[host/][namespace/]model[:tag]`,
// defaults registry.ollama.ai / library / latest, case-insensitive equality. The proxy routes by
// CanonicalKey; aggregated lists show DisplayName. Pure functions, safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace corral {

struct ModelRef {
  std::string host;        // "registry.ollama.ai" when absent
  std::string namespace_;  // "library" when absent
  std::string model;
  std::string tag;  // "latest" when absent
};

// Parses a reference. Returns nullopt when Ollama would answer 400 "invalid model name"
// (empty part, bad character, part too long) or when both source markers are present
// ("m:local:cloud": "use either :local or :cloud, not both"). A trailing ":local" source marker
// is dropped; a cloud reference keeps its marker in the tag, in the form Ollama's nodes list
// cloud models: "gpt-oss:20b:cloud" -> tag "20b-cloud", "glm-4.6:cloud" -> tag "cloud".
// A "scheme://" before the host is accepted and not kept (it never changes the model).
std::optional<ModelRef> ParseModelName(std::string_view name);

// Lower-case "host/namespace/model:tag": two names denote the same model iff keys are equal.
std::string CanonicalKey(const ModelRef& ref);

// Ollama's shortest display form: "model:tag", "namespace/model:tag" or the full form when the
// host is not the default. Keeps the original spelling's case.
std::string DisplayName(const ModelRef& ref);

// CanonicalKey of a name, or nullopt when the name is invalid.
std::optional<std::string> CanonicalModelKey(std::string_view name);

}  // namespace corral
