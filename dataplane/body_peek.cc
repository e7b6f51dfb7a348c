#include "dataplane/body_peek.h"

#include <cstdint>
#include <exception>

#include "common/go_json.h"
#include "nlohmann/json.hpp"

namespace corral::dataplane {
namespace {

using Json = nlohmann::json;

// The top-level fields routing reads. Everything else is skipped without being stored.
enum class Field {
  kOther,
  kModel,
  kName,
  kSource,
  kDestination,
  kStream,
  kKeepAlive,
  kPrompt,
  kMessages
};

// Go's encoding/json matches keys to fields with bytes.EqualFold, which folds ASCII case and
// also the two non-ASCII runes that fold to ASCII letters: KELVIN SIGN to 'k' and LATIN SMALL
// LETTER LONG S to 's'. Returns the folded key, or "" when it cannot be one of ours.
std::string FoldKey(const std::string& key) {
  std::string out;
  out.reserve(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(key[i]);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    } else if (key.compare(i, 3, "\xE2\x84\xAA") == 0) {  // U+212A KELVIN SIGN
      out += 'k';
      i += 2;
    } else if (key.compare(i, 2, "\xC5\xBF") == 0) {  // U+017F LATIN SMALL LETTER LONG S
      out += 's';
      i += 1;
    } else {
      return "";
    }
  }
  return out;
}

Field FieldOf(const std::string& key) {
  if (key.size() > 16) return Field::kOther;
  const std::string folded = FoldKey(key);
  if (folded == "model") return Field::kModel;
  if (folded == "name") return Field::kName;
  if (folded == "source") return Field::kSource;
  if (folded == "destination") return Field::kDestination;
  if (folded == "stream") return Field::kStream;
  if (folded == "keep_alive") return Field::kKeepAlive;
  if (folded == "prompt") return Field::kPrompt;
  if (folded == "messages") return Field::kMessages;
  return Field::kOther;
}

// Whether `s` is a valid Go duration (time.ParseDuration) equal to zero: "0", "0s", "0m",
// "-0s", "0.0h", "0h0m0s", "0.5ns" (sub-nanosecond parts truncate). Invalid text is not zero:
// the node rejects it with 400.
bool IsZeroGoDuration(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s == "0") return true;
  if (s.empty()) return false;
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  while (!s.empty()) {
    if (!(s[0] == '.' || is_digit(s[0]))) return false;
    bool integer_nonzero = false, pre = false, post = false;
    while (!s.empty() && is_digit(s[0])) {
      pre = true;
      integer_nonzero |= s[0] != '0';
      s.remove_prefix(1);
    }
    long double fraction = 0, scale = 1;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      while (!s.empty() && is_digit(s[0])) {
        post = true;
        if (scale < 1e30L) {
          fraction = fraction * 10 + (s[0] - '0');
          scale *= 10;
        }
        s.remove_prefix(1);
      }
    }
    if (!pre && !post) return false;
    size_t unit_len = 0;
    while (unit_len < s.size() && s[unit_len] != '.' && !is_digit(s[unit_len])) ++unit_len;
    const std::string_view unit = s.substr(0, unit_len);
    s.remove_prefix(unit_len);
    long double unit_ns = 0;
    if (unit == "ns") {
      unit_ns = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      unit_ns = 1e3L;
    } else if (unit == "ms") {
      unit_ns = 1e6L;
    } else if (unit == "s") {
      unit_ns = 1e9L;
    } else if (unit == "m") {
      unit_ns = 60e9L;
    } else if (unit == "h") {
      unit_ns = 3600e9L;
    } else {
      return false;  // missing or unknown unit
    }
    if (integer_nonzero) return false;
    if (fraction * (unit_ns / scale) >= 1) return false;
  }
  return true;
}

// Keeps the message one printable ASCII line of bounded length: parser messages quote the
// input ("last read: '...'"), which may be megabytes of a broken base64 string or bytes that
// are not UTF-8.
std::string Printable(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out;
  for (char ch : text) {
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7f) ? ch : '?';
  }
  return out;
}

const char* KindName(Json::value_t kind) {
  switch (kind) {
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

// SAX handler: tracks nesting depth and records only values that sit directly in the top-level
// object, so nested "model" keys (in messages, tools, format schemas) are ignored and large
// values are never stored.
class TopLevelFields : public nlohmann::json_sax<Json> {
 public:
  BodyFields fields;
  std::string error;  // set when parsing stopped on a problem

  // nlohmann::json_sax<Json>
  bool null() override { return Scalar(Json::value_t::null); }
  bool boolean(bool value) override {
    if (!Scalar(Json::value_t::boolean)) return false;
    if (AtTopLevelValue() && field_ == Field::kStream) fields.stream = value;
    return true;
  }
  bool number_integer(number_integer_t value) override {
    return Number(static_cast<long double>(value));
  }
  bool number_unsigned(number_unsigned_t value) override {
    return Number(static_cast<long double>(value));
  }
  bool number_float(number_float_t value, const string_t&) override {
    return Number(static_cast<long double>(value));
  }
  bool string(string_t& value) override {
    if (!Scalar(Json::value_t::string)) return false;
    if (!AtTopLevelValue()) return true;
    switch (field_) {
      case Field::kModel:
        fields.model = value;
        break;
      case Field::kName:
        fields.name = value;
        break;
      case Field::kSource:
        fields.source = value;
        break;
      case Field::kDestination:
        fields.destination = value;
        break;
      case Field::kKeepAlive:
        fields.keep_alive_zero = IsZeroGoDuration(value);
        break;
      case Field::kPrompt:
        fields.prompt_empty = value.empty();
        break;
      default:
        break;
    }
    return true;
  }
  bool binary(binary_t&) override { return Scalar(Json::value_t::binary); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    ContainerValue(Json::value_t::object);
    ++depth_;
    return true;
  }
  bool key(string_t& key) override {
    if (depth_ == 1) field_ = FieldOf(key);
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return NotAnObject(Json::value_t::array);
    ContainerValue(Json::value_t::array);
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (pending_messages_ && depth_ == 1) {
      fields.messages_empty = !messages_seen_element_;
      pending_messages_ = false;
      in_messages_ = false;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    std::string_view what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag: it means nothing to a client.
    if (!what.empty() && what[0] == '[') {
      const size_t end = what.find("] ");
      if (end != std::string_view::npos) what.remove_prefix(end + 2);
    }
    error = "invalid JSON: " + Printable(what);
    return false;
  }

 private:
  bool AtTopLevelValue() const { return depth_ == 1; }

  // A scalar at depth 0 means the body is not an object; elsewhere it may be an element.
  bool Scalar(Json::value_t kind) {
    if (depth_ == 0) return NotAnObject(kind);
    if (depth_ == 2 && in_messages_) messages_seen_element_ = true;
    if (depth_ == 1) ApplyTypeMismatchOrNull(kind);
    return true;
  }

  bool Number(long double value) {
    if (!Scalar(Json::value_t::number_float)) return false;
    // Ollama: a number is seconds; negative keeps the model loaded forever, anything that
    // truncates to 0 ns unloads.
    if (AtTopLevelValue() && field_ == Field::kKeepAlive) {
      fields.keep_alive_zero = !(value < 0) && value * 1e9L < 1;
    }
    return true;
  }

  // An object or array starts at `depth_`.
  void ContainerValue(Json::value_t kind) {
    if (depth_ == 2 && in_messages_) messages_seen_element_ = true;
    if (depth_ != 1) return;
    if (field_ == Field::kMessages && kind == Json::value_t::array) {
      // The top-level "messages" array: empty unless an element shows up at depth 2.
      in_messages_ = true;
      messages_seen_element_ = false;
      pending_messages_ = true;
      return;
    }
    ApplyTypeMismatchOrNull(kind);
  }

  // Go's rules for a value of the wrong type or null in a field we track. null leaves a string
  // as it was and resets a pointer or slice (stream, keep_alive, messages); a wrong type fails
  // the node's decoding, so the field is treated as unusable (and not as a shortcut).
  void ApplyTypeMismatchOrNull(Json::value_t kind) {
    const bool is_null = kind == Json::value_t::null;
    switch (field_) {
      case Field::kModel:
        if (!is_null) fields.model.reset();
        // Go keeps decoding after a type error and reports the first one.
        if (!is_null && kind != Json::value_t::string && !fields.model_type_error) {
          fields.model_type_error = GoJsonTypeName(kind);
        }
        break;
      case Field::kName:
        if (!is_null) fields.name.reset();
        break;
      case Field::kSource:
        if (!is_null) fields.source.reset();
        break;
      case Field::kDestination:
        if (!is_null) fields.destination.reset();
        break;
      case Field::kStream:
        if (kind != Json::value_t::boolean) fields.stream.reset();
        break;
      case Field::kKeepAlive:
        if (kind != Json::value_t::number_float && kind != Json::value_t::string) {
          fields.keep_alive_zero = false;
        }
        break;
      case Field::kPrompt:
        if (!is_null && kind != Json::value_t::string) fields.prompt_empty = false;
        break;
      case Field::kMessages:
        fields.messages_empty = is_null;
        break;
      case Field::kOther:
        break;
    }
  }

  bool NotAnObject(Json::value_t kind) {
    error = std::string("invalid request body: expected a JSON object, got ") + KindName(kind);
    return false;
  }

 private:
  int64_t depth_ = 0;  // 0 before the top-level object opens, 1 inside it
  Field field_ = Field::kOther;
  bool in_messages_ = false;
  bool pending_messages_ = false;
  bool messages_seen_element_ = false;
};

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

std::string BodyFields::ModelOrName() const {
  if (model && !model->empty()) return *model;
  if (name && !name->empty()) return *name;
  return "";
}

absl::StatusOr<BodyFields> PeekBody(std::string_view body) {
  size_t first = 0;
  while (first < body.size() && IsJsonSpace(body[first])) ++first;
  if (first == body.size()) return absl::InvalidArgumentError("missing request body");

  TopLevelFields handler;
  bool ok = false;
  try {
    // strict=false: like Go's json.Decoder, only the first JSON value is read; bytes after it
    // are not looked at.
    ok = Json::sax_parse(body.data() + first, body.data() + body.size(), &handler,
                         Json::input_format_t::json, /*strict=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("invalid JSON: ") + Printable(e.what()));
  }
  if (!ok) {
    return absl::InvalidArgumentError(handler.error.empty() ? "invalid JSON" : handler.error);
  }
  return handler.fields;
}

}  // namespace corral::dataplane
