#include "common/request_head.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <utility>

#include "common/ascii.h"

namespace corral {
namespace {

// Character classes of RFC 9110 §5.6.2 (tchar), §5.5 (field-vchar, obs-text) and the visible
// ASCII of a request target, looked up once per byte.
enum : uint8_t {
  kToken = 1,    // tchar
  kVisible = 2,  // VCHAR, 0x21..0x7e
  kValue = 4,    // field value: HTAB, SP, VCHAR, obs-text
  kHex = 8,      // HEXDIG
};

constexpr std::array<uint8_t, 256> MakeClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t k = 0;
    if (c >= 0x21 && c <= 0x7e) k |= kVisible | kValue;
    if (c == ' ' || c == '\t' || c >= 0x80) k |= kValue;
    const bool digit = c >= '0' && c <= '9';
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (digit || alpha) k |= kToken;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) k |= kHex;
    t[c] = k;
  }
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] |= kToken;
  return t;
}
constexpr std::array<uint8_t, 256> kClasses = MakeClasses();

inline bool Is(char c, uint8_t cls) { return (kClasses[static_cast<unsigned char>(c)] & cls) != 0; }
inline bool IsOws(char c) { return c == ' ' || c == '\t'; }
// CTL of RFC 5234: 0x00..0x1f and DEL.
inline bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

void Append(std::string* out, std::string_view text) { out->append(text); }
void Append(std::string* out, uint64_t n) { out->append(std::to_string(n)); }

// A message from its parts: text and unsigned numbers.
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::string out;
  (Append(&out, parts), ...);
  return out;
}

std::string ByteHex(char c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  return {'0', 'x', kDigits[u >> 4], kDigits[u & 0xf]};
}

// `s` in double quotes for a message: at most 64 bytes of it, and anything but printable ASCII
// (and the quote and backslash) as \xNN, so a message is always one printable line.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const char c = s[i];
    if (IsControl(c) || static_cast<unsigned char>(c) >= 0x80 || c == '"' || c == '\\') {
      out += "\\x";
      out += ByteHex(c).substr(2);
    } else {
      out += c;
    }
  }
  out += s.size() > kMax ? "\"..." : "\"";
  return out;
}

// True when a byte of `s` is a control character other than HTAB. Values are most of a head's
// bytes, so they are checked eight at a time: a word with no byte below 0x20 and none equal to
// 0x7f (the usual case) is done in a few instructions; only a word with one (HTAB, most likely)
// is looked at byte by byte.
bool HasControl(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101;
  constexpr uint64_t kHigh = 0x8080808080808080;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    // "Has a byte less than 0x20" and "has a zero byte" (of x ^ 0x7f..): exact as booleans.
    const uint64_t below = (x - kOnes * 0x20) & ~x & kHigh;
    const uint64_t y = x ^ (kOnes * 0x7f);
    const uint64_t del = (y - kOnes) & ~y & kHigh;
    if ((below | del) == 0) continue;
    for (size_t j = i; j < i + 8; ++j) {
      if (IsControl(s[j]) && s[j] != '\t') return true;
    }
  }
  for (; i < s.size(); ++i) {
    if (IsControl(s[i]) && s[i] != '\t') return true;
  }
  return false;
}

// Splits a header or trailer line (without its CRLF) into its name and its value without the
// optional whitespace around it. Returns the refusal message, or "" when the line is a field.
// `kind` is "header" or "trailer".
std::string ParseFieldLine(std::string_view line, std::string_view kind, std::string_view* name,
                           std::string_view* value) {
  if (!line.empty() && IsOws(line[0])) {
    return Cat("obs-fold (a ", kind, " line starting with whitespace) is not allowed");
  }
  size_t i = 0;
  while (i < line.size() && Is(line[i], kToken)) ++i;
  if (i == line.size()) {
    return Cat(kind, " line without a colon: ", Quote(line));
  }
  if (line[i] != ':') {
    if (IsOws(line[i])) {
      return Cat("whitespace between the ", kind, " name and the colon in field ",
                 Quote(line.substr(0, i)));
    }
    return Cat(kind, " name contains ",
               IsControl(line[i]) ? "a control character" : "an invalid character", " (",
               ByteHex(line[i]), ")");
  }
  if (i == 0) return Cat("empty ", kind, " name");
  *name = line.substr(0, i);
  size_t begin = i + 1;
  if (HasControl(line.substr(begin))) {
    size_t j = begin;
    while (Is(line[j], kValue)) ++j;
    return Cat(kind, " value contains a control character (", ByteHex(line[j]), ") in field ",
               Quote(*name));
  }
  size_t end = line.size();
  while (begin < end && IsOws(line[begin])) ++begin;
  while (end > begin && IsOws(line[end - 1])) --end;
  *value = line.substr(begin, end - begin);
  return "";
}

enum class LineEnd { kCrlf, kBareLf, kMissing };

// The line starting at *pos, without its CRLF; *pos moves past its LF.
LineEnd NextLine(std::string_view bytes, size_t* pos, std::string_view* line) {
  const char* start = bytes.data() + *pos;
  const auto* lf = static_cast<const char*>(std::memchr(start, '\n', bytes.size() - *pos));
  if (lf == nullptr) return LineEnd::kMissing;
  const size_t length = static_cast<size_t>(lf - start);
  *pos += length + 1;
  if (length == 0 || start[length - 1] != '\r') return LineEnd::kBareLf;
  *line = std::string_view(start, length - 1);
  return LineEnd::kCrlf;
}

HeadParse Refuse(int status, std::string message) {
  HeadParse parse;
  parse.error.status = status;
  parse.error.message = std::move(message);
  return parse;
}

constexpr std::string_view kBareLf = "bare LF line ending";
constexpr std::string_view kNoEnd = "incomplete head: no empty line ends it";

// The next line, which must end in CRLF; otherwise the refusal of the head.
std::optional<HeadParse> NextCrlfLine(std::string_view bytes, size_t* pos, std::string_view* line) {
  switch (NextLine(bytes, pos, line)) {
    case LineEnd::kCrlf:
      return std::nullopt;
    case LineEnd::kBareLf:
      return Refuse(400, std::string(kBareLf));
    case LineEnd::kMissing:
      break;
  }
  return Refuse(400, std::string(kNoEnd));
}

void AppendConnectionOptions(std::string_view value, std::vector<std::string>* options) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    size_t b = start, e = comma;
    while (b < e && IsOws(value[b])) ++b;
    while (e > b && IsOws(value[e - 1])) --e;
    if (b < e) options->push_back(AsciiToLower(value.substr(b, e - b)));
    start = comma + 1;
  }
}

bool Contains(const std::vector<std::string>& options, std::string_view option) {
  for (const std::string& o : options) {
    if (o == option) return true;
  }
  return false;
}

// Content-Length's grammar (1*DIGIT), limited to what fits 63 bits.
bool ParseContentLength(std::string_view value, uint64_t* out) {
  if (value.empty()) return false;
  uint64_t n = 0;
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  for (char c : value) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > kMax / 10 || (n == kMax / 10 && d > kMax % 10)) return false;
    n = n * 10 + d;
  }
  *out = n;
  return true;
}

void AppendField(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->push_back(':');
  if (!value.empty()) {
    out->push_back(' ');
    out->append(value);
  }
  out->append("\r\n");
}

}  // namespace

const std::string* RequestHead::Find(std::string_view name) const {
  for (const HeaderField& field : headers) {
    if (EqualsIgnoreCase(field.name, name)) return &field.value;
  }
  return nullptr;
}

std::string_view RequestHead::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

size_t FindHeadEnd(std::string_view buffered) {
  const char* b = buffered.data();
  const size_t n = buffered.size();
  size_t p = 0;
  // Leading empty lines (a bare LF among them is the parser's to refuse).
  while (p < n) {
    if (b[p] == '\n') {
      ++p;
    } else if (b[p] == '\r' && p + 1 < n && b[p + 1] == '\n') {
      p += 2;
    } else if (b[p] == '\r' && p + 1 == n) {
      return std::string_view::npos;  // an empty line may be arriving
    } else {
      break;
    }
  }
  while (p < n) {
    const auto* lf = static_cast<const char*>(std::memchr(b + p, '\n', n - p));
    if (lf == nullptr) return std::string_view::npos;
    const size_t k = static_cast<size_t>(lf - b);
    if (k + 1 < n && b[k + 1] == '\n') return k + 2;
    if (k + 2 < n && b[k + 1] == '\r' && b[k + 2] == '\n') return k + 3;
    p = k + 1;
  }
  return std::string_view::npos;
}

HeadParse ParseRequestHead(std::string_view bytes, const HeadLimits& limits) {
  if (bytes.size() > limits.max_head) {
    return Refuse(431, Cat("request head larger than ", limits.max_head, " bytes"));
  }
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (bytes[pos] == '\n') return Refuse(400, std::string(kBareLf));
    if (bytes[pos] != '\r' || pos + 1 == bytes.size() || bytes[pos + 1] != '\n') break;
    pos += 2;
  }

  // The request line: method SP request-target SP HTTP-version.
  std::string_view line;
  if (auto refused = NextCrlfLine(bytes, &pos, &line)) return *std::move(refused);
  if (line.size() > limits.max_request_line) {
    return Refuse(414, Cat("request line longer than ", limits.max_request_line, " bytes"));
  }
  constexpr std::string_view kShape = "request line is not \"method target HTTP/1.x\"";
  size_t i = 0;
  while (i < line.size() && Is(line[i], kToken)) ++i;
  if (i == line.size()) return Refuse(400, std::string(kShape));
  if (line[i] != ' ') {
    return Refuse(400, Cat("method contains ",
                           IsControl(line[i]) ? "a control character" : "an invalid character",
                           " (", ByteHex(line[i]), ")"));
  }
  if (i == 0) return Refuse(400, "empty method");
  const std::string_view method = line.substr(0, i);
  const size_t target_start = ++i;
  while (i < line.size() && Is(line[i], kVisible)) ++i;
  const std::string_view target = line.substr(target_start, i - target_start);
  if (i < line.size() && line[i] != ' ') {
    return Refuse(400, Cat("request target contains ",
                           IsControl(line[i]) ? "a control character" : "an invalid character",
                           " (", ByteHex(line[i]), ")"));
  }
  if (target.empty()) return Refuse(400, "empty request target");
  if (i == line.size()) return Refuse(400, std::string(kShape));
  const std::string_view version = line.substr(i + 1);
  if (version.size() != 8 || !version.starts_with("HTTP/") || version[5] < '0' ||
      version[5] > '9' || version[6] != '.' || version[7] < '0' || version[7] > '9') {
    return Refuse(400, Cat("malformed HTTP version ", Quote(version)));
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return Refuse(505, Cat("HTTP version ", Quote(version),
                           " is not supported (only HTTP/1.0 and HTTP/1.1)"));
  }
  if (target == "*") {
    if (method != "OPTIONS")
      return Refuse(400, "request target \"*\" is only allowed with OPTIONS");
  } else if (target[0] != '/') {
    return Refuse(400, Cat("request target ", Quote(target),
                           " is not a path starting with '/' (origin form)"));
  }

  HeadParse parse;
  RequestHead& head = parse.head.emplace();
  head.method.assign(method);
  head.target.assign(target);
  head.minor_version = version[7] - '0';
  head.headers.reserve(16);

  // The fields, and what the rules need from them, in the same pass.
  size_t hosts = 0;
  size_t transfer_encodings = 0;
  std::string_view content_length;
  bool has_content_length = false;
  bool expect_continue = false;
  std::string_view unsupported_expectation;
  bool has_unsupported_expectation = false;
  while (true) {
    if (auto refused = NextCrlfLine(bytes, &pos, &line)) return *std::move(refused);
    if (line.empty()) break;
    if (line.size() > limits.max_header_line) {
      return Refuse(431, Cat("header line longer than ", limits.max_header_line, " bytes"));
    }
    if (head.headers.size() == limits.max_headers) {
      return Refuse(431, Cat("more than ", limits.max_headers, " header fields"));
    }
    std::string_view name, value;
    if (std::string error = ParseFieldLine(line, "header", &name, &value); !error.empty()) {
      return Refuse(400, std::move(error));
    }
    head.headers.push_back(HeaderField{std::string(name), std::string(value)});

    // The names the rules look at, told apart by length before any comparison.
    switch (name.size()) {
      case 4:
        if (EqualsIgnoreCase(name, "host")) ++hosts;
        break;
      case 6:
        if (EqualsIgnoreCase(name, "expect")) {
          if (EqualsIgnoreCase(value, "100-continue")) {
            expect_continue = true;
          } else if (!value.empty() && !has_unsupported_expectation) {
            has_unsupported_expectation = true;
            unsupported_expectation = value;
          }
        }
        break;
      case 10:
        if (EqualsIgnoreCase(name, "connection")) {
          AppendConnectionOptions(value, &head.connection_options);
        }
        break;
      case 14:
        if (EqualsIgnoreCase(name, "content-length")) {
          uint64_t n = 0;
          if (!ParseContentLength(value, &n)) {
            return Refuse(
                400, Cat("invalid Content-Length ", Quote(value), " (digits, at most 2^63-1)"));
          }
          if (has_content_length && value != content_length) {
            return Refuse(400, "conflicting Content-Length values");
          }
          has_content_length = true;
          content_length = value;
          head.content_length = n;
        }
        break;
      case 17:
        if (EqualsIgnoreCase(name, "transfer-encoding")) {
          if (++transfer_encodings > 1)
            return Refuse(400, "more than one Transfer-Encoding header");
          if (!EqualsIgnoreCase(value, "chunked")) {
            return Refuse(
                400, Cat("Transfer-Encoding ", Quote(value), " is not supported (only chunked)"));
          }
        }
        break;
      default:
        break;
    }
  }
  if (pos != bytes.size()) {
    return Refuse(400, Cat(bytes.size() - pos, " bytes follow the empty line that ends the head"));
  }

  if (transfer_encodings > 0) {
    if (has_content_length) return Refuse(400, "Content-Length and Transfer-Encoding together");
    if (head.minor_version == 0) return Refuse(400, "Transfer-Encoding on HTTP/1.0");
    head.framing = BodyFraming::kChunked;
  } else if (has_content_length) {
    head.framing = BodyFraming::kLength;
  }
  if (hosts > 1) return Refuse(400, "more than one Host header");
  if (hosts == 0 && head.minor_version == 1) return Refuse(400, "missing required Host header");
  if (has_unsupported_expectation) {
    return Refuse(417, Cat("Expect ", Quote(unsupported_expectation),
                           " is not supported (only 100-continue)"));
  }
  // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
  head.expect_continue = expect_continue && head.minor_version == 1;
  if (Contains(head.connection_options, "close")) {
    head.keep_alive = false;
  } else if (head.minor_version == 0) {
    head.keep_alive = Contains(head.connection_options, "keep-alive");
  }
  return parse;
}

std::vector<std::string> ConnectionOptions(std::string_view value) {
  std::vector<std::string> options;
  AppendConnectionOptions(value, &options);
  return options;
}

bool IsHopByHop(std::string_view name, const std::vector<std::string>& connection_options) {
  switch (name.size()) {
    case 2:
      if (EqualsIgnoreCase(name, "te")) return true;
      break;
    case 7:
      if (EqualsIgnoreCase(name, "trailer") || EqualsIgnoreCase(name, "upgrade")) return true;
      break;
    case 10:
      if (EqualsIgnoreCase(name, "connection") || EqualsIgnoreCase(name, "keep-alive")) return true;
      break;
    case 17:
      if (EqualsIgnoreCase(name, "transfer-encoding")) return true;
      break;
    default:
      break;
  }
  // Proxy-Connection and Proxy-Authorization among them.
  if (StartsWithIgnoreCase(name, "proxy-")) return true;
  for (const std::string& option : connection_options) {
    if (EqualsIgnoreCase(name, option)) return true;
  }
  return false;
}

std::string BuildForwardHead(const RequestHead& head, const ForwardSpec& spec) {
  size_t size = head.method.size() + head.target.size() + spec.authority.size() +
                spec.client_address.size() + 128;
  for (const HeaderField& field : head.headers) size += field.name.size() + field.value.size() + 4;
  std::string out;
  out.reserve(size);
  out.append(head.method).append(" ").append(head.target).append(" HTTP/1.1\r\n");
  AppendField(&out, "Host", spec.authority);

  std::string forwarded_for;
  bool client_proto = false;
  for (const HeaderField& field : head.headers) {
    const std::string_view name = field.name;
    if (IsHopByHop(name, head.connection_options) || EqualsIgnoreCase(name, "host") ||
        EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "expect") ||
        (spec.drop_authorization && EqualsIgnoreCase(name, "authorization")) ||
        (!spec.request_id.empty() && EqualsIgnoreCase(name, "x-request-id"))) {
      continue;
    }
    bool dropped = false;
    for (std::string_view d : spec.drop) dropped = dropped || EqualsIgnoreCase(name, d);
    if (dropped) continue;
    if (EqualsIgnoreCase(name, "x-forwarded-for")) {
      if (!field.value.empty()) {
        if (!forwarded_for.empty()) forwarded_for.append(", ");
        forwarded_for.append(field.value);
      }
      continue;
    }
    if (EqualsIgnoreCase(name, "x-forwarded-proto")) client_proto = true;
    AppendField(&out, name, field.value);
  }
  if (!spec.client_address.empty()) {
    if (!forwarded_for.empty()) forwarded_for.append(", ");
    forwarded_for.append(spec.client_address);
  }
  if (!forwarded_for.empty()) AppendField(&out, "X-Forwarded-For", forwarded_for);
  if (!client_proto) AppendField(&out, "X-Forwarded-Proto", "http");
  if (!spec.request_id.empty()) AppendField(&out, "X-Request-Id", spec.request_id);
  switch (spec.body) {
    case BodyFraming::kNone:
      break;
    case BodyFraming::kLength:
      AppendField(&out, "Content-Length", Cat(spec.body_length));
      break;
    case BodyFraming::kChunked:
      AppendField(&out, "Transfer-Encoding", "chunked");
      break;
  }
  out.append("\r\n");
  return out;
}

ChunkedDecoder::ChunkedDecoder(ChunkLimits limits) : limits_(limits) {}

ChunkedDecoder::Status ChunkedDecoder::Fail(std::string message) {
  state_ = State::kError;
  error_ = std::move(message);
  line_.clear();
  line_.shrink_to_fit();
  return Status::kError;
}

ChunkedDecoder::Status ChunkedDecoder::Feed(std::string_view in, size_t* consumed,
                                            std::string* out) {
  *consumed = 0;
  if (state_ == State::kDone) return Status::kDone;
  if (state_ == State::kError) return Status::kError;
  size_t i = 0;
  while (i < in.size()) {
    switch (state_) {
      case State::kData: {
        const size_t n = static_cast<size_t>(
            std::min<uint64_t>(chunk_left_, static_cast<uint64_t>(in.size() - i)));
        out->append(in.data() + i, n);
        i += n;
        chunk_left_ -= n;
        decoded_ += n;
        if (chunk_left_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
      case State::kDataLf: {
        const bool cr = state_ == State::kDataCr;
        const char c = in[i++];
        if (c != (cr ? '\r' : '\n')) {
          *consumed = i;
          return Fail(Cat("chunk data not followed by CRLF (", ByteHex(c), " after ", decoded_,
                          " body bytes)"));
        }
        state_ = cr ? State::kDataLf : State::kSizeLine;
        break;
      }
      case State::kSizeLine:
      case State::kTrailer: {
        const bool size_line = state_ == State::kSizeLine;
        // The bytes this line may still take, its LF included; line_ never holds more than
        // cap - 1 bytes, so room is 0 only when the cap itself is used up.
        const size_t cap =
            size_line ? limits_.max_size_line : limits_.max_trailer_bytes - trailer_bytes_;
        const size_t room = cap - line_.size();
        const std::string_view rest = in.substr(i);
        const auto* lf = static_cast<const char*>(std::memchr(rest.data(), '\n', rest.size()));
        const size_t take = lf != nullptr ? static_cast<size_t>(lf - rest.data()) + 1 : rest.size();
        // The line's byte number `cap` (counting from 1) must be its LF: failing that, the line
        // goes over its cap at that byte, wherever the input was split.
        if (room == 0 || take > room || (lf == nullptr && take == room)) {
          *consumed = i + (room == 0 ? 1 : room);
          return Fail(
              size_line
                  ? Cat("chunk-size line longer than ", limits_.max_size_line, " bytes")
                  : Cat("chunked trailers larger than ", limits_.max_trailer_bytes, " bytes"));
        }
        i += take;
        if (lf == nullptr) {
          line_.append(rest);
          break;
        }
        std::string_view whole = rest.substr(0, take);
        if (!line_.empty()) {
          line_.append(whole);
          whole = line_;
        }
        const bool ok = size_line ? SizeLine(whole) : TrailerLine(whole);
        line_.clear();
        if (!ok) {
          *consumed = i;
          return Status::kError;
        }
        if (state_ == State::kDone) {
          *consumed = i;
          return Status::kDone;
        }
        break;
      }
      case State::kDone:
      case State::kError:
        break;  // not reached: both return before the loop
    }
  }
  *consumed = in.size();
  return Status::kNeedMore;
}

bool ChunkedDecoder::SizeLine(std::string_view line) {
  if (line.size() < 2 || line[line.size() - 2] != '\r') {
    Fail("bare LF line ending in a chunked body");
    return false;
  }
  line.remove_suffix(2);
  uint64_t size = 0;
  size_t i = 0;
  for (; i < line.size() && Is(line[i], kHex); ++i) {
    // Past 2^59 - 1, one more digit would not fit 63 bits.
    if (size >> 59 != 0) {
      Fail("chunk size larger than 2^63-1");
      return false;
    }
    const char c = line[i];
    const uint64_t digit = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    size = size << 4 | digit;
  }
  if (i == 0) {
    Fail(Cat("chunk size is not a hexadecimal number: ", Quote(line)));
    return false;
  }
  // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): read and ignored, but nothing in
  // it may be a control character other than HTAB.
  size_t j = i;
  while (j < line.size() && IsOws(line[j])) ++j;
  if (j < line.size() || j > i) {
    if (j == line.size() || line[j] != ';') {
      Fail(Cat("invalid character after the chunk size: ", Quote(line)));
      return false;
    }
    for (; j < line.size(); ++j) {
      if (IsControl(line[j]) && line[j] != '\t') {
        Fail(Cat("chunk extension contains a control character (", ByteHex(line[j]), ")"));
        return false;
      }
    }
  }
  if (size == 0) {
    state_ = State::kTrailer;
  } else {
    chunk_left_ = size;
    state_ = State::kData;
  }
  return true;
}

bool ChunkedDecoder::TrailerLine(std::string_view line) {
  trailer_bytes_ += line.size();
  if (line.size() < 2 || line[line.size() - 2] != '\r') {
    Fail("bare LF line ending in a chunked body");
    return false;
  }
  line.remove_suffix(2);
  if (line.empty()) {
    state_ = State::kDone;
    line_.shrink_to_fit();
    return true;
  }
  std::string_view name, value;
  if (std::string error = ParseFieldLine(line, "trailer", &name, &value); !error.empty()) {
    Fail(std::move(error));
    return false;
  }
  return true;
}

}  // namespace corral
