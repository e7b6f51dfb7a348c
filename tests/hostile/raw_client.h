// Hostile-client suite support: HTTP clients on raw sockets that send exactly the bytes a test
// chooses (half a request line, a trickle, a lie about the body's length, gigabytes of
// headers), the answer read back as bytes, and what a server process holds according to /proc.
//
// Thread safety: a RawConnection belongs to one thread. ReadProcess may run anywhere.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace corral::hostile {

// One HTTP answer as read from the wire.
struct Answer {
  bool complete = false;  // a whole answer (head and body) arrived
  bool closed = false;    // the server closed the connection (EOF or reset)
  bool timed_out = false;
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case, the last one wins
  std::string body;                            // de-chunked
  std::string raw;                             // every byte received, as received
  std::string Summary() const;                 // for failure messages
};

// A client connection to 127.0.0.1:`port` on a non-blocking socket.
class RawConnection {
 public:
  // Connects; null when the connection could not be made within `timeout`.
  static std::unique_ptr<RawConnection> Open(
      int port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  int fd() const { return fd_; }

  // Sends all of `bytes` unless the server stops taking them for `timeout` or the connection
  // fails. Returns how many bytes the kernel took.
  size_t Send(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Reads one answer: until it is complete, the server closes, or `timeout` passes.
  Answer Read(std::chrono::milliseconds timeout);

  // Sends what `next` produces (an empty string ends the body) while watching for an answer,
  // as a client does that streams a large body: the server may answer before taking it all.
  // Stops sending once an answer starts, the server stops reading, or `max_bytes` were sent;
  // then reads the answer until `timeout`. `*sent` gets the bytes the kernel took.
  Answer SendWhileReading(const std::function<std::string()>& next, uint64_t max_bytes,
                          std::chrono::milliseconds timeout, uint64_t* sent);

  // True when the server has closed the connection: bytes it sent are read and dropped. Does
  // not wait.
  bool ClosedByServer();

  // Reads up to the end of the next head (an interim `100 Continue` one, say) and returns it,
  // blank line included; what follows stays for the next Read. "" when no whole head arrived
  // within `timeout`.
  std::string ReadHead(std::chrono::milliseconds timeout);

  // Reads one answer too large to hold (hundreds of MiB): its head, how long its body was (as
  // de-chunked) and the body's first and last `keep` bytes.
  struct LargeAnswer {
    Answer answer;  // status, headers, complete/closed/timed_out; body: its first bytes
    uint64_t body_bytes = 0;
    std::string tail;  // the body's last bytes
  };
  LargeAnswer ReadLarge(std::chrono::milliseconds timeout, size_t keep = 64 * 1024);

 private:
  explicit RawConnection(int fd) : fd_(fd) {}
  // Reads what is there now into raw_. False at EOF or on an error.
  bool Drain();
  Answer Parse() const;

  int fd_ = -1;
  bool eof_ = false;
  std::string raw_;
};

// `method path HTTP/1.1` with a Host header, `extra_head` (whole lines, each ending in CRLF),
// a Content-Length for `body`, and the body.
std::string Request(const std::string& method, const std::string& path, std::string_view body,
                    const std::string& extra_head = "");

// Whether `answer` is an error in the format of `path`'s route: one line of JSON, application/json;
// {"error":"<message>"} on native routes, the OpenAI error object {message, type, param: null,
// code: null} on /v1.
::testing::AssertionResult IsRouteError(const Answer& answer, const std::string& path);
// The message of such an error ("" when there is none).
std::string RouteErrorMessage(const Answer& answer);

// What /proc says about a process.
struct ProcessView {
  bool ok = false;
  int64_t rss_kib = 0;       // VmRSS
  int64_t peak_rss_kib = 0;  // VmHWM
  int64_t threads = 0;
  int64_t fds = 0;   // open descriptors
  double cpu_s = 0;  // user + system time so far
  std::string Summary() const;
};
ProcessView ReadProcess(pid_t pid);

// Raises this process's RLIMIT_NOFILE soft limit to at least `want` (up to the hard limit).
// Returns the soft limit now in force. Child processes started afterwards inherit it.
uint64_t RaiseFileLimit(uint64_t want);

}  // namespace corral::hostile
