#include "sim/model_catalog.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace corral::sim {
namespace {

struct Profile {
  std::string_view base;  // model part, lower case
  int64_t size;
  std::string_view family;
  bool families_null;
  std::string_view parameter_size;
  std::string_view quantization;
  int context_length;
  int embedding_length;
  std::vector<std::string> capabilities;
};

const std::vector<Profile>& KnownProfiles() {
  static const std::vector<Profile> profiles = {
      {"llama3.2",
       2019393189,
       "llama",
       false,
       "3.2B",
       "Q4_K_M",
       131072,
       3072,
       {"completion", "tools"}},
      {"llama3.1",
       4920753328,
       "llama",
       false,
       "8.0B",
       "Q4_K_M",
       131072,
       4096,
       {"completion", "tools"}},
      {"llama3", 4661224676, "llama", false, "8.0B", "Q4_0", 8192, 4096, {"completion"}},
      {"mistral",
       4113301824,
       "llama",
       false,
       "7.2B",
       "Q4_K_M",
       32768,
       4096,
       {"completion", "tools"}},
      {"qwen3",
       5225388164,
       "qwen3",
       false,
       "8.2B",
       "Q4_K_M",
       40960,
       4096,
       {"completion", "tools", "thinking"}},
      {"deepseek-r1",
       5225376047,
       "qwen3",
       false,
       "8.2B",
       "Q4_K_M",
       131072,
       4096,
       {"completion", "thinking"}},
      {"gemma3",
       3338801804,
       "gemma3",
       false,
       "4.3B",
       "Q4_K_M",
       131072,
       2560,
       {"completion", "vision"}},
      {"phi4", 9053116391, "phi3", false, "14.7B", "Q4_K_M", 16384, 5120, {"completion"}},
      {"all-minilm", 45960996, "bert", true, "23M", "F16", 512, 384, {"embedding"}},
      {"nomic-embed-text", 274302450, "nomic-bert", false, "137M", "F16", 2048, 768, {"embedding"}},
  };
  return profiles;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// A profile for a name the table does not know, guessed from words in the name.
Profile GuessProfile(const std::string& base, uint64_t hash) {
  Profile p{"", 0, "", false, "", "Q4_K_M", 8192, 4096, {}};
  if (Contains(base, "embed") || Contains(base, "minilm") || Contains(base, "bge")) {
    p.size = 50000000 + static_cast<int64_t>(hash % 600000000);
    p.family = "bert";
    p.quantization = "F16";
    p.context_length = 2048;
    p.embedding_length = 768;
    p.capabilities = {"embedding"};
  } else {
    p.size = 1000000000 + static_cast<int64_t>(hash % 7000000000ull);
    p.family = "llama";
    p.capabilities = {"completion", "tools"};
    if (Contains(base, "r1") || Contains(base, "think") || Contains(base, "qwq") ||
        Contains(base, "gpt-oss")) {
      p.capabilities.push_back("thinking");
    }
  }
  return p;
}

std::string ParameterSizeFor(int64_t size, bool f16) {
  // Q4_K_M stores about 4.85 bits per weight, F16 16.
  const double params = static_cast<double>(size) * 8.0 / (f16 ? 16.0 : 4.85);
  char buf[32];
  if (params >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.1fB", params / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.0fM", params / 1e6);
  }
  return buf;
}

}  // namespace

bool SimModel::Has(std::string_view capability) const {
  return std::find(capabilities.begin(), capabilities.end(), capability) != capabilities.end();
}

std::string SimModel::QualifiedName() const {
  return ref.host + "/" + ref.namespace_ + "/" + ref.model + ":" + ref.tag;
}

absl::StatusOr<SimModel> MakeModel(std::string_view name, std::optional<int64_t> size) {
  std::optional<ModelRef> ref = ParseModelName(name);
  if (!ref) return absl::InvalidArgumentError("invalid model name \"" + std::string(name) + "\"");
  SimModel m;
  m.ref = *ref;
  m.name = DisplayName(*ref);
  m.key = CanonicalKey(*ref);
  const std::string base = absl::AsciiStrToLower(std::string(ref->model));
  const uint64_t hash = Fnv1a(m.key);

  Profile profile;
  bool known = false;
  for (const Profile& p : KnownProfiles()) {
    if (p.base == base) {
      profile = p;
      known = true;
      break;
    }
  }
  if (!known) profile = GuessProfile(base, hash);

  m.size = size.value_or(profile.size);
  m.digest = Sha256Hex("corral-sim manifest " + m.key);
  m.family = profile.family;
  if (!profile.families_null) m.families = std::vector<std::string>{std::string(profile.family)};
  m.quantization_level = profile.quantization;
  m.parameter_size = (known && !size) ? std::string(profile.parameter_size)
                                      : ParameterSizeFor(m.size, profile.quantization == "F16");
  m.context_length = profile.context_length;
  m.embedding_length = profile.embedding_length;
  m.capabilities = profile.capabilities;
  // A fixed day in the past, minus up to 90 days: deterministic and distinct per model.
  m.modified_unix_seconds = 1746405464 - static_cast<int64_t>(hash % (90 * 86400));
  m.modified_nanos = static_cast<int>((hash >> 20) % 1000000000);
  return m;
}

absl::StatusOr<std::vector<SimModel>> ParseModelList(std::string_view list) {
  std::vector<SimModel> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string item(
        absl::StripAsciiWhitespace(std::string(list.substr(start, comma - start))));
    start = comma + 1;
    if (item.empty()) continue;
    std::optional<int64_t> size;
    const size_t eq = item.find('=');
    const std::string name(absl::StripAsciiWhitespace(item.substr(0, eq)));
    if (eq != std::string::npos) {
      int64_t bytes = 0;
      if (!absl::SimpleAtoi(std::string(absl::StripAsciiWhitespace(item.substr(eq + 1))), &bytes) ||
          bytes <= 0) {
        return absl::InvalidArgumentError("model \"" + item +
                                          "\": size must be a positive number of bytes");
      }
      size = bytes;
    }
    absl::StatusOr<SimModel> model = MakeModel(name, size);
    if (!model.ok()) return model.status();
    auto dup = std::find_if(out.begin(), out.end(),
                            [&](const SimModel& m) { return m.key == model->key; });
    if (dup != out.end()) {
      *dup = *model;
    } else {
      out.push_back(*model);
    }
  }
  return out;
}

bool InBuiltInRegistry(const ModelRef& ref) {
  if (absl::AsciiStrToLower(ref.host) != "registry.ollama.ai" ||
      absl::AsciiStrToLower(ref.namespace_) != "library") {
    return false;
  }
  const std::string base = absl::AsciiStrToLower(ref.model);
  for (const Profile& p : KnownProfiles()) {
    if (p.base == base) return true;
  }
  return false;
}

Json DetailsJson(const SimModel& model, bool with_lengths) {
  Json d = {{"parent_model", ""},
            {"format", "gguf"},
            {"family", model.family},
            {"families", model.families ? Json(*model.families) : Json(nullptr)},
            {"parameter_size", model.parameter_size},
            {"quantization_level", model.quantization_level}};
  if (with_lengths) {
    d["context_length"] = model.context_length;
    d["embedding_length"] = model.embedding_length;
  }
  return d;
}

Json TagsEntry(const SimModel& model) {
  return {{"name", model.name},
          {"model", model.name},
          {"modified_at", FormatLocal(model.modified_unix_seconds, model.modified_nanos)},
          {"size", model.size},
          {"digest", model.digest},
          {"details", DetailsJson(model, true)},
          {"capabilities", model.capabilities}};
}

std::vector<Layer> LayersOf(const SimModel& model) {
  std::vector<Layer> layers;
  const int64_t small = 7000;  // template, license, params
  layers.push_back({"sha256:" + Sha256Hex("weights " + model.digest),
                    std::max<int64_t>(model.size - 3 * small, 1)});
  layers.push_back({"sha256:" + Sha256Hex("template " + model.digest), small + 1234});
  layers.push_back({"sha256:" + Sha256Hex("license " + model.digest), small - 1234});
  layers.push_back({"sha256:" + Sha256Hex("params " + model.digest), small});
  return layers;
}

}  // namespace corral::sim
