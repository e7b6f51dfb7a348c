// Fuzzes request-body peeking (dataplane/body_peek.h) on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/body_peek.h"
#include "fuzz/fuzz_check.h"

namespace {

using corral::dataplane::BodyFields;
using corral::dataplane::PeekBody;

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool SameFields(const BodyFields& a, const BodyFields& b) {
  return a.model == b.model && a.name == b.name && a.source == b.source &&
         a.destination == b.destination && a.stream == b.stream &&
         a.keep_alive_zero == b.keep_alive_zero && a.prompt_empty == b.prompt_empty &&
         a.messages_empty == b.messages_empty;
}

void CheckString(const std::optional<std::string>& s) {
  if (s) FUZZ_CHECK(IsValidUtf8(*s), "peeked string is not UTF-8 (%zu bytes)", s->size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto peeked = PeekBody(body);

  if (!peeked.ok()) {
    // Every failure is a 400 with one of the documented messages, one printable line, bounded.
    FUZZ_CHECK(peeked.status().code() == absl::StatusCode::kInvalidArgument, "code %d",
               static_cast<int>(peeked.status().code()));
    const std::string message(peeked.status().message());
    FUZZ_CHECK(message == "missing request body" || message == "invalid JSON" ||
                   message.starts_with("invalid JSON: ") ||
                   message.starts_with("invalid request body: expected a JSON object, got "),
               "unexpected message: %.*s", static_cast<int>(message.size()), message.data());
    FUZZ_CHECK(message.size() <= 256, "message of %zu characters", message.size());
    for (char c : message) {
      const auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 && u != 0x7f, "control byte 0x%02x in message", u);
    }
    // Whitespace-only is "missing request body", and only that is.
    size_t first = 0;
    while (first < body.size() && IsJsonSpace(body[first])) ++first;
    FUZZ_CHECK((first == body.size()) == (message == "missing request body"), "%.*s",
               static_cast<int>(message.size()), message.data());
    return 0;
  }

  const BodyFields& fields = *peeked;
  // An accepted body is a JSON object.
  size_t first = 0;
  while (first < body.size() && IsJsonSpace(body[first])) ++first;
  FUZZ_CHECK(first < body.size() && body[first] == '{', "accepted a body not starting with '{'");
  CheckString(fields.model);
  CheckString(fields.name);
  CheckString(fields.source);
  CheckString(fields.destination);

  // ModelOrName is Go's cmp.Or(model, name).
  const std::string routed = fields.ModelOrName();
  const std::string expected =
      fields.model && !fields.model->empty() ? *fields.model : fields.name.value_or("");
  FUZZ_CHECK(routed == expected, "ModelOrName %s, expected %s", routed.c_str(), expected.c_str());

  // Only the first JSON value is read: anything appended after the object changes nothing.
  const std::string extended = std::string(body) + " {\"model\":\"appended\"} \x01\xff";
  const auto again = PeekBody(extended);
  FUZZ_CHECK(again.ok() && SameFields(*again, fields), "appending after the object changed %s",
             again.ok() ? "the fields" : std::string(again.status().message()).c_str());
  return 0;
}
