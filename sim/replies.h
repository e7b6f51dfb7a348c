// How corral-sim answers on the wire: Ollama's content types, its error texts and the two error
// shapes ({"error": "..."} on native routes, the OpenAI error object on /v1), written into an
// httplib::Response.
//
// Thread safety: stateless functions; each writes only the response it is given.
#pragma once

#include <httplib.h>

#include <string>

#include "sim/wire.h"

namespace corral::sim {

inline constexpr char kJsonType[] = "application/json; charset=utf-8";
inline constexpr char kNdjsonType[] = "application/x-ndjson";
inline constexpr char kSseType[] = "text/event-stream";
inline constexpr char kBusyText[] =
    "server busy, please try again.  maximum pending requests exceeded";
inline constexpr char kLoadFailureText[] = "llama runner process has terminated: exit status 2";
inline constexpr char kMidStreamErrorText[] =
    "an error was encountered while running the model: unexpected EOF";

// The current time as Ollama's created_at text (UTC).
std::string NowUtc();

// A JSON body the way Go's encoder writes it, with Ollama's JSON content type.
void SendJson(httplib::Response& res, int status, const Json& body);
void SendText(httplib::Response& res, int status, const std::string& text, const char* type);
// {"error": message}
void NativeError(httplib::Response& res, int status, const std::string& message);
// {"error": {"message", "type", "param", "code"}}, the type derived from the status.
Json OpenAiErrorObject(int status, const std::string& message);
// The native or the OpenAI error shape, whichever the route speaks.
void ErrorFor(httplib::Response& res, int status, const std::string& message, bool openai);
// Go's plain-text 405.
void MethodNotAllowed(httplib::Response& res);
// What a handler answers when its client went away (nobody reads it; it ends the handler).
void AnswerCanceled(httplib::Response& res, bool openai);

}  // namespace corral::sim
