// UpstreamConnection: one HTTP/1.1 connection from the proxy to a node, on a raw socket.
//
// The proxy writes each request with a single writev (head and body together) and parses the
// node's response with http_parser: status, headers, then the body as it arrives, de-chunked.
// The caller drives the socket: it polls fd() (together with the client's socket when it wants
// to notice a client leaving), calls ReadSome when readable, and takes body bytes with
// TakeBody. That split lets a request handler read the response head and a content provider
// pull the body on the same thread, and makes cancellation simply closing the socket (which
// is what makes a node stop generating).
//
// Thread safety: a connection is used by one thread at a time; hand-over between threads
// (through UpstreamPool) needs the pool's lock, nothing else.
#pragma once

#include <http_parser.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace corral::dataplane {

// Size of one read from a node. Small on purpose: thousands of streams each hold one.
inline constexpr size_t kUpstreamReadBuffer = 16 * 1024;

enum class ReadOutcome {
  kProgress,    // bytes were read and parsed (body bytes may or may not have resulted)
  kWouldBlock,  // nothing to read yet
  kClosed,      // the node closed the connection before the response ended
  kError,       // socket error or a response that is not valid HTTP
};

enum class WaitOutcome {
  kReadable,    // the node's socket has data (or EOF/error, which ReadSome reports)
  kTimeout,     // nothing happened within the timeout
  kClientGone,  // the watched client socket was closed by its peer
};

class UpstreamConnection {
 public:
  // Connects to host:port (name or IP literal) within `timeout`, with TCP_NODELAY.
  static absl::StatusOr<std::unique_ptr<UpstreamConnection>> Connect(
      const std::string& host, int port, std::chrono::milliseconds timeout);

  explicit UpstreamConnection(int fd);
  ~UpstreamConnection();  // closes the socket
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  int fd() const { return fd_; }
  // Closes the socket now (cancellation). Further reads report kError.
  void Close();

  // True for a connection taken from the pool (it may have gone stale while idle).
  bool reused() const { return reused_; }
  void MarkReused() { reused_ = true; }
  std::chrono::steady_clock::time_point idle_since() const { return idle_since_; }
  void MarkIdle() { idle_since_ = std::chrono::steady_clock::now(); }

  // True if an idle connection still looks usable: no EOF, no error and no unexpected bytes
  // waiting (one non-blocking MSG_PEEK).
  bool LooksAlive() const;

  // Resets the parser for the response to the next request. `head_request`: the request is a
  // HEAD, so the response has no body whatever its Content-Length says.
  void BeginResponse(bool head_request);

  // Writes every part, in order, with as few writev calls as the socket allows (one, normally).
  // Waits for the socket to drain at most `timeout` between partial writes.
  absl::Status WriteAll(const std::vector<std::string_view>& parts,
                        std::chrono::milliseconds timeout);

  // Waits until the node's socket is readable, `timeout` passes, or `client_fd` (>= 0) shows its
  // peer has left. Returns kReadable at once, without polling, when the last read filled its
  // buffer (more is most likely waiting). A client that sent more bytes (pipelining) is not a departure; that socket
  // is then no longer watched (client_fd is set to -1).
  WaitOutcome Wait(std::chrono::milliseconds timeout, int* client_fd) const;

  // One non-blocking read, fed to the parser.
  ReadOutcome ReadSome();

  // Parser results.
  bool received_any() const { return received_any_; }
  bool head_complete() const { return head_complete_; }
  bool message_complete() const { return message_complete_; }
  int status() const { return status_; }
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }
  std::string_view Header(std::string_view name) const;  // first match, case-insensitive
  // The body is framed by Content-Length (as opposed to chunked or ended by close).
  bool has_content_length() const { return has_content_length_; }
  uint64_t content_length() const { return content_length_; }
  // Reusable for another request once the message is complete.
  bool keep_alive() const { return keep_alive_; }
  // Body bytes parsed and not yet taken.
  bool has_body() const { return !body_.empty(); }
  std::string TakeBody();
  const std::string& error() const { return error_; }

 private:
  static int OnHeaderField(http_parser* p, const char* at, size_t len);
  static int OnHeaderValue(http_parser* p, const char* at, size_t len);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t len);
  static int OnMessageComplete(http_parser* p);
  static const http_parser_settings& Settings();

  int fd_ = -1;
  bool reused_ = false;
  std::chrono::steady_clock::time_point idle_since_{};

  http_parser parser_{};
  bool head_request_ = false;
  bool received_any_ = false;
  bool head_complete_ = false;
  bool message_complete_ = false;
  bool last_was_value_ = false;
  int status_ = 0;
  bool has_content_length_ = false;
  uint64_t content_length_ = 0;
  bool keep_alive_ = false;
  bool more_waiting_ = false;  // the last read filled its buffer
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string body_;
  std::string error_;
};

}  // namespace corral::dataplane
