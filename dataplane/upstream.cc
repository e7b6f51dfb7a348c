#include "dataplane/upstream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "common/ascii.h"
#include "common/busy_poll.h"
#include "common/client_socket.h"

namespace corral::dataplane {
namespace {

std::string ErrnoText(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

int MillisLeft(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Connects one resolved address without blocking longer than `deadline`.
int ConnectOne(const addrinfo* ai, std::chrono::steady_clock::time_point deadline,
               std::string* error) {
  const int fd =
      ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    *error = ErrnoText("socket", errno);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
  if (errno != EINPROGRESS) {
    *error = ErrnoText("connect", errno);
    ::close(fd);
    return -1;
  }
  pollfd pfd{fd, POLLOUT, 0};
  while (true) {
    const int n = ::poll(&pfd, 1, MillisLeft(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      *error = "connect: timed out";
      ::close(fd);
      return -1;
    }
    break;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    *error = ErrnoText("connect", err);
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpstreamConnection>> UpstreamConnection::Connect(
    const std::string& host, int port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // Numeric hosts (the common case) resolve without touching DNS.
  in6_addr probe6;
  in_addr probe4;
  if (::inet_pton(AF_INET, host.c_str(), &probe4) == 1 ||
      ::inet_pton(AF_INET6, host.c_str(), &probe6) == 1) {
    hints.ai_flags = AI_NUMERICHOST;
  }
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    return absl::UnavailableError("cannot resolve " + host + ": " + ::gai_strerror(rc));
  }
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ConnectOne(ai, deadline, &error);
  }
  ::freeaddrinfo(list);
  if (fd < 0) {
    return absl::UnavailableError(host + ":" + service + ": " + error);
  }
  return std::make_unique<UpstreamConnection>(fd);
}

UpstreamConnection::UpstreamConnection(int fd) : fd_(fd) {}

UpstreamConnection::~UpstreamConnection() { Close(); }

void UpstreamConnection::Close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

bool UpstreamConnection::LooksAlive() const {
  if (fd_ < 0) return false;
  char c;
  const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

const http_parser_settings& UpstreamConnection::Settings() {
  static const http_parser_settings settings = [] {
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_header_field = &UpstreamConnection::OnHeaderField;
    s.on_header_value = &UpstreamConnection::OnHeaderValue;
    s.on_headers_complete = &UpstreamConnection::OnHeadersComplete;
    s.on_body = &UpstreamConnection::OnBody;
    s.on_message_complete = &UpstreamConnection::OnMessageComplete;
    return s;
  }();
  return settings;
}

void UpstreamConnection::BeginResponse(bool head_request) {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  head_request_ = head_request;
  received_any_ = false;
  head_complete_ = false;
  message_complete_ = false;
  last_was_value_ = false;
  status_ = 0;
  has_content_length_ = false;
  content_length_ = 0;
  keep_alive_ = false;
  more_waiting_ = false;
  headers_.clear();
  body_.clear();
  error_.clear();
}

absl::Status UpstreamConnection::WriteAll(const std::vector<std::string_view>& parts,
                                          std::chrono::milliseconds timeout) {
  if (fd_ < 0) return absl::UnavailableError("connection closed");
  constexpr size_t kMaxIov = 8;
  iovec iov[kMaxIov];
  size_t count = 0;
  for (const auto& part : parts) {
    if (part.empty()) continue;
    if (count == kMaxIov) return absl::InternalError("too many parts");
    iov[count].iov_base = const_cast<char*>(part.data());
    iov[count].iov_len = part.size();
    ++count;
  }
  const absl::Status written = corral::WriteAll(fd_, iov, count, timeout);
  if (written.ok()) return written;
  return absl::Status(written.code(), "write to node: " + std::string(written.message()));
}

WaitOutcome UpstreamConnection::Wait(std::chrono::milliseconds timeout, int* client_fd) const {
  // The last read filled the buffer: the rest is most likely there already, and a poll would
  // only say so.
  if (fd_ >= 0 && more_waiting_) return WaitOutcome::kReadable;
  pollfd pfds[2];
  pfds[0] = {fd_, POLLIN, 0};
  nfds_t n = 1;
  if (client_fd != nullptr && *client_fd >= 0) {
    pfds[1] = {*client_fd, POLLIN | POLLRDHUP, 0};
    n = 2;
  }
  int r = 0;
  if (BusyPoll::Allowed(1)) BusyPoll::Spin([&] { return (r = ::poll(pfds, n, 0)) != 0; });
  if (r == 0) r = ::poll(pfds, n, static_cast<int>(timeout.count()));
  if (r <= 0) return WaitOutcome::kTimeout;  // EINTR counts as a short timeout
  if (n == 2 && pfds[1].revents != 0) {
    if (pfds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) return WaitOutcome::kClientGone;
    char c;
    const ssize_t got = ::recv(*client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got == 0) return WaitOutcome::kClientGone;
    if (got > 0) *client_fd = -1;  // pipelined bytes: the client is still there
  }
  if (pfds[0].revents != 0) return WaitOutcome::kReadable;
  return WaitOutcome::kTimeout;
}

ReadOutcome UpstreamConnection::ReadSome() {
  if (fd_ < 0) {
    if (error_.empty()) error_ = "connection closed";
    return ReadOutcome::kError;
  }
  char buf[kUpstreamReadBuffer];
  ssize_t n;
  do {
    n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  more_waiting_ = n == static_cast<ssize_t>(sizeof(buf));
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadOutcome::kWouldBlock;
    error_ = ErrnoText("read from node", errno);
    return ReadOutcome::kError;
  }
  if (n == 0) {
    // EOF ends a body framed by the connection's close; anything else was cut short.
    if (!message_complete_ && head_complete_)
      http_parser_execute(&parser_, &Settings(), nullptr, 0);
    if (message_complete_) {
      keep_alive_ = false;
      return ReadOutcome::kProgress;
    }
    error_ = received_any_ ? "node closed the connection before the end of the response"
                           : "node closed the connection";
    return ReadOutcome::kClosed;
  }
  received_any_ = true;
  if (message_complete_) {
    error_ = "node sent bytes after the end of the response";
    keep_alive_ = false;
    return ReadOutcome::kError;
  }
  const size_t parsed = http_parser_execute(&parser_, &Settings(), buf, static_cast<size_t>(n));
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err != HPE_OK && !(err == HPE_PAUSED && message_complete_)) {
    error_ = std::string("invalid response from node: ") + http_errno_description(err);
    return ReadOutcome::kError;
  }
  if (message_complete_ && parsed < static_cast<size_t>(n)) keep_alive_ = false;
  return ReadOutcome::kProgress;
}

std::string_view UpstreamConnection::Header(std::string_view name) const {
  for (const auto& [k, v] : headers_) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return {};
}

std::string UpstreamConnection::TakeBody() {
  std::string out;
  out.swap(body_);
  return out;
}

int UpstreamConnection::OnHeaderField(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<UpstreamConnection*>(p->data);
  if (self->headers_.empty() || self->last_was_value_) self->headers_.emplace_back();
  self->headers_.back().first.append(at, len);
  self->last_was_value_ = false;
  return 0;
}

int UpstreamConnection::OnHeaderValue(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<UpstreamConnection*>(p->data);
  if (self->headers_.empty()) self->headers_.emplace_back();
  self->headers_.back().second.append(at, len);
  self->last_was_value_ = true;
  return 0;
}

int UpstreamConnection::OnHeadersComplete(http_parser* p) {
  auto* self = static_cast<UpstreamConnection*>(p->data);
  if (p->status_code >= 100 && p->status_code < 200) {
    // An interim answer (100 Continue): the real head follows. Nodes never send one since
    // the proxy sends no Expect, but skip it correctly anyway.
    self->headers_.clear();
    self->last_was_value_ = false;
    return 0;
  }
  self->head_complete_ = true;
  self->status_ = p->status_code;
  self->has_content_length_ = !(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX;
  self->content_length_ = self->has_content_length_ ? p->content_length : 0;
  // A HEAD answer has no body; 1 tells http_parser so.
  return self->head_request_ ? 1 : 0;
}

int UpstreamConnection::OnBody(http_parser* p, const char* at, size_t len) {
  static_cast<UpstreamConnection*>(p->data)->body_.append(at, len);
  return 0;
}

int UpstreamConnection::OnMessageComplete(http_parser* p) {
  auto* self = static_cast<UpstreamConnection*>(p->data);
  if (!self->head_complete_) return 0;  // end of an interim 1xx answer
  self->message_complete_ = true;
  self->keep_alive_ = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace corral::dataplane
