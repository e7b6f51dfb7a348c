// Reads token usage, the end of the answer and the first token out of a node's answer as its
// bytes are relayed, without keeping the answer.
//
// An AnswerUsageReader is fed the answer's body exactly as it passes through the proxy, cut
// anywhere (mid-line, mid-number, mid-UTF-8), and gives the same result however it was cut. It
// scans the JSON incrementally with a fixed amount of state (a few hundred bytes, no allocation):
// no line or body is buffered, so a final chunk with a long `context` array or a whole 1 MiB
// body costs no memory, and no prompt or answer text is ever kept (only "was this string
// non-empty" and the few short values it matches: keys and an event `type`). It runs on every
// relayed chunk: about 22 instructions a byte of an Ollama NDJSON chat stream and 17 of a
// non-streamed /api/generate answer with its `context` (callgrind), 4-6 ns a byte in a timed
// loop, several times cheaper than buffering the line for nlohmann. String content is skipped
// eight bytes at a time and the integer elements of arrays that mean nothing in a tight loop.
//
// What it reads from each complete JSON object (ollama-api.md §3, §7):
//   * input tokens: Ollama's `prompt_eval_count`, else OpenAI's `usage.prompt_tokens`, else
//     `usage.input_tokens` (/v1/responses and /v1/messages bodies), `response.usage.input_tokens`
//     (a /v1/responses `response.completed` event), `message.usage.input_tokens` (/v1/messages'
//     `message_start`);
//   * output tokens: `eval_count`, else `usage.completion_tokens`, `usage.output_tokens`,
//     `response.usage.output_tokens`, `message.usage.output_tokens`;
//   * Ollama's `load_duration`, `prompt_eval_duration`, `eval_duration`, `total_duration` (ns);
//   * the end: `"done":true`, an SSE event whose data is `[DONE]`, a `type` of
//     `response.completed` or `message_stop`; for a whole JSON body, any complete object that is
//     not an error;
//   * an error: a top-level `error` member that is not null (Ollama's mid-stream error line, an
//     OpenAI error object);
//   * a token (streams only): a non-empty `response`, `thinking`, `message.content`,
//     `message.thinking`, `message.tool_calls`, `choices[].text`, `choices[].delta.content`,
//     `.reasoning`, `.reasoning_content`, `.tool_calls`, or a top-level `delta` (a non-empty
//     string, or an object with a non-empty `text`, `thinking` or `partial_json`).
// Within one object the last duplicate key wins, as in Go and nlohmann; across objects the last
// present value wins (/v1/completions streams send a zeroed usage on every chunk before the real
// one). A count is taken only when it is a JSON integer in range: negative, fractional,
// exponent, too large, string or null values are absent, never an error. An object counts only
// once it is complete and well-formed JSON (a malformed line, event or body, or one nested deeper
// than kMaxAnswerDepth, changes nothing and is counted in `malformed`). Strings are not checked
// for valid UTF-8: their bytes are skipped, never kept.
//
// Framing: NDJSON ends an object at each '\n' (and the last line at Finish); SSE follows the
// event-stream rules (`data:` lines joined by '\n', dispatched at a blank line; CR, LF and CRLF
// line ends; comments and other fields ignored; an event cut off by the end of the stream is
// dropped, as a browser's EventSource does); a whole JSON body is one document read at Finish.
//
// Thread safety: a reader belongs to one stream; distinct readers are independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "dataplane/route.h"

namespace corral::dataplane {

enum class AnswerFormat {
  kNone,    // nothing to read (not an inference route, or a body that is not JSON)
  kNdjson,  // application/x-ndjson: Ollama's streams
  kSse,     // text/event-stream: the OpenAI-compatible streams
  kJson,    // application/json: a whole answer (stream:false, load shortcuts, errors)
};

// The format to read an answer in, from the route it answers and the node's Content-Type (media
// type compared case-insensitively, parameters ignored). kNone for routes that carry no usage
// (pull progress is NDJSON too) and for any other content type.
AnswerFormat AnswerFormatFor(Endpoint endpoint, std::string_view content_type);

// Bounds on the numbers taken from an answer. No request comes near them; a value past them is
// a broken or hostile node, and is read as absent.
inline constexpr int64_t kMaxTokenCount = (int64_t{1} << 32) - 1;
// 2^53 - 1 ns is 104 days, and exact as a double (Prometheus).
inline constexpr int64_t kMaxDurationNs = (int64_t{1} << 53) - 1;
// Deeper JSON is skipped as malformed (tool-call arguments are the only deep part of an answer).
inline constexpr int kMaxAnswerDepth = 128;

struct AnswerUsage {
  std::optional<int64_t> input_tokens;   // absent: the answer said nothing (0 is a value)
  std::optional<int64_t> output_tokens;  // absent for embeddings
  std::optional<int64_t> load_duration_ns;
  std::optional<int64_t> prompt_eval_duration_ns;
  std::optional<int64_t> eval_duration_ns;
  std::optional<int64_t> total_duration_ns;
  bool done = false;   // the final object (or `[DONE]`) was read
  bool error = false;  // an error object was read
  // NDJSON and SSE only: an object carrying the first token was read; it ended at byte
  // `first_token_offset` of the answer (the '\n' of its line, or the end of its SSE event).
  bool first_token = false;
  uint64_t first_token_offset = 0;
  uint64_t objects = 0;    // complete JSON objects read
  uint64_t malformed = 0;  // lines, events or bodies that were not one JSON object

  bool operator==(const AnswerUsage&) const = default;
};

class AnswerUsageReader {
 public:
  explicit AnswerUsageReader(AnswerFormat format);

  // The next bytes of the answer. Returns true exactly once per answer: on the call that
  // completed the first object carrying a token (the caller's time-to-first-token moment).
  // Bytes fed after Finish are ignored.
  bool Feed(std::string_view bytes);
  // The answer ended (the node finished, or the relay stopped): reads a last NDJSON line without
  // its '\n', or the whole JSON body. Returns true when that last line carried the first token
  // (then no Feed returned true). Idempotent.
  bool Finish();

  AnswerFormat format() const { return format_; }
  const AnswerUsage& usage() const { return usage_; }

  // The roles and contexts the scanner tracks; public only so the .cc can build its tables.
  enum Role : uint8_t;
  enum Ctx : uint8_t;

 private:
  // The JSON scanner's grammar state.
  enum State : uint8_t {
    kStart,         // before the document's value
    kValue,         // a value is expected (after ':' or ',' in an array)
    kArrayFirst,    // after '[': a value or ']'
    kObjectFirst,   // after '{': a key or '}'
    kObjectKey,     // after ',' in an object: a key
    kColon,         // after a key
    kString,        // inside a key or a string value
    kEscape,        // after '\' in a string
    kHex,           // inside \uXXXX
    kLowBackslash,  // after a high surrogate escape: '\' must follow
    kLowU,          // then 'u'
    kNumber,
    kLiteral,
    kAfterValue,  // ',' or the container's close
    kEnd,         // the document's value is complete; whitespace only
    kBad,         // malformed or over a limit: the rest of the document is ignored
  };
  // Containers whose members can matter are tracked in frames; deeper ones only for bracket
  // matching (the type bit stack).
  static constexpr int kTrackedDepth = 8;
  struct Frame {
    Ctx ctx;
    Role role;        // the role of this container in its parent
    Role member;      // objects: the role of the member whose value is being read
    uint64_t tokens;  // objects: one bit per token-bearing member; arrays: any element had one
  };
  // Values read from the current document (slots, see the .cc); committed only if it completes.
  struct Pending {
    uint32_t present;
    int64_t value[14];
  };

  // The JSON document scanner.
  void ResetDocument();
  void Scan(const char* p, const char* end);
  void BeginValue(char c);
  void EndValue(Role role, bool tokens);
  void CloseContainer(bool object);
  // `captured`: the string when it is short enough to match anything (else `lost`).
  void EndString(std::string_view captured, bool lost);
  void EndNumber();
  void CaptureByte(char c);
  void CaptureBytes(const char* p, const char* end);
  Role CurrentRole();
  // Ends the document; returns true when it was one complete JSON object (then the pending
  // values are committed), counting a malformed one.
  bool EndDocument(bool stream);
  bool Commit(bool stream);

  // The framings.
  bool FeedNdjson(const char* p, const char* end);
  bool FeedSse(const char* p, const char* end);
  bool SseLineEnd();
  void SseData(const char* p, const char* end);

  AnswerFormat format_;
  AnswerUsage usage_;
  uint64_t fed_ = 0;  // bytes of the answer up to the current position
  bool finished_ = false;

  State state_ = kStart;
  int depth_ = 0;
  uint64_t object_bits_[kMaxAnswerDepth / 64] = {};  // bit set: the container is an object
  Frame frames_[kTrackedDepth] = {};
  Pending pending_ = {};
  bool document_object_ = false;
  bool document_tokens_ = false;
  // Current string: a key or a value with its role; whether it had any character; the capture
  // of short keys and `type` values (length kCaptureLost when too long to match anything).
  static constexpr uint8_t kCaptureSize = 24;
  static constexpr uint8_t kCaptureLost = 0xff;
  bool in_key_ = false;
  bool capturing_ = false;
  bool string_nonempty_ = false;
  bool want_low_surrogate_ = false;
  uint8_t capture_len_ = 0;
  char capture_[kCaptureSize] = {};
  Role value_role_{};
  uint8_t hex_digits_ = 0;
  uint32_t hex_value_ = 0;
  // Current number or literal.
  uint8_t number_state_ = 0;
  bool number_usable_ = false;  // a non-negative integer within the accumulator's range so far
  uint64_t number_ = 0;
  const char* literal_ = nullptr;

  // SSE line state.
  enum SseState : uint8_t { kLineStart, kFieldName, kDataSpace, kData, kIgnoreLine };
  SseState sse_state_ = kLineStart;
  bool sse_after_cr_ = false;  // a '\n' right after a '\r' is the same line end
  uint8_t field_len_ = 0;
  char field_[5] = {};
  int event_data_lines_ = 0;
  int done_match_ = 0;  // bytes of the event's data matching "[DONE]" so far, -1 once not
};

}  // namespace corral::dataplane
