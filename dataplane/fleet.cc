#include "dataplane/fleet.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/model_name.h"
#include "dataplane/replies.h"

namespace corral::dataplane {
namespace {

using nlohmann::json;

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool Digits(std::string_view text, size_t pos, size_t n, int* out) {
  if (pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    v = v * 10 + (text[i] - '0');
  }
  *out = v;
  return true;
}

json ParseObject(const std::string& text) {
  if (text.empty()) return json();
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_object() ? value : json();
}

struct NameForms {
  std::string key;
  std::string display;
  std::string namespace_;
};

NameForms Forms(const std::string& name) {
  if (auto ref = ParseModelName(name)) {
    return {CanonicalKey(*ref), DisplayName(*ref), ref->namespace_};
  }
  return {absl::AsciiStrToLower(name), name, "library"};
}

struct MergedModel {
  json entry;
  int64_t modified = INT64_MIN;
  NameForms forms;
  std::vector<std::string> nodes;
};

// The union of installed models over routable nodes, newest first.
std::vector<MergedModel> MergeModels(const RoutingTable& table) {
  std::map<std::string, MergedModel> by_key;
  for (const NodeEntry& node : table.nodes()) {
    if (!node.routable || node.proto == nullptr) continue;
    for (const corral::v1::Model& model : node.proto->models()) {
      NameForms forms = Forms(model.name());
      const int64_t modified = ParseRfc3339Nanos(model.modified_at()).value_or(INT64_MIN);
      MergedModel& merged = by_key[forms.key];
      if (std::find(merged.nodes.begin(), merged.nodes.end(), node.name) == merged.nodes.end()) {
        merged.nodes.push_back(node.name);
      }
      if (!merged.entry.is_null() && modified <= merged.modified) continue;
      json entry = ParseObject(model.raw_json());
      if (entry.is_null()) {
        entry = json::object();
        entry["modified_at"] = model.modified_at();
        entry["size"] = model.size();
        entry["digest"] = model.digest();
        entry["details"] = json::object();
      }
      entry["name"] = forms.display;
      entry["model"] = forms.display;
      merged.entry = std::move(entry);
      merged.modified = modified;
      merged.forms = std::move(forms);
    }
  }
  std::vector<MergedModel> out;
  out.reserve(by_key.size());
  for (auto& [key, merged] : by_key) out.push_back(std::move(merged));
  std::stable_sort(out.begin(), out.end(), [](const MergedModel& a, const MergedModel& b) {
    if (a.modified != b.modified) return a.modified > b.modified;
    return a.forms.display < b.forms.display;
  });
  return out;
}

}  // namespace

std::optional<int64_t> ParseRfc3339Nanos(std::string_view t) {
  int year, month, day, hour, minute, second;
  if (!Digits(t, 0, 4, &year) || t.size() < 19 || t[4] != '-' || !Digits(t, 5, 2, &month) ||
      t[7] != '-' || !Digits(t, 8, 2, &day) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') ||
      !Digits(t, 11, 2, &hour) || t[13] != ':' || !Digits(t, 14, 2, &minute) || t[16] != ':' ||
      !Digits(t, 17, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (t[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    for (; digits < 9; ++digits) nanos *= 10;
  }
  int64_t offset_s = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int oh, om;
    if (!Digits(t, pos + 1, 2, &oh) || pos + 3 >= t.size() || t[pos + 3] != ':' ||
        !Digits(t, pos + 4, 2, &om)) {
      return std::nullopt;
    }
    offset_s = (oh * 3600 + om * 60) * (t[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  const int64_t days =
      DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  return seconds * 1000000000 + nanos;
}

int CompareVersions(std::string_view a, std::string_view b) {
  auto parts = [](std::string_view v) {
    if (!v.empty() && (v[0] == 'v' || v[0] == 'V')) v.remove_prefix(1);
    v = v.substr(0, v.find_first_of("-+ "));
    std::vector<int64_t> out;
    int64_t n = 0;
    for (char c : v) {
      if (c == '.') {
        out.push_back(n);
        n = 0;
      } else if (c >= '0' && c <= '9' && n < INT64_MAX / 10 - 10) {
        n = n * 10 + (c - '0');
      }
    }
    out.push_back(n);
    return out;
  };
  const auto pa = parts(a);
  const auto pb = parts(b);
  for (size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    const int64_t x = i < pa.size() ? pa[i] : 0;
    const int64_t y = i < pb.size() ? pb[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

std::string FleetTagsBody(const RoutingTable& table) {
  json models = json::array();
  for (MergedModel& merged : MergeModels(table)) {
    merged.entry["nodes"] = merged.nodes;
    models.push_back(std::move(merged.entry));
  }
  return DumpJson(json{{"models", std::move(models)}});
}

std::string FleetOpenAIModelsBody(const RoutingTable& table) {
  json data = json::array();
  for (const MergedModel& merged : MergeModels(table)) {
    const int64_t created = merged.modified == INT64_MIN ? 0 : merged.modified / 1000000000;
    data.push_back(json{{"id", merged.forms.display},
                        {"object", "model"},
                        {"created", created},
                        {"owned_by", merged.forms.namespace_}});
  }
  return DumpJson(json{{"object", "list"}, {"data", std::move(data)}});
}

std::string FleetPsBody(const RoutingTable& table) {
  struct Loaded {
    json entry;
    int64_t expires;
  };
  std::vector<Loaded> loaded;
  for (const NodeEntry& node : table.nodes()) {
    if (!node.routable || node.proto == nullptr) continue;
    for (const corral::v1::LoadedModel& model : node.proto->loaded_models()) {
      json entry = ParseObject(model.raw_json());
      if (entry.is_null()) {
        const std::string display = Forms(model.name()).display;
        entry = json::object();
        entry["name"] = display;
        entry["model"] = display;
        entry["size"] = model.size();
        entry["expires_at"] = model.expires_at();
        entry["size_vram"] = model.size_vram();
        if (model.context_length() != 0) entry["context_length"] = model.context_length();
      }
      entry["node"] = node.name;
      loaded.push_back(
          {std::move(entry), ParseRfc3339Nanos(model.expires_at()).value_or(INT64_MIN)});
    }
  }
  std::stable_sort(loaded.begin(), loaded.end(),
                   [](const Loaded& a, const Loaded& b) { return a.expires > b.expires; });
  json models = json::array();
  for (Loaded& l : loaded) models.push_back(std::move(l.entry));
  return DumpJson(json{{"models", std::move(models)}});
}

std::string FleetVersionBody(const RoutingTable& table) {
  std::string lowest;
  for (const NodeEntry& node : table.nodes()) {
    if (!node.routable || node.proto == nullptr || node.proto->version().empty()) continue;
    if (lowest.empty() || CompareVersions(node.proto->version(), lowest) < 0) {
      lowest = node.proto->version();
    }
  }
  if (lowest.empty()) lowest = kFallbackOllamaVersion;
  return DumpJson(json{{"version", lowest}});
}

}  // namespace corral::dataplane
