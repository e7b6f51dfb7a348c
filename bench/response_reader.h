// ResponseReader: an incremental parser of one HTTP/1.1 response at a time, for the load
// generator (bench/loadgen.cc). It is fed the bytes a non-blocking socket returned, in whatever
// pieces they came, and hands the body's bytes to the caller as they pass, so a streaming answer
// can be timed line by line. Framing: Content-Length, chunked (trailers skipped), or until the
// server closes; a HEAD-less client, so every response has a body unless 1xx/204/304.
//
// Only what a benchmark needs: no pipelining (bytes after the end of a response are an error),
// no 1xx interim responses, header values read only for framing and Connection.
//
// Thread safety: none; one reader per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace corral::bench {

class ResponseReader {
 public:
  enum class Result { kNeedMore, kComplete, kError };
  // Called with each run of body bytes (chunk framing removed) as it is parsed.
  using BodySink = std::function<void(std::string_view)>;

  // Parses `data`, the next bytes of the response. kComplete once the response ended (then
  // Reset before the next one); kError on bytes that are not a valid response.
  Result Feed(std::string_view data, const BodySink& sink);
  // The server closed the connection: completes a body framed by the close, errors otherwise.
  Result FeedEof();
  void Reset() { *this = ResponseReader(); }

  int status() const { return status_; }
  // False when the server said it will close (Connection: close, HTTP/1.0 without keep-alive).
  bool keep_alive() const { return keep_alive_; }
  // True once the status line and headers are in.
  bool head_done() const { return state_ > State::kHeaders; }
  const std::string& error() const { return error_; }

 private:
  enum class State {
    kStatusLine,
    kHeaders,
    kLengthBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kUntilClose,
    kDone,
    kFailed,
  };

  Result Fail(std::string message);
  // Handles one complete line of the head (without CRLF).
  bool HeadLine(std::string_view line);
  bool StartBody();

  State state_ = State::kStatusLine;
  std::string line_;  // a head, chunk-size or trailer line being collected
  int status_ = 0;
  bool http10_ = false;
  bool keep_alive_ = true;
  bool saw_keep_alive_ = false;
  bool chunked_ = false;
  int64_t content_length_ = -1;
  uint64_t left_ = 0;  // bytes left in the body or the current chunk
  std::string error_;
};

}  // namespace corral::bench
