// An httplib::Server that can hold thousands of connections: a worker pool of a chosen size,
// a real listen backlog (Debian's build bakes in 5), a port no second process can bind while it
// is held (no SO_REUSEPORT), and the bound port written to a port file.
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
// It is the front door of every request: httplib never sees a head the listener has not read
// and accepted first. The listener answers by itself (with the body a RefusalWriter makes, then
// `Connection: close` and a lingering close) before httplib sees the request when:
// * the whole head does not arrive within kHeadTimeout of its first byte (408), its request
//   line is over kMaxRequestLine (414), a header line over kMaxHeaderLine or the head over
//   kMaxHead (431);
// * the head breaks a rule of common/request_head.h (control characters, bare LF, obs-fold,
//   ambiguous framing, ...): that parse of the raw bytes is the only one the server acts on;
// * a client address already holds its cap of connections (503, before anything is read);
// * the head check (set_head_check: authorization and admission) refuses it: its answer goes
//   out at once, before any body byte is read and before a `100 Continue`; the connection ends
//   when a body was announced, since its bytes would otherwise be read as the next request.
// An admitted request's parse and the check's ticket are what its handler reads
// (ServedRequestHead, ServedRequestTicket), never httplib's decoded view of the headers. httplib
// still parses the same bytes for its own routing and framing, so it is handed only heads it
// reads the same way: a '%' in a header value (which httplib would percent-decode) reaches it
// as "%25", and a chunked body reaches it re-framed in plain chunks by a ChunkedDecoder that
// holds size lines and trailers to their limits.
// A body may take kBodyGrace, and then must keep an average of kMinBodyRate, and must end within
// the body timeout: a read that would wait past either fails as a timeout
// (ClientReadTimedOut() tells the handler). An answer whose head says `Connection: close` ends
// the connection (without the Keep-Alive line httplib adds when the request did not ask to
// close).
//
// Thread safety: configure and Bind from one thread, then Run on one thread (it blocks);
// Stop may be called from any thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/request_head.h"

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

// Why the calling serving thread's last read of a chunked body failed (a malformed or
// over-limit chunk), or empty.
const std::string& ClientBodyError();

// What a head check decides for a request whose head was read, before any body byte is.
struct HeadVerdict {
  int status = 0;  // 0 admits the request; otherwise the refusal's status
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Retry-After
  // Admitted: what the check decided (the token found, an admission slot...), held for the
  // request's lifetime and readable by its handler (ServedRequestTicket).
  std::shared_ptr<void> ticket;
};
using HeadCheck =
    std::function<HeadVerdict(const RequestHead& head, const std::string& client_address)>;

// The request an HttpListener is serving on the calling thread, as the listener parsed it from
// the raw bytes; null outside such a request.
const RequestHead* ServedRequestHead();
// The head check's ticket for that request (null without a check).
const std::shared_ptr<void>& ServedRequestTicket();

// While one exists on a thread, a connection served on that thread is refused at once (503,
// nothing read) instead of served: for a worker pool that could not start a thread and runs
// the connection on the accepting thread instead.
class RefuseConnectionsHere {
 public:
  RefuseConnectionsHere();
  ~RefuseConnectionsHere();
  RefuseConnectionsHere(const RefuseConnectionsHere&) = delete;
  RefuseConnectionsHere& operator=(const RefuseConnectionsHere&) = delete;
};

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
  // Authorization and admission on the head (see above). Set before Run.
  void set_head_check(HeadCheck check) { head_check_ = std::move(check); }
  // Open connections one client address may hold; 0 = no cap. Set before Run.
  void set_max_connections_per_client(size_t n) { max_per_client_ = n; }
  // Hand httplib only the headers that frame the exchange (Content-Length, Transfer-Encoding,
  // Connection, Expect), for a server whose handlers read every other header from
  // ServedRequestHead: httplib then parses, looks up and acts on nothing else (no Range slicing
  // of an answer, no multipart body, no compression chosen from Accept-Encoding), and a request
  // costs less. Set before Run.
  void set_framing_headers_only(bool on) { framing_only_ = on; }
  // The longest a request body may take from its head's end to its last byte. Set before Run.
  void set_body_timeout(std::chrono::milliseconds t) { body_timeout_ = t; }
  // Serves until Stop(). Returns false if the server failed.
  bool Run() { return listen_after_bind(); }

 private:
  // httplib::Server: serves one accepted connection on the calling worker, then closes it.
  bool process_and_close_socket(socket_t sock) override;

  // Counts a connection against its client address's cap for as long as it lives.
  class ClientSlot;

  int backlog_;
  RefusalWriter refusal_writer_;
  HeadCheck head_check_;
  bool busy_poll_ = false;
  bool framing_only_ = false;
  size_t max_per_client_ = 0;
  std::chrono::milliseconds body_timeout_{std::chrono::minutes(10)};
  std::mutex clients_mu_;
  std::unordered_map<std::string, size_t> clients_;  // open connections per address; clients_mu_
};

}  // namespace corral
