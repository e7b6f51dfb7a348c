// Fuzzes the request head (common/request_head.h) on arbitrary bytes, differentially: whatever
// head the proxy would write to a node for an accepted client head must parse back as exactly
// that one request; and a chunked body decodes the same however its bytes are split.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/ascii.h"
#include "common/request_head.h"
#include "fuzz/fuzz_check.h"

namespace {

using corral::BodyFraming;
using corral::ChunkedDecoder;
using corral::EqualsIgnoreCase;
using corral::HeaderField;
using corral::HeadLimits;
using corral::RequestHead;

constexpr std::string_view kAuthority = "10.0.0.5:11434";
constexpr std::string_view kClientAddress = "192.0.2.7";
constexpr std::string_view kDropped = "X-Corral-Node";

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

bool IsToken(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void CheckMessage(const std::string& message) {
  FUZZ_CHECK(!message.empty(), "empty refusal message");
  FUZZ_CHECK(message.size() <= 512, "message of %zu bytes", message.size());
  for (char c : message) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 && u < 0x7f, "byte 0x%02x in message: %s", u, message.c_str());
  }
}

// The hop-by-hop set of RFC 9110 §7.6.1 written out again here, so the property does not
// trust the unit's own list.
bool HopByHop(std::string_view name, const std::vector<std::string>& options) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                             "te", "trailer", "upgrade"}) {
    if (EqualsIgnoreCase(name, h)) return true;
  }
  if (name.size() >= 6 && EqualsIgnoreCase(name.substr(0, 6), "proxy-")) return true;
  for (const std::string& o : options) {
    if (EqualsIgnoreCase(name, o)) return true;
  }
  return false;
}

// Not forwarded as the client sent it.
bool Dropped(std::string_view name, const RequestHead& head, bool drop_authorization) {
  return HopByHop(name, head.connection_options) || EqualsIgnoreCase(name, "host") ||
         EqualsIgnoreCase(name, "content-length") || EqualsIgnoreCase(name, "expect") ||
         (drop_authorization && EqualsIgnoreCase(name, "authorization")) ||
         EqualsIgnoreCase(name, kDropped);
}

// Fields the proxy writes itself; checked one by one rather than as part of the sequence.
bool Written(std::string_view name) {
  for (std::string_view w :
       {"host", "x-forwarded-for", "x-forwarded-proto", "content-length", "transfer-encoding"}) {
    if (EqualsIgnoreCase(name, w)) return true;
  }
  return false;
}

std::vector<std::string> Values(const std::vector<HeaderField>& fields, std::string_view name) {
  std::vector<std::string> values;
  for (const HeaderField& f : fields) {
    if (EqualsIgnoreCase(f.name, name)) values.push_back(f.value);
  }
  return values;
}

void CheckAccepted(const RequestHead& head) {
  FUZZ_CHECK(!head.method.empty(), "empty method");
  for (char c : head.method) FUZZ_CHECK(IsToken(c), "method byte 0x%02x", c & 0xff);
  FUZZ_CHECK(head.target == "*" ? head.method == "OPTIONS" : head.target.starts_with("/"),
             "target %s", head.target.c_str());
  for (char c : head.target) FUZZ_CHECK(c > 0x20 && c < 0x7f, "target byte 0x%02x", c & 0xff);
  FUZZ_CHECK(head.minor_version == 0 || head.minor_version == 1, "minor %d", head.minor_version);
  for (const HeaderField& f : head.headers) {
    FUZZ_CHECK(!f.name.empty(), "empty field name");
    for (char c : f.name) FUZZ_CHECK(IsToken(c), "name byte 0x%02x", c & 0xff);
    for (char c : f.value) {
      FUZZ_CHECK(c == '\t' || !IsControl(c), "value byte 0x%02x in %s", c & 0xff, f.name.c_str());
    }
    if (!f.value.empty()) {
      FUZZ_CHECK(f.value.front() != ' ' && f.value.front() != '\t' && f.value.back() != ' ' &&
                     f.value.back() != '\t',
                 "untrimmed value in %s", f.name.c_str());
    }
  }
  const size_t lengths = Values(head.headers, "content-length").size();
  const size_t codings = Values(head.headers, "transfer-encoding").size();
  FUZZ_CHECK(lengths == 0 || codings == 0, "Content-Length and Transfer-Encoding accepted");
  FUZZ_CHECK(codings <= 1, "%zu Transfer-Encoding fields", codings);
  FUZZ_CHECK(Values(head.headers, "host").size() <= 1, "several Host fields");
  FUZZ_CHECK(head.minor_version == 0 || Values(head.headers, "host").size() == 1, "no Host");
  FUZZ_CHECK(head.framing == (codings   ? BodyFraming::kChunked
                              : lengths ? BodyFraming::kLength
                                        : BodyFraming::kNone),
             "framing %d", static_cast<int>(head.framing));
}

void CheckForward(const RequestHead& head, bool drop_authorization) {
  corral::ForwardSpec spec;
  spec.authority = kAuthority;
  spec.client_address = kClientAddress;
  spec.drop_authorization = drop_authorization;
  spec.drop = {kDropped};
  spec.body = head.framing;
  spec.body_length = head.content_length;
  const std::string out = corral::BuildForwardHead(head, spec);

  FUZZ_CHECK(corral::FindHeadEnd(out) == out.size(), "head end %zu of %zu",
             corral::FindHeadEnd(out), out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    if (c == '\r') {
      FUZZ_CHECK(i + 1 < out.size() && out[i + 1] == '\n', "bare CR at %zu", i);
    } else if (c == '\n') {
      FUZZ_CHECK(i > 0 && out[i - 1] == '\r', "bare LF at %zu", i);
    } else {
      FUZZ_CHECK(c == '\t' || !IsControl(c), "control byte 0x%02x at %zu", c & 0xff, i);
    }
  }

  // The node's parser has no smaller limits than the forwarded head needs (Go's is 1 MB).
  HeadLimits limits;
  limits.max_request_line = out.size();
  limits.max_header_line = out.size();
  limits.max_head = out.size();
  limits.max_headers = head.headers.size() + 4;
  const corral::HeadParse back = corral::ParseRequestHead(out, limits);
  FUZZ_CHECK(back.head.has_value(), "forwarded head refused (%d): %s", back.error.status,
             back.error.message.c_str());
  const RequestHead& node = *back.head;
  FUZZ_CHECK(node.method == head.method, "method %s became %s", head.method.c_str(),
             node.method.c_str());
  FUZZ_CHECK(node.target == head.target, "target %s became %s", head.target.c_str(),
             node.target.c_str());
  FUZZ_CHECK(node.minor_version == 1, "forwarded as HTTP/1.%d", node.minor_version);
  FUZZ_CHECK(node.framing == head.framing, "framing %d became %d", static_cast<int>(head.framing),
             static_cast<int>(node.framing));
  FUZZ_CHECK(node.framing != BodyFraming::kLength || node.content_length == head.content_length,
             "length %llu became %llu", static_cast<unsigned long long>(head.content_length),
             static_cast<unsigned long long>(node.content_length));
  FUZZ_CHECK(node.connection_options.empty() && node.keep_alive && !node.expect_continue,
             "hop-by-hop state forwarded");

  // The client's fields minus the dropped ones, in order, and nothing else.
  std::vector<HeaderField> expected;
  std::string forwarded_for;
  std::vector<std::string> client_proto;
  for (const HeaderField& f : head.headers) {
    if (Dropped(f.name, head, drop_authorization)) continue;
    if (EqualsIgnoreCase(f.name, "x-forwarded-for")) {
      if (!f.value.empty()) forwarded_for += (forwarded_for.empty() ? "" : ", ") + f.value;
    } else if (EqualsIgnoreCase(f.name, "x-forwarded-proto")) {
      client_proto.push_back(f.value);
    } else if (!Written(f.name)) {
      expected.push_back(f);
    }
  }
  std::vector<HeaderField> forwarded;
  for (const HeaderField& f : node.headers) {
    if (!Written(f.name)) forwarded.push_back(f);
  }
  FUZZ_CHECK(forwarded == expected, "%zu fields forwarded, %zu expected", forwarded.size(),
             expected.size());

  const std::vector<std::string> hosts = Values(node.headers, "host");
  FUZZ_CHECK(hosts.size() == 1 && hosts[0] == kAuthority, "%zu Host fields", hosts.size());
  forwarded_for += (forwarded_for.empty() ? "" : ", ") + std::string(kClientAddress);
  const std::vector<std::string> xff = Values(node.headers, "x-forwarded-for");
  FUZZ_CHECK(xff.size() == 1 && xff[0] == forwarded_for, "X-Forwarded-For: %zu fields, wanted %s",
             xff.size(), forwarded_for.c_str());
  if (client_proto.empty()) client_proto.push_back("http");
  FUZZ_CHECK(Values(node.headers, "x-forwarded-proto") == client_proto, "X-Forwarded-Proto");
  FUZZ_CHECK(Values(node.headers, "content-length").size() ==
                     (head.framing == BodyFraming::kLength ? 1u : 0u) &&
                 Values(node.headers, "transfer-encoding").size() ==
                     (head.framing == BodyFraming::kChunked ? 1u : 0u),
             "framing fields");
  for (const HeaderField& f : node.headers) {
    FUZZ_CHECK(!EqualsIgnoreCase(f.name, "expect"), "Expect forwarded");
    FUZZ_CHECK(!drop_authorization || !EqualsIgnoreCase(f.name, "authorization"),
               "Authorization forwarded");
    FUZZ_CHECK(!EqualsIgnoreCase(f.name, kDropped), "%s forwarded", f.name.c_str());
    // What the proxy writes itself may bear a name the client made hop-by-hop.
    FUZZ_CHECK(Written(f.name) || !HopByHop(f.name, head.connection_options),
               "hop-by-hop %s forwarded", f.name.c_str());
  }
}

void CheckHead(std::string_view input) {
  const size_t end = corral::FindHeadEnd(input);
  if (end == std::string_view::npos) {
    // No empty line: the parser cannot find one either.
    FUZZ_CHECK(!corral::ParseRequestHead(input).head.has_value(), "parsed a head with no end");
    return;
  }
  FUZZ_CHECK(end <= input.size(), "head end %zu past %zu", end, input.size());
  if (end < input.size()) {
    FUZZ_CHECK(!corral::ParseRequestHead(input).head.has_value(), "parsed bytes after the head");
  }
  const corral::HeadParse parse = corral::ParseRequestHead(input.substr(0, end));
  if (!parse.head) {
    const int s = parse.error.status;
    FUZZ_CHECK(s == 400 || s == 414 || s == 417 || s == 431 || s == 505, "status %d", s);
    CheckMessage(parse.error.message);
    return;
  }
  CheckAccepted(*parse.head);
  CheckForward(*parse.head, /*drop_authorization=*/input.size() % 2 == 0);
}

struct Decoded {
  ChunkedDecoder::Status status = ChunkedDecoder::Status::kNeedMore;
  size_t consumed = 0;
  std::string out;
  std::string error;
};

// Small caps, so inputs of a few hundred bytes reach them.
corral::ChunkLimits SmallLimits() {
  corral::ChunkLimits limits;
  limits.max_size_line = 64;
  limits.max_trailer_bytes = 128;
  return limits;
}

// Feeds `in` cut at each of `cuts` (ascending), stopping at kDone or kError.
Decoded Decode(std::string_view in, const std::vector<size_t>& cuts) {
  ChunkedDecoder decoder(SmallLimits());
  Decoded d;
  size_t at = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    const size_t to = i < cuts.size() ? cuts[i] : in.size();
    size_t consumed = 0;
    d.status = decoder.Feed(in.substr(at, to - at), &consumed, &d.out);
    if (d.status == ChunkedDecoder::Status::kNeedMore) {
      FUZZ_CHECK(consumed == to - at, "kNeedMore consumed %zu of %zu", consumed, to - at);
    } else {
      FUZZ_CHECK(consumed <= to - at, "consumed %zu of %zu", consumed, to - at);
    }
    d.consumed += consumed;
    at = to;
    if (d.status != ChunkedDecoder::Status::kNeedMore) break;
  }
  FUZZ_CHECK(decoder.decoded() == d.out.size(), "decoded() %llu, output %zu",
             static_cast<unsigned long long>(decoder.decoded()), d.out.size());
  d.error = decoder.error();
  // Once finished it stays finished and takes nothing more.
  if (d.status != ChunkedDecoder::Status::kNeedMore) {
    size_t consumed = 1;
    std::string more;
    FUZZ_CHECK(
        decoder.Feed("0\r\n\r\n", &consumed, &more) == d.status && consumed == 0 && more.empty(),
        "fed after the end");
  }
  return d;
}

void CheckSame(const Decoded& a, const Decoded& b, const char* how) {
  FUZZ_CHECK(a.status == b.status, "%s: status %d vs %d", how, static_cast<int>(a.status),
             static_cast<int>(b.status));
  FUZZ_CHECK(a.consumed == b.consumed, "%s: consumed %zu vs %zu", how, a.consumed, b.consumed);
  FUZZ_CHECK(a.out == b.out, "%s: output differs (%zu vs %zu bytes)", how, a.out.size(),
             b.out.size());
  FUZZ_CHECK(a.error == b.error, "%s: error '%s' vs '%s'", how, a.error.c_str(), b.error.c_str());
}

void CheckChunked(std::string_view input) {
  const Decoded whole = Decode(input, {});
  if (whole.status == ChunkedDecoder::Status::kError) CheckMessage(whole.error);
  if (whole.status == ChunkedDecoder::Status::kDone) {
    FUZZ_CHECK(input.substr(0, whole.consumed).ends_with("\r\n"), "ended without CRLF");
  }
  if (input.empty()) return;
  // A cut the input itself chooses, so the fuzzer can move it onto every boundary.
  const size_t cut =
      (static_cast<unsigned char>(input[0]) * 131u + static_cast<unsigned char>(input.back())) %
      (input.size() + 1);
  CheckSame(whole, Decode(input, {cut}), "two pieces");
  if (input.size() <= 256) {
    std::vector<size_t> every;
    for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
    CheckSame(whole, Decode(input, every), "byte by byte");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckHead(input);
  CheckChunked(input);
  // The body after a chunked head, as the listener would decode it.
  const size_t end = corral::FindHeadEnd(input);
  if (end != std::string_view::npos && end < input.size()) CheckChunked(input.substr(end));
  return 0;
}
