// What corral-sim reads from a request body: the JSON itself (with Ollama's parse errors), the
// fields every generation-like route shares (stream, keep_alive, options.num_ctx and
// num_predict, think), the OpenAI-only options, and the per-route facts a handler decides on
// (tools offered, prompt size, requested dimensions, whether to think).
//
// Thread safety: pure functions, apart from the ones that write the refusal into the response
// they are given.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "sim/model_catalog.h"
#include "sim/wire.h"

namespace corral::sim {

// The context a request gets when it names none (Ollama's default).
inline constexpr int kDefaultNumCtx = 4096;

// Reads the JSON body; when it is not JSON, answers 400 with the parser's text.
std::optional<Json> ReadBody(const httplib::Request& req, bool openai, httplib::Response& res);

// A string or boolean field (keys match in any case, as Go's decoder does); empty or false when
// absent or of another type.
std::string StringField(const Json& body, std::string_view key);
bool BoolField(const Json& body, std::string_view key);

// Prompt tokens as the sim counts them: about one per four characters, at least one.
int PromptTokens(size_t chars);

bool KeepAliveIsZero(const KeepAlive& ka);

// Fields shared by generate and chat (and read from the OpenAI requests after translation).
struct CommonFields {
  KeepAlive keep_alive{false, std::chrono::minutes(5)};
  int num_ctx = kDefaultNumCtx;
  int num_predict = -1;
  bool stream = true;
  const Json* think = nullptr;  // points into the body it was read from
};

// Returns 0 on success, else the HTTP status to answer with `error`.
int ParseCommon(const Json& body, bool stream_default, CommonFields* out, std::string* error);

// The body and the fields every generation-like route reads. Answers the error itself and
// returns false when the request is refused.
bool ReadCommonRequest(const httplib::Request& req, bool stream_default, bool openai, Json* body,
                       CommonFields* common, httplib::Response& res);

// max_tokens and stream_options, which only the OpenAI-compatible routes read.
void ReadOpenAiOptions(const Json& body, CommonFields* common, bool* include_usage);

// The tools offered to a chat, or null when there are none.
const Json* OfferedTools(const Json& body);

// Sizes a chat prompt and notes who spoke last (a model answering a tool result calls no tool).
size_t ScanMessages(const Json& messages, std::string* last_role);

// The "dimensions" a client asked for, when smaller than the model's own.
int RequestedDimensions(const Json& body, int dims);

// Thinking-capable models think unless told not to; asking a model without the capability to
// think is a 400 (false with `error`).
bool DecideThinking(const Json* think, const SimModel& model, const std::string& name_as_sent,
                    bool* thinking, std::string* error);

}  // namespace corral::sim
