#include "sim/replies.h"

#include <chrono>

#include "common/go_json.h"

namespace corral::sim {

std::string NowUtc() { return FormatUtc(std::chrono::system_clock::now()); }

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(GoJson(body), kJsonType);
}

void NativeError(httplib::Response& res, int status, const std::string& message) {
  SendJson(res, status, Json{{"error", message}});
}

Json OpenAiErrorObject(int status, const std::string& message) {
  const char* type = status == 400   ? "invalid_request_error"
                     : status == 404 ? "not_found_error"
                                     : "api_error";
  return Json{
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

void ErrorFor(httplib::Response& res, int status, const std::string& message, bool openai) {
  if (openai) {
    SendJson(res, status, OpenAiErrorObject(status, message));
  } else {
    NativeError(res, status, message);
  }
}

void SendText(httplib::Response& res, int status, const std::string& text, const char* type) {
  res.status = status;
  res.set_content(text, type);
}

void MethodNotAllowed(httplib::Response& res) {
  SendText(res, 405, "405 method not allowed", "text/plain");
}

void AnswerCanceled(httplib::Response& res, bool openai) {
  ErrorFor(res, 499, "request canceled", openai);
}

}  // namespace corral::sim
