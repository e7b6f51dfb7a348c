#include "dataplane/answer_usage.h"

#include <bit>
#include <cstring>

namespace corral::dataplane {

// What a value means, decided by its key and the container it is in.
enum AnswerUsageReader::Role : uint8_t {
  kNone,
  kDocument,
  // Top-level members.
  kPromptEvalCount,
  kEvalCount,
  kLoadDuration,
  kPromptEvalDuration,
  kEvalDuration,
  kTotalDuration,
  kDone,
  kError,
  kType,
  kResponse,  // Ollama's text (a string) or a /v1/responses event's response (an object)
  kThinking,
  kMessage,
  kUsage,
  kChoices,
  kDelta,  // /v1/responses text (a string) or /v1/messages' content delta (an object)
  // message.*
  kMessageContent,
  kMessageThinking,
  kMessageToolCalls,
  kMessageUsage,
  // usage.*, response.usage.*, message.usage.*
  kUsagePromptTokens,
  kUsageCompletionTokens,
  kUsageInputTokens,
  kUsageOutputTokens,
  kResponseUsage,
  kResponseUsageInput,
  kResponseUsageOutput,
  kMessageUsageInput,
  kMessageUsageOutput,
  // choices[]
  kChoice,
  kChoiceDelta,
  kChoiceText,
  kDeltaContent,
  kDeltaReasoning,
  kDeltaReasoningContent,
  kDeltaToolCalls,
  // top-level delta object (/v1/messages)
  kDeltaText,
  kDeltaThinking,
  kDeltaPartialJson,
  kRoleCount,
};

// The kind of container a value is read in.
enum AnswerUsageReader::Ctx : uint8_t {
  kCtxOther,
  kCtxTop,
  kCtxMessage,
  kCtxUsage,
  kCtxMessageUsage,
  kCtxResponse,
  kCtxResponseUsage,
  kCtxChoices,  // array of choice objects
  kCtxChoice,
  kCtxChoiceDelta,
  kCtxDelta,     // top-level delta object
  kCtxNonEmpty,  // array that carries a token when it has any element (tool_calls)
};

namespace {

using Role = AnswerUsageReader::Role;
using Ctx = AnswerUsageReader::Ctx;
using R = AnswerUsageReader;

// Values kept per document until it completes: counts and durations, then flags.
enum Slot : uint8_t {
  kSlotPromptEvalCount,
  kSlotEvalCount,
  kSlotLoadDuration,
  kSlotPromptEvalDuration,
  kSlotEvalDuration,
  kSlotTotalDuration,
  kSlotUsagePrompt,
  kSlotUsageCompletion,
  kSlotUsageInput,
  kSlotUsageOutput,
  kSlotResponseInput,
  kSlotResponseOutput,
  kSlotMessageInput,
  kSlotMessageOutput,
  kSlotDone = 14,  // flags from here: no value
  kSlotError,
  kSlotFinalType,
  kNoSlot = 0xff,
};

constexpr uint32_t Bit(Slot s) { return uint32_t{1} << s; }

struct RoleInfo {
  Slot slot = kNoSlot;        // the value it sets
  uint32_t clears = 0;        // slots a new value of this member resets (last duplicate wins)
  Ctx object = R::kCtxOther;  // context of an object value
  Ctx array = R::kCtxOther;   // context of an array value
  bool string_token = false;  // a non-empty string value is a token
  bool token = false;         // the member can carry a token (its bit in the parent)
};

constexpr RoleInfo Numeric(Slot s) { return {s, Bit(s), R::kCtxOther, R::kCtxOther, false, false}; }
constexpr RoleInfo Text() { return {kNoSlot, 0, R::kCtxOther, R::kCtxOther, true, true}; }

constexpr uint32_t kResponseUsageSlots = Bit(kSlotResponseInput) | Bit(kSlotResponseOutput);
constexpr uint32_t kMessageUsageSlots = Bit(kSlotMessageInput) | Bit(kSlotMessageOutput);
constexpr uint32_t kUsageSlots = Bit(kSlotUsagePrompt) | Bit(kSlotUsageCompletion) |
                                 Bit(kSlotUsageInput) | Bit(kSlotUsageOutput);

struct RoleTable {
  RoleInfo info[R::kRoleCount];
  constexpr RoleTable() : info() {
    info[R::kDocument] = {kNoSlot, 0, R::kCtxTop, R::kCtxOther, false, false};
    info[R::kPromptEvalCount] = Numeric(kSlotPromptEvalCount);
    info[R::kEvalCount] = Numeric(kSlotEvalCount);
    info[R::kLoadDuration] = Numeric(kSlotLoadDuration);
    info[R::kPromptEvalDuration] = Numeric(kSlotPromptEvalDuration);
    info[R::kEvalDuration] = Numeric(kSlotEvalDuration);
    info[R::kTotalDuration] = Numeric(kSlotTotalDuration);
    info[R::kDone] = {kSlotDone, Bit(kSlotDone), R::kCtxOther, R::kCtxOther, false, false};
    info[R::kError] = {kSlotError, Bit(kSlotError), R::kCtxOther, R::kCtxOther, false, false};
    info[R::kType] = {kSlotFinalType, Bit(kSlotFinalType), R::kCtxOther, R::kCtxOther, false,
                      false};
    info[R::kResponse] = {kNoSlot, kResponseUsageSlots, R::kCtxResponse, R::kCtxOther, true, true};
    info[R::kThinking] = Text();
    info[R::kMessage] = {kNoSlot, kMessageUsageSlots, R::kCtxMessage, R::kCtxOther, false, true};
    info[R::kUsage] = {kNoSlot, kUsageSlots, R::kCtxUsage, R::kCtxOther, false, false};
    info[R::kChoices] = {kNoSlot, 0, R::kCtxOther, R::kCtxChoices, false, true};
    info[R::kDelta] = {kNoSlot, 0, R::kCtxDelta, R::kCtxOther, true, true};
    info[R::kMessageContent] = Text();
    info[R::kMessageThinking] = Text();
    info[R::kMessageToolCalls] = {kNoSlot, 0, R::kCtxOther, R::kCtxNonEmpty, false, true};
    info[R::kMessageUsage] = {kNoSlot, kMessageUsageSlots, R::kCtxMessageUsage, R::kCtxOther, false,
                              false};
    info[R::kUsagePromptTokens] = Numeric(kSlotUsagePrompt);
    info[R::kUsageCompletionTokens] = Numeric(kSlotUsageCompletion);
    info[R::kUsageInputTokens] = Numeric(kSlotUsageInput);
    info[R::kUsageOutputTokens] = Numeric(kSlotUsageOutput);
    info[R::kResponseUsage] = {
        kNoSlot, kResponseUsageSlots, R::kCtxResponseUsage, R::kCtxOther, false, false};
    info[R::kResponseUsageInput] = Numeric(kSlotResponseInput);
    info[R::kResponseUsageOutput] = Numeric(kSlotResponseOutput);
    info[R::kMessageUsageInput] = Numeric(kSlotMessageInput);
    info[R::kMessageUsageOutput] = Numeric(kSlotMessageOutput);
    info[R::kChoice] = {kNoSlot, 0, R::kCtxChoice, R::kCtxOther, false, true};
    info[R::kChoiceDelta] = {kNoSlot, 0, R::kCtxChoiceDelta, R::kCtxOther, false, true};
    info[R::kChoiceText] = Text();
    info[R::kDeltaContent] = Text();
    info[R::kDeltaReasoning] = Text();
    info[R::kDeltaReasoningContent] = Text();
    info[R::kDeltaToolCalls] = {kNoSlot, 0, R::kCtxOther, R::kCtxNonEmpty, false, true};
    info[R::kDeltaText] = Text();
    info[R::kDeltaThinking] = Text();
    info[R::kDeltaPartialJson] = Text();
  }
};
constexpr RoleTable kRoles;

constexpr uint64_t TokenBit(Role role) { return kRoles.info[role].token ? uint64_t{1} << role : 0; }
static_assert(R::kRoleCount <= 64, "token bits are one uint64_t");

struct Key {
  std::string_view name;
  Role role;
};

constexpr Key kTopKeys[] = {
    {"response", R::kResponse},
    {"done", R::kDone},
    {"message", R::kMessage},
    {"choices", R::kChoices},
    {"eval_count", R::kEvalCount},
    {"prompt_eval_count", R::kPromptEvalCount},
    {"load_duration", R::kLoadDuration},
    {"prompt_eval_duration", R::kPromptEvalDuration},
    {"eval_duration", R::kEvalDuration},
    {"total_duration", R::kTotalDuration},
    {"usage", R::kUsage},
    {"error", R::kError},
    {"thinking", R::kThinking},
    {"type", R::kType},
    {"delta", R::kDelta},
};
constexpr Key kMessageKeys[] = {
    {"content", R::kMessageContent},
    {"thinking", R::kMessageThinking},
    {"tool_calls", R::kMessageToolCalls},
    {"usage", R::kMessageUsage},
};
constexpr Key kUsageKeys[] = {
    {"prompt_tokens", R::kUsagePromptTokens},
    {"completion_tokens", R::kUsageCompletionTokens},
    {"input_tokens", R::kUsageInputTokens},
    {"output_tokens", R::kUsageOutputTokens},
};
constexpr Key kMessageUsageKeys[] = {
    {"input_tokens", R::kMessageUsageInput},
    {"output_tokens", R::kMessageUsageOutput},
};
constexpr Key kResponseKeys[] = {{"usage", R::kResponseUsage}};
constexpr Key kResponseUsageKeys[] = {
    {"input_tokens", R::kResponseUsageInput},
    {"output_tokens", R::kResponseUsageOutput},
};
constexpr Key kChoiceKeys[] = {{"delta", R::kChoiceDelta}, {"text", R::kChoiceText}};
constexpr Key kChoiceDeltaKeys[] = {
    {"content", R::kDeltaContent},
    {"reasoning", R::kDeltaReasoning},
    {"reasoning_content", R::kDeltaReasoningContent},
    {"tool_calls", R::kDeltaToolCalls},
};
constexpr Key kDeltaKeys[] = {
    {"text", R::kDeltaText},
    {"thinking", R::kDeltaThinking},
    {"partial_json", R::kDeltaPartialJson},
};

// One context's keys bucketed by length: most keys of an answer are none of ours ("model",
// "created_at", "id", "object"...) and are ruled out by their length alone; the rest by their
// first byte before any memcmp.
struct KeyIndex {
  static constexpr size_t kMaxKeys = 16;
  static constexpr size_t kMaxLength = 31;
  Key keys[kMaxKeys] = {};             // by length
  uint8_t start[kMaxLength + 2] = {};  // keys n bytes long: keys[start[n]] to keys[start[n + 1]]

  template <size_t N>
  constexpr explicit KeyIndex(const Key (&in)[N]) {
    static_assert(N <= kMaxKeys);
    size_t count = 0;
    for (size_t n = 0; n <= kMaxLength; ++n) {
      start[n] = static_cast<uint8_t>(count);
      for (const Key& k : in) {
        if (k.name.size() == n) keys[count++] = k;
      }
    }
    start[kMaxLength + 1] = static_cast<uint8_t>(count);
    if (count != N) throw "a key longer than kMaxLength";  // fails the constant evaluation
  }

  Role Find(std::string_view name) const {
    if (name.empty() || name.size() > kMaxLength) return R::kNone;
    for (size_t i = start[name.size()]; i < start[name.size() + 1]; ++i) {
      if (keys[i].name[0] == name[0] &&
          std::memcmp(keys[i].name.data(), name.data(), name.size()) == 0) {
        return keys[i].role;
      }
    }
    return R::kNone;
  }
};

constexpr KeyIndex kTopIndex(kTopKeys);
constexpr KeyIndex kMessageIndex(kMessageKeys);
constexpr KeyIndex kUsageIndex(kUsageKeys);
constexpr KeyIndex kMessageUsageIndex(kMessageUsageKeys);
constexpr KeyIndex kResponseIndex(kResponseKeys);
constexpr KeyIndex kResponseUsageIndex(kResponseUsageKeys);
constexpr KeyIndex kChoiceIndex(kChoiceKeys);
constexpr KeyIndex kChoiceDeltaIndex(kChoiceDeltaKeys);
constexpr KeyIndex kDeltaIndex(kDeltaKeys);

Role LookupKey(Ctx ctx, std::string_view name) {
  switch (ctx) {
    case R::kCtxTop:
      return kTopIndex.Find(name);
    case R::kCtxMessage:
      return kMessageIndex.Find(name);
    case R::kCtxUsage:
      return kUsageIndex.Find(name);
    case R::kCtxMessageUsage:
      return kMessageUsageIndex.Find(name);
    case R::kCtxResponse:
      return kResponseIndex.Find(name);
    case R::kCtxResponseUsage:
      return kResponseUsageIndex.Find(name);
    case R::kCtxChoice:
      return kChoiceIndex.Find(name);
    case R::kCtxChoiceDelta:
      return kChoiceDeltaIndex.Find(name);
    case R::kCtxDelta:
      return kDeltaIndex.Find(name);
    default:
      return R::kNone;
  }
}

constexpr int64_t SlotMax(Slot s) {
  return s >= kSlotLoadDuration && s <= kSlotTotalDuration ? kMaxDurationNs : kMaxTokenCount;
}

// Number grammar (RFC 8259): states after each accepted character.
enum NumberState : uint8_t {
  kNumMinus,    // '-'
  kNumZero,     // a leading 0
  kNumInt,      // integer digits
  kNumDot,      // '.'
  kNumFrac,     // fraction digits
  kNumE,        // 'e' / 'E'
  kNumExpSign,  // exponent sign
  kNumExp,      // exponent digits
};
constexpr bool Accepting(uint8_t s) {
  return s == kNumZero || s == kNumInt || s == kNumFrac || s == kNumExp;
}

constexpr bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kDoneData = "[DONE]";

// The bytes that end a run of plain string content: the quote, a backslash, a control byte.
struct StringStop {
  bool stop[256];
  constexpr StringStop() : stop() {
    for (int c = 0; c < 0x20; ++c) stop[c] = true;
    stop[static_cast<unsigned char>('"')] = true;
    stop[static_cast<unsigned char>('\\')] = true;
  }
};
constexpr StringStop kStringStop;

// The first byte in [p, end) that ends a run of plain string content, or end. Eight bytes at a
// time (most of an answer's bytes are its text): per byte, the top bit of `hit` is set when the
// byte is below 0x20 or equal to '"' or '\\' (x - 0x20 and x ^ '"' - 1 borrow only there; bytes
// of 0x80 and up are masked by ~w). A borrow can only set bits above a stop byte, so the lowest
// set bit is exactly the first stop byte.
const char* SkipStringContent(const char* p, const char* end) {
  if constexpr (std::endian::native == std::endian::little) {
    constexpr uint64_t kOnes = 0x0101010101010101;
    constexpr uint64_t kHighs = 0x8080808080808080;
    while (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      const uint64_t quote = w ^ (kOnes * '"');
      const uint64_t backslash = w ^ (kOnes * '\\');
      const uint64_t hit = ((w - kOnes * 0x20) | (quote - kOnes) | (backslash - kOnes)) &
                           ~(w & quote & backslash) & kHighs;
      if (hit != 0) return p + std::countr_zero(hit) / 8;
      p += 8;
    }
  }
  while (p < end && !kStringStop.stop[static_cast<unsigned char>(*p)]) ++p;
  return p;
}

// From the ',' at p, past every following element that is a plain integer ("0" or a digit run
// not starting with 0, whitespace around it) followed by another ','. Returns that last ','.
const char* SkipIntegerElements(const char* p, const char* end) {
  for (;;) {
    const char* q = p + 1;
    while (q < end && IsSpace(*q)) ++q;
    if (q == end || !IsDigit(*q)) return p;
    if (*q++ != '0') {
      while (q < end && IsDigit(*q)) ++q;
    }
    while (q < end && IsSpace(*q)) ++q;
    if (q == end || *q != ',') return p;
    p = q;
  }
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

}  // namespace

AnswerFormat AnswerFormatFor(Endpoint endpoint, std::string_view content_type) {
  switch (endpoint) {
    case Endpoint::kGenerate:
    case Endpoint::kChat:
    case Endpoint::kEmbed:
    case Endpoint::kEmbeddings:
    case Endpoint::kOpenAIChat:
    case Endpoint::kOpenAICompletions:
    case Endpoint::kOpenAIEmbeddings:
    case Endpoint::kOpenAIResponses:
    case Endpoint::kOpenAIMessages:
      break;
    default:
      return AnswerFormat::kNone;
  }
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  if (EqualsIgnoreCase(media, "application/x-ndjson")) return AnswerFormat::kNdjson;
  if (EqualsIgnoreCase(media, "text/event-stream")) return AnswerFormat::kSse;
  if (EqualsIgnoreCase(media, "application/json")) return AnswerFormat::kJson;
  return AnswerFormat::kNone;
}

AnswerUsageReader::AnswerUsageReader(AnswerFormat format) : format_(format) {}

bool AnswerUsageReader::Feed(std::string_view bytes) {
  if (finished_ || bytes.empty()) return false;
  const char* p = bytes.data();
  const char* end = p + bytes.size();
  switch (format_) {
    case AnswerFormat::kNdjson:
      return FeedNdjson(p, end);
    case AnswerFormat::kSse:
      return FeedSse(p, end);
    case AnswerFormat::kJson:
      Scan(p, end);
      fed_ += bytes.size();
      return false;
    case AnswerFormat::kNone:
      break;
  }
  fed_ += bytes.size();
  return false;
}

bool AnswerUsageReader::Finish() {
  if (finished_) return false;
  finished_ = true;
  // An SSE event without its blank line is dropped (the event-stream rules).
  if (format_ == AnswerFormat::kNdjson || format_ == AnswerFormat::kJson) {
    return EndDocument(format_ == AnswerFormat::kNdjson);
  }
  return false;
}

// --- NDJSON ---

bool AnswerUsageReader::FeedNdjson(const char* p, const char* end) {
  bool first = false;
  while (p < end) {
    const void* found = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (found == nullptr) {
      Scan(p, end);
      fed_ += static_cast<uint64_t>(end - p);
      break;
    }
    const char* nl = static_cast<const char*>(found);
    Scan(p, nl);
    fed_ += static_cast<uint64_t>(nl + 1 - p);
    first |= EndDocument(true);
    p = nl + 1;
  }
  return first;
}

// --- SSE ---

bool AnswerUsageReader::FeedSse(const char* p, const char* end) {
  bool first = false;
  while (p < end) {
    const char c = *p;
    if (sse_after_cr_) {
      sse_after_cr_ = false;
      if (c == '\n') {
        ++p;
        ++fed_;
        continue;
      }
    }
    if (c == '\n' || c == '\r') {
      ++p;
      ++fed_;
      sse_after_cr_ = c == '\r';
      first |= SseLineEnd();
      continue;
    }
    switch (sse_state_) {
      case kLineStart:
        if (c == ':') {
          sse_state_ = kIgnoreLine;  // a comment
          break;
        }
        sse_state_ = kFieldName;
        field_len_ = 0;
        [[fallthrough]];
      case kFieldName:
        if (c == ':') {
          if (field_len_ == 4 && std::memcmp(field_, "data", 4) == 0) {
            SseData(nullptr, nullptr);  // the line's data starts, even if empty
            sse_state_ = kDataSpace;
          } else {
            sse_state_ = kIgnoreLine;
          }
        } else if (field_len_ < sizeof(field_)) {
          field_[field_len_++] = c;
        }
        break;
      case kDataSpace:
        sse_state_ = kData;
        if (c == ' ') break;  // one space after the colon is not data
        [[fallthrough]];
      case kData: {
        const char* q = p;
        while (q < end && *q != '\n' && *q != '\r') ++q;
        SseData(p, q);
        fed_ += static_cast<uint64_t>(q - p);
        p = q;
        continue;
      }
      case kIgnoreLine: {
        const char* q = p;
        while (q < end && *q != '\n' && *q != '\r') ++q;
        fed_ += static_cast<uint64_t>(q - p);
        p = q;
        continue;
      }
    }
    ++p;
    ++fed_;
  }
  return first;
}

// `p == nullptr` starts a data line: lines after the first are joined with '\n'.
void AnswerUsageReader::SseData(const char* p, const char* end) {
  if (p == nullptr) {
    if (event_data_lines_++ > 0) {
      static constexpr char kNewline = '\n';
      done_match_ = -1;
      Scan(&kNewline, &kNewline + 1);
    }
    return;
  }
  const size_t n = static_cast<size_t>(end - p);
  if (done_match_ >= 0) {
    const size_t k = static_cast<size_t>(done_match_);
    if (k + n <= kDoneData.size() && kDoneData.compare(k, n, std::string_view(p, n)) == 0) {
      done_match_ += static_cast<int>(n);
    } else {
      done_match_ = -1;
    }
  }
  Scan(p, end);
}

bool AnswerUsageReader::SseLineEnd() {
  const SseState was = sse_state_;
  sse_state_ = kLineStart;
  if (was == kFieldName && field_len_ == 4 && std::memcmp(field_, "data", 4) == 0) {
    SseData(nullptr, nullptr);  // "data" without a colon: an empty data line
    return false;
  }
  if (was != kLineStart) return false;
  // A blank line dispatches the event.
  if (event_data_lines_ == 0) return false;
  const bool is_done = done_match_ == static_cast<int>(kDoneData.size());
  event_data_lines_ = 0;
  done_match_ = 0;
  if (is_done) {
    usage_.done = true;
    ResetDocument();
    return false;
  }
  return EndDocument(true);
}

// --- The JSON scanner ---

void AnswerUsageReader::ResetDocument() {
  state_ = kStart;
  depth_ = 0;
  pending_.present = 0;
  document_object_ = false;
  document_tokens_ = false;
  want_low_surrogate_ = false;
}

bool AnswerUsageReader::EndDocument(bool stream) {
  if (state_ == kNumber && depth_ == 0 && Accepting(number_state_)) EndNumber();
  const State was = state_;
  bool first = false;
  if (was == kEnd && document_object_) {
    first = Commit(stream);
  } else if (was != kStart) {
    ++usage_.malformed;  // not JSON, not an object, cut short, or too deep
  }
  ResetDocument();
  return first;
}

bool AnswerUsageReader::Commit(bool stream) {
  const uint32_t present = pending_.present;
  const int64_t* v = pending_.value;
  ++usage_.objects;
  static constexpr Slot kInput[] = {kSlotPromptEvalCount, kSlotUsagePrompt, kSlotUsageInput,
                                    kSlotResponseInput, kSlotMessageInput};
  static constexpr Slot kOutput[] = {kSlotEvalCount, kSlotUsageCompletion, kSlotUsageOutput,
                                     kSlotResponseOutput, kSlotMessageOutput};
  for (Slot s : kInput) {
    if (present & Bit(s)) {
      usage_.input_tokens = v[s];
      break;
    }
  }
  for (Slot s : kOutput) {
    if (present & Bit(s)) {
      usage_.output_tokens = v[s];
      break;
    }
  }
  if (present & Bit(kSlotLoadDuration)) usage_.load_duration_ns = v[kSlotLoadDuration];
  if (present & Bit(kSlotPromptEvalDuration)) {
    usage_.prompt_eval_duration_ns = v[kSlotPromptEvalDuration];
  }
  if (present & Bit(kSlotEvalDuration)) usage_.eval_duration_ns = v[kSlotEvalDuration];
  if (present & Bit(kSlotTotalDuration)) usage_.total_duration_ns = v[kSlotTotalDuration];
  const bool error = (present & Bit(kSlotError)) != 0;
  if (error) usage_.error = true;
  if (present & (Bit(kSlotDone) | Bit(kSlotFinalType))) usage_.done = true;
  if (!stream && !error) usage_.done = true;  // a whole body is its own end
  if (stream && document_tokens_ && !usage_.first_token) {
    usage_.first_token = true;
    usage_.first_token_offset = fed_;
    return true;
  }
  return false;
}

AnswerUsageReader::Role AnswerUsageReader::CurrentRole() {
  if (depth_ == 0) return kDocument;
  if (depth_ > kTrackedDepth) return kNone;
  Frame& f = frames_[depth_ - 1];
  const bool object = (object_bits_[(depth_ - 1) / 64] >> ((depth_ - 1) % 64)) & 1;
  if (object) return f.member;
  if (f.ctx == kCtxChoices) return kChoice;
  if (f.ctx == kCtxNonEmpty) f.tokens = 1;
  return kNone;
}

void AnswerUsageReader::BeginValue(char c) {
  const Role role = CurrentRole();
  const RoleInfo& info = kRoles.info[role];
  pending_.present &= ~info.clears;
  // Flags are decided by the value's first byte: a value that does not complete drops the
  // whole document anyway.
  if (role == kError && c != 'n') pending_.present |= Bit(kSlotError);
  switch (c) {
    case '{':
    case '[': {
      const bool object = c == '{';
      if (depth_ == kMaxAnswerDepth) {
        state_ = kBad;
        return;
      }
      if (depth_ == 0) document_object_ = object;
      uint64_t& word = object_bits_[depth_ / 64];
      const uint64_t bit = uint64_t{1} << (depth_ % 64);
      word = object ? (word | bit) : (word & ~bit);
      if (depth_ < kTrackedDepth) {
        frames_[depth_] = {object ? info.object : info.array, role, kNone, 0};
      }
      ++depth_;
      state_ = object ? kObjectFirst : kArrayFirst;
      return;
    }
    case '"':
      in_key_ = false;
      value_role_ = role;
      string_nonempty_ = false;
      capturing_ = role == kType;
      capture_len_ = 0;
      state_ = kString;
      return;
    case 't':
    case 'f':
    case 'n':
      literal_ = c == 't' ? "rue" : c == 'f' ? "alse" : "ull";
      value_role_ = role;
      if (role == kDone && c == 't') pending_.present |= Bit(kSlotDone);
      state_ = kLiteral;
      return;
    default:
      break;
  }
  if (c == '-' || IsDigit(c)) {
    value_role_ = role;
    number_usable_ = c != '-';
    number_ = c == '-' ? 0 : static_cast<uint64_t>(c - '0');
    number_state_ = c == '-' ? kNumMinus : c == '0' ? kNumZero : kNumInt;
    state_ = kNumber;
    return;
  }
  state_ = kBad;
}

void AnswerUsageReader::EndValue(Role role, bool tokens) {
  if (depth_ == 0) {
    document_tokens_ = tokens;
    state_ = kEnd;
    return;
  }
  state_ = kAfterValue;
  if (depth_ > kTrackedDepth) return;
  Frame& parent = frames_[depth_ - 1];
  const bool object = (object_bits_[(depth_ - 1) / 64] >> ((depth_ - 1) % 64)) & 1;
  if (object) {
    const uint64_t bit = TokenBit(role);
    parent.tokens = (parent.tokens & ~bit) | (tokens ? bit : 0);
  } else if (tokens) {
    parent.tokens = 1;
  }
}

void AnswerUsageReader::CloseContainer(bool object) {
  const int top = depth_ - 1;
  const bool is_object = (object_bits_[top / 64] >> (top % 64)) & 1;
  if (is_object != object) {
    state_ = kBad;
    return;
  }
  Role role = kNone;
  bool tokens = false;
  if (top < kTrackedDepth) {
    role = frames_[top].role;
    tokens = frames_[top].tokens != 0;
  }
  depth_ = top;
  EndValue(role, tokens);
}

void AnswerUsageReader::CaptureBytes(const char* p, const char* end) {
  const auto n = static_cast<size_t>(end - p);
  if (capture_len_ == kCaptureLost) return;
  if (n > static_cast<size_t>(kCaptureSize - capture_len_)) {
    capture_len_ = kCaptureLost;
    return;
  }
  std::memcpy(capture_ + capture_len_, p, n);
  capture_len_ = static_cast<uint8_t>(capture_len_ + n);
}

void AnswerUsageReader::CaptureByte(char c) {
  if (capture_len_ == kCaptureLost) return;
  if (capture_len_ == kCaptureSize) {
    capture_len_ = kCaptureLost;
    return;
  }
  capture_[capture_len_++] = c;
}

void AnswerUsageReader::EndString(std::string_view captured, bool lost) {
  if (in_key_) {
    if (capturing_) {  // only in a tracked frame
      Frame& f = frames_[depth_ - 1];
      f.member = lost ? kNone : LookupKey(f.ctx, captured);
    }
    state_ = kColon;
    return;
  }
  const Role role = value_role_;
  if (role == kType && !lost && (captured == "response.completed" || captured == "message_stop")) {
    pending_.present |= Bit(kSlotFinalType);
  }
  EndValue(role, string_nonempty_ && kRoles.info[role].string_token);
}

void AnswerUsageReader::EndNumber() {
  const Role role = value_role_;
  const Slot slot = kRoles.info[role].slot;
  if (slot < kSlotDone && number_usable_ && number_state_ != kNumMinus &&
      static_cast<int64_t>(number_) <= SlotMax(slot)) {
    pending_.present |= Bit(slot);
    pending_.value[slot] = static_cast<int64_t>(number_);
  }
  EndValue(role, false);
}

void AnswerUsageReader::Scan(const char* p, const char* end) {
  while (p < end) {
    const char c = *p;
    switch (state_) {
      case kBad:
        return;
      case kString: {
        // Most of an answer is string content: skipped a word at a time up to the next byte
        // that needs the full path (the quote, a backslash, a control byte).
        const char* s = p;
        p = SkipStringContent(p, end);
        if (p > s) string_nonempty_ = true;
        if (p < end && *p == '"' && capturing_ && capture_len_ == 0) {
          // The whole string is in this chunk without an escape (nearly every key): it is
          // matched where it lies, not copied.
          const auto n = static_cast<size_t>(p - s);
          const bool lost = n > kCaptureSize;
          ++p;
          EndString(lost ? std::string_view() : std::string_view(s, n), lost);
          continue;
        }
        if (p > s && capturing_) CaptureBytes(s, p);
        if (p == end) return;
        const char d = *p++;
        if (d == '"') {
          const bool lost = capture_len_ == kCaptureLost;
          EndString(std::string_view(capture_, lost ? 0 : capture_len_), lost);
        } else if (d == '\\') {
          string_nonempty_ = true;
          state_ = kEscape;
        } else {
          state_ = kBad;  // a raw control character
        }
        continue;
      }
      case kEscape: {
        char decoded = 0;
        switch (c) {
          case '"':
            decoded = '"';
            break;
          case '\\':
            decoded = '\\';
            break;
          case '/':
            decoded = '/';
            break;
          case 'b':
            decoded = '\b';
            break;
          case 'f':
            decoded = '\f';
            break;
          case 'n':
            decoded = '\n';
            break;
          case 'r':
            decoded = '\r';
            break;
          case 't':
            decoded = '\t';
            break;
          case 'u':
            hex_digits_ = 0;
            hex_value_ = 0;
            state_ = kHex;
            ++p;
            continue;
          default:
            state_ = kBad;
            return;
        }
        if (capturing_) CaptureByte(decoded);
        state_ = kString;
        break;
      }
      case kHex: {
        const int h = HexValue(c);
        if (h < 0) {
          state_ = kBad;
          return;
        }
        hex_value_ = hex_value_ * 16 + static_cast<uint32_t>(h);
        if (++hex_digits_ < 4) break;
        const bool low = hex_value_ >= 0xDC00 && hex_value_ <= 0xDFFF;
        if (want_low_surrogate_ != low) {
          state_ = kBad;  // a lone surrogate
          return;
        }
        want_low_surrogate_ = false;
        if (!low && hex_value_ >= 0xD800 && hex_value_ <= 0xDBFF) {
          want_low_surrogate_ = true;
          state_ = kLowBackslash;
          break;
        }
        // Only ASCII can match a key or a type; anything else stands for a byte no name has.
        if (capturing_) CaptureByte(hex_value_ < 0x80 ? static_cast<char>(hex_value_) : '\xff');
        state_ = kString;
        break;
      }
      case kLowBackslash:
        if (c != '\\') {
          state_ = kBad;
          return;
        }
        state_ = kLowU;
        break;
      case kLowU:
        if (c != 'u') {
          state_ = kBad;
          return;
        }
        hex_digits_ = 0;
        hex_value_ = 0;
        state_ = kHex;
        break;
      case kNumber: {
        if (number_state_ == kNumInt && IsDigit(c)) {
          // A run of integer digits (counts, durations, `context` token ids) in one tight loop.
          // number_ stays at most kMaxDurationNs, so number_ * 10 + 9 cannot overflow.
          uint64_t n = number_;
          bool usable = number_usable_;
          do {
            const uint64_t next = n * 10 + static_cast<uint64_t>(*p - '0');
            if (next > static_cast<uint64_t>(kMaxDurationNs)) {
              usable = false;
            } else {
              n = next;
            }
          } while (++p < end && IsDigit(*p));
          number_ = n;
          number_usable_ = usable;
          continue;
        }
        switch (number_state_) {
          case kNumMinus:
            if (!IsDigit(c)) {
              state_ = kBad;
              return;
            }
            number_state_ = c == '0' ? kNumZero : kNumInt;
            break;
          case kNumZero:
          case kNumInt:
            if (IsDigit(c) && number_state_ == kNumInt) {
              const auto d = static_cast<uint64_t>(c - '0');
              if (number_ > (static_cast<uint64_t>(kMaxDurationNs) - d) / 10) {
                number_usable_ = false;
              } else {
                number_ = number_ * 10 + d;
              }
              break;
            }
            if (c == '.') {
              number_usable_ = false;
              number_state_ = kNumDot;
              break;
            }
            if (c == 'e' || c == 'E') {
              number_usable_ = false;
              number_state_ = kNumE;
              break;
            }
            if (IsDigit(c)) {  // a digit after a leading 0
              state_ = kBad;
              return;
            }
            EndNumber();
            continue;  // the byte after the number is read in the new state
          case kNumDot:
          case kNumExpSign:
            if (!IsDigit(c)) {
              state_ = kBad;
              return;
            }
            number_state_ = number_state_ == kNumDot ? kNumFrac : kNumExp;
            break;
          case kNumFrac:
            if (IsDigit(c)) break;
            if (c == 'e' || c == 'E') {
              number_state_ = kNumE;
              break;
            }
            EndNumber();
            continue;
          case kNumE:
            if (c == '+' || c == '-') {
              number_state_ = kNumExpSign;
            } else if (IsDigit(c)) {
              number_state_ = kNumExp;
            } else {
              state_ = kBad;
              return;
            }
            break;
          case kNumExp:
            if (IsDigit(c)) break;
            EndNumber();
            continue;
        }
        break;
      }
      case kLiteral:
        if (c != *literal_) {
          state_ = kBad;
          return;
        }
        if (*++literal_ == '\0') EndValue(value_role_, false);
        break;
      case kStart:
      case kValue:
        if (!IsSpace(c)) BeginValue(c);
        break;
      case kArrayFirst:
        if (IsSpace(c)) break;
        if (c == ']') {
          CloseContainer(false);
        } else {
          BeginValue(c);
        }
        break;
      case kObjectFirst:
      case kObjectKey:
        if (IsSpace(c)) break;
        if (c == '}' && state_ == kObjectFirst) {
          CloseContainer(true);
        } else if (c == '"') {
          in_key_ = true;
          string_nonempty_ = false;
          capturing_ = depth_ <= kTrackedDepth && frames_[depth_ - 1].ctx != kCtxOther;
          if (depth_ <= kTrackedDepth) frames_[depth_ - 1].member = kNone;
          capture_len_ = 0;
          state_ = kString;
        } else {
          state_ = kBad;
        }
        break;
      case kColon:
        if (IsSpace(c)) break;
        state_ = c == ':' ? kValue : kBad;
        break;
      case kAfterValue:
        if (IsSpace(c)) break;
        if (c == ',') {
          const bool object = (object_bits_[(depth_ - 1) / 64] >> ((depth_ - 1) % 64)) & 1;
          if (!object && (depth_ > kTrackedDepth || frames_[depth_ - 1].ctx == kCtxOther)) {
            // An array whose elements mean nothing (Ollama's `context` of token ids): skip
            // whole ",<integer>," elements here, as the full path would leave them (kAfterValue
            // at the next ','); anything else, or an element cut by the chunk's end, is left to
            // the full path from its ','.
            p = SkipIntegerElements(p, end);
          }
          state_ = object ? kObjectKey : kValue;
        } else if (c == '}' || c == ']') {
          CloseContainer(c == '}');
        } else {
          state_ = kBad;
        }
        break;
      case kEnd:
        if (!IsSpace(c)) state_ = kBad;
        break;
    }
    ++p;
  }
}

}  // namespace corral::dataplane
