// Fuzzes the answer usage reader (dataplane/answer_usage.h) on arbitrary node answers.
//
// Input: byte 0 picks the format (NDJSON, SSE, whole JSON), bytes 1-4 pick two cut points, the
// rest is the answer. Properties: the answer read in one piece, in two and three pieces cut at
// the chosen points, and (up to 512 bytes) one byte at a time gives the same result, and Feed (or
// Finish) signals the first token exactly once, on the piece holding its offset; the result equals
// a reference built from nlohmann::json on each line / event / body; numbers stay in range.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/answer_usage.h"
#include "fuzz/fuzz_check.h"
#include "nlohmann/json.hpp"

namespace {

using corral::dataplane::AnswerFormat;
using corral::dataplane::AnswerUsage;
using corral::dataplane::AnswerUsageReader;
using corral::dataplane::kMaxAnswerDepth;
using corral::dataplane::kMaxDurationNs;
using corral::dataplane::kMaxTokenCount;
using Json = nlohmann::json;

std::string Describe(const AnswerUsage& u) {
  auto opt = [](const std::optional<int64_t>& v) {
    return v ? std::to_string(*v) : std::string("absent");
  };
  return "in=" + opt(u.input_tokens) + " out=" + opt(u.output_tokens) +
         " load=" + opt(u.load_duration_ns) + " prompt_eval=" + opt(u.prompt_eval_duration_ns) +
         " eval=" + opt(u.eval_duration_ns) + " total=" + opt(u.total_duration_ns) +
         " done=" + std::to_string(u.done) + " error=" + std::to_string(u.error) +
         " first_token=" + std::to_string(u.first_token) + "@" +
         std::to_string(u.first_token_offset) + " objects=" + std::to_string(u.objects) +
         " malformed=" + std::to_string(u.malformed);
}

// Reads `answer` in the pieces that `cuts` (ascending offsets) make; checks the first-token
// signal against the result.
AnswerUsage ReadInPieces(AnswerFormat format, std::string_view answer,
                         const std::vector<size_t>& cuts) {
  AnswerUsageReader reader(format);
  size_t start = 0;
  int signals = 0;
  std::vector<std::pair<size_t, size_t>> signalled;  // the pieces that returned true
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t stop = i < cuts.size() ? cuts[i] : answer.size();
    if (reader.Feed(answer.substr(start, stop - start))) {
      ++signals;
      signalled.emplace_back(start, stop);
    }
    start = stop;
  }
  if (reader.Finish()) {
    ++signals;
    signalled.emplace_back(answer.size() - 1, answer.size());  // a last line without '\n'
  }
  const AnswerUsage& usage = reader.usage();
  FUZZ_CHECK(signals == (usage.first_token ? 1 : 0), "%d first-token signals for %s", signals,
             Describe(usage).c_str());
  if (signals == 1) {
    FUZZ_CHECK(signalled[0].first < usage.first_token_offset &&
                   usage.first_token_offset <= signalled[0].second,
               "signalled on [%zu, %zu) for offset %llu", signalled[0].first, signalled[0].second,
               static_cast<unsigned long long>(usage.first_token_offset));
  }
  return usage;
}

// --- The reference: the same rules over a parsed document ---

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool Blank(std::string_view s) {
  for (char c : s) {
    if (!IsSpace(c)) return false;
  }
  return true;
}

int Depth(const Json& j, int limit) {
  if (!j.is_structured() || limit == 0) return 0;
  int deepest = 0;
  for (const Json& child : j) deepest = std::max(deepest, Depth(child, limit - 1));
  return 1 + deepest;
}

std::optional<int64_t> Count(const Json* o, const char* key, int64_t max) {
  if (o == nullptr || !o->is_object()) return std::nullopt;
  const auto it = o->find(key);
  if (it == o->end() || !it->is_number_unsigned()) return std::nullopt;
  const uint64_t v = it->get<uint64_t>();
  if (v > static_cast<uint64_t>(max)) return std::nullopt;
  return static_cast<int64_t>(v);
}
const Json* Member(const Json* o, const char* key) {
  if (o == nullptr || !o->is_object()) return nullptr;
  const auto it = o->find(key);
  return it == o->end() ? nullptr : &*it;
}
const Json* Object(const Json* o, const char* key) {
  const Json* m = Member(o, key);
  return m != nullptr && m->is_object() ? m : nullptr;
}
bool Text(const Json* o, const char* key) {
  const Json* m = Member(o, key);
  return m != nullptr && m->is_string() && !m->get_ref<const std::string&>().empty();
}
bool Items(const Json* o, const char* key) {
  const Json* m = Member(o, key);
  return m != nullptr && m->is_array() && !m->empty();
}

struct Reference {
  AnswerUsage usage;
  bool inconclusive = false;  // a number nlohmann cannot hold (1e400): it refuses the document

  // One line, event or body; `end` is where it ended in the answer.
  void Document(std::string_view text, bool stream, uint64_t end) {
    if (Blank(text)) return;
    // nlohmann's lexer takes a NUL byte outside a string for the end of the input; to JSON (and
    // the reader) it is an error anywhere.
    if (text.find('\0') != std::string_view::npos) {
      ++usage.malformed;
      return;
    }
    // Bytes >= 0x80 can only be string content (or invalid anywhere else): '#' stands for them
    // so that nlohmann's UTF-8 check, which the reader does not make, changes nothing.
    std::string ascii(text);
    for (char& c : ascii) {
      if (static_cast<unsigned char>(c) >= 0x80) c = '#';
    }
    Json j;
    try {
      j = Json::parse(ascii);
    } catch (const Json::out_of_range&) {
      inconclusive = true;
      return;
    } catch (const Json::exception&) {
      ++usage.malformed;
      return;
    }
    if (!j.is_object() || Depth(j, kMaxAnswerDepth + 1) > kMaxAnswerDepth) {
      ++usage.malformed;
      return;
    }
    ++usage.objects;
    const Json* top = &j;
    const Json* use = Object(top, "usage");
    const Json* response_usage = Object(Object(top, "response"), "usage");
    const Json* message = Object(top, "message");
    const Json* message_usage = Object(message, "usage");
    for (auto v :
         {Count(top, "prompt_eval_count", kMaxTokenCount),
          Count(use, "prompt_tokens", kMaxTokenCount), Count(use, "input_tokens", kMaxTokenCount),
          Count(response_usage, "input_tokens", kMaxTokenCount),
          Count(message_usage, "input_tokens", kMaxTokenCount)}) {
      if (v) {
        usage.input_tokens = v;
        break;
      }
    }
    for (auto v :
         {Count(top, "eval_count", kMaxTokenCount), Count(use, "completion_tokens", kMaxTokenCount),
          Count(use, "output_tokens", kMaxTokenCount),
          Count(response_usage, "output_tokens", kMaxTokenCount),
          Count(message_usage, "output_tokens", kMaxTokenCount)}) {
      if (v) {
        usage.output_tokens = v;
        break;
      }
    }
    if (auto v = Count(top, "load_duration", kMaxDurationNs)) usage.load_duration_ns = v;
    if (auto v = Count(top, "prompt_eval_duration", kMaxDurationNs)) {
      usage.prompt_eval_duration_ns = v;
    }
    if (auto v = Count(top, "eval_duration", kMaxDurationNs)) usage.eval_duration_ns = v;
    if (auto v = Count(top, "total_duration", kMaxDurationNs)) usage.total_duration_ns = v;
    const Json* error = Member(top, "error");
    const bool is_error = error != nullptr && !error->is_null();
    if (is_error) usage.error = true;
    const Json* done = Member(top, "done");
    const Json* type = Member(top, "type");
    if ((done != nullptr && done->is_boolean() && done->get<bool>()) ||
        (type != nullptr && type->is_string() &&
         (*type == "response.completed" || *type == "message_stop"))) {
      usage.done = true;
    }
    if (!stream && !is_error) usage.done = true;

    bool token = Text(top, "response") || Text(top, "thinking") || Text(top, "delta") ||
                 Text(message, "content") || Text(message, "thinking") ||
                 Items(message, "tool_calls");
    if (const Json* delta = Object(top, "delta")) {
      token =
          token || Text(delta, "text") || Text(delta, "thinking") || Text(delta, "partial_json");
    }
    const Json* choices = Member(top, "choices");
    if (choices != nullptr && choices->is_array()) {
      for (const Json& choice : *choices) {
        const Json* d = Object(&choice, "delta");
        token = token || Text(&choice, "text") || Text(d, "content") || Text(d, "reasoning") ||
                Text(d, "reasoning_content") || Items(d, "tool_calls");
      }
    }
    if (stream && token && !usage.first_token) {
      usage.first_token = true;
      usage.first_token_offset = end;
    }
  }

  void Ndjson(std::string_view answer) {
    size_t start = 0;
    while (start < answer.size()) {
      const size_t nl = answer.find('\n', start);
      const size_t stop = nl == std::string_view::npos ? answer.size() : nl;
      const uint64_t end = nl == std::string_view::npos ? answer.size() : nl + 1;
      Document(answer.substr(start, stop - start), true, end);
      start = end;
    }
  }

  // The event-stream rules on the whole answer at once.
  void Sse(std::string_view answer) {
    std::string data;
    int lines = 0;
    size_t pos = 0;
    while (pos < answer.size()) {
      const size_t eol = answer.find_first_of("\r\n", pos);
      if (eol == std::string_view::npos) break;  // a cut-off line: its event is never dispatched
      const std::string_view line = answer.substr(pos, eol - pos);
      pos = eol + 1;
      const uint64_t end = pos;
      if (answer[eol] == '\r' && pos < answer.size() && answer[pos] == '\n') ++pos;
      if (line.empty()) {
        if (lines > 0) {
          if (data == "[DONE]") {
            usage.done = true;
          } else {
            Document(data, true, end);
          }
        }
        data.clear();
        lines = 0;
        continue;
      }
      if (line[0] == ':') continue;
      const size_t colon = line.find(':');
      const std::string_view field = line.substr(0, colon);
      std::string_view value;
      if (colon != std::string_view::npos) {
        value = line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      }
      if (field != "data") continue;
      if (lines++ > 0) data += '\n';
      data += value;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  static constexpr AnswerFormat kFormats[] = {AnswerFormat::kNdjson, AnswerFormat::kSse,
                                              AnswerFormat::kJson};
  const AnswerFormat format = kFormats[data[0] % 3];
  const std::string_view answer(reinterpret_cast<const char*>(data) + 5, size - 5);
  size_t a = (size_t{data[1]} << 8 | data[2]) % (answer.size() + 1);
  size_t b = (size_t{data[3]} << 8 | data[4]) % (answer.size() + 1);
  if (a > b) std::swap(a, b);

  const AnswerUsage whole = ReadInPieces(format, answer, {});
  const AnswerUsage two = ReadInPieces(format, answer, {a});
  FUZZ_CHECK(two == whole, "cut at %zu: %s\n  whole: %s", a, Describe(two).c_str(),
             Describe(whole).c_str());
  const AnswerUsage three = ReadInPieces(format, answer, {a, b});
  FUZZ_CHECK(three == whole, "cut at %zu and %zu: %s\n  whole: %s", a, b, Describe(three).c_str(),
             Describe(whole).c_str());
  if (answer.size() <= 512) {
    std::vector<size_t> every;
    for (size_t i = 1; i < answer.size(); ++i) every.push_back(i);
    const AnswerUsage bytes = ReadInPieces(format, answer, every);
    FUZZ_CHECK(bytes == whole, "byte at a time: %s\n  whole: %s", Describe(bytes).c_str(),
               Describe(whole).c_str());
  }

  // Numbers in range; a first token only in streams, at a real offset.
  for (auto v : {whole.input_tokens, whole.output_tokens}) {
    FUZZ_CHECK(!v || (*v >= 0 && *v <= kMaxTokenCount), "count %lld", static_cast<long long>(*v));
  }
  for (auto v : {whole.load_duration_ns, whole.prompt_eval_duration_ns, whole.eval_duration_ns,
                 whole.total_duration_ns}) {
    FUZZ_CHECK(!v || (*v >= 0 && *v <= kMaxDurationNs), "duration %lld",
               static_cast<long long>(*v));
  }
  FUZZ_CHECK(
      !whole.first_token || (format != AnswerFormat::kJson && whole.first_token_offset >= 1 &&
                             whole.first_token_offset <= answer.size()),
      "first token at %llu", static_cast<unsigned long long>(whole.first_token_offset));

  // The reference.
  Reference ref;
  switch (format) {
    case AnswerFormat::kNdjson:
      ref.Ndjson(answer);
      break;
    case AnswerFormat::kSse:
      ref.Sse(answer);
      break;
    case AnswerFormat::kJson:
      ref.Document(answer, false, answer.size());
      break;
    case AnswerFormat::kNone:
      break;
  }
  if (!ref.inconclusive) {
    FUZZ_CHECK(ref.usage == whole, "reader: %s\n  reference: %s", Describe(whole).c_str(),
               Describe(ref.usage).c_str());
  }
  return 0;
}
