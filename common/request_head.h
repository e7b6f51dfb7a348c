// The request head as the proxy's front door reads it: one pure parser of a client's raw head
// bytes (never a decoded view), the rules that refuse what two HTTP parsers could read two ways,
// the head the proxy writes to a node from it, and a decoder of chunked request bodies with
// caps on its size lines and trailers.
//
// Why it exists: cpp-httplib percent-decodes every header value it parses, so a value that
// carries `%0d%0a` would reach a node as a line break of the client's choosing (a second request
// smuggled onto the node's connection). The listener parses each head here first, refuses what
// these rules refuse, and the proxy builds what it forwards from this parse alone
// (docs/security.md "The request head").
//
// The rules (RFC 9112 and RFC 9110, refusing where the RFCs allow a choice):
// * lines end in CRLF; a bare LF or a bare CR anywhere is refused;
// * the request line is `method SP target SP HTTP/1.x`: a method of token characters, a target
//   of visible ASCII in origin form (or `*` for OPTIONS), version 1.0 or 1.1 (other versions
//   505);
// * a header line is `name ":" OWS value OWS`: a name of token characters with nothing between
//   it and the colon, a value without control characters (HTAB allowed, DEL refused);
//   obs-fold (a line starting with SP or HTAB) is refused;
// * Content-Length is digits that fit 63 bits, the same in every copy; Transfer-Encoding is
//   exactly `chunked` (in one header) and never comes with Content-Length or on HTTP/1.0;
// * HTTP/1.1 needs a Host, no request has two; Expect is `100-continue` or refused (417);
// * at most HeadLimits::max_headers fields, lines and the head within their limits (414/431).
// A refusal carries the status to answer and a message a client can act on.
//
// Thread safety: pure functions, safe from any thread; a ChunkedDecoder is used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

struct HeadLimits {
  size_t max_request_line = 8192;
  size_t max_header_line = 8192;
  size_t max_head = 64 << 10;
  size_t max_headers = 100;
};

struct HeaderField {
  std::string name;   // as sent
  std::string value;  // as sent, optional whitespace at both ends removed
  bool operator==(const HeaderField&) const = default;
};

enum class BodyFraming { kNone, kLength, kChunked };

struct RequestHead {
  std::string method;
  std::string target;  // as sent: path and query, never decoded
  int minor_version = 1;
  std::vector<HeaderField> headers;  // every field, in order
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;  // kLength only
  bool expect_continue = false;
  // False for `Connection: close`, and for HTTP/1.0 without `Connection: keep-alive`.
  bool keep_alive = true;
  // The options the Connection header names, lower-cased ("close", "keep-alive", "x-foo"):
  // each is a hop-by-hop header of this request.
  std::vector<std::string> connection_options;

  // The first value of the header `name` (case-insensitive), or null.
  const std::string* Find(std::string_view name) const;
  // The target's path: the part before any '?'.
  std::string_view path() const;
  // True when a body follows the head.
  bool has_body() const {
    return framing == BodyFraming::kChunked ||
           (framing == BodyFraming::kLength && content_length > 0);
  }
};

struct HeadError {
  int status = 400;
  std::string message;
};

struct HeadParse {
  std::optional<RequestHead> head;  // set on success
  HeadError error;                  // set otherwise
};

// The size of the head at the start of `buffered`, through the empty line that ends it (a line
// ending in LF, with or without CR before it), or npos when that line has not arrived. Leading
// empty lines (RFC 9112 §2.2) count as part of the head.
size_t FindHeadEnd(std::string_view buffered);

// Parses exactly one head, as FindHeadEnd delimits it (leading empty lines are skipped).
// REQUIRES: `bytes` is buffered.substr(0, FindHeadEnd(buffered)); a head with no empty line at
// its end, or bytes after that line, is refused (400), never parsed in part.
// An empty Expect is no expectation (as Go's net/http reads it), and `100-continue` from an
// HTTP/1.0 client is ignored (RFC 9110 §10.1.1). Repeated Content-Length fields must be the same
// text ("5" and "05" conflict). Refusals are checked in this order: the head's size, each line
// as it comes (414, 431 per line, 400), then framing and Host (400), then Expect (417).
HeadParse ParseRequestHead(std::string_view bytes, const HeadLimits& limits = {});

// The comma-separated options of a Connection header value, lower-cased, empty ones dropped.
std::vector<std::string> ConnectionOptions(std::string_view value);

// True for a hop-by-hop header (RFC 9110 §7.6.1): Connection, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, TE, Trailer, Upgrade, any Proxy-* header, and every header named in
// `connection_options` (lower-case, as ConnectionOptions returns them). Either direction.
bool IsHopByHop(std::string_view name, const std::vector<std::string>& connection_options);

// What the proxy sends a node for a client's head.
struct ForwardSpec {
  std::string_view authority;       // the node's host:port, sent as Host
  std::string_view client_address;  // appended to X-Forwarded-For
  // Corral's own token stays in Corral: drop Authorization (set when tokens are configured).
  bool drop_authorization = false;
  // Further request headers not to forward (case-insensitive), e.g. X-Corral-Node.
  std::vector<std::string_view> drop;
  // When set, sent as X-Request-Id in place of any the client sent (the request's id, which the
  // proxy accepted from the client or made, common to its record, the node and the answer).
  std::string_view request_id;
  BodyFraming body = BodyFraming::kNone;
  uint64_t body_length = 0;  // with BodyFraming::kLength
};

// The head to send a node: the client's method and target as sent, HTTP/1.1, Host set to
// spec.authority, then the client's fields in order without hop-by-hop ones, Host,
// Content-Length, Transfer-Encoding, Expect, Authorization when dropped and spec.drop; the
// client's X-Forwarded-For values joined with spec.client_address in one field;
// `X-Forwarded-Proto: http` unless the client sent one; X-Request-Id: spec.request_id when set;
// then the framing of spec.body.
// Parsing the result with ParseRequestHead gives back that one request.
std::string BuildForwardHead(const RequestHead& head, const ForwardSpec& spec);

struct ChunkLimits {
  size_t max_size_line = 1024;      // a chunk-size line with its extensions, CRLF included
  size_t max_trailer_bytes = 8192;  // all trailer lines together, the closing CRLF included
};

// Decodes a chunked body (RFC 9112 §7.1) as its bytes arrive. Extensions are read and ignored;
// trailer fields are checked like header fields and dropped (nothing after the body is
// forwarded). A size line or the trailers over their limits, a size that overflows 63 bits,
// a bare LF or a chunk not followed by CRLF is an error.
class ChunkedDecoder {
 public:
  enum class Status { kNeedMore, kDone, kError };

  explicit ChunkedDecoder(ChunkLimits limits = {});

  // Decodes from `in`, appending data bytes to *out. *consumed is set to the bytes of `in`
  // used: all of them with kNeedMore (a partial line is kept inside), up to the end of the
  // message with kDone (what follows belongs to the next request), through the byte where the
  // error was found with kError. Any split of the same bytes into calls gives the same statuses,
  // the same total consumed and the same output. After kDone or kError, Feed consumes nothing
  // and returns the same status. REQUIRES: out != nullptr.
  Status Feed(std::string_view in, size_t* consumed, std::string* out);

  // Body bytes decoded so far.
  uint64_t decoded() const { return decoded_; }
  // Why decoding failed (kError only).
  const std::string& error() const { return error_; }

 private:
  enum class State { kSizeLine, kData, kDataCr, kDataLf, kTrailer, kDone, kError };

  Status Fail(std::string message);
  // Act on one whole size or trailer line, LF included; false after Fail.
  bool SizeLine(std::string_view line);
  bool TrailerLine(std::string_view line);

  ChunkLimits limits_;
  State state_ = State::kSizeLine;
  std::string line_;         // the partial size or trailer line
  uint64_t chunk_left_ = 0;  // data bytes of the current chunk not yet decoded
  uint64_t decoded_ = 0;
  size_t trailer_bytes_ = 0;
  std::string error_;
};

}  // namespace corral
