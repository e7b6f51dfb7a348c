#include "sim/control_routes.h"

#include <optional>
#include <string>
#include <vector>

#include "sim/replies.h"
#include "sim/request_fields.h"
#include "sim/sim_config.h"

namespace corral::sim {

void ControlRoutes::HandleStats(const httplib::Request&, httplib::Response& res) {
  SendJson(res, 200, node_.StatsJson());
}

void ControlRoutes::HandleConfig(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "POST") {
    std::optional<Json> patch = ReadBody(req, false, res);
    if (!patch) return;
    SimConfig next = node_.Config();
    std::string error;
    if (!ApplyConfigJson(*patch, &next, &error)) return NativeError(res, 400, error);

    // Validate the model changes completely before applying any of them.
    std::optional<std::vector<SimModel>> replace;
    std::vector<SimModel> add;
    std::vector<std::string> remove;
    std::vector<std::string> pullable;
    if (const Json* v = FindField(*patch, "models")) {
      absl::StatusOr<std::vector<SimModel>> parsed =
          v->is_string() ? ParseModelList(v->get<std::string>())
                         : absl::InvalidArgumentError("models must be a string");
      if (!parsed.ok()) return NativeError(res, 400, std::string(parsed.status().message()));
      replace = *parsed;
    }
    if (const Json* v = FindField(*patch, "add_models")) {
      if (!v->is_array()) return NativeError(res, 400, "add_models must be an array");
      for (const Json& item : *v) {
        if (item.is_string()) {
          absl::StatusOr<std::vector<SimModel>> parsed = ParseModelList(item.get<std::string>());
          if (!parsed.ok()) return NativeError(res, 400, std::string(parsed.status().message()));
          add.insert(add.end(), parsed->begin(), parsed->end());
          continue;
        }
        if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
          return NativeError(res, 400, "add_models items are \"name[=size]\" or {\"name\":...}");
        }
        std::optional<int64_t> size;
        if (item.contains("size") && item["size"].is_number_integer()) {
          size = item["size"].get<int64_t>();
        }
        absl::StatusOr<SimModel> m = MakeModel(item["name"].get<std::string>(), size);
        if (!m.ok()) return NativeError(res, 400, std::string(m.status().message()));
        if (item.contains("digest") && item["digest"].is_string()) {
          m->digest = item["digest"].get<std::string>();
        }
        if (item.contains("capabilities") && item["capabilities"].is_array()) {
          m->capabilities.clear();
          for (const Json& c : item["capabilities"]) {
            if (c.is_string()) m->capabilities.push_back(c.get<std::string>());
          }
        }
        add.push_back(*m);
      }
    }
    for (const char* key : {"remove_models", "pullable"}) {
      const Json* v = FindField(*patch, key);
      if (v == nullptr) continue;
      if (!v->is_array()) return NativeError(res, 400, std::string(key) + " must be an array");
      for (const Json& item : *v) {
        std::optional<std::string> canonical =
            item.is_string() ? CanonicalModelKey(item.get<std::string>()) : std::nullopt;
        if (!canonical) return NativeError(res, 400, std::string(key) + ": invalid model name");
        (std::string(key) == "remove_models" ? remove : pullable).push_back(*canonical);
      }
    }
    const Json* gated = FindField(*patch, "gated");
    if (gated != nullptr && !gated->is_boolean()) {
      return NativeError(res, 400, "gated must be true or false");
    }

    node_.SetConfig(next, patch->contains("fail") || patch->contains("fail_times"));
    node_.ChangeModels(replace, add, remove, pullable);
    if (gated != nullptr) node_.gate().SetGated(gated->get<bool>());
  }
  Json out = ConfigJson(node_.Config());
  out["gated"] = node_.gate().gated();
  Json names = Json::array();
  Json registry = Json::array();
  for (const SimModel& m : node_.Models()) names.push_back(m.name);
  for (const std::string& key : node_.PullableNames()) registry.push_back(key);
  out["models"] = names;
  out["pullable"] = registry;
  SendJson(res, 200, out);
}

void ControlRoutes::HandleRelease(const httplib::Request& req, httplib::Response& res) {
  int tokens = 1;
  if (!req.body.empty()) {
    std::optional<Json> body = ReadBody(req, false, res);
    if (!body) return;
    if (const Json* t = FindField(*body, "tokens")) {
      if (!t->is_number_integer() || t->get<int>() < 0) {
        return NativeError(res, 400, "tokens must be a non-negative integer");
      }
      tokens = t->get<int>();
    }
  }
  node_.gate().Release(tokens);
  SendJson(res, 200, GateJson(node_.gate().status()));
}

void ControlRoutes::HandleReset(const httplib::Request&, httplib::Response& res) {
  node_.Reset();
  SendJson(res, 200, Json{{"reset", true}});
}

}  // namespace corral::sim
