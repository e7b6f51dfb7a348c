#include "dataplane/replies.h"

namespace corral::dataplane {
namespace {

// Replaces the raw UTF-8 form of U+2028, U+2029 and U+0085 by JSON escapes. These bytes can only
// occur inside JSON strings, where the escape means the same character.
std::string EscapeLineSeparators(std::string text) {
  std::string out;
  size_t start = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const auto c0 = static_cast<unsigned char>(text[i]);
    const char* escape = nullptr;
    size_t len = 0;
    if (c0 == 0xE2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80) {
      const auto c2 = static_cast<unsigned char>(text[i + 2]);
      if (c2 == 0xA8) escape = "\\u2028";
      if (c2 == 0xA9) escape = "\\u2029";
      len = 3;
    } else if (c0 == 0xC2 && static_cast<unsigned char>(text[i + 1]) == 0x85) {
      escape = "\\u0085";
      len = 2;
    }
    if (escape == nullptr) continue;
    if (out.empty()) out.reserve(text.size() + 16);
    out.append(text, start, i - start);
    out.append(escape);
    i += len - 1;
    start = i + 1;
  }
  if (start == 0) return text;
  out.append(text, start, std::string::npos);
  return out;
}

const char* OpenAIErrorType(int status) {
  if (status == 404) return "not_found_error";
  if (status >= 400 && status < 500) return "invalid_request_error";
  return "api_error";
}

}  // namespace

std::string DumpJson(const nlohmann::json& value) {
  return EscapeLineSeparators(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::string OllamaErrorBody(std::string_view message) {
  return DumpJson(nlohmann::json{{"error", std::string(message)}});
}

std::string OpenAIErrorBody(std::string_view message, int status) {
  nlohmann::json error = {{"message", std::string(message)},
                          {"type", OpenAIErrorType(status)},
                          {"param", nullptr},
                          {"code", nullptr}};
  return DumpJson(nlohmann::json{{"error", std::move(error)}});
}

std::string ErrorBody(int status, std::string_view message, bool openai) {
  return openai ? OpenAIErrorBody(message, status) : OllamaErrorBody(message);
}

void SetErrorReply(httplib::Response& res, int status, std::string_view message, bool openai) {
  res.status = status;
  res.set_content(ErrorBody(status, message, openai), kJsonContentType);
}

std::string StreamErrorChunk(std::string_view message, bool sse) {
  if (!sse) return OllamaErrorBody(message) + "\n";
  nlohmann::json error = {{"message", std::string(message)}, {"type", "api_error"}};
  return "data: " + DumpJson(nlohmann::json{{"error", std::move(error)}}) + "\n\n";
}

}  // namespace corral::dataplane
