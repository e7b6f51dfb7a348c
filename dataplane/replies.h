// Replies the proxy writes itself (as opposed to bytes relayed from a node): error bodies in
// Ollama's and OpenAI's shapes, the error line that ends a broken stream, and JSON text that
// every client can parse.
//
// Every proxy-made error is one line of JSON with `Content-Type: application/json;
// charset=utf-8`: the Go client builds its error from the first line of the body, and reads an
// empty error body on a stream as success (ollama-api.md §9.3). Pure, safe from any thread.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace corral::dataplane {

inline constexpr const char* kJsonContentType = "application/json; charset=utf-8";

// nlohmann's dump, made safe for line-splitting clients: U+2028, U+2029 and U+0085 are written
// as \u escapes (httpx splits lines on them), invalid UTF-8 is replaced instead of throwing.
std::string DumpJson(const nlohmann::json& value);

// {"error":"<message>"}
std::string OllamaErrorBody(std::string_view message);
// {"error":{"message":...,"type":...,"param":null,"code":null}}, the type chosen by status:
// 400-class invalid_request_error, 404 not_found_error, anything else api_error.
std::string OpenAIErrorBody(std::string_view message, int status);

// The error body in the shape the route's clients expect: OpenAIErrorBody or OllamaErrorBody.
std::string ErrorBody(int status, std::string_view message, bool openai);

// Sets status, content type and the error body in the shape the route's clients expect.
void SetErrorReply(httplib::Response& res, int status, std::string_view message, bool openai);

// What ends a stream that broke after bytes reached the client: `{"error":"..."}\n` on NDJSON,
// `data: {"error":{"message":...,"type":"api_error"}}\n\n` on SSE.
std::string StreamErrorChunk(std::string_view message, bool sse);

}  // namespace corral::dataplane
