#include "common/model_name.h"

#include <array>

#include "common/ascii.h"

namespace corral {
namespace {

constexpr std::string_view kDefaultHost = "registry.ollama.ai";
constexpr std::string_view kDefaultNamespace = "library";
constexpr std::string_view kDefaultTag = "latest";

constexpr size_t kMaxHostLen = 350;
constexpr size_t kMaxPartLen = 80;

enum class Part { kHost, kNamespace, kModel, kTag };

std::string_view TrimSpace(std::string_view s) {
  // Go's strings.TrimSpace also trims Unicode spaces; names are ASCII, so ASCII whitespace is
  // what matters in practice.
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool IsAlnumOrUnderscore(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// Ollama's isValidPart: non-empty, bounded, first byte alphanumeric or '_', then '-', '_' and
// alphanumerics everywhere, '.' everywhere but the namespace, ':' only in the host.
bool IsValidPart(Part kind, std::string_view s) {
  const size_t max_len = kind == Part::kHost ? kMaxHostLen : kMaxPartLen;
  if (s.empty() || s.size() > max_len) return false;
  if (!IsAlnumOrUnderscore(s[0])) return false;
  for (size_t i = 1; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '-' || IsAlnumOrUnderscore(c)) continue;
    if (c == '.' && kind != Part::kNamespace) continue;
    if (c == ':' && kind == Part::kHost) continue;
    return false;
  }
  return true;
}

// Cuts at the last `sep`. A separator with nothing on one side leaves that side empty, which
// validation then rejects ("a/" and ":x" are invalid, as in Ollama).
bool CutLast(std::string_view s, char sep, std::string_view* before, std::string_view* after) {
  const size_t i = s.rfind(sep);
  if (i == std::string_view::npos) return false;
  *before = s.substr(0, i);
  *after = s.substr(i + 1);
  return true;
}

enum class Source { kUnspecified, kLocal, kCloud };

// Ollama's explicit source suffix: a last ':'-piece of "local" or "cloud" (any case), or a
// last piece ending in "-cloud". Returns the name without the marker.
bool ParseSourceSuffix(std::string_view raw, std::string* base, Source* source) {
  const size_t idx = raw.rfind(':');
  if (idx == std::string_view::npos) return false;
  const std::string_view suffix_raw = TrimSpace(raw.substr(idx + 1));
  const std::string suffix = AsciiToLower(suffix_raw);
  if (suffix == "cloud" || suffix == "local") {
    *base = std::string(raw.substr(0, idx));
    *source = suffix == "cloud" ? Source::kCloud : Source::kLocal;
    return true;
  }
  constexpr std::string_view kCloudSuffix = "-cloud";
  if (suffix_raw.find('/') == std::string_view::npos && suffix.size() >= kCloudSuffix.size() &&
      suffix.compare(suffix.size() - kCloudSuffix.size(), kCloudSuffix.size(), kCloudSuffix) == 0) {
    *base = std::string(raw.substr(0, idx + 1)) +
            std::string(suffix_raw.substr(0, suffix_raw.size() - kCloudSuffix.size()));
    *source = Source::kCloud;
    return true;
  }
  return false;
}

// Resolves source markers to the name a node lists: ":local" disappears, a cloud reference
// becomes the legacy listing form ("gpt-oss:20b:cloud" -> "gpt-oss:20b-cloud",
// "glm-4.6:cloud" stays "glm-4.6:cloud"). Both markers at once -> nullopt.
std::optional<std::string> ResolveSource(std::string_view raw) {
  std::string base;
  Source source = Source::kUnspecified;
  if (!ParseSourceSuffix(raw, &base, &source)) return std::string(raw);
  std::string nested_base;
  Source nested = Source::kUnspecified;
  if (ParseSourceSuffix(base, &nested_base, &nested)) return std::nullopt;
  if (source == Source::kLocal) return base;
  const size_t last_slash = base.rfind('/');
  const size_t last_colon = base.rfind(':');
  const bool has_tag = last_colon != std::string::npos &&
                       (last_slash == std::string::npos || last_colon > last_slash);
  return has_tag ? base + "-cloud" : base + ":cloud";
}

}  // namespace

std::optional<ModelRef> ParseModelName(std::string_view name) {
  const std::string_view trimmed = TrimSpace(name);
  if (trimmed.empty()) return std::nullopt;
  std::optional<std::string> resolved = ResolveSource(trimmed);
  if (!resolved) return std::nullopt;
  std::string_view s = *resolved;

  std::string_view host, ns, model, tag;
  // '/' cannot appear in a tag, so a ':' after the last '/' starts the tag; an earlier one
  // belongs to a host's port.
  const size_t last_colon = s.rfind(':');
  const size_t last_slash = s.rfind('/');
  bool has_tag = false;
  if (last_colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || last_colon > last_slash)) {
    has_tag = true;
    tag = s.substr(last_colon + 1);
    s = s.substr(0, last_colon);
  }
  bool has_namespace = false, has_host = false;
  std::string_view rest;
  if (CutLast(s, '/', &rest, &model)) {
    has_namespace = true;
    std::string_view host_part;
    if (CutLast(rest, '/', &host_part, &ns)) {
      has_host = true;
      // A scheme on the host ("https://example.com/ns/m") is allowed and not part of the host.
      const size_t scheme_end = host_part.find("://");
      host = scheme_end == std::string_view::npos ? host_part : host_part.substr(scheme_end + 3);
    } else {
      ns = rest;
    }
  } else {
    model = s;
  }

  ModelRef ref;
  ref.host = has_host ? std::string(host) : std::string(kDefaultHost);
  ref.namespace_ = has_namespace ? std::string(ns) : std::string(kDefaultNamespace);
  ref.model = std::string(model);
  ref.tag = has_tag ? std::string(tag) : std::string(kDefaultTag);
  if (!IsValidPart(Part::kHost, ref.host) || !IsValidPart(Part::kNamespace, ref.namespace_) ||
      !IsValidPart(Part::kModel, ref.model) || !IsValidPart(Part::kTag, ref.tag)) {
    return std::nullopt;
  }
  return ref;
}

std::string CanonicalKey(const ModelRef& ref) {
  std::string key = AsciiToLower(ref.host);
  key += '/';
  key += AsciiToLower(ref.namespace_);
  key += '/';
  key += AsciiToLower(ref.model);
  key += ':';
  key += AsciiToLower(ref.tag);
  return key;
}

std::string DisplayName(const ModelRef& ref) {
  std::string out;
  if (!EqualsIgnoreCase(ref.host, kDefaultHost)) {
    out = ref.host + "/" + ref.namespace_ + "/";
  } else if (!EqualsIgnoreCase(ref.namespace_, kDefaultNamespace)) {
    out = ref.namespace_ + "/";
  }
  out += ref.model;
  out += ':';
  out += ref.tag;
  return out;
}

std::optional<std::string> CanonicalModelKey(std::string_view name) {
  // A proxy thread sees the same few spellings request after request, and parsing one costs
  // about 2,500 instructions: each thread remembers its last few answers (the function is
  // pure, so a remembered answer is the answer). Long names are not remembered.
  struct Remembered {
    std::string name;
    std::optional<std::string> key;
  };
  static constexpr size_t kRemembered = 4;
  static constexpr size_t kLongestRemembered = 128;
  thread_local std::array<Remembered, kRemembered> remembered;
  thread_local size_t next = 0;
  for (const Remembered& r : remembered) {
    if (!r.name.empty() && r.name == name) return r.key;
  }
  std::optional<std::string> key;
  if (std::optional<ModelRef> ref = ParseModelName(name)) key = CanonicalKey(*ref);
  if (!name.empty() && name.size() <= kLongestRemembered) {
    remembered[next] = {std::string(name), key};
    next = (next + 1) % kRemembered;
  }
  return key;
}

}  // namespace corral
