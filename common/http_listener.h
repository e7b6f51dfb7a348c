// An httplib::Server that can hold thousands of connections: a worker pool of a chosen size,
// a real listen backlog (Debian's build bakes in 5), and the bound port written to a port file.
//
// It also serves each connection with its own loop instead of httplib's, for what a request
// costs in system calls and wake-ups (httplib's own still parses requests, routes them and
// writes responses):
// * a response goes out in one write: the first write of an answer (its status line and
//   headers) is held back and leaves together with the next one (the body, or a stream's first
//   chunk). Held bytes are sent before anything that could wait: reading more from the client,
//   a writability check (DataSink::is_writable, which a content provider about to wait for
//   its data can call), and the end of the exchange;
// * the wait for a request is the read that takes its first bytes (one blocking recv bounded
//   by the keep-alive timeout), other reads go straight to the socket and wait only when
//   nothing is there, and nothing waits before a write;
// * both ends' addresses are read once per connection, not once per request;
// * the connection is registered for its thread (ServedConnection), so a handler finds its
//   client's socket without a descriptor scan.
// Keep-alive (count, idle timeout), the read and write timeouts, and the end of the loop when
// the server stops behave as in httplib.
//
// It also holds clients to limits httplib does not have, answering by itself (with the body a
// RefusalWriter makes, then `Connection: close` and a lingering close) before httplib sees the
// request:
// * the whole head must arrive within kHeadTimeout of its first byte (408), its request line be
//   at most kMaxRequestLine (414), each header line at most kMaxHeaderLine and the head at most
//   kMaxHead (431);
// * Content-Length must be digits that fit 64 bits, the same in every copy (400);
// * a body may take kBodyGrace, and then must keep an average of kMinBodyRate: a read that
//   would wait past that fails as a timeout (ClientReadTimedOut() tells the handler);
// * an answer whose head says `Connection: close` ends the connection (without the Keep-Alive
//   line httplib adds when the request did not ask to close).
//
// Thread safety: configure and Bind from one thread, then Run on one thread (it blocks);
// Stop may be called from any thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral {

struct ListenAddress {
  std::string host;
  int port = 0;
};

// Parses "host:port", "[v6]:port" or ":port" (host 0.0.0.0). Port 0 is allowed (any free port).
absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text);

// Writes `port` to `path` atomically (temp file + rename). No-op when path is empty.
absl::Status WritePortFile(const std::string& path, int port);

// True when the calling serving thread's last read from its client failed because a timeout
// or the body's pace ran out (as opposed to the client closing or failing).
bool ClientReadTimedOut();

class HttpListener : public httplib::Server {
 public:
  static constexpr size_t kMaxRequestLine = 8192;  // httplib's own limit for the request target
  static constexpr size_t kMaxHeaderLine = 8192;   // httplib's own limit for a header line
  static constexpr size_t kMaxHead = 64 << 10;
  static constexpr std::chrono::milliseconds kHeadTimeout{10000};
  static constexpr std::chrono::milliseconds kBodyGrace{10000};
  static constexpr size_t kMinBodyRate = 1024;  // bytes per second, on average

  // The answer to a refused head: body and content type, for the request target (empty when
  // the request line did not arrive whole).
  struct Refusal {
    std::string content_type;
    std::string body;
  };
  using RefusalWriter =
      std::function<Refusal(int status, std::string_view target, std::string_view message)>;

  // `workers`: threads serving connections (one per open connection). `backlog`: the kernel's
  // accept queue length.
  HttpListener(size_t workers, int backlog);

  // Binds and raises the backlog. Returns the bound port.
  absl::StatusOr<int> Bind(const ListenAddress& address);
  // Spin briefly for a connection's next request while the process is nearly idle
  // (common/busy_poll.h). Set before Run.
  void set_busy_poll(bool on) { busy_poll_ = on; }
  // How refusals read (default: the message as plain text). Set before Run.
  void set_refusal_writer(RefusalWriter writer) { refusal_writer_ = std::move(writer); }
  // Serves until Stop(). Returns false if the server failed.
  bool Run() { return listen_after_bind(); }

 private:
  // httplib::Server: serves one accepted connection on the calling worker, then closes it.
  bool process_and_close_socket(socket_t sock) override;

  int backlog_;
  RefusalWriter refusal_writer_;
  bool busy_poll_ = false;
};

}  // namespace corral
