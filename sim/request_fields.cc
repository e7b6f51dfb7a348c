#include "sim/request_fields.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "sim/replies.h"

namespace corral::sim {
namespace {

bool IntegerOption(const Json& options, std::string_view key, int* out, std::string* error) {
  const Json* v = FindField(options, key);
  if (v == nullptr || v->is_null()) return true;
  if (!v->is_number() || std::floor(v->get<double>()) != v->get<double>()) {
    *error = "option \"" + std::string(key) + "\" must be of type integer";
    return false;
  }
  *out = static_cast<int>(v->get<double>());
  return true;
}

}  // namespace

// Reads the JSON body; when it is not JSON, answers 400 with the parser's text.
std::optional<Json> ReadBody(const httplib::Request& req, bool openai, httplib::Response& res) {
  std::string error;
  std::optional<Json> body = ParseRequestBody(req.body, &error);
  if (!body) ErrorFor(res, 400, error, openai);
  return body;
}

bool KeepAliveIsZero(const KeepAlive& ka) { return !ka.forever && ka.duration.count() == 0; }

std::string StringField(const Json& body, std::string_view key) {
  const Json* f = FindField(body, key);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}

bool BoolField(const Json& body, std::string_view key) {
  const Json* f = FindField(body, key);
  return f != nullptr && f->is_boolean() && f->get<bool>();
}

int PromptTokens(size_t chars) { return std::max<int>(1, static_cast<int>(chars / 4)); }

// Returns 0 on success, else the HTTP status to answer with `error`.
int ParseCommon(const Json& body, bool stream_default, CommonFields* out, std::string* error) {
  out->stream = stream_default;
  if (const Json* s = FindField(body, "stream"); s != nullptr && !s->is_null()) {
    if (!s->is_boolean()) {
      *error = std::string("json: cannot unmarshal ") + s->type_name() +
               " into Go struct field .stream of type bool";
      return 400;
    }
    out->stream = s->get<bool>();
  }
  if (const Json* ka = FindField(body, "keep_alive"); ka != nullptr && !ka->is_null()) {
    if (!ParseKeepAlive(*ka, &out->keep_alive, error)) return 400;
  }
  if (const Json* options = FindField(body, "options");
      options != nullptr && options->is_object()) {
    if (!IntegerOption(*options, "num_ctx", &out->num_ctx, error) ||
        !IntegerOption(*options, "num_predict", &out->num_predict, error)) {
      return 500;
    }
    if (out->num_ctx <= 0) out->num_ctx = kDefaultNumCtx;
  }
  if (const Json* think = FindField(body, "think"); think != nullptr && !think->is_null()) {
    const bool level =
        think->is_string() &&
        (think->get<std::string>() == "low" || think->get<std::string>() == "medium" ||
         think->get<std::string>() == "high" || think->get<std::string>() == "max");
    if (!think->is_boolean() && !level) {
      *error = "invalid think value: " + GoJson(*think) +
               " (must be \"high\", \"medium\", \"low\", true, or false)";
      return 400;
    }
    out->think = think;
  }
  return 0;
}

// The body and the fields every generation-like route reads. Answers the error itself and
// returns false when the request is refused.
bool ReadCommonRequest(const httplib::Request& req, bool stream_default, bool openai, Json* body,
                       CommonFields* common, httplib::Response& res) {
  std::optional<Json> parsed = ReadBody(req, openai, res);
  if (!parsed) return false;
  *body = std::move(*parsed);  // parsed first: `common->think` points into *body
  std::string error;
  if (int status = ParseCommon(*body, stream_default, common, &error); status != 0) {
    ErrorFor(res, status, error, openai);
    return false;
  }
  return true;
}

// max_tokens and stream_options, which only the OpenAI-compatible routes read.
void ReadOpenAiOptions(const Json& body, CommonFields* common, bool* include_usage) {
  if (const Json* max_tokens = FindField(body, "max_tokens");
      max_tokens != nullptr && max_tokens->is_number_integer()) {
    common->num_predict = max_tokens->get<int>();
  }
  const Json* options = FindField(body, "stream_options");
  *include_usage = options != nullptr && BoolField(*options, "include_usage");
}

// The tools offered to a chat, or null when there are none.
const Json* OfferedTools(const Json& body) {
  const Json* tools = FindField(body, "tools");
  return tools != nullptr && tools->is_array() && !tools->empty() ? tools : nullptr;
}

// Sizes a chat prompt and notes who spoke last (a model answering a tool result calls no tool).
size_t ScanMessages(const Json& messages, std::string* last_role) {
  size_t chars = 0;
  for (const Json& m : messages) {
    if (!m.is_object()) continue;
    chars += StringField(m, "content").size();
    *last_role = absl::AsciiStrToLower(StringField(m, "role"));
  }
  return chars;
}

// The "dimensions" a client asked for, when smaller than the model's own.
int RequestedDimensions(const Json& body, int dims) {
  if (const Json* d = FindField(body, "dimensions"); d != nullptr && d->is_number_integer()) {
    if (d->get<int>() > 0 && d->get<int>() < dims) dims = d->get<int>();
  }
  return dims;
}

// Thinking-capable models think unless told not to; asking a model without the capability to
// think is a 400.
bool DecideThinking(const Json* think, const SimModel& model, const std::string& name_as_sent,
                    bool* thinking, std::string* error) {
  const bool asked_off = think != nullptr && think->is_boolean() && !think->get<bool>();
  const bool asked_on = think != nullptr && !asked_off;
  if (asked_on && !model.Has("thinking")) {
    *error = "\"" + name_as_sent + "\" does not support thinking";
    return false;
  }
  *thinking = model.Has("thinking") && !asked_off;
  return true;
}

}  // namespace corral::sim
