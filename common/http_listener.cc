#include "common/http_listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/ascii.h"
#include "common/busy_poll.h"
#include "common/client_socket.h"

namespace corral {
namespace {

using std::chrono::milliseconds;

milliseconds ToMillis(time_t sec, time_t usec) {
  return milliseconds(static_cast<int64_t>(sec) * 1000 + static_cast<int64_t>(usec) / 1000);
}

// Waits until `fd` is ready for `events` or `timeout` passes. EINTR waits again for what is
// left of the timeout.
bool WaitReady(int fd, short events, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    pollfd pfd{fd, events, 0};
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    const int r = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// Set when the serving thread's last read from its client failed on a timeout.
thread_local bool t_client_read_timed_out = false;
// Why the serving thread's last read of a chunked body failed, or empty.
thread_local std::string t_client_body_error;
// The request the thread serves (ServedRequestHead, ServedRequestTicket).
thread_local const RequestHead* t_served_head = nullptr;
thread_local std::shared_ptr<void> t_served_ticket;
// RefuseConnectionsHere objects alive on this thread.
thread_local int t_refuse_connections = 0;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

// What httplib reads of a request's headers when it is handed only what frames the exchange:
// the body's length or chunking, whether the connection stays open, and a `100 Continue`.
bool FramesExchange(std::string_view name) {
  return EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Transfer-Encoding") ||
         EqualsIgnoreCase(name, "Connection") || EqualsIgnoreCase(name, "Expect");
}

// The head httplib is handed for `head`: the same bytes, except that a '%' in a header value
// becomes "%25", which httplib's percent-decoding of header values turns back into '%', and,
// with `framing_only`, without the headers that do not frame the exchange. Written to `out`
// and true, or false when the client's bytes can go as they are (no '%' in a value and
// nothing dropped).
bool HeadForHttplib(const RequestHead& head, bool framing_only, std::string* out) {
  bool rewrite = false;
  for (const HeaderField& field : head.headers) {
    if (field.value.find('%') != std::string::npos ||
        (framing_only && !FramesExchange(field.name))) {
      rewrite = true;
      break;
    }
  }
  if (!rewrite) return false;
  out->append(head.method).append(" ").append(head.target);
  out->append(head.minor_version == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (const HeaderField& field : head.headers) {
    if (framing_only && !FramesExchange(field.name)) continue;
    out->append(field.name).append(": ");
    for (char c : field.value) {
      if (c == '%') {
        out->append("%25");
      } else {
        out->push_back(c);
      }
    }
    out->append("\r\n");
  }
  out->append("\r\n");
  return true;
}

// One accepted client connection as httplib's request parser and response writer see it (see
// http_listener.h for what it does differently from httplib's own stream). Used by the one
// worker thread serving the connection.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, milliseconds keep_alive, milliseconds read_timeout,
                   milliseconds write_timeout, milliseconds body_timeout)
      : fd_(fd),
        read_timeout_(read_timeout),
        write_timeout_(write_timeout),
        body_timeout_(body_timeout),
        buffer_(kInitialBuffer) {
    // The socket stays blocking for one read: the wait for a request's first bytes, bounded by
    // the keep-alive timeout (SO_RCVTIMEO; 0 would mean forever, so at least 1 ms). Every other
    // read and write is non-blocking (MSG_DONTWAIT) and polls with its own timeout.
    const int64_t wait_ms = std::max<int64_t>(1, keep_alive.count());
    timeval tv{static_cast<time_t>(wait_ms / 1000),
               static_cast<suseconds_t>(wait_ms % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    has_remote_ = PeerAddress(fd, &remote_addr_, &remote_port_);
    has_local_ = LocalAddress(fd, &local_addr_, &local_port_);
  }

  const std::string& remote_addr() const { return remote_addr_; }
  int remote_port() const { return remote_port_; }
  const std::string& local_addr() const { return local_addr_; }
  int local_port() const { return local_port_; }

  // True once a request's first bytes are here (read in the same system call that waited for
  // them); false when the keep-alive timeout passed without any, or the client closed or
  // failed.
  bool WaitForRequest(bool busy_poll) {
    if (start_ < end_) return true;
    ssize_t n = -1;
    const bool spun =
        busy_poll && BusyPoll::Allowed(0) && BusyPoll::Spin([&] {
          n = ::recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
          return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        });
    if (!spun) {
      do {
        n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
      } while (n < 0 && errno == EINTR);
    }
    if (n <= 0) return false;
    start_ = 0;
    end_ = static_cast<size_t>(n);
    hold_next_write_ = true;
    return true;
  }

  // What ReadHead found wrong with a head: the status to answer (0: close without one, the
  // client is gone), the request target when the request line arrived, and why.
  struct HeadProblem {
    int status = 0;
    std::string target;
    std::string message;
  };

  // Reads until the request's whole head is buffered (HeadBytes()), within the line and size
  // limits of http_listener.h. Leading empty lines are dropped.
  std::optional<HeadProblem> ReadHead() {
    t_client_read_timed_out = false;
    t_client_body_error.clear();
    in_body_ = false;
    chunked_ = false;
    head_size_ = 0;
    target_.clear();
    const auto deadline = std::chrono::steady_clock::now() + kHeadTimeout;
    size_t line_start = start_;  // the line being scanned
    size_t scan = start_;        // where the search for its end goes on
    bool request_line = true;
    std::string& target = target_;
    while (true) {
      while (scan < end_) {
        const char* nl =
            static_cast<const char*>(std::memchr(buffer_.data() + scan, '\n', end_ - scan));
        if (nl == nullptr) {
          scan = end_;
          break;
        }
        const size_t line_end = static_cast<size_t>(nl - buffer_.data()) + 1;
        const size_t size = line_end - line_start;
        std::string_view line(buffer_.data() + line_start, size - 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (request_line) {
          if (size > kMaxRequestLine) return LineTooLong(true, target);
          // RFC 9112 §2.2: an empty line before a request is ignored (a CRLF one only: a bare LF
          // is refused wherever it is, as the head parser does).
          if (line.empty() && size == 2) {
            start_ = line_start = scan = line_end;
            continue;
          }
          const size_t sp = line.find(' ');
          if (sp != std::string_view::npos) {
            target = std::string(line.substr(sp + 1, line.find(' ', sp + 1) - sp - 1));
          }
          request_line = false;
        } else {
          // Measured as httplib will see it: each '%' reaches it as "%25" (HandOver).
          if (size + 2 * static_cast<size_t>(std::count(line.begin(), line.end(), '%')) >
              kMaxHeaderLine) {
            return LineTooLong(false, target);
          }
          if (line.empty()) {
            if (line_end - start_ > kMaxHead) break;  // refused below
            head_size_ = line_end - start_;
            return std::nullopt;
          }
        }
        line_start = scan = line_end;
      }
      // A line not ended yet that is already too long.
      if (end_ - line_start > (request_line ? kMaxRequestLine : kMaxHeaderLine)) {
        return LineTooLong(request_line, target);
      }
      if (end_ - start_ > kMaxHead) {
        return HeadProblem{
            431, target,
            "request head is larger than the limit of " + std::to_string(kMaxHead >> 10) + " KiB"};
      }
      // More bytes are needed: make room, then wait for them until the head's deadline.
      if (end_ == buffer_.size()) {
        if (start_ > 0) {
          std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
          line_start -= start_;
          scan -= start_;
          end_ -= start_;
          start_ = 0;
        } else {
          buffer_.resize(std::min(buffer_.size() * 2, kMaxHead + kInitialBuffer));
        }
      }
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      const ssize_t n = ReceiveWithin(buffer_.data() + end_, buffer_.size() - end_,
                                      std::min(left, read_timeout_));
      if (n == 0) return HeadProblem{};
      if (n < 0) {
        if (!t_client_read_timed_out) return HeadProblem{};
        return HeadProblem{408, target,
                           "request head did not arrive within " +
                               std::to_string(kHeadTimeout.count() / 1000) + " s"};
      }
      end_ += static_cast<size_t>(n);
    }
  }

  // The head ReadHead found: the request line through the empty line that ends it.
  std::string_view HeadBytes() const {
    return std::string_view(buffer_.data() + start_, head_size_);
  }
  // The request target as the request line has it (empty when it did not arrive).
  const std::string& target() const { return target_; }

  // Answers a refused head and ends the connection (see Answer).
  void Refuse(const HeadProblem& problem, const HttpListener::RefusalWriter& writer) {
    HttpListener::Refusal refusal;
    if (writer) {
      refusal = writer(problem.status, problem.target, problem.message);
    } else {
      refusal = {"text/plain; charset=utf-8", problem.message + "\n"};
    }
    Answer(problem.status, refusal.content_type, refusal.body, {}, /*close=*/true);
  }

  // Answers the head just read by itself. With `close`, the connection ends after a lingering
  // close that takes what the client still sends for a moment, so that the close does not
  // reset the connection before the client has read the answer; without, the head is consumed
  // and the connection goes on. False when the client could not take the answer.
  bool Answer(int status, const std::string& content_type, const std::string& body,
              const std::vector<std::pair<std::string, std::string>>& headers, bool close) {
    std::string answer = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\n");
    if (!content_type.empty()) absl::StrAppend(&answer, "Content-Type: ", content_type, "\r\n");
    for (const auto& [name, value] : headers) absl::StrAppend(&answer, name, ": ", value, "\r\n");
    absl::StrAppend(&answer, "Content-Length: ", body.size(), "\r\n",
                    close ? "Connection: close\r\n" : "", "\r\n", body);
    if (!close) {
      start_ += head_size_;
      consumed_ += head_size_;
      head_size_ = 0;
    }
    iovec iov{answer.data(), answer.size()};
    if (!WriteAll(fd_, &iov, 1, write_timeout_).ok()) return false;
    if (!close) return true;
    ::shutdown(fd_, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + kLingerTime;
    char sink[16384];
    for (size_t taken = 0; taken < kLingerBytes;) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      const ssize_t n = ReceiveWithin(sink, sizeof sink, left);
      if (n <= 0) break;
      taken += static_cast<size_t>(n);
    }
    return true;
  }

  // Hands the head just read to httplib, in a form it reads as the listener did (see
  // http_listener.h), and starts the body's phase: its reads are held to the body's pace and
  // deadline, and a chunked body is re-framed through a ChunkedDecoder.
  void HandOver(const RequestHead& head, bool framing_only) {
    // A large head's copy is not kept for the connection's life.
    if (handed_.capacity() > 4096) std::string().swap(handed_);
    handed_.clear();
    handed_at_ = 0;
    if (HeadForHttplib(head, framing_only, &handed_)) {
      // httplib reads the rewritten head from handed_; the client's is taken as read.
      start_ += head_size_;
      consumed_ += head_size_;
      head_left_ = handed_.size();
      body_base_ = consumed_;
    } else {
      handed_.clear();
      head_left_ = head_size_;
      body_base_ = consumed_ + head_size_;
    }
    in_body_ = true;
    body_started_ = std::chrono::steady_clock::now();
    chunked_ = head.framing == BodyFraming::kChunked;
    if (chunked_) {
      decoder_ = ChunkedDecoder();
      framed_.clear();
      framed_at_ = 0;
      chunks_done_ = false;
    }
  }

  // True when httplib took the request's whole body. When it did not (a handler that left it
  // unread, a body that broke off or came too slowly), what is left of it must never be read
  // as the next request: the connection ends instead.
  bool BodyTaken(const RequestHead& head) const {
    if (head.framing == BodyFraming::kChunked) return chunks_done_ && framed_at_ == framed_.size();
    if (head.framing == BodyFraming::kLength) {
      return consumed_ >= body_base_ && consumed_ - body_base_ >= head.content_length;
    }
    return true;
  }

  // The next write starts an answer: it is held back (a request read in one go from the
  // socket holds it anyway; this covers one that was already buffered behind the previous).
  void BeginAnswer() { hold_next_write_ = true; }

  // True when the answer's head said `Connection: close`: the connection ends after it.
  bool answer_closes() const { return answer_closes_; }

  // Sends held bytes. False when the client cannot take them.
  bool Flush() const {
    if (held_.empty()) return true;
    iovec iov{const_cast<char*>(held_.data()), held_.size()};
    const bool ok = WriteAll(fd_, &iov, 1, write_timeout_).ok();
    held_.clear();
    return ok;
  }

  // httplib::Stream
  bool is_readable() const override {
    return start_ < end_ || (Flush() && WaitReady(fd_, POLLIN, ReadWait()));
  }

  bool is_writable() const override {
    if (!Flush() || !WaitReady(fd_, POLLOUT, write_timeout_)) return false;
    // A client that closed its end is gone even though its socket still takes writes.
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }

  ssize_t read(char* ptr, size_t size) override {
    // The head goes to httplib as it is buffered; a chunked body's bytes after it go through
    // the decoder.
    if (handed_at_ < handed_.size()) {
      const size_t n = std::min(size, handed_.size() - handed_at_);
      std::memcpy(ptr, handed_.data() + handed_at_, n);
      handed_at_ += n;
      head_left_ -= std::min(head_left_, n);
      return static_cast<ssize_t>(n);
    }
    if (chunked_ && head_left_ == 0) return ReadChunked(ptr, size);
    if (head_left_ > 0) size = std::min(size, head_left_);
    const ssize_t n = ReadPlain(ptr, size);
    if (n > 0 && head_left_ > 0) head_left_ -= std::min(head_left_, static_cast<size_t>(n));
    return n;
  }

  ssize_t ReadPlain(char* ptr, size_t size) {
    if (start_ == end_) {
      // Nothing buffered: what was held must reach the client before waiting for it (a
      // 100 Continue, say).
      if (!Flush()) return -1;
      if (size >= buffer_.size()) {
        const ssize_t n = Receive(ptr, size);
        if (n > 0) consumed_ += static_cast<size_t>(n);
        return n;
      }
      const ssize_t n = Receive(buffer_.data(), buffer_.size());
      if (n <= 0) return n;
      start_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - start_);
    std::memcpy(ptr, buffer_.data() + start_, n);
    start_ += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (hold_next_write_) {
      // The first write of an answer is its head (httplib writes it in one piece).
      held_.append(ptr, size);
      // An interim answer (`100 Continue`) is not the answer: the next write, the final head,
      // is held and looked at too (its `Connection: close` must end the connection).
      hold_next_write_ = size > 9 && std::string_view(ptr, 9) == "HTTP/1.1 " && ptr[9] == '1';
      NoteAnswerHead();
      return static_cast<ssize_t>(size);
    }
    iovec iov[2] = {{const_cast<char*>(held_.data()), held_.size()},
                    {const_cast<char*>(ptr), size}};
    const bool ok = WriteAll(fd_, iov, 2, write_timeout_).ok();
    held_.clear();
    return ok ? static_cast<ssize_t>(size) : -1;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (has_remote_) {
      ip = remote_addr_;
      port = remote_port_;
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    if (has_local_) {
      ip = local_addr_;
      port = local_port_;
    }
  }

  socket_t socket() const override { return fd_; }

 private:
  static constexpr size_t kInitialBuffer = 4096;
  static constexpr size_t kMaxRequestLine = HttpListener::kMaxRequestLine;
  static constexpr size_t kMaxHeaderLine = HttpListener::kMaxHeaderLine;
  static constexpr size_t kMaxHead = HttpListener::kMaxHead;
  static constexpr milliseconds kHeadTimeout = HttpListener::kHeadTimeout;
  static constexpr milliseconds kLingerTime{1000};
  static constexpr size_t kLingerBytes = 1 << 20;

  // The refusal of a line over its limit: 414 for the request line, 431 for a header line.
  static HeadProblem LineTooLong(bool request_line, const std::string& target) {
    if (request_line) {
      return HeadProblem{
          414, "",
          "request line is longer than the limit of " + std::to_string(kMaxRequestLine) + " bytes"};
    }
    return HeadProblem{431, target,
                       "request header line is longer than the limit of " +
                           std::to_string(kMaxHeaderLine) + " bytes"};
  }

  // A chunked body as httplib reads it: the client's chunks decoded (sizes, extensions and
  // trailers checked and held to their limits) and framed again as plain chunks, ending in
  // "0\r\n\r\n". What follows the body stays buffered for the next request.
  ssize_t ReadChunked(char* ptr, size_t size) {
    while (framed_at_ == framed_.size()) {
      if (chunks_done_) return 0;
      framed_.clear();
      framed_at_ = 0;
      if (start_ == end_) {
        if (!Flush()) return -1;
        const ssize_t n = Receive(buffer_.data(), buffer_.size());
        if (n <= 0) return n;
        start_ = 0;
        end_ = static_cast<size_t>(n);
      }
      std::string data;
      size_t used = 0;
      const auto status =
          decoder_.Feed(std::string_view(buffer_.data() + start_, end_ - start_), &used, &data);
      start_ += used;
      consumed_ += used;
      if (status == ChunkedDecoder::Status::kError) {
        t_client_body_error = decoder_.error();
        return -1;
      }
      if (!data.empty()) {
        char size_line[24];
        const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
        framed_.append(size_line, static_cast<size_t>(len)).append(data).append("\r\n");
      }
      if (status == ChunkedDecoder::Status::kDone) {
        framed_.append("0\r\n\r\n");
        chunks_done_ = true;
      }
    }
    const size_t n = std::min(size, framed_.size() - framed_at_);
    std::memcpy(ptr, framed_.data() + framed_at_, n);
    framed_at_ += n;
    return static_cast<ssize_t>(n);
  }

  // Looks at a held answer head: `Connection: close` ends the connection after the answer, and
  // then a `Keep-Alive` line (httplib adds one unless the request asked to close) is dropped.
  void NoteAnswerHead() {
    answer_closes_ = absl::StrContains(held_, "\r\nConnection: close\r\n");
    if (!answer_closes_) return;
    const size_t at = held_.find("\r\nKeep-Alive: ");
    if (at == std::string::npos) return;
    const size_t line_end = held_.find("\r\n", at + 2);
    if (line_end != std::string::npos) held_.erase(at, line_end - at);
  }

  // How long a read may wait now: the read timeout, and in a body no longer than its pace
  // allows (HttpListener::kBodyGrace, then kMinBodyRate on average).
  milliseconds ReadWait() const {
    if (!in_body_) return read_timeout_;
    const size_t taken = consumed_ > body_base_ ? consumed_ - body_base_ : 0;
    const auto deadline = std::min(body_started_ + HttpListener::kBodyGrace +
                                       milliseconds(taken * 1000 / HttpListener::kMinBodyRate),
                                   body_started_ + body_timeout_);
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    return std::max(milliseconds(0), std::min(left, read_timeout_));
  }

  // One recv, waiting up to ReadWait() only when nothing is there yet. -1 on a timeout or an
  // error, 0 at the client's end of stream.
  ssize_t Receive(char* ptr, size_t size) {
    const ssize_t n = ReceiveWithin(ptr, size, ReadWait());
    // What follows reading a request is the start of its answer: hold it back.
    if (n > 0) hold_next_write_ = true;
    return n;
  }

  ssize_t ReceiveWithin(char* ptr, size_t size, milliseconds wait) const {
    while (true) {
      const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (wait.count() <= 0 || !WaitReady(fd_, POLLIN, wait)) {
        t_client_read_timed_out = true;
        return -1;
      }
    }
  }

  const int fd_;
  const milliseconds read_timeout_;
  const milliseconds write_timeout_;
  const milliseconds body_timeout_;
  std::string remote_addr_;
  int remote_port_ = -1;
  bool has_remote_ = false;
  std::string local_addr_;
  int local_port_ = -1;
  bool has_local_ = false;
  // Bytes read from the socket and not yet taken: buffer_[start_, end_). It grows past its
  // first size only to hold a large head (at most kMaxHead and a little).
  std::vector<char> buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
  // Bytes taken by httplib on this connection; the body's pace counts those past body_base_.
  size_t consumed_ = 0;
  // The head ReadHead found: its size from start_ (0 when none), and its request target.
  size_t head_size_ = 0;
  std::string target_;
  // Bytes of the head httplib has still to read.
  size_t head_left_ = 0;
  // The head httplib is handed when it differs from the client's (HandOver), and how much of
  // it httplib has read; its capacity is kept from request to request.
  std::string handed_;
  size_t handed_at_ = 0;
  bool in_body_ = false;
  std::chrono::steady_clock::time_point body_started_;
  size_t body_base_ = 0;
  // A chunked body: the decoder, and the re-framed bytes httplib reads, framed_[framed_at_...).
  bool chunked_ = false;
  ChunkedDecoder decoder_;
  std::string framed_;
  size_t framed_at_ = 0;
  bool chunks_done_ = false;
  // The held start of an answer (see http_listener.h). Mutable: the const checks httplib calls
  // (is_readable, is_writable) send it first.
  mutable std::string held_;
  bool hold_next_write_ = false;
  bool answer_closes_ = false;
};

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("listen address \"" + text + "\" must be HOST:PORT");
  }
  ListenAddress out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError("listen address \"" + text + "\" has no valid port");
  }
  out.port = port;
  return out;
}

absl::Status WritePortFile(const std::string& path, int port) {
  if (path.empty()) return absl::OkStatus();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::InternalError("cannot write port file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError("cannot rename port file to " + path);
  }
  return absl::OkStatus();
}

// Counts a connection against its client address's cap (HttpListener::max_per_client_).
class HttpListener::ClientSlot {
 public:
  ClientSlot(HttpListener& listener, const std::string& address)
      : listener_(listener), address_(address) {
    if (listener_.max_per_client_ == 0) return;
    std::lock_guard<std::mutex> lock(listener_.clients_mu_);
    size_t& open = listener_.clients_[address_];
    held_ = open < listener_.max_per_client_;
    if (held_) ++open;
    if (open == 0) listener_.clients_.erase(address_);
  }
  ~ClientSlot() {
    if (!held_) return;
    std::lock_guard<std::mutex> lock(listener_.clients_mu_);
    auto it = listener_.clients_.find(address_);
    if (it != listener_.clients_.end() && --it->second == 0) listener_.clients_.erase(it);
  }
  ClientSlot(const ClientSlot&) = delete;
  ClientSlot& operator=(const ClientSlot&) = delete;

  // False when the address already held its cap: the connection is refused.
  bool held() const { return listener_.max_per_client_ == 0 || held_; }

 private:
  HttpListener& listener_;
  const std::string address_;
  bool held_ = false;
};

namespace {

// Refuses a connection before reading anything: the answer goes out without waiting (the
// socket takes it, or the client misses it), what the client already sent is dropped, and
// the socket closes. Nothing here may block: it can run on the accepting thread.
void RefuseUnread(int fd, const HttpListener::RefusalWriter& writer, const std::string& message) {
  HttpListener::Refusal refusal;
  if (writer) {
    refusal = writer(503, "", message);
  } else {
    refusal = {"text/plain; charset=utf-8", message + "\n"};
  }
  const std::string answer =
      absl::StrCat("HTTP/1.1 503 Service Unavailable\r\nContent-Type: ", refusal.content_type,
                   "\r\nContent-Length: ", refusal.body.size(),
                   "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n", refusal.body);
  (void)::send(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  char sink[4096];
  while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
}

// Sets, for the request being served, what ServedRequestHead and ServedRequestTicket return.
class ServedRequest {
 public:
  ServedRequest(const RequestHead& head, std::shared_ptr<void> ticket) {
    t_served_head = &head;
    t_served_ticket = std::move(ticket);
  }
  ~ServedRequest() {
    t_served_head = nullptr;
    t_served_ticket.reset();
  }
  ServedRequest(const ServedRequest&) = delete;
  ServedRequest& operator=(const ServedRequest&) = delete;
};

}  // namespace

bool HttpListener::process_and_close_socket(socket_t sock) {
  bool served = false;
  if (t_refuse_connections > 0) {
    RefuseUnread(sock, refusal_writer_, "the server cannot take another connection right now");
    ::close(sock);
    return false;
  }
  {
    ConnectionStream stream(sock, ToMillis(keep_alive_timeout_sec_, 0),
                            ToMillis(read_timeout_sec_, read_timeout_usec_),
                            ToMillis(write_timeout_sec_, write_timeout_usec_), body_timeout_);
    ClientSlot slot(*this, stream.remote_addr());
    if (!slot.held()) {
      RefuseUnread(sock, refusal_writer_,
                   "too many connections from " + stream.remote_addr() + " (the limit is " +
                       std::to_string(max_per_client_) + ")");
      ::close(sock);
      return false;
    }
    ServedConnection registered(sock, stream.remote_addr(), stream.remote_port(),
                                stream.local_addr(), stream.local_port());
    const HeadLimits limits{kMaxRequestLine, kMaxHeaderLine, kMaxHead};
    // As httplib's loop: up to keep_alive_max_count_ requests (the last one is told to close),
    // each awaited for the keep-alive timeout, none started once the server was stopped.
    for (size_t left = keep_alive_max_count_;
         left > 0 && svr_sock_ != INVALID_SOCKET && stream.WaitForRequest(busy_poll_); --left) {
      const BusyPoll::Request in_progress;
      if (const auto problem = stream.ReadHead()) {
        if (problem->status != 0) stream.Refuse(*problem, refusal_writer_);
        break;
      }
      HeadParse parsed = ParseRequestHead(stream.HeadBytes(), limits);
      if (!parsed.head) {
        stream.Refuse({parsed.error.status, stream.target(), parsed.error.message},
                      refusal_writer_);
        break;
      }
      const RequestHead& head = *parsed.head;
      HeadVerdict verdict;
      if (head_check_) verdict = head_check_(head, stream.remote_addr());
      if (verdict.status != 0) {
        // A body the client may be sending would be read as the next request: close then.
        const bool close = head.has_body() || !head.keep_alive || left == 1;
        if (!stream.Answer(verdict.status, verdict.content_type, verdict.body, verdict.headers,
                           close) ||
            close) {
          break;
        }
        continue;
      }
      stream.HandOver(head, framing_only_);
      ServedRequest current(head, std::move(verdict.ticket));
      bool connection_closed = false;
      stream.BeginAnswer();
      served = process_request(stream, left == 1, connection_closed, nullptr);
      stream.Flush();
      if (!served || connection_closed || stream.answer_closes() || !stream.BodyTaken(head)) break;
    }
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return served;
}

bool ClientReadTimedOut() { return t_client_read_timed_out; }

const std::string& ClientBodyError() { return t_client_body_error; }

const RequestHead* ServedRequestHead() { return t_served_head; }

const std::shared_ptr<void>& ServedRequestTicket() { return t_served_ticket; }

RefuseConnectionsHere::RefuseConnectionsHere() { ++t_refuse_connections; }

RefuseConnectionsHere::~RefuseConnectionsHere() { --t_refuse_connections; }

HttpListener::HttpListener(size_t workers, int backlog) : backlog_(backlog) {
  new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  // httplib's default also sets SO_REUSEPORT, which lets a second process bind the same port
  // without an error and the kernel split the connections between the two (a second proxy
  // started by mistake would answer half the clients): SO_REUSEADDR only, so a restart still
  // binds at once past the old connections' TIME_WAIT.
  set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

absl::StatusOr<int> HttpListener::Bind(const ListenAddress& address) {
  int port = address.port;
  if (port == 0) {
    port = bind_to_any_port(address.host);
    if (port <= 0) {
      return absl::UnavailableError("cannot bind " + address.host + ":0");
    }
  } else if (!bind_to_port(address.host, port)) {
    return absl::UnavailableError("cannot bind " + address.host + ":" + std::to_string(port) +
                                  " (in use, or not an address of this machine)");
  }
  // httplib listened with its baked-in backlog of 5; listening again raises it.
  if (::listen(svr_sock_, backlog_) != 0) {
    return absl::InternalError("listen(backlog) failed");
  }
  return port;
}

}  // namespace corral
