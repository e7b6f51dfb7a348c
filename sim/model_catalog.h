// The models a simulated Ollama node holds, and the "registry" it can pull from.
//
// A model is described the way Ollama's /api/tags and /api/show describe it: display name,
// size, manifest digest, details, capabilities. Names that Ollama users know (llama3.2, qwen3,
// all-minilm, ...) get realistic sizes and capabilities; other names get a deterministic profile
// guessed from the name. Every value is a pure function of the name (and optional size), so two
// simulated nodes that hold the same model report the same digest, as real nodes do.
//
// Thread safety: pure functions; SimModel is a plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_name.h"
#include "sim/wire.h"

namespace corral::sim {

struct SimModel {
  std::string name;  // display form, e.g. "llama3.2:latest"
  std::string key;   // CanonicalKey, e.g. "registry.ollama.ai/library/llama3.2:latest"
  ModelRef ref;
  int64_t size = 0;    // bytes on disk
  std::string digest;  // 64 hex, no "sha256:" prefix
  int64_t modified_unix_seconds = 0;
  int modified_nanos = 0;
  std::string family;
  std::optional<std::vector<std::string>> families;  // nullopt is sent as "families": null
  std::string parameter_size;
  std::string quantization_level;
  int context_length = 0;
  int embedding_length = 0;
  std::vector<std::string> capabilities;

  bool Has(std::string_view capability) const;
  // The fully qualified spelling Ollama uses in capability errors:
  // "registry.ollama.ai/library/llama3.2:latest".
  std::string QualifiedName() const;
};

// The model a node would hold under `name` (any spelling Ollama accepts). `size` overrides the
// profile's size. Fails for an invalid name.
absl::StatusOr<SimModel> MakeModel(std::string_view name, std::optional<int64_t> size = {});

// Parses "name[=size_bytes],name..." (spaces allowed around items). An empty list is allowed.
absl::StatusOr<std::vector<SimModel>> ParseModelList(std::string_view list);

// The list used when --models is not given: a chat model, a thinking model, an embedding model.
inline constexpr std::string_view kDefaultModels = "llama3.2:latest,qwen3:8b,all-minilm:latest";

// Whether the built-in registry knows this model (pull succeeds): the well-known library models,
// any tag.
bool InBuiltInRegistry(const ModelRef& ref);

// The `details` object of /api/tags and /api/show. `with_lengths` adds context_length and
// embedding_length (tags and show have them; ps does not).
Json DetailsJson(const SimModel& model, bool with_lengths);
// One /api/tags entry.
Json TagsEntry(const SimModel& model);
// The layers a pull or push reports for this model: {digest (sha256:...), size}.
struct Layer {
  std::string digest;
  int64_t size;
};
std::vector<Layer> LayersOf(const SimModel& model);

}  // namespace corral::sim
